//! Turning a [`StreamPlan`] into running operators, and running them.
//!
//! ```text
//!   source task (blocking)            bounded channel            operator task (blocking)
//!   Source ─► SourceDriver ─► Vec<Message> ══════════════► Filter ─► … ─► WindowAggregate ─► Sink
//!
//!   UNION ALL: one source task per input, one channel
//!   Source 0 ─► SourceDriver ═══╗                 input 0's filters/projections ─┐
//!   Source 1 ─► SourceDriver ═══╩══► operator task: input 1's ────────────────────┴─► WatermarkMerge ─► …
//! ```
//!
//! The source side parses input while the operator side aggregates, so a pipeline uses two
//! cores; the bounded channel gives backpressure. [`Pipeline::run`] is the one loop that
//! drives them ([`Pipeline::run_blocking`] waits for it on the calling thread).

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion_common::arrow::compute::SortOptions;
use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::DFSchema;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::expr::AggregateFunction;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::utils::AggregateOrderSensitivity;
use datafusion_expr::{Expr, WindowFunctionDefinition};
use datafusion_physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion_physical_expr::{create_physical_expr, PhysicalExpr, PhysicalSortExpr};
use datafusion_physical_plan::windows::create_window_expr;
use datafusion_physical_plan::WindowExpr;
use weir_plan::{
    Branch, JoinState, JoinType, OpCounter, PlanInput, RankKind, SourceNode, StreamJoin, StreamOp, StreamPlan,
    WindowSpec,
};

use crate::error::{Result, RuntimeError};
use crate::exec::chain::{Chain, Checkpointing};
use crate::exec::instrument::Instrumented;
use crate::exec::metrics::Metrics;
use crate::exec::source::{Sink, Source, SourceDriver};
use crate::exec::stage::{BranchStage, JoinStage, Stage};
use crate::exec::watermark_merge::WatermarkMerge;
use crate::operator::Operator;
use crate::operators::deduplicate::DeduplicateOp;
use crate::operators::filter::FilterOp;
use crate::operators::join::{JoinMode, JoinOp, JoinOutput, JoinSpec};
use crate::operators::local_window_aggregate::LocalWindowAggregateOp;
use crate::operators::over_aggregate::{OverAggregateOp, OverParts};
use crate::operators::proc_time::{ProcTimeOp, ProcessingClock};
use crate::operators::project::ProjectOp;
use crate::operators::session_aggregate::SessionAggregateOp;
use crate::operators::top_n::TopNOp;
use crate::operators::updating_aggregate::UpdatingAggregateOp;
use crate::operators::upsert_normalize::UpsertNormalizeOp;
use crate::operators::window_aggregate::{WindowAggregateOp, WindowLayout};
use crate::operators::window_rows::WindowRowsOp;
use crate::operators::window_top_n::WindowTopNOp;
use crate::state::aggregate_state::AggregateSpec;
use crate::state::rank_rows::RankRows;

/// Which columns of a table a pipeline's source must read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColumns {
    /// Indices into the table's declared columns, in the order the connector must produce them
    /// (never the processing-time column: it is not read).
    pub columns: Vec<usize>,
    /// Position (in `columns`) of the event-time column, and the watermark delay; `None` when
    /// the pipeline's watermark is the wall clock.
    pub watermark: Option<(usize, i64)>,
    /// Positions (in `columns`) passed on to the first operator; `None` = all.
    pub output: Option<Vec<usize>>,
    /// Where the processing-time column goes among the columns passed on, if the query uses it.
    pub proctime: Option<usize>,
}

/// The columns the source of `plan` must read: those the query uses plus the event-time column
/// (which drives the watermark even when the query does not select it).
pub fn source_columns(plan: &StreamPlan) -> Result<SourceColumns> {
    input_columns(plan.first_source(), plan.late_rows.is_some())
}

