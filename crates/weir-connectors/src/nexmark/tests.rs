use super::*;
use datafusion_common::arrow::array::{Array, AsArray};
use datafusion_common::arrow::compute::concat_batches;
use datafusion_common::arrow::datatypes::{Int64Type, TimestampMillisecondType};

fn table(kind: &str, options: &[(&str, &str)]) -> TableDef {
    let mut t = weir_plan::nexmark::builtin_tables().into_iter().find(|t| t.name == kind).unwrap();
    t.options.extend(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    t
}

fn read(kind: &str, options: &[(&str, &str)], columns: &[&str], batch_size: usize) -> RecordBatch {
    let t = table(kind, options);
    let full = t.schema.clone().unwrap();
    let idx: Vec<usize> = columns.iter().map(|c| full.index_of(c).unwrap()).collect();
    let schema = Arc::new(full.project(&idx).unwrap());
    let mut source = NexmarkSource::open(&t, Arc::clone(&schema), batch_size, StartTime::now()).unwrap();
    let mut batches = Vec::new();
    while let Some(b) = source.next_batch().unwrap() {
        assert!(b.num_rows() <= batch_size);
        batches.push(b);
    }
    concat_batches(&schema, &batches).unwrap()
}

fn ints(b: &RecordBatch, i: usize) -> Vec<i64> {
    b.column(i).as_primitive::<Int64Type>().values().to_vec()
}

fn times(b: &RecordBatch, i: usize) -> Vec<i64> {
    b.column(i).as_primitive::<TimestampMillisecondType>().values().to_vec()
}

#[test]
fn a_bounded_generator_splits_its_events_one_three_forty_six() {
    let opts = [("events", "1000")];
    let people = read("person", &opts, &["id", "date_time"], 8192);
    let auctions = read("auction", &opts, &["id", "seller", "category", "date_time", "expires"], 8192);
    let bids = read("bid", &opts, &["auction", "bidder", "date_time"], 8192);
    assert_eq!((people.num_rows(), auctions.num_rows(), bids.num_rows()), (20, 60, 920));
    assert_eq!(ints(&people, 0), (1000..1020).collect::<Vec<_>>());
    assert_eq!(ints(&auctions, 0), (1000..1060).collect::<Vec<_>>());
    // event time: 2015-07-15, 10 000 events per second; event 999 is 99 ms in
    let base = weir_plan::nexmark::DEFAULT_BASE_TIME_MS;
    assert_eq!(times(&people, 1)[0], base);
    assert_eq!(*times(&bids, 2).last().unwrap(), base + 99);
    // sellers are people, categories 10-14, auctions end after they start
    assert!(ints(&auctions, 1).iter().all(|s| (1000..1030).contains(s)));
    assert!(ints(&auctions, 2).iter().all(|c| (10..15).contains(c)));
    assert!(times(&auctions, 3).iter().zip(times(&auctions, 4)).all(|(d, e)| e > *d));
    // bids refer to auctions and people that exist (or are about to)
    assert!(ints(&bids, 0).iter().all(|a| (1000..1070).contains(a)));
    assert!(ints(&bids, 1).iter().all(|b| (1000..1031).contains(b)));
}

#[test]
fn the_same_options_give_the_same_rows_whatever_the_batch_size() {
    let opts = [("events", "20000"), ("seed", "42")];
    let cols = ["auction", "bidder", "price", "channel", "url", "date_time", "extra"];
    let a = read("bid", &opts, &cols, 8192);
    assert_eq!(a, read("bid", &opts, &cols, 333));
    assert_ne!(a, read("bid", &[("events", "20000"), ("seed", "43")], &cols, 8192));
    let people = read("person", &opts, &["id", "name", "email_address", "credit_card", "city", "state", "extra"], 64);
    assert_eq!(
        people,
        read("person", &opts, &["id", "name", "email_address", "credit_card", "city", "state", "extra"], 7)
    );
    let extra = people.column(6).as_string::<i32>();
    let avg = extra.iter().map(|e| e.unwrap().len()).sum::<usize>() / extra.len();
    assert!((120..180).contains(&avg), "persons pad to about 200 bytes: extra averages {avg}");
}

#[test]
fn splits_run_side_by_side_on_one_timeline() {
    let opts = [("events", "200000"), ("splits", "3"), ("rate", "1000")];
    let bids = read("bid", &opts, &["auction", "date_time"], 4096);
    let one = read("bid", &[("events", "200000"), ("rate", "1000")], &["auction", "date_time"], 4096);
    assert_eq!(bids.num_rows(), one.num_rows(), "the same events, cut into three id blocks");
    // three timelines of 66 666 events each at 1000/s over three generators: 200 s, not 66
    let t = times(&bids, 1);
    let base = weir_plan::nexmark::DEFAULT_BASE_TIME_MS;
    assert!(t.iter().all(|x| *x < base + 201_000));
    // read in turn, the splits stay within the watermark delay of each other
    let mut max = t[0];
    for x in &t {
        assert!(*x > max - 2 * SLOT_MS, "{x} is {} ms behind", max - x);
        max = max.max(*x);
    }
    // and the run is repeatable
    assert_eq!(bids, read("bid", &opts, &["auction", "date_time"], 4096));
}

#[test]
fn out_of_order_groups_shuffle_event_time() {
    let bids = read("bid", &[("events", "5000"), ("out_of_order_group", "50"), ("rate", "100")], &["date_time"], 8192);
    let t = times(&bids, 0);
    assert!(t.windows(2).any(|w| w[1] < w[0]), "some bids come before earlier ones");
    let mut sorted = t.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, times(&read("bid", &[("events", "5000"), ("rate", "100")], &["date_time"], 8192), 0));
}

