//! Reading a parallel run's checkpoint back by thread, for a run of the same plan at the same
//! or another parallelism (rescaling).
//!
//! The manifest lists each thread's state in build order (source instances, later instances,
//! the sink's thread); with the plan's stages ([`StageShape`]) and the
//! instances each had, that order gives each thread's stage and instance. Tables are read in
//! the splits they were read in, so source instances are the same; an instance of a keyed stage
//! whose number of instances changed takes, for each operator, the rows of the keys it now
//! owns from every old instance's state (each operator's `rescale`). The merges of
//! senders whose number changed start over from the watermark they had reached: every input
//! at it, so nothing the old run had passed comes back as on time.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::error::{Result, RuntimeError};
use crate::message::{Nanos, NO_WATERMARK};
use crate::state::checkpoint::{from_json, OperatorSnapshot};

/// What kind of stage a stage of the layout is, the same at every parallelism.
#[derive(Debug, Clone)]
pub(crate) struct StageShape {
    /// It reads one exchange, or a union's (a last stage of one instance then runs in the
    /// sink's thread); neither this nor `source`: a join.
    pub(crate) exchange: bool,
    /// The stages it reads (a join: left, then right; a union: its inputs in order).
    pub(crate) inputs: Vec<usize>,
    /// The operator numbers ([`weir_plan::OpRef::Op`]) of an instance's operators, in the
    /// order it saves them (a join stage: its sides' operators, the join, those after it).
    pub(crate) ops: Vec<usize>,
    /// The table it reads, when it is a source stage (its instances are the table's splits):
    /// its index among the plan's sources.
    pub(crate) table: Option<usize>,
    /// Operators (by their place among `ops`) whose rows are hashed on the keys a join left them
    /// on: the positions of those among the keys they give a
    /// [`crate::state::checkpoint::KeyFilter`].
    pub(crate) hashed_on: Vec<(usize, Vec<usize>)>,
    /// Its instances are a table's splits (a join reading that table's rows where they were
    /// read, the other side broadcast): its state stays in the instance it was saved by.
    pub(crate) split_bound: bool,
}

impl StageShape {
    /// It reads a table.
    pub(crate) fn source(&self) -> bool {
        self.table.is_some()
    }

    /// Watermark states an instance saves: none for a source, its union's, or a join's two
    /// sides' unions and its own.
    fn values(&self) -> usize {
        match (self.source(), self.exchange) {
            (true, _) => 0,
            (false, false) => 3,
            (false, true) => 1,
        }
    }
}

/// One thread's saved state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Saved {
    pub(crate) position: Option<Value>,
    pub(crate) stages: Vec<Value>,
    pub(crate) operators: Vec<(String, OperatorSnapshot)>,
}

/// The threads of a run with `instances` per stage: each source instance's (stage, instance),
/// then each later instance's; and the stage run in the sink's thread, if one is.
pub(crate) fn threads(kinds: &[StageShape], instances: &[usize]) -> (Vec<(usize, usize)>, Option<usize>) {
    let last = kinds.len().checked_sub(1);
    let fused = last.filter(|l| kinds[*l].exchange && instances.get(*l) == Some(&1));
    let mut out = Vec::new();
    for source in [true, false] {
        for (s, kind) in kinds.iter().enumerate() {
            if kind.source() == source && Some(s) != fused {
                out.extend((0..instances.get(s).copied().unwrap_or(0)).map(|k| (s, k)));
            }
        }
    }
    (out, fused)
}

/// A checkpoint of a run with `instances` per stage, by thread.
pub(crate) struct ByThread {
    pub(crate) instances: Vec<usize>,
    pub(crate) threads: HashMap<(usize, usize), Saved>,
    /// The stage the sink's thread ran (its operators are those of `(stage, 0)`).
    pub(crate) fused: Option<usize>,
    /// The merge into the sink.
    pub(crate) sink: Value,
}

impl ByThread {
    /// Split what a manifest lists (`sources`, `stages`, `operators`, in build order).
    pub(crate) fn split(
        kinds: &[StageShape],
        instances: &[usize],
        sources: &[Value],
        stages: &[Value],
        operators: Vec<(String, OperatorSnapshot)>,
    ) -> Result<Self> {
        let bad = |what: &str| RuntimeError::Checkpoint(format!("the checkpoint's {what} do not fit its run's stages"));
        if instances.len() != kinds.len() {
            return Err(bad("stages"));
        }
        let (order, fused) = threads(kinds, instances);
        let (mut sources, mut stages, mut operators) = (sources.iter(), stages.iter(), operators.into_iter());
        let mut threads = HashMap::new();
        for (s, k) in order {
            let kind = &kinds[s];
            let mut saved = Saved::default();
            if kind.source() {
                saved.position = Some(sources.next().ok_or_else(|| bad("source positions"))?.clone());
            }
            for _ in 0..kind.values() {
                saved.stages.push(stages.next().ok_or_else(|| bad("watermarks"))?.clone());
            }
            for _ in 0..kind.ops.len() {
                saved.operators.push(operators.next().ok_or_else(|| bad("operators"))?);
            }
            threads.insert((s, k), saved);
        }
        let sink = stages.next().ok_or_else(|| bad("watermarks"))?.clone();
        if let Some(l) = fused {
            let chain = (0..kinds[l].ops.len())
                .map(|_| operators.next().ok_or_else(|| bad("operators")))
                .collect::<Result<_>>()?;
            threads.insert((l, 0), Saved { operators: chain, ..Saved::default() });
        }
        if sources.next().is_some() || stages.next().is_some() || operators.next().is_some() {
            return Err(bad("states"));
        }
        Ok(Self { instances: instances.to_vec(), threads, fused, sink })
    }