/// The columns a source must read; `whole_rows`: every column (for the side output of dropped
/// rows), passing on only those the query uses.
pub fn input_columns(source: &SourceNode, whole_rows: bool) -> Result<SourceColumns> {
    let table = &source.table;
    let schema = table.require_schema().map_err(|e| RuntimeError::Internal(e.to_string()))?;
    let all = 0..schema.fields().len();
    let wanted: Vec<usize> = match &source.projection {
        Some(p) => p.clone(),
        None => all.clone().collect(),
    };
    // the processing-time column is filled in after reading, not read
    let proctime_index = table.proctime_index();
    let proctime = proctime_index.and_then(|p| wanted.iter().position(|c| *c == p));
    let needed: Vec<usize> = wanted.into_iter().filter(|c| Some(*c) != proctime_index).collect();
    // dropped rows go to their side output whole: read every column, pass on the needed ones
    let mut columns = if whole_rows { all.filter(|c| Some(*c) != proctime_index).collect() } else { needed.clone() };
    let watermark = match &table.watermark {
        Some(w) if !source.processing_time => {
            let idx = schema
                .index_of(&w.column)
                .map_err(|_| RuntimeError::Internal(format!("watermark column {} missing", w.column)))?;
            let pos = match columns.iter().position(|c| *c == idx) {
                Some(p) => p,
                None => {
                    columns.push(idx);
                    columns.len() - 1
                }
            };
            Some((pos, w.delay_nanos))
        }
        _ => None,
    };
    let output = if whole_rows {
        (columns != needed).then(|| needed.iter().filter_map(|n| columns.iter().position(|c| c == n)).collect())
    } else {
        (columns.len() != needed.len()).then(|| (0..needed.len()).collect())
    };
    Ok(SourceColumns { columns, watermark, output, proctime })
}

/// A schema with every field nullable: batches inside the pipeline are checked against the
/// plan's types, not against nullability the optimizer inferred.
pub fn relaxed(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema.fields().iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect::<Vec<_>>(),
    ))
}

pub(crate) fn physical(expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    Ok(create_physical_expr(expr, schema, &ExecutionProps::new(), &PhysicalPlanningContext::default())?)
}

/// Create the operators of a plan (those after the merge of a `UNION ALL`'s inputs).
pub fn build_operators(plan: &StreamPlan, metrics: &Arc<Metrics>) -> Result<Vec<Box<dyn Operator>>> {
    build_ops(&plan.ops, metrics)
}