#[test]
fn pacing_follows_the_rate_on_the_wall_clock() {
    let started = Instant::now();
    let bids = read("bid", &[("events", "40"), ("rate", "100"), ("max_emit_speed", "false")], &["price"], 8192);
    assert_eq!(bids.num_rows(), 36);
    // the last bid (event 39) is due 390 ms after the first
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
}

#[test]
fn a_count_reads_no_column() {
    let t = table("auction", &[("events", "100")]);
    let schema = Arc::new(t.schema.as_ref().unwrap().project(&[]).unwrap());
    let mut source = NexmarkSource::open(&t, schema, 10, StartTime::now()).unwrap();
    let mut rows = 0;
    while let Some(b) = source.next_batch().unwrap() {
        rows += b.num_rows();
    }
    assert_eq!(rows, 6);
    assert_eq!(read("auction", &[("events", "100")], &["extra"], 10).column(0).null_count(), 0);
}

#[test]
fn paced_tables_opened_apart_share_the_query_start() {
    // a join of person and auction opens one table after the other: both must start their
    // timeline at the query's start, not at their own opening
    let started = StartTime::now();
    let open = |kind: &str| {
        let t = table(kind, &[("events", "100"), ("max_emit_speed", "false")]);
        let full = t.schema.clone().unwrap();
        let schema = Arc::new(full.project(&[full.index_of("date_time").unwrap()]).unwrap());
        NexmarkSource::open(&t, schema, 8192, started).unwrap()
    };
    let mut people = open("person");
    std::thread::sleep(Duration::from_millis(60));
    let mut auctions = open("auction");
    let first_person = times(&people.next_batch().unwrap().unwrap(), 0)[0];
    let first_auction = times(&auctions.next_batch().unwrap().unwrap(), 0)[0];
    assert_eq!(first_person, started.wall_ms);
    // event 1 is due 0.1 ms after event 0
    assert!((first_auction - first_person).abs() <= 1, "{first_person} vs {first_auction}");
}

/// Parallel instances take whole blocks of 50 event numbers, so each has every kind of event
/// (the kind follows the id modulo 50: with a plain stride, instance 1 of 2 would never make a
/// person, and an unbounded generator would look for one forever); together they make the
/// events one generator makes.
#[test]
fn parallel_instances_each_make_every_kind_and_together_all_events() {
    for kind in ["person", "auction", "bid"] {
        let t = table(kind, &[]);
        let full = t.schema.clone().unwrap();
        let schema = Arc::new(full.project(&[full.index_of("date_time").unwrap()]).unwrap());
        for n in [2u64, 3, 5, 10, 50] {
            for k in 0..n {
                let source = NexmarkSource::open(&t, Arc::clone(&schema), 64, StartTime::now()).unwrap();
                let mut source = source.parallel(k, n).unwrap();
                let batch = source.next_batch().unwrap().unwrap();
                assert_eq!(batch.num_rows(), 64, "{kind}: instance {k} of {n}");
            }
        }
    }
    let ids = |kind: &str, column: &str, n: u64| {
        let t = table(kind, &[("events", "5000")]);
        let full = t.schema.clone().unwrap();
        let schema = Arc::new(full.project(&[full.index_of(column).unwrap()]).unwrap());
        let mut all = Vec::new();
        for k in 0..n {
            let source = NexmarkSource::open(&t, Arc::clone(&schema), 100, StartTime::now()).unwrap();
            let mut source = source.parallel(k, n).unwrap();
            while let Some(b) = source.next_batch().unwrap() {
                all.extend(ints(&b, 0));
            }
        }
        all.sort_unstable();
        all
    };
    for n in [1, 2, 3, 7] {
        assert_eq!(ids("person", "id", n), ids("person", "id", 1), "{n}");
        assert_eq!(ids("auction", "id", n), ids("auction", "id", 1), "{n}");
        assert_eq!(ids("bid", "auction", n), ids("bid", "auction", 1), "{n}");
    }
}

/// [`next_of_kind`] lands where stepping one event at a time (one block in every `stride`)
/// first meets an event of the kind.
#[test]
fn the_next_event_of_a_kind_is_found_without_visiting_the_others() {
    fn stepping(kind: Kind, first: i64, mut n: u64, end: u64, stride: u64) -> u64 {
        while n < end {
            if kind_of(first + n as i64) == kind {
                return n;
            }
            n += 1;
            if stride > 1 && n.is_multiple_of(BLOCK) {
                n += (stride - 1) * BLOCK;
            }
        }
        n
    }
    for kind in [Kind::Person, Kind::Auction, Kind::Bid] {
        for first in [0, 1, 3, 4, 37, 49, 50, 1000, 66_667] {
            for stride in 1..=3 {
                for n in 0..260 {
                    for end in [n, n + 1, n + 7, 300, 10_000] {
                        let expected = stepping(kind, first, n, end, stride);
                        let got = next_of_kind(kind, first, n, end, BLOCK, stride);
                        assert_eq!(
                            (got < end).then_some(got),
                            (expected < end).then_some(expected),
                            "{kind:?} from {n} (first id {first}, stride {stride}, end {end})"
                        );
                        assert!(got >= n && (got < end) == (expected < end));
                    }
                }
            }
        }
    }
}
