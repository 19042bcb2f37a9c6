//! Reading Parquet files batch by batch, only the columns a query needs; a large file can be
//! read in splits of consecutive row groups ([`row_group_splits`]), one per parallel instance.

use std::fs::File;
use std::path::Path;
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
    /// The row groups read (all when `None`).
    groups: Option<Vec<usize>>,
}

/// `n` runs of consecutive row groups of the Parquet file at `path`, each with about its share
/// of the file's bytes, or `None` when the file has fewer than `n` row groups or fewer than
/// `min` bytes per run. The runs depend only on the file and `n`, so a checkpoint's position in
/// run `k` means the same rows when the file is opened again in `n` runs (what
/// [`most_row_group_runs`] returns for the number of runs it picks).
#[cfg(test)]
fn row_group_splits(path: &Path, n: usize, min: u64) -> std::result::Result<Option<Vec<Vec<usize>>>, String> {
    let (len, sizes) = row_group_sizes(path)?;
    if n < 2 || sizes.len() < n || len < min.saturating_mul(n as u64) {
        return Ok(None);
    }
    Ok(Some(runs(&sizes, n)))
}

/// The most runs, up to `n`, of consecutive row groups of about equal bytes that the Parquet
/// file at `path` can be read in, each with a row group and `min` bytes or more (`None` under
/// two). The runs depend only on the file and their number, so a checkpoint's position in run
/// `k` means the same rows when the file is opened again in as many runs.
pub fn most_row_group_runs(path: &Path, n: usize, min: u64) -> std::result::Result<Option<Vec<Vec<usize>>>, String> {
    let (len, sizes) = row_group_sizes(path)?;
    let k = n.min(sizes.len()).min(len.checked_div(min).unwrap_or(u64::MAX).min(usize::MAX as u64) as usize);
    Ok((k >= 2).then(|| runs(&sizes, k)))
}

/// The file's length and the compressed bytes of each of its row groups (from its footer).
fn row_group_sizes(path: &Path) -> std::result::Result<(u64, Vec<u64>), String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = File::open(path).map_err(|e| fail(&e))?;
    let len = file.metadata().map_err(|e| fail(&e))?.len();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fail(&e))?;
    Ok((len, builder.metadata().row_groups().iter().map(|g| g.compressed_size().max(1) as u64).collect()))
}

/// `sizes` (at least `n` row groups) cut into `n` runs of consecutive groups of about equal bytes.
fn runs(sizes: &[u64], n: usize) -> Vec<Vec<usize>> {
    let total: u64 = sizes.iter().sum();
    // run j starts at the first group whose bytes before it reach j/n of the total, and every
    // run keeps at least one group
    let mut starts = vec![0usize];
    let mut before = 0u64;
    let mut g = 0usize;
    for j in 1..n {
        let target = total as u128 * j as u128 / n as u128;
        while g < sizes.len() && (before as u128) < target {
            before += sizes[g];
            g += 1;
        }
        let lowest = starts[j - 1] + 1;
        let highest = sizes.len() - (n - j);
        let start = g.clamp(lowest, highest);
        starts.push(start);
    }
    starts.push(sizes.len());
    starts.windows(2).map(|w| (w[0]..w[1]).collect()).collect()
}

impl ParquetSource {
    /// Open the file of `options` for the columns of `schema`.
    pub fn open(options: &FileOptions, schema: SchemaRef, batch_size: usize) -> Result<Self> {
        Self::open_from(options, schema, batch_size, None, 0)
    }

    /// Open the row groups `groups` of the file (one of the splits `row_group_splits` makes).
    pub fn open_row_groups(
        options: &FileOptions,
        schema: SchemaRef,
        batch_size: usize,
        groups: Vec<usize>,
    ) -> Result<Self> {
        Self::open_from(options, schema, batch_size, Some(groups), 0)
    }