/// Create operators.
pub fn build_ops(plan_ops: &[StreamOp], metrics: &Arc<Metrics>) -> Result<Vec<Box<dyn Operator>>> {
    let mut ops: Vec<Box<dyn Operator>> = Vec::new();
    for op in plan_ops {
        match op {
            StreamOp::Filter { predicate, input_schema } => {
                ops.push(Box::new(FilterOp::new(physical(predicate, input_schema)?)));
            }
            StreamOp::Project { exprs, input_schema, output_schema } => {
                let exprs = exprs.iter().map(|e| physical(e, input_schema)).collect::<Result<Vec<_>>>()?;
                ops.push(Box::new(ProjectOp::new(exprs, relaxed(output_schema.as_arrow()))));
            }
            StreamOp::WindowAggregate(w) => {
                let (group_exprs, layout, aggregates, output) = window_parts(w)?;
                let metrics = Arc::clone(metrics);
                let op: Box<dyn Operator> = match w.window {
                    WindowSpec::Session { .. } => {
                        Box::new(SessionAggregateOp::new(group_exprs, layout, aggregates, output, w.emit, metrics)?)
                    }
                    _ => Box::new(
                        WindowAggregateOp::new(group_exprs, layout, aggregates, output, w.emit, metrics)?
                            .of_node(plan_node(w)),
                    ),
                };
                ops.push(op);
            }
            StreamOp::Rank(r) => {
                let partition =
                    r.partition_by.iter().map(|e| physical(e, &r.input_schema)).collect::<Result<Vec<_>>>()?;
                let order = r
                    .order_by
                    .iter()
                    .map(|s| {
                        let options = SortOptions { descending: !s.asc, nulls_first: s.nulls_first };
                        Ok((physical(&s.expr, &r.input_schema)?, options))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let later_wins_ties = r.order_by.first().is_some_and(|s| !s.asc);
                let rows =
                    RankRows::new(partition, order, r.input_schema.as_arrow(), relaxed(r.output_schema.as_arrow()))?;
                let op: Box<dyn Operator> = match r.kind {
                    RankKind::WindowTopN { end_column, judge_lateness } => {
                        Box::new(WindowTopNOp::new(rows, end_column, judge_lateness, r.limit, Arc::clone(metrics)))
                    }
                    RankKind::Deduplicate { state_ttl } => {
                        Box::new(DeduplicateOp::new(rows, later_wins_ties, state_ttl, Arc::clone(metrics)))
                    }
                    RankKind::TopN { state_ttl } => {
                        Box::new(TopNOp::new(rows, r.limit, later_wins_ties, state_ttl, Arc::clone(metrics)))
                    }
                };
                ops.push(op);
            }
            StreamOp::WindowRows(w) => ops.push(Box::new(WindowRowsOp::new(
                &w.window,
                physical(&w.time, &w.input_schema)?,
                relaxed(w.output_schema.as_arrow()),
                Arc::clone(metrics),
            )?)),
            StreamOp::OverAggregate(o) => {
                ops.push(Box::new(OverAggregateOp::new(o, over_parts(o)?, Arc::clone(metrics))?))
            }
            StreamOp::UpsertNormalize(u) => {
                let schema = relaxed(u.schema.as_arrow());
                ops.push(Box::new(UpsertNormalizeOp::new(u.key.clone(), schema, u.state_ttl, Arc::clone(metrics))?));
            }
            StreamOp::UpdatingAggregate(u) => {
                let keys = u.group_exprs.iter().map(|e| physical(e, &u.input_schema)).collect::<Result<Vec<_>>>()?;
                let aggregates = aggregate_specs(&u.aggr_exprs, &u.input_schema)?;
                ops.push(Box::new(UpdatingAggregateOp::new(
                    keys,
                    aggregates,
                    u.retracting,
                    u.state_ttl,
                    relaxed(u.output_schema.as_arrow()),
                    Arc::clone(metrics),
                )?));
            }
        }
    }
    Ok(ops)
}

/// A window aggregate's group expressions, window, aggregates and output schema.
type WindowParts = (Vec<Arc<dyn PhysicalExpr>>, WindowLayout, Vec<AggregateSpec>, SchemaRef);

fn window_parts(w: &weir_plan::WindowAggregate) -> Result<WindowParts> {
    let group_exprs = w.group_exprs.iter().map(|e| physical(e, &w.input_schema)).collect::<Result<Vec<_>>>()?;
    let aggregates = aggregate_specs(&w.aggr_exprs, &w.input_schema)?;
    let layout = WindowLayout {
        time: physical(&w.time, &w.input_schema)?,
        time_offset: w.time_offset_nanos,
        window_columns: w.window_columns.clone(),
        window: w.window,
    };
    Ok((group_exprs, layout, aggregates, relaxed(w.output_schema.as_arrow())))
}

/// A number for plan node `w` that every parallel instance built from the plan shares: its
/// address (see [`WindowAggregateOp::of_node`]).
fn plan_node(w: &weir_plan::WindowAggregate) -> usize {
    std::ptr::from_ref(w) as usize
}

/// A window aggregate's two phases (see `weir_plan`'s `two_phase`): the partial aggregates of
/// each batch where a split is read, and the window aggregate merging them.
pub(crate) fn two_phase_window(
    w: &weir_plan::WindowAggregate,
    metrics: &Arc<Metrics>,
) -> Result<(LocalWindowAggregateOp, WindowAggregateOp)> {
    let (group_exprs, layout, aggregates, output) = window_parts(w)?;
    let local = LocalWindowAggregateOp::new(group_exprs.clone(), layout, aggregates, &output, Arc::clone(metrics))?;
    let (_, layout, aggregates, _) = window_parts(w)?;
    let partial = local.partial_layout();
    // the merge reads the partials' keys, slice and state columns by position
    let keys = partial.key_exprs();
    let mut keys_iter = keys.into_iter();
    let group_exprs = group_exprs
        .into_iter()
        .enumerate()
        .map(|(i, e)| match layout.window_columns.iter().any(|(c, _)| *c == i) {
            true => Ok(e),
            false => keys_iter.next().ok_or_else(|| RuntimeError::Internal("a partial without its keys".into())),
        })
        .collect::<Result<Vec<_>>>()?;
    let layout = WindowLayout { time: partial.slice_expr(), time_offset: 0, ..layout };
    let specs = partial.merging_specs(&aggregates);
    let rows = partial.rows_column();
    let merge = WindowAggregateOp::new(group_exprs, layout, specs, output, w.emit, Arc::clone(metrics))?
        .merging(rows)
        .of_node(plan_node(w));
    Ok((local, merge))
}

/// A window aggregate's two phases as operators, as a parallel run builds them for a window
/// aggregate over a table read in splits: the partial aggregates of each batch, then the
/// window aggregate merging them.
pub fn two_phase_window_operators(
    w: &weir_plan::WindowAggregate,
    metrics: &Arc<Metrics>,
) -> Result<[Box<dyn Operator>; 2]> {
    let (local, merge) = two_phase_window(w, metrics)?;
    Ok([Box::new(local), Box::new(merge)])
}

/// Lower DataFusion aggregate expressions. Operators feed rows in arrival order, so an
/// aggregate that needs sorted input is refused.
pub(crate) fn aggregate_specs(exprs: &[Expr], schema: &DFSchema) -> Result<Vec<AggregateSpec>> {
    let props = ExecutionProps::new();
    let ctx = PhysicalPlanningContext::default();
    let mut aggregates = Vec::new();
    for e in exprs {
        let lowered = LoweredAggregateBuilder::new(e, schema, schema.as_arrow(), &props, &ctx).build()?;
        // as DataFusion does for raw input: ORDER BY columns follow the arguments, and
        // order-sensitive accumulators order by them themselves
        let mut args = lowered.aggregate.expressions();
        args.extend(lowered.aggregate.order_bys().iter().map(|o| Arc::clone(&o.expr)));
        if !lowered.aggregate.order_bys().is_empty()
            && lowered.aggregate.order_sensitivity() == AggregateOrderSensitivity::HardRequirement
        {
            return Err(RuntimeError::Source(format!(
                "not supported yet: {} with ORDER BY inside an aggregate (it needs sorted input)",
                lowered.aggregate.name()
            )));
        }
        aggregates.push(AggregateSpec { function: lowered.aggregate, args, filter: lowered.filter });
    }
    Ok(aggregates)
}

/// The schema a plan's sink receives: the plan's output, led by an `op` column (`+I`, `-U`,
/// `+U`, `-D`) when the result is a changelog.
pub fn sink_schema(plan: &StreamPlan) -> SchemaRef {
    let output = relaxed(plan.output_schema().as_arrow());
    if !plan.is_updating() {
        return output;
    }
    let op = Field::new("op", DataType::Utf8, false)
        .with_metadata([(ROW_KIND_METADATA.to_string(), "op".to_string())].into_iter().collect());
    let mut fields = vec![Arc::new(op)];
    fields.extend(output.fields().iter().cloned());
    Arc::new(Schema::new(fields))
}

/// The metadata key marking the `op` column an updating query's sink receives first (its
/// values: `+I`, `-U`, `+U`, `-D`).
pub const ROW_KIND_METADATA: &str = "weir.row_kind";

/// Whether `field` is the `op` column of an updating query's changes (see [`sink_schema`]),
/// rather than a column of the query that happens to be named `op`.
pub fn is_row_kind_column(field: &Field) -> bool {
    field.metadata().contains_key(ROW_KIND_METADATA)
}

/// The schema of the rows a plan's `'late_rows'` sink receives: the source table's columns and
/// `reason`.
pub fn late_rows_schema(plan: &StreamPlan) -> Result<SchemaRef> {
    let table = plan.first_source().table.physical_schema().map_err(|e| RuntimeError::Internal(e.to_string()))?;
    let mut fields: Vec<Field> = relaxed(&table).fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("reason", DataType::Utf8, false));
    Ok(Arc::new(Schema::new(fields)))
}

/// A runnable pipeline.
pub struct Pipeline {
    pub(crate) drivers: Vec<SourceDriver>,
    /// Each source's table name.
    pub(crate) labels: Vec<String>,
    pub(crate) root: Stage,
    pub(crate) chain: Chain,
    /// Set when the watermark is the wall clock: sent on a timer while no rows arrive.
    pub(crate) clock: Option<Arc<ProcessingClock>>,
    /// Sources read to their end before the others (the tables of lookup joins).
    pub(crate) first: Vec<usize>,
    /// Read the input with the lowest watermark next (a query with a join), not in turn.
    pub(crate) aligned: bool,
    /// Checkpoints, once set up.
    pub(crate) checkpoints: Option<Checkpointing>,
    /// The threads of a parallel run (see [`Pipeline::parallel`]): then `chain` is the sink's.
    pub(crate) parallel: Option<Box<crate::exec::parallel::Parallel>>,
}

/// Builds the operator tree, numbering sources and operators as EXPLAIN does.
struct TreeBuilder<'a> {
    counter: OpCounter,
    drivers: Vec<SourceDriver>,
    sources: std::vec::IntoIter<Box<dyn Source>>,
    metrics: &'a Arc<Metrics>,
    clock: &'a Arc<ProcessingClock>,
    whole_rows: bool,
    many: bool,
    first: Vec<usize>,
    /// Sources without an event-time watermark.
    unwatermarked: Vec<usize>,
}

