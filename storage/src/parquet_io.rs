//! Encoding and decoding the Parquet files of the layout.
//!
//! Files are encoded in memory (bounded by the rows-per-file limit of the writer), hashed,
//! and put in one request, or, for prediction files of unbounded size, uploaded in pieces as
//! they are encoded; readers fetch a whole file, verify its checksum, then decode it
//! batch by batch. Parquet is written with zstd and column statistics so any reader (DuckDB,
//! Polars, pandas, Spark) can prune by them, except on string columns that are out of order,
//! where they would prune nothing; ascending numbers are delta-encoded.

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::types::is_temporal;

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Dictionary page size past which a column chunk is written plain.
pub const DICTIONARY_PAGE_BYTES: usize = 128 * 1024;
/// Rows per batch when decoding.
pub const READ_BATCH_ROWS: usize = 64 * 1024;

/// The writer settings every Parquet file of the layout starts from.
fn base_properties() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("fti storage {}", env!("CARGO_PKG_VERSION")))
        // A column whose values in a row group do not fit in 128 KiB of dictionary (a row
        // number, a time stamp) falls back to plain encoding early: encoding it through a
        // dictionary costs a hash per value and, after zstd, gives larger files (flights
        // labels: 24.3 -> 19.2 MB, and 3% less CPU for the feature run, than the 1 MiB default).
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
        // Values go to a column's encoder 8192 at a time, not 1024: an eighth of the
        // per-call work (level encoding, page size checks), and pages still close within one
        // such call of their size limit (flights labels: about 3% less time, same bytes).
        .set_write_batch_size(WRITE_BATCH_VALUES)
}

/// Values handed to a column's encoder per call.
pub const WRITE_BATCH_VALUES: usize = 8 * 1024;

/// A fixed-width column whose values come in runs at least this long on average is written
/// plain: zstd folds the repeats, where a dictionary would hash every value first.
pub const PLAIN_RUN_ROWS: usize = 64;

/// The writer settings of a file of `schema` whose first batch is `first`. Columns are
/// written for the order they arrive in:
/// - a number, date or time stamp column whose values come in runs of [`PLAIN_RUN_ROWS`] or
///   more on average (a day, an hour of day, a constant) is written plain, without a
///   dictionary (flights labels: the hour, day of week and date columns encode in half the
///   time, to files of the same size);
/// - otherwise, a signed integer, date or time stamp column in ascending order, without nulls (a row
///   number, an event time), is delta-encoded without a dictionary: its deltas pack into a
///   few bits, where a dictionary hashes every value only to be dropped once it fills
///   (flights labels: 19.6 -> 14.7 MB, 15% less encoding time);
/// - a string column in which the first batch goes down somewhere gets no statistics (null
///   counts included): its range spans nearly every value in every row group, prunes
///   nothing, and costs a string comparison per value (the other 10% of the labels'
///   encoding time). Sorted keys, and columns the batch is too small to judge, keep them.
///
/// The first batch stands for the file; a file that is not ordered after all is still
/// valid and read the same, only less compact.
fn writer_properties(schema: &SchemaRef, first: &RecordBatch) -> WriterProperties {
    let mut builder = base_properties();
    for (field, column) in schema.fields().iter().zip(first.columns()) {
        let path = || ColumnPath::from(field.name().as_str());
        let data_type = field.data_type();
        let fixed_width = data_type.is_numeric() || is_temporal(data_type);
        let delta_encodable = data_type.is_signed_integer() || is_temporal(data_type);
        if fixed_width && in_long_runs(column) {
            builder = builder.set_column_dictionary_enabled(path(), false);
        } else if delta_encodable
            && column.null_count() == 0
            && column.len() > 1
            && !descends(column)
        {
            builder = builder
                .set_column_dictionary_enabled(path(), false)
                .set_column_encoding(path(), Encoding::DELTA_BINARY_PACKED);
        } else if data_type.is_string() && descends(column) {
            builder = builder.set_column_statistics_enabled(path(), EnabledStatistics::None);
        }
    }
    builder.build()
}