    /// What a checkpoint taken on one thread lists (one position per table, the watermarks of
    /// its unions and joins in tree order, every operator in tree order), as a run whose stages
    /// each had one instance. `owners[i]`: the stage that takes the one-thread run's `i`-th
    /// watermark state (a union's or a join's; a plan over one table has one, its table's, which
    /// goes to the stage reading the table's stage).
    pub(crate) fn from_one_thread(
        kinds: &[StageShape],
        owners: &[usize],
        sources: &[Value],
        stages: &[Value],
        operators: Vec<(String, OperatorSnapshot)>,
    ) -> Result<Self> {
        let bad =
            |what: &str| RuntimeError::Checkpoint(format!("the checkpoint's {what} do not fit this plan's stages"));
        if owners.len() != stages.len() {
            return Err(bad("watermarks"));
        }
        // the stamps of PROCTIME() columns are listed on one thread, not numbered (stateless)
        let ops: Vec<(String, OperatorSnapshot)> =
            operators.into_iter().filter(|(name, _)| name != "ProcTime").collect();
        let mut used = 0;
        let op = |n: usize| ops.get(n).cloned().ok_or_else(|| bad("operators"));
        let instances = vec![1; kinds.len()];
        let (_, fused) = threads(kinds, &instances);
        let mut threads = HashMap::new();
        let mut sink = json!({ "watermarks": fresh_merge(NO_WATERMARK, false, 1), "from": [NO_WATERMARK] });
        for (s, kind) in kinds.iter().enumerate() {
            let own = kind.ops.iter().map(|n| op(*n)).collect::<Result<Vec<_>>>()?;
            used += own.len();
            let value = owners.iter().position(|o| *o == s).map(|i| stages[i].clone());
            // later merges start empty: they see the watermarks the operators before them send
            let merge = value.clone().unwrap_or_else(|| fresh_merge(NO_WATERMARK, false, 1));
            let values = match (kind.source(), kind.exchange) {
                (true, _) => Vec::new(),
                (false, true) => vec![merge.clone()],
                (false, false) => {
                    #[derive(serde::Deserialize)]
                    struct Join {
                        watermarks: [Nanos; 2],
                        ended: [bool; 2],
                    }
                    let saved = value.ok_or_else(|| bad("joins"))?;
                    let j: Join = from_json(&saved, "a join's watermarks")?;
                    let side = |i: usize| fresh_merge(j.watermarks[i], j.ended[i], 1);
                    vec![side(0), side(1), saved]
                }
            };
            let position = kind.table.map(|n| sources.get(n).cloned().ok_or_else(|| bad("tables"))).transpose()?;
            if fused == Some(s) {
                let (w, _) = merge_of(&merge)?;
                let inputs = merge.get("inputs").and_then(Value::as_array).map_or(1, Vec::len);
                sink = json!({ "watermarks": merge, "from": vec![w; inputs] });
                threads.insert((s, 0), Saved { operators: own, ..Saved::default() });
            } else {
                threads.insert((s, 0), Saved { position, stages: values, operators: own });
            }
        }
        if used != ops.len() || sources.len() != kinds.iter().filter(|k| k.source()).count() {
            return Err(bad("operators"));
        }
        Ok(Self { instances, threads, fused, sink })
    }

    pub(crate) fn thread(&self, s: usize, k: usize) -> Result<&Saved> {
        self.threads.get(&(s, k)).ok_or_else(|| {
            RuntimeError::Checkpoint(format!("the checkpoint has no state of instance {k} of stage {s}"))
        })
    }

    /// The senders of stage `s` in this run.
    fn senders(&self, kinds: &[StageShape], s: usize) -> Vec<usize> {
        kinds[s].inputs.iter().map(|i| self.instances.get(*i).copied().unwrap_or(0)).collect()
    }

    /// The watermark the merge into stage `s` had reached, and whether all its senders ended.
    fn merged(&self, s: usize) -> Result<(Nanos, bool)> {
        let merge = match self.fused {
            Some(l) if l == s => self.sink.get("watermarks").cloned().unwrap_or(Value::Null),
            _ => self.thread(s, 0)?.stages.first().cloned().unwrap_or(Value::Null),
        };
        merge_of(&merge)
    }