impl TreeBuilder<'_> {
    fn input(&mut self, input: &PlanInput) -> Result<(Stage, Vec<usize>)> {
        match input {
            PlanInput::Source(node) => {
                // sources are numbered in the order their drivers are made
                let (place, index) = (self.counter.source(), self.drivers.len());
                let source = self
                    .sources
                    .next()
                    .ok_or_else(|| RuntimeError::Internal("fewer sources than the plan reads".into()))?;
                let cols = input_columns(node, self.whole_rows)?;
                if cols.watermark.is_none() {
                    self.unwatermarked.push(index);
                }
                let idle = node.table.idle_timeout().map(|n| Duration::from_nanos(n.max(0) as u64));
                let mut driver = SourceDriver::new(source, cols.watermark, cols.output, Arc::clone(self.metrics))
                    .with_operator_metrics(self.metrics.register("Source", place))
                    .with_split_idle_timeout(idle);
                if self.many {
                    driver = driver.without_watermark_metric();
                }
                if node.processing_time {
                    driver = driver.with_final_watermark();
                }
                self.drivers.push(driver);
                let mut stamp = Vec::new();
                if let Some(position) = cols.proctime {
                    let schema = relaxed(node.output_schema.as_arrow());
                    let op = ProcTimeOp::new(position, schema, Arc::clone(self.clock), node.processing_time);
                    stamp.push(Instrumented::unregistered(Box::new(op)));
                }
                Ok((Stage::Source { stamp }, vec![index]))
            }
            PlanInput::Union(branches) => {
                let mut stages = Vec::with_capacity(branches.len());
                let mut idle = Vec::with_capacity(branches.len());
                for b in branches {
                    idle.push(match &b.input {
                        PlanInput::Source(s) => s.table.idle_timeout().map(|n| Duration::from_nanos(n.max(0) as u64)),
                        _ => None,
                    });
                    stages.push(self.branch(b)?);
                }
                let sources = stages.iter().flat_map(|b| b.sources.clone()).collect();
                let watermarks = WatermarkMerge::new(&idle, Instant::now());
                Ok((Stage::Union { branches: stages, watermarks }, sources))
            }
            PlanInput::Join(j) => {
                let left = self.branch(&j.left)?;
                let right = self.branch(&j.right)?;
                if matches!(j.join.state, JoinState::Lookup) {
                    self.first.extend(right.sources.iter().copied());
                }
                let op =
                    Instrumented::new(Box::new(build_join(&j.join, self.metrics)?), self.counter.op(), self.metrics);
                let sources = left.sources.iter().chain(&right.sources).copied().collect();
                Ok((Stage::Join(Box::new(JoinStage::new(left, right, op))), sources))
            }
        }
    }

    fn branch(&mut self, b: &Branch) -> Result<BranchStage> {
        let (stage, sources) = self.input(&b.input)?;
        let ops = self.ops(&b.ops)?;
        Ok(BranchStage { stage, ops, sources })
    }

    fn ops(&mut self, ops: &[StreamOp]) -> Result<Vec<Instrumented>> {
        let built = build_ops(ops, self.metrics)?;
        Ok(built.into_iter().map(|op| Instrumented::new(op, self.counter.op(), self.metrics)).collect())
    }
}