/// Whether the values of `column` come in runs of equal values (nulls equal to each other) of
/// at least [`PLAIN_RUN_ROWS`] on average.
fn in_long_runs(column: &ArrayRef) -> bool {
    column.len() >= PLAIN_RUN_ROWS
        && arrow::compute::partition(std::slice::from_ref(column))
            .is_ok_and(|runs| runs.len() * PLAIN_RUN_ROWS <= column.len())
}

/// Whether some value of `column` is less than the one before it (pairs with a null are
/// skipped; a type without an order never descends).
fn descends(column: &ArrayRef) -> bool {
    let n = column.len();
    if n < 2 {
        return false;
    }
    arrow::compute::kernels::cmp::lt(&column.slice(1, n - 1), &column.slice(0, n - 1))
        .is_ok_and(|descents| descents.true_count() > 0)
}

/// An in-memory Parquet encoder for one file. The Parquet writer is made at the first
/// non-empty batch, whose order chooses the columns' encodings.
pub struct ParquetEncoder {
    schema: SchemaRef,
    writer: Option<ArrowWriter<Vec<u8>>>,
    rows: u64,
    what: String,
}

impl ParquetEncoder {
    pub fn new(schema: SchemaRef, what: impl Into<String>) -> Self {
        ParquetEncoder {
            schema,
            writer: None,
            rows: 0,
            what: what.into(),
        }
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let err = |source| Error::Parquet {
            path: self.what.clone(),
            source,
        };
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None if batch.num_rows() == 0 => return Ok(()),
            None => {
                let properties = writer_properties(&self.schema, batch);
                let writer =
                    ArrowWriter::try_new(Vec::new(), self.schema.clone(), Some(properties))
                        .map_err(err)?;
                self.writer.insert(writer)
            }
        };
        self.rows += batch.num_rows() as u64;
        writer.write(batch).map_err(err)
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Takes the bytes encoded so far (whole pages and row groups; the encoder keeps its own
    /// offsets), so a large file can be uploaded while it is written: the concatenation of
    /// every `take_encoded` and the final [`ParquetEncoder::finish`] is the file.
    pub fn take_encoded(&mut self) -> Bytes {
        match &mut self.writer {
            Some(writer) => Bytes::from(std::mem::take(writer.inner_mut())),
            None => Bytes::new(),
        }
    }

    /// Finishes the file and returns its bytes (those not taken yet).
    pub fn finish(self) -> Result<Bytes> {
        let err = |source| Error::Parquet {
            path: self.what.clone(),
            source,
        };
        let writer = match self.writer {
            Some(writer) => writer,
            // No rows: a file of the schema alone.
            None => ArrowWriter::try_new(Vec::new(), self.schema, Some(base_properties().build()))
                .map_err(err)?,
        };
        // `into_inner` flushes the last row group and writes the footer.
        Ok(Bytes::from(writer.into_inner().map_err(err)?))
    }
}

/// Encodes `batches` as one Parquet file.
pub fn encode(schema: SchemaRef, batches: &[RecordBatch], what: &str) -> Result<Bytes> {
    let mut encoder = ParquetEncoder::new(schema, what);
    for batch in batches {
        encoder.write(batch)?;
    }
    encoder.finish()
}

/// Decodes a Parquet file, keeping only `columns` (all if `None`), batch by batch.
pub fn decode(
    bytes: Bytes,
    columns: Option<&[String]>,
    what: &str,
) -> Result<ParquetRecordBatchReader> {
    let err = |source| Error::Parquet {
        path: what.to_string(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(err)?;
    let builder = match columns {
        None => builder,
        Some(columns) => {
            let schema = builder.schema().clone();
            let mut indices = Vec::with_capacity(columns.len());
            for column in columns {
                let index = schema.index_of(column).map_err(|_| Error::SchemaMismatch {
                    table: what.to_string(),
                    reason: format!("no column {column:?} in the file"),
                })?;
                indices.push(index);
            }
            let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
            builder.with_projection(mask)
        }
    };
    builder
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(err)
}

/// Decodes a whole Parquet file into memory.
pub fn decode_all(
    bytes: Bytes,
    columns: Option<&[String]>,
    what: &str,
) -> Result<Vec<RecordBatch>> {
    decode(bytes, columns, what)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Arrow {
            path: what.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use parquet::file::metadata::ColumnChunkMetaData;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    fn batch(
        ids: Vec<i64>,
        times: Vec<i64>,
        keys: Vec<&str>,
        names: Vec<Option<&str>>,
    ) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("key", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(TimestampMicrosecondArray::from(times)),
                Arc::new(StringArray::from(keys)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn files_read_back_the_rows_written_whatever_the_order_of_later_batches() {
        // The first batch is in order (delta encoding, no statistics for `name`); the second
        // is not, and has a null: the file must still hold exactly the rows.
        let first = batch(
            (0..1000).collect(),
            (0..1000).map(|i| 1_000_000 * (i / 3)).collect(),
            (0..1000).map(|i| if i < 500 { "a" } else { "b" }).collect(),
            (0..1000).map(|i| Some(["x", "z", "y"][i % 3])).collect(),
        );
        let second = batch(
            vec![5, -7, i64::MAX, i64::MIN, 0],
            vec![9, 3, 3, i64::MIN, i64::MAX],
            vec!["c", "a", "b", "", "zz"],
            vec![None, Some("q"), Some(""), Some("é"), Some("a")],
        );
        let bytes = encode(first.schema(), &[first.clone(), second.clone()], "t").unwrap();
        let read = decode_all(bytes, None, "t").unwrap();
        let read = arrow::compute::concat_batches(&first.schema(), &read).unwrap();
        let written = arrow::compute::concat_batches(&first.schema(), &[first, second]).unwrap();
        assert_eq!(read, written);
    }

    #[test]
    fn ordered_columns_are_delta_encoded_and_only_unordered_strings_lose_statistics() {
        let rows = 5000;
        let ordered = batch(
            (0..rows).collect(),
            (0..rows).map(|i| 60_000_000 * i).collect(),
            (0..rows)
                .map(|i| if i < rows / 2 { "ABQ" } else { "LAX" })
                .collect(),
            (0..rows)
                .map(|i| Some(["SFO", "JFK", "ORD"][i as usize % 3]))
                .collect(),
        );
        let bytes = encode(ordered.schema(), &[ordered], "t").unwrap();
        let column = |name: &str| first_chunk(&bytes, name);
        for name in ["id", "time"] {
            let encodings: Vec<_> = column(name).encodings().collect();
            assert!(
                encodings.contains(&Encoding::DELTA_BINARY_PACKED),
                "{name}: {encodings:?}"
            );
            assert!(column(name).dictionary_page_offset().is_none(), "{name}");
            assert!(
                column(name).statistics().unwrap().min_bytes_opt().is_some(),
                "{name}"
            );
        }
        // The sorted string keeps min/max for readers to prune on; the unordered one has none.
        let key = column("key");
        let key = key.statistics().unwrap();
        assert_eq!(key.min_bytes_opt(), Some(&b"ABQ"[..]));
        assert_eq!(key.max_bytes_opt(), Some(&b"LAX"[..]));
        assert!(column("name").statistics().is_none());
    }

    #[test]
    fn columns_in_long_runs_are_written_plain_and_read_back() {
        // `id` repeats in runs of exactly PLAIN_RUN_ROWS (descending between them), `time`
        // ascends in runs one row shorter: only `id` is plain, `time` stays delta-encoded.
        let rows = 20 * PLAIN_RUN_ROWS as i64;
        let runs = batch(
            (0..rows).map(|i| -(i / PLAIN_RUN_ROWS as i64)).collect(),
            (0..rows).map(|i| i / (PLAIN_RUN_ROWS as i64 - 1)).collect(),
            (0..rows).map(|_| "ABQ").collect(),
            (0..rows).map(|_| None).collect(),
        );
        let bytes = encode(runs.schema(), std::slice::from_ref(&runs), "t").unwrap();
        let column = |name: &str| first_chunk(&bytes, name);
        let id = column("id");
        assert!(id.dictionary_page_offset().is_none());
        assert!(id.encodings().all(|e| e != Encoding::DELTA_BINARY_PACKED));
        assert!(id.statistics().unwrap().min_bytes_opt().is_some());
        let time: Vec<_> = column("time").encodings().collect();
        assert!(time.contains(&Encoding::DELTA_BINARY_PACKED), "{time:?}");
        let read = decode_all(bytes, None, "t").unwrap();
        assert_eq!(
            arrow::compute::concat_batches(&runs.schema(), &read).unwrap(),
            runs
        );
    }

    /// The chunk of column `name` in the first row group of the file `bytes`.
    fn first_chunk(bytes: &Bytes, name: &str) -> ColumnChunkMetaData {
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let row_group = reader.metadata().row_group(0);
        let chunk = row_group
            .columns()
            .iter()
            .find(|c| c.column_path().string() == name);
        chunk.unwrap().clone()
    }

    /// Encodings and statistics of each column chunk of the file's first row group.
    fn first_row_group(bytes: Bytes) -> Vec<(String, Vec<Encoding>, bool)> {
        let reader = SerializedFileReader::new(bytes).unwrap();
        let row_group = reader.metadata().row_group(0);
        row_group
            .columns()
            .iter()
            .map(|c| {
                let path = c.column_path().string();
                (path, c.encodings().collect(), c.statistics().is_some())
            })
            .collect()
    }

    #[test]
    fn the_first_non_empty_batch_decides_and_a_small_one_keeps_the_defaults() {
        // An empty batch, then one row: too little to judge, so statistics stay on and
        // nothing is delta-encoded.
        let one = batch(vec![7], vec![7], vec!["b"], vec![Some("b")]);
        let mut encoder = ParquetEncoder::new(one.schema(), "t");
        encoder.write(&one.slice(0, 0)).unwrap();
        encoder.write(&one).unwrap();
        for (path, encodings, statistics) in first_row_group(encoder.finish().unwrap()) {
            assert!(statistics, "{path}");
            assert!(
                !encodings.contains(&Encoding::DELTA_BINARY_PACKED),
                "{path}"
            );
        }
        // A first batch out of order, then ordered ones: still no delta encoding.
        let unordered = batch(vec![3, 1], vec![3, 1], vec!["b", "a"], vec![None, None]);
        let ordered = batch(
            vec![4, 5],
            vec![4, 5],
            vec!["c", "d"],
            vec![Some("c"), None],
        );
        let bytes = encode(unordered.schema(), &[unordered, ordered], "t").unwrap();
        for (path, encodings, statistics) in first_row_group(bytes) {
            assert!(
                !encodings.contains(&Encoding::DELTA_BINARY_PACKED),
                "{path}"
            );
            // `key` went down, so it lost its statistics; `name` (all null) did not.
            assert_eq!(statistics, path != "key", "{path}");
        }
    }

    #[test]
    fn pieces_taken_while_encoding_make_the_file() {
        // More than a row group, so whole row groups are taken before the file is finished.
        // Names that do not compress to nothing, so a row group passes the writer's buffer.
        let rows = ROW_GROUP_ROWS as i64 + 1000;
        let names: Vec<String> = (0..rows)
            .map(|i| (i * 7919 % 100_003).to_string())
            .collect();
        let all = batch(
            (0..rows).collect(),
            (0..rows).map(|i| i / 7).collect(),
            vec!["k"; rows as usize],
            names.iter().map(|n| Some(n.as_str())).collect(),
        );
        let mut encoder = ParquetEncoder::new(all.schema(), "t");
        let mut file = encoder.take_encoded().to_vec();
        assert!(file.is_empty(), "nothing is encoded before the first batch");
        let mut pieces = 0;
        for start in (0..rows as usize).step_by(20_000) {
            let len = 20_000.min(rows as usize - start);
            encoder.write(&all.slice(start, len)).unwrap();
            let piece = encoder.take_encoded();
            pieces += usize::from(piece.len() > 4);
            eprintln!("piece {}", piece.len());
            file.extend_from_slice(&piece);
        }
        assert!(pieces > 0, "a finished row group is taken before the end");
        file.extend_from_slice(&encoder.finish().unwrap());
        let read = decode_all(Bytes::from(file), None, "t").unwrap();
        let read = arrow::compute::concat_batches(&all.schema(), &read).unwrap();
        assert_eq!(read, all);
    }

    #[test]
    fn an_encoder_without_rows_gives_a_file_of_the_schema() {
        let schema = batch(vec![], vec![], vec![], vec![]).schema();
        let bytes = ParquetEncoder::new(schema.clone(), "t").finish().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        assert_eq!(reader.schema(), &schema);
        assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    }
}
