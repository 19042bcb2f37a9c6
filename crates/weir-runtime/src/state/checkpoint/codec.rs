//! State batches as Arrow IPC files, and their checksums.

use std::io::Cursor;

use datafusion_common::arrow::ipc::reader::FileReader;
use datafusion_common::arrow::ipc::writer::FileWriter;
use datafusion_common::arrow::record_batch::RecordBatch;

use crate::error::{Result, RuntimeError};

/// A batch as the bytes of an Arrow IPC file.
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    {
        let mut w = FileWriter::try_new(&mut bytes, batch.schema_ref())?;
        w.write(batch)?;
        w.finish()?;
    }
    Ok(bytes)
}

/// The batch of an Arrow IPC file written by [`encode_batch`]; `what` names it in errors.
pub fn decode_batch(bytes: &[u8], what: &str) -> Result<RecordBatch> {
    let bad = |e: &dyn std::fmt::Display| RuntimeError::Checkpoint(format!("{what} is not a valid state file: {e}"));
    let reader = FileReader::try_new(Cursor::new(bytes), None).map_err(|e| bad(&e))?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| bad(&e))?;
    match batches.len() {
        0 => Ok(RecordBatch::new_empty(schema)),
        1 => Ok(batches.into_iter().next().unwrap_or_else(|| RecordBatch::new_empty(schema))),
        _ => datafusion_common::arrow::compute::concat_batches(&schema, &batches).map_err(|e| bad(&e)),
    }
}

/// CRC-32 of a file's bytes.
pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::array::{Int64Array, StringArray};
    use datafusion_common::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn a_batch_survives_the_round_trip_and_a_truncated_file_is_an_error() {
        let schema =
            Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true), Field::new("v", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![Some("a"), None])), Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let bytes = encode_batch(&batch).unwrap();
        assert_eq!(decode_batch(&bytes, "x").unwrap(), batch);
        let err = decode_batch(&bytes[..bytes.len() / 2], "op-1-state.arrow").unwrap_err();
        assert!(err.to_string().contains("op-1-state.arrow is not a valid state file"), "{err}");
    }
}