fn has_join(input: &PlanInput) -> bool {
    match input {
        PlanInput::Source(_) => false,
        PlanInput::Union(branches) => branches.iter().any(|b| has_join(&b.input)),
        PlanInput::Join(_) => true,
    }
}

/// The operator of a join.
pub(crate) fn build_join(j: &StreamJoin, metrics: &Arc<Metrics>) -> Result<JoinOp> {
    let keys =
        |exprs: &[Expr], schema: &DFSchema| exprs.iter().map(|e| physical(e, schema)).collect::<Result<Vec<_>>>();
    let mode = match &j.state {
        JoinState::Interval { left_time, right_time, left_until, right_until, .. } => {
            JoinMode::Interval { time: [*left_time, *right_time], until: [*left_until, *right_until] }
        }
        JoinState::Regular { state_ttl, times } => JoinMode::Regular { ttl: *state_ttl, times: *times },
        JoinState::Lookup => JoinMode::Lookup,
    };
    let (outer, output_rows) = match j.join_type {
        JoinType::Inner => ([false, false], JoinOutput::Pairs),
        JoinType::Left => ([true, false], JoinOutput::Pairs),
        JoinType::Full => ([true, true], JoinOutput::Pairs),
        JoinType::Semi => ([false, false], JoinOutput::Semi),
        JoinType::Anti => ([false, false], JoinOutput::Anti),
    };
    // the pairs the filter reads: the left columns then the right ones
    let pairs = match output_rows {
        JoinOutput::Pairs => Arc::clone(&j.output_schema),
        _ => Arc::new(j.left_schema.join(&j.right_schema)?),
    };
    let spec = JoinSpec {
        outer,
        output_rows,
        mode,
        keys: [keys(&j.left_keys, &j.left_schema)?, keys(&j.right_keys, &j.right_schema)?],
        filter: j.filter.as_ref().map(|f| physical(f, &pairs)).transpose()?,
        sides: [relaxed(j.left_schema.as_arrow()), relaxed(j.right_schema.as_arrow())],
        pairs: relaxed(pairs.as_arrow()),
        output: relaxed(j.output_schema.as_arrow()),
        changelog: j.emits_changelog(),
    };
    JoinOp::new(spec, Arc::clone(metrics))
}

