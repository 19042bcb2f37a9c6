//! Turning a [`StreamPlan`] into running operators, and running them.
//!
//! ```text
//!   source task (blocking)            bounded channel            operator task (blocking)
//!   Source ─► SourceDriver ─► Vec<Message> ══════════════► Filter ─► … ─► WindowAggregate ─► Sink
//! ```
//!
//! The source side parses input while the operator side aggregates, so a pipeline uses two
//! cores; the bounded channel gives backpressure. [`Pipeline::run_blocking`] runs both sides
//! on the calling thread instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion_common::arrow::array::{ArrayRef, StringArray};
use datafusion_common::arrow::compute::SortOptions;
use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::DFSchema;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::utils::AggregateOrderSensitivity;
use datafusion_expr::Expr;
use datafusion_physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion_physical_expr::{create_physical_expr, PhysicalExpr};
use weir_sql::{RankKind, StreamOp, StreamPlan, WindowSpec};

use crate::aggregate_state::AggregateSpec;
use crate::deduplicate::DeduplicateOp;
use crate::error::{Result, RuntimeError};
use crate::filter::FilterOp;
use crate::message::{DroppedRows, Message, StreamBatch};
use crate::metrics::Metrics;
use crate::operator::Operator;
use crate::project::ProjectOp;
use crate::rank_rows::RankRows;
use crate::session_aggregate::SessionAggregateOp;
use crate::source::{Sink, Source, SourceDriver};
use crate::updating_aggregate::UpdatingAggregateOp;
use crate::window_aggregate::{WindowAggregateOp, WindowLayout};
use crate::window_top_n::WindowTopNOp;

/// Which columns of a table a pipeline's source must read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColumns {
    /// Indices into the table's declared columns, in the order the connector must produce them.
    pub columns: Vec<usize>,
    /// Position (in `columns`) of the event-time column, and the watermark delay.
    pub watermark: Option<(usize, i64)>,
    /// Positions (in `columns`) passed on to the first operator; `None` = all.
    pub output: Option<Vec<usize>>,
}

/// The columns the source of `plan` must read: those the query uses plus the event-time column
/// (which drives the watermark even when the query does not select it).
pub fn source_columns(plan: &StreamPlan) -> Result<SourceColumns> {
    let table = &plan.source.table;
    let schema = table.require_schema().map_err(|e| RuntimeError::Internal(e.to_string()))?;
    let needed: Vec<usize> = match &plan.source.projection {
        Some(p) => p.clone(),
        None => (0..schema.fields().len()).collect(),
    };
    // dropped rows go to their side output whole: read every column, pass on the needed ones
    let mut columns = if plan.late_rows.is_some() { (0..schema.fields().len()).collect() } else { needed.clone() };
    let watermark = match &table.watermark {
        None => None,
        Some(w) => {
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
    };
    let output = match plan.late_rows {
        None => (columns.len() != needed.len()).then(|| (0..needed.len()).collect()),
        Some(_) => (columns != needed).then_some(needed),
    };
    Ok(SourceColumns { columns, watermark, output })
}

/// A schema with every field nullable: batches inside the pipeline are checked against the
/// plan's types, not against nullability the optimizer inferred.
pub fn relaxed(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema.fields().iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect::<Vec<_>>(),
    ))
}

fn physical(expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    Ok(create_physical_expr(expr, schema, &ExecutionProps::new(), &PhysicalPlanningContext::default())?)
}

