//! Streaming joins against DataFusion's batch joins.
//!
//! Two tables get their own random out-of-order rows, cut into batches at random points; the
//! pipeline reads the input whose watermark is lowest next (in turn among equals). A reference replays the same turns to
//! find the rows an interval join accepts (a row whose time is behind the join's watermark —
//! the lower of the two inputs' — when its batch arrives is late and dropped), and the join
//! over them must equal DataFusion's batch join of the same rows. Regular joins (with a TTL
//! longer than the input) and lookup joins drop nothing: they must equal the batch join of
//! all rows, a changelog replayed first. With a shorter TTL, a reference replays the turns to
//! find which rows are still kept when a row of the other side comes.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use proptest::prelude::*;
use weir_connectors::CollectSink;
use weir_runtime::NO_WATERMARK;

mod common;
use common::*;

/// The rows an interval join accepts: those not behind the join's watermark (the lower of
/// the inputs' `max(time) - delay`, an ended input counting as +∞) when their batch comes.
/// The inputs are read as the pipeline reads them for a join: the one with the lowest
/// watermark next, in turn among equals; reading past the last batch ends an input.
fn accepted(inputs: [&[Row]; 2], cuts: [&[usize]; 2], delay_ms: i64) -> [Vec<Row>; 2] {
    accepted_by(inputs, cuts, delay_ms, |r| r.ts)
}

/// [`accepted`], with `time` the time a row has for the join (its window's end, say).
fn accepted_by(inputs: [&[Row]; 2], cuts: [&[usize]; 2], delay_ms: i64, time: impl Fn(&Row) -> i64) -> [Vec<Row>; 2] {
    let (before, read) = turns(inputs, cuts, delay_ms);
    [0, 1].map(|i| {
        inputs[i].iter().zip(&read[i]).filter(|(r, step)| time(r) >= before[**step]).map(|(r, _)| r.clone()).collect()
    })
}

/// Flink's window joins of windowed rows, as weir runs them (`.0`) and as a batch join of the
/// same windows (`.1`, `w` the window's start): each kind of join on the key and the window,
/// and a condition on the values.
const WINDOW_ROW_JOINS: [(&str, &str); 7] = [
    // (a row's own time selected too: lateness is still by its window's end)
    (
        "SELECT a.ts, a.k, a.v, b.v, a.window_start FROM {a} JOIN {b} ON {on}",
        "SELECT a.ts, a.k, a.v, b.v, a.w FROM {a} JOIN {b} ON {on}",
    ),
    (
        "SELECT a.k, a.v, b.v, a.window_start, a.window_end FROM {a} LEFT JOIN {b} ON {on}",
        "SELECT a.k, a.v, b.v, a.w, a.w + INTERVAL '2' SECOND FROM {a} LEFT JOIN {b} ON {on}",
    ),
    (
        "SELECT a.v, b.k, b.v, b.window_start FROM {a} RIGHT JOIN {b} ON {on}",
        "SELECT a.v, b.k, b.v, b.w FROM {a} RIGHT JOIN {b} ON {on}",
    ),
    (
        "SELECT b.ts, a.k, a.v, b.k, b.v, a.window_start, b.window_end, a.ts FROM {a} FULL JOIN {b} ON {on}",
        "SELECT b.ts, a.k, a.v, b.k, b.v, a.w, b.w + INTERVAL '2' SECOND, a.ts FROM {a} FULL JOIN {b} ON {on}",
    ),
    (
        "SELECT a.k, a.v, a.window_start FROM {a} WHERE EXISTS (SELECT * FROM {b} WHERE {on})",
        "SELECT a.k, a.v, a.w FROM {a} WHERE EXISTS (SELECT * FROM {b} WHERE {on})",
    ),
    (
        "SELECT a.k, a.v, a.window_time FROM {a} WHERE NOT EXISTS (SELECT * FROM {b} WHERE {on})",
        "SELECT a.k, a.v, a.w + INTERVAL '1999' MILLISECOND FROM {a} WHERE NOT EXISTS (SELECT * FROM {b} WHERE {on})",
    ),
    (
        "SELECT a.k, a.v FROM {a} WHERE a.k IN (SELECT b.k FROM {b} WHERE a.window_start = b.window_start AND a.window_end = b.window_end AND a.v > b.v)",
        "SELECT a.k, a.v FROM {a} WHERE a.k IN (SELECT b.k FROM {b} WHERE a.w = b.w AND a.v > b.v)",
    ),
];

