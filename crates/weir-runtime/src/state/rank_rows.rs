//! Rows as the ranking operators keep them: each input row encoded once as Arrow row bytes
//! (so state needs no batches), with its partition key and its `ORDER BY` key also encoded as
//! bytes whose order is the SQL order (descending and NULLS FIRST/LAST included).

use std::sync::Arc;

use datafusion_common::arrow::array::{
    ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, UInt32Array, UInt64Array,
};
use datafusion_common::arrow::compute::SortOptions;
use datafusion_common::arrow::compute::{interleave, take};
use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::row::{RowConverter, Rows, SortField};
use datafusion_physical_expr::PhysicalExpr;

use crate::error::{Result, RuntimeError};
use crate::message::{Nanos, RowKind, StreamBatch};
use crate::state::checkpoint::{concat_saved, KeyFilter, OperatorSnapshot};
use crate::state::keyed_state::KeyedState;

/// Encodes partition keys, order keys and whole rows; decodes kept rows into output batches.
pub struct RankRows {
    partition: Vec<Arc<dyn PhysicalExpr>>,
    order: Vec<Arc<dyn PhysicalExpr>>,
    partition_converter: RowConverter,
    order_converter: RowConverter,
    row_converter: RowConverter,
    output_schema: SchemaRef,
}

fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    let n = batch.num_rows();
    Ok(exprs
        .iter()
        .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
        .collect::<datafusion_common::Result<_>>()?)
}

impl RankRows {
    /// `order` pairs each `ORDER BY` expression with its direction. `output_schema` is the
    /// input's columns then the row number.
    pub fn new(
        partition: Vec<Arc<dyn PhysicalExpr>>,
        order: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
        input_schema: &Schema,
        output_schema: SchemaRef,
    ) -> Result<Self> {
        let field = |e: &Arc<dyn PhysicalExpr>, options: SortOptions| -> Result<SortField> {
            Ok(SortField::new_with_options(e.data_type(input_schema)?, options))
        };
        let partition_fields =
            partition.iter().map(|e| field(e, SortOptions::default())).collect::<Result<Vec<_>>>()?;
        let order_fields = order.iter().map(|(e, o)| field(e, *o)).collect::<Result<Vec<_>>>()?;
        let row_fields = input_schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
        Ok(Self {
            partition,
            order: order.into_iter().map(|(e, _)| e).collect(),
            partition_converter: RowConverter::new(partition_fields)?,
            order_converter: RowConverter::new(order_fields)?,
            row_converter: RowConverter::new(row_fields)?,
            output_schema,
        })
    }

    /// A batch's partition and `ORDER BY` keys only (whole rows are encoded by
    /// [`Self::encode_rows`], for the rows kept).
    pub fn encode_keys(&self, batch: &RecordBatch) -> Result<(Rows, Rows)> {
        Ok((
            self.partition_converter.convert_columns(&evaluate(&self.partition, batch)?)?,
            self.order_converter.convert_columns(&evaluate(&self.order, batch)?)?,
        ))
    }

    /// Rows `rows` of a batch, encoded whole (row `j` of the result is row `rows[j]`).
    pub fn encode_rows(&self, batch: &RecordBatch, rows: &[u32]) -> Result<Rows> {
        let rows = UInt32Array::from(rows.to_vec());
        let columns = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &rows, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(self.row_converter.convert_columns(&columns)?)
    }

    /// The partition keys' columns of saved keys (a checkpoint's `key` column).
    pub(crate) fn partition_columns(&self, keys: &BinaryArray) -> Result<Vec<ArrayRef>> {
        decode(&self.partition_converter, keys)
    }

