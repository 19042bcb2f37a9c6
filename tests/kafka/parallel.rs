//! A topic read in parallel, by partition (part of the `kafka` test binary, with its shared
//! broker).

use crate::broker::Broker;
use crate::support::*;

/// Instance *k* of *m* reads the partitions whose id is *k* modulo *m*: a windowed query over
/// three partitions gives at parallelism 2 (and 4: more instances than partitions) what it
/// gives on one thread, and EXPLAIN says the topic is split; with an idle timeout it is read
/// whole.
#[test]
fn a_topic_is_read_by_partition_in_parallel() {
    let b = Broker::shared();
    let t = topic("parallel");
    b.create_topic(&t, 3);
    let records: Vec<(Option<i32>, String)> = (0..3000u64)
        .map(|i| {
            let (_, value) = event(i);
            (Some((i % 3) as i32), value)
        })
        .collect();
    let refs: Vec<(Option<i32>, &str)> = records.iter().map(|(p, v)| (*p, v.as_str())).collect();
    b.produce(&t, &refs);
    let ddl = source("r", "k BIGINT, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND", &t, "");
    let query = format!(
        "{ddl} SELECT k, TUMBLE_START(ts, INTERVAL '1' SECOND) AS w, COUNT(*) AS n, SUM(v) AS total
         FROM r GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k;"
    );
    let at = |n: &str| {
        let o = weir().args(["run", "--format", "csv", "--quiet", "--parallelism", n, "-e", &query]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        lines(&String::from_utf8_lossy(&o.stdout))
    };
    let one = at("1");
    assert!(one.len() > 20, "{one:?}");
    let counted: u64 = one.iter().map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(counted, 3000, "no row is late");
    assert_eq!(at("2"), one);
    assert_eq!(at("4"), one);
    let explain = |sql: &str| {
        let o = weir().args(["explain", "--parallelism", "2", "-e", sql]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let plan = explain(&query);
    assert!(plan.contains("[2 splits]") && plan.contains("Exchange: hash [r.k]"), "{plan}");
    let idle = query.replace("'format' = 'json'", "'format' = 'json', 'scan.watermark.idle-timeout' = '5 s'");
    assert!(explain(&idle).contains("[read whole]"), "{}", explain(&idle));
}