/// The (row, window) pairs of each input a window join accepts: those whose window's end is
/// not behind the join's watermark when the row comes (see [`accepted`]).
fn accepted_windows(
    inputs: [&[Row]; 2],
    cuts: [&[usize]; 2],
    delay_ms: i64,
    windows: impl Fn(i64) -> Vec<(i64, i64)>,
) -> [Vec<(Row, i64, i64)>; 2] {
    let (before, read) = turns(inputs, cuts, delay_ms);
    [0, 1].map(|i| {
        let mut pairs = Vec::new();
        for (r, step) in inputs[i].iter().zip(&read[i]) {
            for (ws, we) in windows(r.ts) {
                if we >= before[*step] {
                    pairs.push((r.clone(), ws, we));
                }
            }
        }
        pairs
    })
}

/// `sql` over tables `t` and `u` of (row, window) pairs: the columns of a row, then `ws`, `we`.
fn batch_join_windows(pairs: [&[(Row, i64, i64)]; 2], sql: &str) -> Vec<String> {
    use datafusion::arrow::array::TimestampMillisecondArray;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let ctx = SessionContext::new();
        for (name, pairs) in [("t", pairs[0]), ("u", pairs[1])] {
            let rows: Vec<Row> = pairs.iter().map(|p| p.0.clone()).collect();
            let mut fields: Vec<Field> = schema().fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.push(Field::new("ws", DataType::Timestamp(TimeUnit::Millisecond, None), false));
            fields.push(Field::new("we", DataType::Timestamp(TimeUnit::Millisecond, None), false));
            let mut columns = to_batch(&rows).columns().to_vec();
            columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(pairs.iter().map(|p| p.1))));
            columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(pairs.iter().map(|p| p.2))));
            let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("a batch");
            let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).expect("table");
            ctx.register_table(name, Arc::new(table)).expect("register");
        }
        format_rows(&ctx.sql(sql).await.expect("plans").collect().await.expect("runs"))
    })
}

/// A [`WINDOW_ROW_JOINS`] query for weir (`streaming`) or for the batch reference.
fn window_row_join(template: &str, streaming: bool) -> String {
    let (a, b, on) = match streaming {
        true => (
            "TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND)) a",
            "TABLE(TUMBLE(TABLE u, DESCRIPTOR(ts), INTERVAL '2' SECOND)) b",
            "a.k = b.k AND a.window_start = b.window_start AND a.window_end = b.window_end AND a.v <> b.v",
        ),
        false => (
            "(SELECT *, date_bin(INTERVAL '2' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00') AS w FROM t) a",
            "(SELECT *, date_bin(INTERVAL '2' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00') AS w FROM u) b",
            "a.k = b.k AND a.w = b.w AND a.v <> b.v",
        ),
    };
    template.replace("{a}", a).replace("{b}", b).replace("{on}", on)
}

/// The join's watermark before each read of the inputs (the reading order of [`accepted`]),
/// and for each row of each input the read that brought it.
fn turns(inputs: [&[Row]; 2], cuts: [&[usize]; 2], delay_ms: i64) -> (Vec<i64>, [Vec<usize>; 2]) {
    let batches = [batches(inputs[0], cuts[0]), batches(inputs[1], cuts[1])];
    let (mut next, mut ended, mut wm) = ([0usize; 2], [false; 2], [NO_WATERMARK; 2]);
    let mut last: Option<usize> = None;
    let (mut before, mut read): (Vec<i64>, [Vec<usize>; 2]) = (Vec::new(), [Vec::new(), Vec::new()]);
    loop {
        let start = last.map_or(0, |l| l + 1);
        let mut best: Option<usize> = None;
        for k in 0..2 {
            let i = (start + k) % 2;
            if !ended[i] && best.is_none_or(|b| wm[i] < wm[b]) {
                best = Some(i);
            }
        }
        let Some(i) = best else { break };
        last = Some(i);
        match batches[i].get(next[i]) {
            Some(batch) => {
                next[i] += 1;
                read[i].extend(std::iter::repeat_n(before.len(), batch.len()));
                before.push(wm[0].min(wm[1]));
                if let Some(max) = batch.iter().map(|r| r.ts).max() {
                    wm[i] = wm[i].max(max - delay_ms);
                }
            }
            None => {
                ended[i] = true;
                wm[i] = i64::MAX;
            }
        }
    }
    (before, read)
}