impl Pipeline {
    /// Assemble a pipeline. `sources` are the plan's inputs in order ([`StreamPlan::sources`]);
    /// each must produce the columns [`input_columns`] asks for.
    pub fn new(
        plan: &StreamPlan,
        sources: Vec<Box<dyn Source>>,
        sink: Box<dyn Sink>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let expected = plan.sources().len();
        if sources.len() != expected {
            return Err(RuntimeError::Internal(format!(
                "the plan has {expected} inputs, but {} sources were given",
                sources.len()
            )));
        }
        let clock = Arc::new(ProcessingClock::new());
        let mut tree = TreeBuilder {
            counter: OpCounter::default(),
            drivers: Vec::new(),
            sources: sources.into_iter(),
            metrics: &metrics,
            clock: &clock,
            whole_rows: plan.late_rows.is_some(),
            many: expected > 1,
            first: Vec::new(),
            unwatermarked: Vec::new(),
        };
        let (root, sources) = tree.input(&plan.input)?;
        // one table: a union of one, so an idle timeout behaves as it always has
        let root = match root {
            Stage::Source { .. } => {
                let idle = plan.first_source().table.idle_timeout().map(|n| Duration::from_nanos(n.max(0) as u64));
                let watermarks = WatermarkMerge::new(&[idle], Instant::now());
                Stage::Union { branches: vec![BranchStage { stage: root, ops: Vec::new(), sources }], watermarks }
            }
            other => other,
        };
        let ops = tree.ops(&plan.ops)?;
        // read the lowest watermark first only if every input read alongside has one (an input
        // without would always look lowest, and starve the others)
        let aligned = has_join(&plan.input) && tree.unwatermarked.iter().all(|i| tree.first.contains(i));
        let (drivers, first) = (tree.drivers, tree.first);
        let changelog = plan.is_updating().then(|| sink_schema(plan));
        let clock = plan.first_source().processing_time.then_some(clock);
        let chain = Chain { ops, sink, metrics, changelog, late_rows: None, report_watermark: expected > 1 };
        let labels = plan.sources().iter().map(|s| s.table.name.clone()).collect();
        Ok(Self { drivers, labels, root, chain, clock, first, aligned, checkpoints: None, parallel: None })
    }

    /// Route rows the operators drop (late, or without an event time) to `sink`, unchanged and
    /// with a `reason` column ([`late_rows_schema`]). The plan must name a `'late_rows'` table,
    /// so that the source reads whole rows.
    pub fn with_late_rows(mut self, plan: &StreamPlan, sink: Box<dyn Sink>) -> Result<Self> {
        if plan.late_rows.is_none() {
            return Err(RuntimeError::Internal("the plan has no 'late_rows' table".into()));
        }
        self.chain.late_rows = Some((sink, late_rows_schema(plan)?));
        if let Some(p) = &mut self.parallel {
            p.keep_origin();
        }
        self.drivers = self.drivers.into_iter().map(SourceDriver::keep_origin).collect();
        Ok(self)
    }
}

