//! Reading Parquet files batch by batch, only the columns a query needs.

use std::fs::File;
use std::sync::Arc;

use datafusion_common::arrow::compute::{cast_with_options, CastOptions};
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use weir_runtime::{Result, RuntimeError, Source};

use crate::options::FileOptions;

/// A Parquet file read in batches. Columns are matched to the declared ones by name (ignoring
/// case) and cast to the declared types; a value that cannot be cast is an error.
pub struct ParquetSource {
    reader: ParquetRecordBatchReader,
    display: String,
    schema: SchemaRef,
    /// For each declared column, its position in the batches the reader returns.
    positions: Vec<usize>,
    /// Rows returned so far.
    rows: u64,
    /// To open the file again at a checkpoint's row.
    reopen: Reopen,
}

struct Reopen {
    options: FileOptions,
    batch_size: usize,
}

impl ParquetSource {
    /// Open the file of `options` for the columns of `schema`.
    pub fn open(options: &FileOptions, schema: SchemaRef, batch_size: usize) -> Result<Self> {
        Self::open_from(options, schema, batch_size, 0)
    }

    /// Open the file, skipping its first `skip` rows.
    fn open_from(options: &FileOptions, schema: SchemaRef, batch_size: usize, skip: u64) -> Result<Self> {
        let display = options.display();
        let err = |e: &dyn std::fmt::Display| RuntimeError::Source(format!("{display}: {e}"));
        let Some(path) = &options.path else {
            return Err(RuntimeError::Source("parquet can only be read from a file".into()));
        };
        let file = File::open(path).map_err(|e| err(&e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(&e))?;
        let file_schema = Arc::clone(builder.schema());
        let mut indices = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let Some(i) = file_schema.fields().iter().position(|f| f.name().eq_ignore_ascii_case(field.name())) else {
                let names: Vec<&str> = file_schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(err(&format!("the file has no column '{}' (it has: {})", field.name(), names.join(", "))));
            };
            indices.push(i);
        }
        let mut roots = indices.clone();
        roots.sort_unstable();
        roots.dedup();
        let positions = indices.iter().map(|i| roots.iter().position(|r| r == i).unwrap_or_default()).collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let total = builder.metadata().file_metadata().num_rows().max(0) as u64;
        if skip > total {
            return Err(err(&format!(
                "the checkpoint read {skip} rows, but the file now has {total} (was it replaced?)"
            )));
        }
        let reader = builder
            .with_projection(mask)
            .with_batch_size(batch_size.max(1))
            .with_offset(skip as usize)
            .build()
            .map_err(|e| err(&e))?;
        let reopen = Reopen { options: options.clone(), batch_size };
        Ok(Self { reader, display, schema, positions, rows: skip, reopen })
    }
}

impl Source for ParquetSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let Some(batch) = self.reader.next() else {
            return Ok(None);
        };
        let batch = batch.map_err(|e| RuntimeError::Source(format!("{}: {e}", self.display)))?;
        let options = CastOptions { safe: false, ..CastOptions::default() };
        let mut columns = Vec::with_capacity(self.positions.len());
        for (field, &p) in self.schema.fields().iter().zip(&self.positions) {
            let column = batch.column(p);
            if column.data_type() == field.data_type() {
                columns.push(Arc::clone(column));
            } else {
                columns.push(cast_with_options(column, field.data_type(), &options).map_err(|e| {
                    RuntimeError::Source(format!(
                        "{}: column '{}' is {} in the file and cannot be read as {}: {e}",
                        self.display,
                        field.name(),
                        column.data_type(),
                        weir_plan::sql_type_name(field.data_type())
                    ))
                })?);
            }
        }
        for (field, column) in self.schema.fields().iter().zip(&columns) {
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(RuntimeError::Source(format!(
                    "{}: column '{}' is NOT NULL but the file has NULLs in it",
                    self.display,
                    field.name()
                )));
            }
        }
        self.rows += batch.num_rows() as u64;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(Some(RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?))
    }

    /// Rows read so far.
    fn position(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "rows": self.rows }))
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        #[derive(serde::Deserialize)]
        struct Rows {
            rows: u64,
        }
        let p: Rows = weir_runtime::checkpoint::from_json(position, &self.display)?;
        let (options, batch_size) = (self.reopen.options.clone(), self.reopen.batch_size);
        *self = Self::open_from(&options, Arc::clone(&self.schema), batch_size, p.rows)?;
        Ok(())
    }
}