/// `SELECT t.k, t.v, u.v, t.ts, u.ts FROM t [LEFT] JOIN u ON NULLIF(t.k, 'k0') = NULLIF(u.k,
/// 'k0') AND t.v > u.v` where each row is kept `ttl_ms` past its time: a pair is joined when
/// the row read first is still kept when the other comes (its time plus the TTL not behind
/// the join's watermark then).
fn ttl_join(inputs: [&[Row]; 2], cuts: [&[usize]; 2], delay_ms: i64, ttl_ms: i64, outer: bool) -> Vec<String> {
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    let (before, read) = turns(inputs, cuts, delay_ms);
    let key = |r: &Row| (r.key != "k0").then(|| r.key.clone());
    let mut out: Vec<(&Row, Option<&Row>)> = Vec::new();
    for (i, l) in inputs[0].iter().enumerate() {
        let mut matched = false;
        for (j, r) in inputs[1].iter().enumerate() {
            let (first, second) = if read[0][i] < read[1][j] { (l, read[1][j]) } else { (r, read[0][i]) };
            if key(l).is_some() && key(l) == key(r) && l.value > r.value && first.ts + ttl_ms >= before[second] {
                out.push((l, Some(r)));
                matched = true;
            }
        }
        if outer && !matched {
            out.push((l, None));
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(out.iter().map(|(l, _)| l.key.clone()))),
        Arc::new(Int64Array::from_iter_values(out.iter().map(|(l, _)| l.value))),
        Arc::new(Int64Array::from_iter(out.iter().map(|(_, r)| r.map(|r| r.value)))),
        Arc::new(TimestampMillisecondArray::from_iter_values(out.iter().map(|(l, _)| l.ts))),
        Arc::new(TimestampMillisecondArray::from_iter(out.iter().map(|(_, r)| r.map(|r| r.ts)))),
    ];
    format_rows(&[
        RecordBatch::try_from_iter(["k", "tv", "uv", "tts", "uts"].into_iter().zip(columns)).expect("a batch")
    ])
}

fn run_two(inputs: [&[Row]; 2], cuts: [&[usize]; 2], script: &str) -> Vec<String> {
    let feed = Feed::with(vec![("t", FeedTable::new(inputs[0], cuts[0])), ("u", FeedTable::new(inputs[1], cuts[1]))]);
    let engine = feed_engine(feed);
    let plan = last_query(&engine, script);
    let sink = CollectSink::new();
    run_on(&engine, &plan, Box::new(sink.clone()), Default::default()).expect("runs");
    let rows = format_rows(&sink.batches());
    if plan.is_updating() {
        replay(&rows).expect("a consistent changelog")
    } else {
        rows
    }
}

fn batch_join(inputs: [&[Row]; 2], sql: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let ctx = SessionContext::new();
        for (name, rows) in [("t", inputs[0]), ("u", inputs[1])] {
            let table = MemTable::try_new(schema(), vec![vec![to_batch(rows)]]).expect("table");
            ctx.register_table(name, Arc::new(table)).expect("register");
        }
        format_rows(&ctx.sql(sql).await.expect("plans").collect().await.expect("runs"))
    })
}

/// `t` and `u`, both with a watermark (`u` without one when `u_watermark` is false: then it
/// is a bounded file without a watermark, a lookup table).
fn ddl2(delay_ms: i64, u_watermark: bool) -> String {
    let wm = if u_watermark {
        format!(", WATERMARK FOR ts AS ts - INTERVAL '{delay_ms}' MILLISECOND")
    } else {
        String::new()
    };
    format!(
        "{} CREATE TABLE u (k VARCHAR, site VARCHAR, v BIGINT, r DOUBLE, ts TIMESTAMP(3){wm})
         WITH (connector = 'feed');",
        feed_ddl(delay_ms)
    )
}