/// The physical parts of an OVER aggregate.
fn over_parts(o: &weir_plan::OverAggregate) -> Result<OverParts> {
    let input_schema = relaxed(o.input_schema.as_arrow());
    let partition_by = o.partition_by.iter().map(|e| physical(e, &o.input_schema)).collect::<Result<Vec<_>>>()?;
    let time = physical(&o.time, &o.input_schema)?;
    let (mut windows, mut aggregates) = (Vec::new(), Vec::new());
    for e in &o.window_exprs {
        let (w, a) = window_expr(e, &time, &o.input_schema, &input_schema)?;
        windows.push(w);
        aggregates.push(a);
    }
    let running = match o.frame {
        weir_plan::OverFrame::Unbounded { .. } => Some(aggregate_specs(&aggregates, &o.input_schema)?),
        _ => None,
    };
    Ok(OverParts {
        partition_by,
        time,
        windows,
        running,
        input_schema,
        output_schema: relaxed(o.output_schema.as_arrow()),
    })
}

/// DataFusion's window expression for `e` over rows sorted by `time` (one partition at a time:
/// the operator splits the partitions itself), and the aggregate it computes.
fn window_expr(
    e: &Expr,
    time: &Arc<dyn PhysicalExpr>,
    logical: &datafusion_common::DFSchema,
    schema: &SchemaRef,
) -> Result<(Arc<dyn WindowExpr>, Expr)> {
    let (name, f) = match e {
        Expr::Alias(a) => match a.expr.as_ref() {
            Expr::WindowFunction(f) => (a.name.clone(), f),
            _ => return Err(RuntimeError::Internal(format!("not an OVER aggregate: {e}"))),
        },
        Expr::WindowFunction(f) => (e.schema_name().to_string(), f),
        _ => return Err(RuntimeError::Internal(format!("not an OVER aggregate: {e}"))),
    };
    let p = &f.params;
    // COUNT(*) counts rows: COUNT(1)
    #[allow(deprecated)]
    let one = |a: &Expr| match a {
        Expr::Wildcard { .. } => datafusion_expr::lit(1i64),
        a => a.clone(),
    };
    let logical_args: Vec<Expr> = p.args.iter().map(one).collect();
    let args = logical_args.iter().map(|a| physical(a, logical)).collect::<Result<Vec<_>>>()?;
    let WindowFunctionDefinition::AggregateUDF(udf) = &f.fun else {
        return Err(RuntimeError::Internal(format!("not an aggregate: {e}")));
    };
    let aggregate = Expr::AggregateFunction(AggregateFunction::new_udf(
        Arc::clone(udf),
        logical_args,
        p.distinct,
        p.filter.clone(),
        Vec::new(),
        p.null_treatment,
    ))
    .alias(name.clone());
    // a frame that slides takes rows back out of its aggregates
    let slides =
        !matches!(p.window_frame.start_bound, datafusion_expr::WindowFrameBound::Preceding(ref v) if v.is_null());
    if slides {
        for spec in aggregate_specs(std::slice::from_ref(&aggregate), logical)? {
            if !spec.function.create_sliding_accumulator().is_ok_and(|a| a.supports_retract_batch()) {
                return Err(RuntimeError::Unsupported(format!(
                    "{} OVER a frame of rows or a range before the current row (it cannot take rows back out): use ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW",
                    udf.name().to_uppercase()
                )));
            }
        }
    }
    let filter = p.filter.as_ref().map(|x| physical(x, logical)).transpose()?;
    let order = [PhysicalSortExpr { expr: Arc::clone(time), options: SortOptions::default() }];
    let ignore_nulls = p.null_treatment == Some(datafusion_expr::expr::NullTreatment::IgnoreNulls);
    let window = create_window_expr(
        &f.fun,
        name,
        &args,
        &[],
        &order,
        Arc::new(p.window_frame.clone()),
        Arc::clone(schema),
        ignore_nulls,
        p.distinct,
        filter,
    )?;
    Ok((window, aggregate))
}