/// Create the operators of a plan.
pub fn build_operators(plan: &StreamPlan, metrics: &Arc<Metrics>) -> Result<Vec<Box<dyn Operator>>> {
    let mut ops: Vec<Box<dyn Operator>> = Vec::new();
    for op in &plan.ops {
        match op {
            StreamOp::Filter { predicate, input_schema } => {
                ops.push(Box::new(FilterOp::new(physical(predicate, input_schema)?)));
            }
            StreamOp::Project { exprs, input_schema, output_schema } => {
                let exprs = exprs.iter().map(|e| physical(e, input_schema)).collect::<Result<Vec<_>>>()?;
                ops.push(Box::new(ProjectOp::new(exprs, relaxed(output_schema.as_arrow()))));
            }
            StreamOp::WindowAggregate(w) => {
                let group_exprs =
                    w.group_exprs.iter().map(|e| physical(e, &w.input_schema)).collect::<Result<Vec<_>>>()?;
                let aggregates = aggregate_specs(&w.aggr_exprs, &w.input_schema)?;
                let layout = WindowLayout {
                    time: physical(&w.time, &w.input_schema)?,
                    time_offset: w.time_offset_nanos,
                    window_columns: w.window_columns.clone(),
                    window: w.window,
                };
                let (output, metrics) = (relaxed(w.output_schema.as_arrow()), Arc::clone(metrics));
                let op: Box<dyn Operator> = match w.window {
                    WindowSpec::Session { .. } => {
                        Box::new(SessionAggregateOp::new(group_exprs, layout, aggregates, output, metrics)?)
                    }
                    _ => Box::new(WindowAggregateOp::new(group_exprs, layout, aggregates, output, w.emit, metrics)?),
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
                };
                ops.push(op);
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

/// Lower DataFusion aggregate expressions. Operators feed rows in arrival order, so an
/// aggregate that needs sorted input is refused.
fn aggregate_specs(exprs: &[Expr], schema: &DFSchema) -> Result<Vec<AggregateSpec>> {
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
    let mut fields = vec![Arc::new(Field::new("op", DataType::Utf8, false))];
    fields.extend(output.fields().iter().cloned());
    Arc::new(Schema::new(fields))
}

/// The schema of the rows a plan's `'late_rows'` sink receives: the source table's columns and
/// `reason`.
pub fn late_rows_schema(plan: &StreamPlan) -> Result<SchemaRef> {
    let table = plan.source.table.require_schema().map_err(|e| RuntimeError::Internal(e.to_string()))?;
    let mut fields: Vec<Field> = relaxed(&table).fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("reason", DataType::Utf8, false));
    Ok(Arc::new(Schema::new(fields)))
}

/// Prepend the `op` column to a changelog batch.
fn with_op_column(batch: &StreamBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let n = batch.batch.num_rows();
    let ops = StringArray::from_iter_values((0..n).map(|i| batch.kind(i).as_str()));
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ops)];
    columns.extend(batch.batch.columns().iter().cloned());
    let options = RecordBatchOptions::new().with_row_count(Some(n));
    Ok(RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)?)
}

/// Operators plus sink: everything downstream of the source.
struct Chain {
    ops: Vec<Box<dyn Operator>>,
    sink: Box<dyn Sink>,
    metrics: Arc<Metrics>,
    /// Set for a changelog: the sink's schema, with the `op` column.
    changelog: Option<SchemaRef>,
    /// The side output for dropped rows, and its schema.
    late_rows: Option<(Box<dyn Sink>, SchemaRef)>,
}