    /// The watermark states of instance `k` of stage `s` in a run with `now` instances per
    /// stage: the saved ones when its senders are the same, else merges started over.
    pub(crate) fn stage_values(&self, kinds: &[StageShape], now: &[usize], s: usize, k: usize) -> Result<Vec<Value>> {
        let senders_now: Vec<usize> = kinds[s].inputs.iter().map(|i| now[*i]).collect();
        let same = senders_now == self.senders(kinds, s) && self.fused != Some(s);
        if same {
            return Ok(self.thread(s, k.min(self.instances[s].saturating_sub(1)))?.stages.clone());
        }
        if !kinds[s].source() && !kinds[s].exchange {
            // a join: each side's union, then the join's own (the same at every instance)
            let old = self.thread(s, 0)?;
            let side = |i: usize| -> Result<Value> {
                let (w, ended) = merge_of(old.stages.get(i).unwrap_or(&Value::Null))?;
                Ok(fresh_merge(w, ended, senders_now[i]))
            };
            return Ok(vec![side(0)?, side(1)?, old.stages.get(2).cloned().unwrap_or(Value::Null)]);
        }
        let (w, ended) = self.merged(s)?;
        Ok(vec![fresh_merge(w, ended, senders_now.iter().sum())])
    }

    /// The merge into the sink for a run whose sink reads `inputs` senders and runs stage
    /// `fused` (if any).
    pub(crate) fn sink_value(&self, inputs: usize, fused: Option<usize>, last: usize) -> Result<Value> {
        let old_inputs = self.sink.get("from").and_then(Value::as_array).map_or(0, Vec::len);
        if fused == self.fused && old_inputs == inputs {
            return Ok(self.sink.clone());
        }
        // the watermark reaching the sink's merge: the input of the last stage when it is
        // run there now, else what the old sink's merge had
        let (w, ended) = match (fused, self.fused) {
            (Some(_), None) => self.merged(last)?,
            _ => merge_of(self.sink.get("watermarks").unwrap_or(&Value::Null))?,
        };
        Ok(json!({ "watermarks": fresh_merge(w, ended, inputs), "from": vec![w; inputs] }))
    }
}

/// The merged watermark of a saved merge, and whether every input had ended.
fn merge_of(saved: &Value) -> Result<(Nanos, bool)> {
    #[derive(serde::Deserialize)]
    struct Merge {
        inputs: Vec<(Nanos, bool, bool)>,
        merged: Nanos,
    }
    let m: Merge = from_json(saved, "a merge's watermarks")?;
    Ok((m.merged, !m.inputs.is_empty() && m.inputs.iter().all(|i| i.2)))
}

/// A merge of `inputs` senders, each at watermark `w` (ended, if the old ones had).
fn fresh_merge(w: Nanos, ended: bool, inputs: usize) -> Value {
    json!({ "inputs": vec![(w, false, ended); inputs], "merged": w })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> Vec<StageShape> {
        vec![
            StageShape {
                exchange: false,
                inputs: vec![],
                ops: vec![0],
                table: Some(0),
                hashed_on: vec![],
                split_bound: false,
            },
            StageShape {
                exchange: true,
                inputs: vec![0],
                ops: vec![1, 2],
                table: None,
                hashed_on: vec![],
                split_bound: false,
            },
        ]
    }

    #[test]
    fn threads_in_build_order_and_a_last_stage_of_one_instance_in_the_sink() {
        assert_eq!(threads(&kinds(), &[2, 3]), (vec![(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)], None));
        assert_eq!(threads(&kinds(), &[2, 1]), (vec![(0, 0), (0, 1)], Some(1)));
    }

    #[test]
    fn merges_start_over_at_the_watermark_reached_when_senders_change() {
        let merge = |w: i64, n: usize| json!({ "inputs": vec![(w, false, false); n], "merged": w });
        let op = |name: &str| (name.to_string(), OperatorSnapshot::empty());
        // two splits, two keyed instances
        let saved = ByThread::split(
            &kinds(),
            &[2, 2],
            &[json!("p0"), json!("p1")],
            &[merge(70, 2), merge(70, 2), json!({ "watermarks": merge(60, 2), "from": [60, 60] })],
            vec![op("Filter"), op("Filter"), op("Window"), op("Project"), op("Window"), op("Project")],
        )
        .unwrap();
        assert_eq!(saved.thread(0, 1).unwrap().position, Some(json!("p1")));
        // the keyed stage at 4 instances: the same senders, its merge as saved
        assert_eq!(saved.stage_values(&kinds(), &[2, 4], 1, 3).unwrap(), vec![merge(70, 2)]);
        // at 1 instance, in the sink's thread: the sink's merge has the two splits' input
        let sink = saved.sink_value(2, Some(1), 1).unwrap();
        assert_eq!(sink["watermarks"], merge(70, 2));
        // a sink reading 4 instances: started over at the old sink's watermark
        let sink = saved.sink_value(4, None, 1).unwrap();
        assert_eq!(sink["watermarks"], merge(60, 4));
    }
}