    /// Decode kept rows, each with its row number, into an output batch.
    pub fn output<'a>(&self, rows: impl IntoIterator<Item = (&'a [u8], u64)>) -> Result<RecordBatch> {
        let parser = self.row_converter.parser();
        let (rows, numbers): (Vec<&[u8]>, Vec<u64>) = rows.into_iter().unzip();
        let n = rows.len();
        let mut columns = self.row_converter.convert_rows(rows.iter().map(|r| parser.parse(r)))?;
        columns.push(Arc::new(UInt64Array::from(numbers)));
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.output_schema), columns, &options)?)
    }

    /// The changelog batch of `changes` made while processing `input`.
    pub fn changes(&self, input: &RecordBatch, changes: Changes) -> Result<StreamBatch> {
        let parser = self.row_converter.parser();
        let kept = self.row_converter.convert_rows(changes.kept.iter().map(|r| parser.parse(r)))?;
        let mut columns = Vec::with_capacity(kept.len() + 1);
        for (from_input, from_kept) in input.columns().iter().zip(&kept) {
            columns.push(if changes.kept.is_empty() {
                let rows = UInt32Array::from_iter_values(changes.picks.iter().map(|p| p.1 as u32));
                take(from_input.as_ref(), &rows, None)?
            } else {
                interleave(&[from_input.as_ref(), from_kept.as_ref()], &changes.picks)?
            });
        }
        columns.push(Arc::new(UInt64Array::from(changes.numbers)));
        let options = RecordBatchOptions::new().with_row_count(Some(changes.picks.len()));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.output_schema), columns, &options)?;
        Ok(StreamBatch::changelog(batch, &changes.kinds))
    }
}

/// The changelog a ranking operator emits for one input batch, row by row: each row either a
/// row of the input batch (taken from its columns) or a kept row (its bytes, decoded once
/// however many times it is emitted), with its kind and row number.
#[derive(Default)]
pub struct Changes {
    kinds: Vec<RowKind>,
    numbers: Vec<u64>,
    /// Per output row: (0, input row) or (1, index in `kept`).
    picks: Vec<(usize, usize)>,
    kept: Vec<Box<[u8]>>,
}

impl Changes {
    /// Emit input row `row`.
    pub fn input(&mut self, kind: RowKind, row: usize, number: u64) {
        self.push(kind, (0, row), number);
    }

    /// Emit a kept row; returns its index for [`Changes::again`].
    pub fn kept(&mut self, kind: RowKind, row: Box<[u8]>, number: u64) -> usize {
        self.kept.push(row);
        let at = self.kept.len() - 1;
        self.push(kind, (1, at), number);
        at
    }

    /// Emit the kept row [`Changes::kept`] returned `at` for once more.
    pub fn again(&mut self, kind: RowKind, at: usize, number: u64) {
        self.push(kind, (1, at), number);
    }

    fn push(&mut self, kind: RowKind, pick: (usize, usize), number: u64) {
        self.kinds.push(kind);
        self.picks.push(pick);
        self.numbers.push(number);
    }

    /// Whether no row is emitted.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}

/// One row a ranking operator keeps, as a checkpoint saves it: its partition key, a number
/// (the key's TTL clock, or the window end), whether the clock is pending, and its order and
/// row bytes.
pub(crate) type SavedRow = (Box<[u8]>, i64, bool, Box<[u8]>, Box<[u8]>);

/// The rows a ranking operator keeps, gathered into one batch for a checkpoint.
#[derive(Default)]
pub(crate) struct SavedRows {
    key: Vec<Box<[u8]>>,
    tag: Vec<i64>,
    pending: Vec<bool>,
    order: Vec<Box<[u8]>>,
    row: Vec<Box<[u8]>>,
}

impl SavedRows {
    /// Add a kept row.
    pub(crate) fn push(&mut self, key: &[u8], tag: i64, pending: bool, order: &[u8], row: &[u8]) {
        self.key.push(key.into());
        self.tag.push(tag);
        self.pending.push(pending);
        self.order.push(order.into());
        self.row.push(row.into());
    }