const INTERVAL: &str = "u.ts BETWEEN t.ts - INTERVAL '1' SECOND AND t.ts + INTERVAL '2' SECOND";

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn interval_joins_match_the_batch_join_of_the_rows_on_time(
        left in rows_strategy(),
        right in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        outer in any::<bool>(),
        left_cuts in prop::collection::btree_set(0usize..260, 0..30),
        right_cuts in prop::collection::btree_set(0usize..260, 0..30),
    ) {
        let (lc, rc): (Vec<usize>, Vec<usize>) = (left_cuts.into_iter().collect(), right_cuts.into_iter().collect());
        let join = if outer { "LEFT JOIN" } else { "JOIN" };
        let query = format!("SELECT t.k, t.v, u.v, t.ts, u.ts FROM t {join} u ON t.k = u.k AND {INTERVAL} AND t.v <> u.v");
        let weir = run_two([&left, &right], [&lc, &rc], &format!("{} {query}", ddl2(delay_ms, true)));
        let [l, r] = accepted([&left, &right], [&lc, &rc], delay_ms);
        prop_assert_eq!(sorted(weir), sorted(batch_join([&l, &r], &query)));
    }

    #[test]
    fn window_joins_match_the_batch_join_of_the_windows(
        left in rows_strategy(),
        right in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        left_cuts in prop::collection::btree_set(0usize..260, 0..30),
        right_cuts in prop::collection::btree_set(0usize..260, 0..30),
    ) {
        let (lc, rc): (Vec<usize>, Vec<usize>) = (left_cuts.into_iter().collect(), right_cuts.into_iter().collect());
        let weir = run_two([&left, &right], [&lc, &rc], &format!(
            "{} SELECT a.k, a.w, a.n, b.n FROM
               (SELECT k, window_start AS w, window_end AS e, COUNT(*) AS n
                FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND)) GROUP BY k, window_start, window_end) a
             JOIN
               (SELECT k, window_start AS w, window_end AS e, COUNT(*) AS n
                FROM TABLE(TUMBLE(TABLE u, DESCRIPTOR(ts), INTERVAL '2' SECOND)) GROUP BY k, window_start, window_end) b
             ON a.k = b.k AND a.w = b.w AND a.e = b.e",
            ddl2(delay_ms, true)));
        // the windows each side's aggregate accepts: rows of windows the watermark has not passed
        let keep = |rows: &[Row], cuts: &[usize]| {
            let mut out = Vec::new();
            let mut max = i64::MIN;
            for b in batches(rows, cuts) {
                let wm = if max == i64::MIN { NO_WATERMARK } else { max - delay_ms };
                for r in &b {
                    let own = if max == i64::MIN { NO_WATERMARK } else { max - delay_ms };
                    let end = r.ts - r.ts.rem_euclid(2000) + 2000;
                    if end > own.max(wm) {
                        out.push(r.clone());
                    }
                    max = max.max(r.ts);
                }
            }
            out
        };
        let (l, r) = (keep(&left, &lc), keep(&right, &rc));
        let bin = "date_bin(INTERVAL '2' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00')";
        let batch = batch_join([&l, &r], &format!(
            "SELECT a.k, a.w, a.n, b.n FROM
               (SELECT k, {bin} AS w, COUNT(*) AS n FROM t GROUP BY 1, 2) a
             JOIN (SELECT k, {bin} AS w, COUNT(*) AS n FROM u GROUP BY 1, 2) b
             ON a.k = b.k AND a.w = b.w"));
        prop_assert_eq!(sorted(weir), sorted(batch));
    }

    /// Rows of a window whose end is behind the join's watermark when they come are late;
    /// the rest are joined with the rows of the same window as a batch join would.
    #[test]
    fn window_joins_of_rows_match_the_batch_join_of_the_windows(
        left in rows_strategy(),
        right in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        which in 0..WINDOW_ROW_JOINS.len(),
        left_cuts in prop::collection::btree_set(0usize..260, 0..30),
        right_cuts in prop::collection::btree_set(0usize..260, 0..30),
    ) {
        let (lc, rc): (Vec<usize>, Vec<usize>) = (left_cuts.into_iter().collect(), right_cuts.into_iter().collect());
        let (streaming, batch) = WINDOW_ROW_JOINS[which];
        let script = format!("{} {}", ddl2(delay_ms, true), window_row_join(streaming, true));
        let weir = run_two([&left, &right], [&lc, &rc], &script);
        let [l, r] = accepted_by([&left, &right], [&lc, &rc], delay_ms, |r| r.ts - r.ts.rem_euclid(2000) + 2000);
        prop_assert_eq!(sorted(weir), sorted(batch_join([&l, &r], &window_row_join(batch, false))));
    }

    /// The same over HOP and CUMULATE rows: each row joined once per window it is in.
    #[test]
    fn window_joins_of_hopping_and_cumulating_rows_match_the_batch_join_of_the_windows(
        left in rows_strategy(),
        right in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        hop in any::<bool>(),
        kind in prop::sample::select(vec!["JOIN", "LEFT JOIN", "FULL JOIN"]),
        left_cuts in prop::collection::btree_set(0usize..260, 0..30),
        right_cuts in prop::collection::btree_set(0usize..260, 0..30),
    ) {
        let (lc, rc): (Vec<usize>, Vec<usize>) = (left_cuts.into_iter().collect(), right_cuts.into_iter().collect());
        let tvf = if hop { "HOP" } else { "CUMULATE" };
        let streaming = format!(
            "SELECT a.k, a.v, b.k, b.v, a.window_start, a.window_end, b.window_end
             FROM TABLE({tvf}(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '2' SECOND)) a
             {kind} TABLE({tvf}(TABLE u, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '2' SECOND)) b
             ON a.k = b.k AND a.window_start = b.window_start AND a.window_end = b.window_end AND a.v <> b.v");
        let weir = run_two([&left, &right], [&lc, &rc], &format!("{} {streaming}", ddl2(delay_ms, true)));
        let windows = |t: i64| if hop { hop_windows(t, 1000, 2000) } else { cumulate_windows(t, 1000, 2000) };
        let [l, r] = accepted_windows([&left, &right], [&lc, &rc], delay_ms, windows);
        let batch = batch_join_windows([&l, &r], &format!(
            "SELECT a.k, a.v, b.k, b.v, a.ws, a.we, b.we FROM t a {kind} u b
             ON a.k = b.k AND a.ws = b.ws AND a.we = b.we AND a.v <> b.v"));
        prop_assert_eq!(sorted(weir), sorted(batch));
    }

    #[test]
    fn regular_and_lookup_joins_match_the_batch_join_of_all_rows(
        left in rows_strategy(),
        right in rows_strategy(),
        outer in any::<bool>(),
        lookup in any::<bool>(),
        left_cuts in prop::collection::btree_set(0usize..260, 0..30),
        right_cuts in prop::collection::btree_set(0usize..260, 0..30),
    ) {
        let (lc, rc): (Vec<usize>, Vec<usize>) = (left_cuts.into_iter().collect(), right_cuts.into_iter().collect());
        let join = if outer { "LEFT JOIN" } else { "JOIN" };
        let query = format!("SELECT t.k, t.v, u.v, u.site FROM t {join} u ON t.k = u.k AND t.v > u.v");
        // a TTL far longer than the input: nothing is forgotten
        let script = format!("{} SET state.ttl = '1 h'; {query}", ddl2(300, !lookup));
        let weir = run_two([&left, &right], [&lc, &rc], &script);
        prop_assert_eq!(sorted(weir), sorted(batch_join([&left, &right], &query)));
    }

    #[test]
    fn aggregates_over_a_join_of_a_changelog_replay_to_the_batch_result(
        left in rows_strategy(),
        right in rows_strategy(),
        outer in any::<bool>(),
        left_cuts in prop::collection::btree_set(0usize..260, 0..30),
        right_cuts in prop::collection::btree_set(0usize..260, 0..30),
    ) {
        // the right input is the last row per key (a changelog: -U/+U as later rows come, often
        // within one batch); the join retracts its matches, the count above retracts too
        let (lc, rc): (Vec<usize>, Vec<usize>) = (left_cuts.into_iter().collect(), right_cuts.into_iter().collect());
        // as a left join, a row of t is NULL-padded until its key's first row of u comes, and
        // the padded row is taken back then
        let join = if outer { "LEFT JOIN" } else { "JOIN" };
        let query = format!("SELECT t.k, COUNT(*) AS n, COUNT(d.v) AS matched, SUM(d.v) AS total FROM t {join}
              (SELECT k, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts DESC, v DESC) AS rn FROM u) WHERE rn = 1) d
            ON t.k = d.k GROUP BY t.k");
        let weir = run_two([&left, &right], [&lc, &rc], &format!("{} SET state.ttl = '1 h'; {query}", ddl2(300, true)));
        prop_assert_eq!(sorted(weir), sorted(batch_join([&left, &right], &query)));
    }

    #[test]
    fn regular_joins_forget_each_row_its_ttl_after_its_time(
        left in rows_strategy(),
        right in rows_strategy(),
        ttl_ms in prop::sample::select(vec![200i64, 1000, 5000]),
        outer in any::<bool>(),
        left_cuts in prop::collection::btree_set(0usize..260, 0..30),
        right_cuts in prop::collection::btree_set(0usize..260, 0..30),
    ) {
        // key k0 is NULL on both sides: it matches nothing (a left row of it is padded)
        let (lc, rc): (Vec<usize>, Vec<usize>) = (left_cuts.into_iter().collect(), right_cuts.into_iter().collect());
        let join = if outer { "LEFT JOIN" } else { "JOIN" };
        let query = format!("SELECT t.k, t.v, u.v, t.ts, u.ts FROM t {join} u
            ON NULLIF(t.k, 'k0') = NULLIF(u.k, 'k0') AND t.v > u.v");
        let script = format!("{} SET state.ttl = '{ttl_ms} ms'; {query}", ddl2(300, true));
        let weir = run_two([&left, &right], [&lc, &rc], &script);
        prop_assert_eq!(sorted(weir), sorted(ttl_join([&left, &right], [&lc, &rc], 300, ttl_ms, outer)));
    }
}