impl Chain {
    /// Rows an operator dropped: to the side output, if there is one.
    fn dropped(&mut self, d: DroppedRows) -> Result<()> {
        let Some((sink, schema)) = &mut self.late_rows else { return Ok(()) };
        let mut columns = d.rows.columns().to_vec();
        columns.push(Arc::new(StringArray::from(d.reasons)));
        let options = RecordBatchOptions::new().with_row_count(Some(d.rows.num_rows()));
        sink.write(&RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)?)
    }

    /// Push one message through; returns true once `EndOfStream` reached the sink.
    fn push(&mut self, message: Message) -> Result<bool> {
        let mut current = vec![message];
        for op in &mut self.ops {
            let mut next = Vec::with_capacity(current.len());
            for m in current {
                match m {
                    // on their way to the side output, past the other operators
                    Message::Dropped(d) => next.push(Message::Dropped(d)),
                    Message::Data(b) => op.process_batch(b, &mut next)?,
                    Message::Watermark(w) => op.on_watermark(w, &mut next)?,
                    Message::EndOfStream => {
                        op.on_end_of_stream(&mut next)?;
                        next.push(Message::EndOfStream);
                    }
                }
            }
            current = next;
        }
        for m in current {
            match m {
                Message::Data(b) => {
                    Metrics::add(&self.metrics.rows_out, b.batch.num_rows() as u64);
                    match &self.changelog {
                        Some(schema) => self.sink.write(&with_op_column(&b, schema)?)?,
                        None => self.sink.write(&b.batch)?,
                    }
                }
                Message::Watermark(_) => {}
                Message::Dropped(d) => self.dropped(d)?,
                Message::EndOfStream => {
                    if let Some((sink, _)) = &mut self.late_rows {
                        sink.finish()?;
                    }
                    self.sink.finish()?;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// A runnable pipeline.
pub struct Pipeline {
    driver: SourceDriver,
    chain: Chain,
}

impl Pipeline {
    /// Assemble a pipeline. `source` must produce the columns [`source_columns`] asks for.
    pub fn new(plan: &StreamPlan, source: Box<dyn Source>, sink: Box<dyn Sink>, metrics: Arc<Metrics>) -> Result<Self> {
        let cols = source_columns(plan)?;
        let ops = build_operators(plan, &metrics)?;
        let driver = SourceDriver::new(source, cols.watermark, cols.output, Arc::clone(&metrics));
        let changelog = plan.is_updating().then(|| sink_schema(plan));
        Ok(Self { driver, chain: Chain { ops, sink, metrics, changelog, late_rows: None } })
    }

    /// Route rows the operators drop (late, or without an event time) to `sink`, unchanged and
    /// with a `reason` column ([`late_rows_schema`]). The plan must name a `'late_rows'` table,
    /// so that the source reads whole rows.
    pub fn with_late_rows(mut self, plan: &StreamPlan, sink: Box<dyn Sink>) -> Result<Self> {
        if plan.late_rows.is_none() {
            return Err(RuntimeError::Internal("the plan has no 'late_rows' table".into()));
        }
        self.chain.late_rows = Some((sink, late_rows_schema(plan)?));
        self.driver = self.driver.keep_origin();
        Ok(self)
    }

    /// Run on the calling thread until the input ends or `cancel` is set.
    pub fn run_blocking(mut self, cancel: &AtomicBool) -> Result<()> {
        let mut out = Vec::new();
        loop {
            if cancel.load(Ordering::Relaxed) {
                self.chain.push(Message::EndOfStream)?;
                return Ok(());
            }
            let more = self.driver.poll(&mut out)?;
            if !more {
                out.push(Message::EndOfStream);
            }
            for m in out.drain(..) {
                if self.chain.push(m)? {
                    return Ok(());
                }
            }
        }
    }

    /// Run with the source and the operators on two blocking tasks joined by a bounded
    /// channel, until the input ends or `cancel` is set (then the sinks are flushed and open
    /// windows are discarded).
    pub async fn run(self, cancel: Arc<AtomicBool>) -> Result<()> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<Message>>>(8);
        let mut driver = self.driver;
        let producer = tokio::task::spawn_blocking(move || loop {
            if cancel.load(Ordering::Relaxed) {
                let _ = tx.blocking_send(Ok(vec![Message::EndOfStream]));
                return;
            }
            let mut out = Vec::new();
            match driver.poll(&mut out) {
                Ok(more) => {
                    if !more {
                        out.push(Message::EndOfStream);
                    }
                    if tx.blocking_send(Ok(out)).is_err() || !more {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        });
        let mut chain = self.chain;
        let consumer = tokio::task::spawn_blocking(move || -> Result<()> {
            while let Some(messages) = rx.blocking_recv() {
                for m in messages? {
                    if chain.push(m)? {
                        return Ok(());
                    }
                }
            }
            Err(RuntimeError::Internal("the source stopped without ending the stream".into()))
        });
        let result = consumer.await.map_err(|e| RuntimeError::Internal(e.to_string()))?;
        producer.await.map_err(|e| RuntimeError::Internal(e.to_string()))?;
        result
    }
}