    /// The batch (`None` when no row is kept).
    pub(crate) fn into_batch(self) -> Result<Option<RecordBatch>> {
        if self.key.is_empty() {
            return Ok(None);
        }
        let schema = Schema::new(vec![
            Field::new("key", DataType::Binary, false),
            Field::new("tag", DataType::Int64, false),
            Field::new("pending", DataType::Boolean, false),
            Field::new("order", DataType::Binary, false),
            Field::new("row", DataType::Binary, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(BinaryArray::from_iter_values(&self.key)),
            Arc::new(Int64Array::from(self.tag)),
            Arc::new(BooleanArray::from(self.pending)),
            Arc::new(BinaryArray::from_iter_values(&self.order)),
            Arc::new(BinaryArray::from_iter_values(&self.row)),
        ];
        Ok(Some(RecordBatch::try_new(Arc::new(schema), columns)?))
    }

    /// The rows of a batch [`SavedRows::into_batch`] made, in order.
    pub(crate) fn read(batch: &RecordBatch) -> Result<Vec<SavedRow>> {
        let bad = || RuntimeError::Checkpoint("saved ranked rows are not valid".into());
        let binary = |i: usize| batch.columns().get(i).and_then(|c| c.as_binary_opt::<i32>()).ok_or_else(bad);
        let (key, order, row) = (binary(0)?, binary(3)?, binary(4)?);
        let tag = batch.columns().get(1).and_then(|c| c.as_primitive_opt::<Int64Type>()).ok_or_else(bad)?;
        let pending = batch.columns().get(2).and_then(|c| c.as_boolean_opt()).ok_or_else(bad)?;
        Ok((0..batch.num_rows())
            .map(|i| (key.value(i).into(), tag.value(i), pending.value(i), order.value(i).into(), row.value(i).into()))
            .collect())
    }
}

/// The columns of keys `converter` encoded.
pub(crate) fn decode(converter: &RowConverter, keys: &BinaryArray) -> Result<Vec<ArrayRef>> {
    let parser = converter.parser();
    Ok(converter.convert_rows(keys.iter().map(|k| parser.parse(k.unwrap_or_default())))?)
}

/// The saved rows (of [`save_keyed`] or a window Top-N) whose keys an instance owns after a
/// change of parallelism, from the snapshots of every old instance; `columns` decodes keys.
/// Their clocks (if saved) agree: the latest is kept.
pub(crate) fn rescale_rows(
    parts: Vec<OperatorSnapshot>,
    operator: &str,
    columns: impl Fn(&BinaryArray) -> Result<Vec<ArrayRef>>,
    owned: &KeyFilter<'_>,
) -> Result<OperatorSnapshot> {
    let mut clocks: Option<(Nanos, Nanos)> = None;
    let mut kept = Vec::new();
    for mut part in parts {
        if !part.meta.is_null() {
            let (w, s): (Nanos, Nanos) = part.meta(operator)?;
            clocks = Some(clocks.map_or((w, s), |(a, b)| (a.max(w), b.max(s))));
        }
        if let Some(batch) = part.take("kept") {
            let keys = batch
                .column(0)
                .as_binary_opt::<i32>()
                .ok_or_else(|| RuntimeError::Checkpoint("saved ranked rows are not valid".into()))?;
            let keep = BooleanArray::from(owned(&columns(keys)?)?);
            kept.push(datafusion_common::arrow::compute::filter_record_batch(&batch, &keep)?);
        }
    }
    let mut snapshot = match clocks {
        Some(c) => OperatorSnapshot::with_meta(&c)?,
        None => OperatorSnapshot::empty(),
    };
    if let Some(batch) = concat_saved(&kept)? {
        snapshot.push("kept", batch);
    }
    Ok(snapshot)
}

/// The rows a keyed ranking operator keeps (per key, with the key's TTL clock), as a snapshot;
/// `rows` gives a value's (order, row) bytes in order.
pub(crate) fn save_keyed<T>(
    kept: &mut KeyedState<T>,
    rows: impl for<'a> Fn(&'a T) -> Vec<(&'a [u8], &'a [u8])>,
) -> Result<OperatorSnapshot> {
    let mut saved = SavedRows::default();
    for (key, touched, pending, value) in kept.entries_mut() {
        for (order, row) in rows(value) {
            saved.push(key, touched, pending, order, row);
        }
    }
    let mut snapshot = OperatorSnapshot::with_meta(&kept.clocks())?;
    if let Some(batch) = saved.into_batch()? {
        snapshot.push("kept", batch);
    }
    Ok(snapshot)
}

/// Take up what [`save_keyed`] saved; `value` makes a key's value of its (order, row) bytes
/// (never empty).
pub(crate) fn restore_keyed<T>(
    kept: &mut KeyedState<T>,
    mut snapshot: OperatorSnapshot,
    operator: &str,
    value: impl Fn(Vec<(Box<[u8]>, Box<[u8]>)>) -> T,
) -> Result<()> {
    kept.restore_clocks(snapshot.meta(operator)?);
    let Some(saved) = snapshot.take("kept") else { return Ok(()) };
    let mut rows = SavedRows::read(&saved)?.into_iter().peekable();
    while let Some((key, touched, pending, order, row)) = rows.next() {
        let mut list = vec![(order, row)];
        while let Some((_, _, _, order, row)) = rows.next_if(|r| r.0 == key) {
            list.push((order, row));
        }
        kept.restore_entry(&key, touched, pending, value(list));
    }
    Ok(())
}