    /// Open the file (its row groups `groups`, or all), skipping the first `skip` rows read.
    fn open_from(
        options: &FileOptions,
        schema: SchemaRef,
        batch_size: usize,
        groups: Option<Vec<usize>>,
        skip: u64,
    ) -> Result<Self> {
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
        let metadata = builder.metadata();
        let total = match &groups {
            Some(groups) => {
                let row_groups = metadata.row_groups();
                let mut total = 0u64;
                for &g in groups {
                    let Some(group) = row_groups.get(g) else {
                        return Err(err(&format!(
                            "the file has {} row groups, not the {} it was split into (was it replaced?)",
                            row_groups.len(),
                            g + 1
                        )));
                    };
                    total += group.num_rows().max(0) as u64;
                }
                total
            }
            None => metadata.file_metadata().num_rows().max(0) as u64,
        };
        if skip > total {
            return Err(err(&format!(
                "the checkpoint read {skip} rows, but the file now has {total} (was it replaced?)"
            )));
        }
        let builder = match &groups {
            Some(groups) => builder.with_row_groups(groups.clone()),
            None => builder,
        };
        let reader = builder
            .with_projection(mask)
            .with_batch_size(batch_size.max(1))
            .with_offset(skip as usize)
            .build()
            .map_err(|e| err(&e))?;
        let reopen = Reopen { options: options.clone(), batch_size, groups };
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

    /// Rows read so far (of its row groups, for a split).
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
        let groups = self.reopen.groups.take();
        *self = Self::open_from(&options, Arc::clone(&self.schema), batch_size, groups, p.rows)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_common::arrow::array::{AsArray, Int64Array};
    use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    /// A file of `groups` row groups of 10 rows each, the values 0, 1, 2, …; with `big` rows
    /// in group 0 when given (an uneven file).
    fn file(dir: &Path, groups: usize, big: Option<usize>) -> std::path::PathBuf {
        let path = dir.join("x.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let props = parquet::file::properties::WriterProperties::builder().build();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), Arc::clone(&schema), Some(props))
                .unwrap();
        let mut next = 0i64;
        for g in 0..groups {
            let rows = if g == 0 { big.unwrap_or(10) } else { 10 };
            for _ in 0..rows.div_ceil(10) {
                let values = Int64Array::from_iter_values(next..next + 10);
                next += 10;
                w.write(&RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(values)]).unwrap()).unwrap();
            }
            w.flush().unwrap(); // the row group ends here
        }
        w.close().unwrap();
        path
    }

    fn options(path: &Path) -> FileOptions {
        FileOptions {
            path: Some(path.to_path_buf()),
            format: crate::FileFormat::Parquet,
            bad_rows: crate::options::BadRowPolicy::Fail,
            delimiter: b',',
            monitor: None,
            only: None,
        }
    }

    fn values(source: &mut ParquetSource) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some(b) = source.next_batch().unwrap() {
            out.extend(b.column(0).as_primitive::<Int64Type>().values().iter().copied());
        }
        out
    }

    #[test]
    fn row_groups_are_cut_into_runs_of_about_equal_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let even = file(dir.path(), 7, None);
        let runs = row_group_splits(&even, 3, 0).unwrap().unwrap();
        assert_eq!(runs, vec![vec![0, 1, 2], vec![3, 4], vec![5, 6]]);
        assert_eq!(row_group_splits(&even, 7, 0).unwrap().unwrap().len(), 7);
        assert_eq!(row_group_splits(&even, 8, 0).unwrap(), None, "fewer row groups than splits");
        assert_eq!(row_group_splits(&even, 2, 1 << 30).unwrap(), None, "too small");
        // a first group as large as all the others: every run still gets a group
        let uneven = file(dir.path(), 4, Some(1000));
        let runs = row_group_splits(&uneven, 3, 0).unwrap().unwrap();
        assert_eq!(runs, vec![vec![0], vec![1], vec![2, 3]]);
    }

    #[test]
    fn runs_read_every_row_once_and_resume_where_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), 9, None);
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let runs = row_group_splits(&path, 4, 0).unwrap().unwrap();
        let mut all = Vec::new();
        for groups in &runs {
            let mut s =
                ParquetSource::open_row_groups(&options(&path), Arc::clone(&schema), 4, groups.clone()).unwrap();
            let first = s.next_batch().unwrap().unwrap();
            let position = s.position().unwrap();
            let rest = values(&mut s);
            // a new reader of the same run, from the position after the first batch
            let mut again =
                ParquetSource::open_row_groups(&options(&path), Arc::clone(&schema), 4, groups.clone()).unwrap();
            again.seek(&position).unwrap();
            assert_eq!(values(&mut again), rest, "run {groups:?} resumed");
            all.extend(first.column(0).as_primitive::<Int64Type>().values().iter().copied());
            all.extend(rest);
        }
        assert_eq!(all, (0..90).collect::<Vec<i64>>());
        let mut whole = ParquetSource::open(&options(&path), schema, 4).unwrap();
        assert_eq!(values(&mut whole), all);
    }
}
