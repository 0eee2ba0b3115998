//! Encoding and decoding the Parquet files of the layout.
//!
//! Files are encoded in memory (bounded by the rows-per-file limit of the writer), hashed,
//! and put in one request, or, for prediction files of unbounded size, uploaded in pieces as
//! they are encoded; readers fetch a whole file, verify its checksum, then decode it
//! batch by batch. Parquet is written with zstd and column statistics so any reader (DuckDB,
//! Polars, pandas, Spark) can prune by them.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Dictionary page size past which a column chunk is written plain.
pub const DICTIONARY_PAGE_BYTES: usize = 128 * 1024;
/// Rows per batch when decoding.
pub const READ_BATCH_ROWS: usize = 64 * 1024;

/// The writer settings every Parquet file of the layout uses.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("fti storage {}", env!("CARGO_PKG_VERSION")))
        // A column whose values in a row group do not fit in 128 KiB of dictionary (a row
        // number, a time stamp) falls back to plain encoding early: encoding it through a
        // dictionary costs a hash per value and, after zstd, gives larger files (flights
        // labels: 24.3 -> 19.2 MB, and 3% less CPU for the feature run, than the 1 MiB default).
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
        .build()
}

/// An in-memory Parquet encoder for one file.
pub struct ParquetEncoder {
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
    what: String,
}

impl ParquetEncoder {
    pub fn new(schema: SchemaRef, what: impl Into<String>) -> Result<Self> {
        let what = what.into();
        let writer = ArrowWriter::try_new(Vec::new(), schema, Some(writer_properties())).map_err(
            |source| Error::Parquet {
                path: what.clone(),
                source,
            },
        )?;
        Ok(ParquetEncoder {
            writer,
            rows: 0,
            what,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch).map_err(|source| Error::Parquet {
            path: self.what.clone(),
            source,
        })
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Takes the bytes encoded so far (whole pages and row groups; the encoder keeps its own
    /// offsets), so a large file can be uploaded while it is written: the concatenation of
    /// every `take_encoded` and the final [`ParquetEncoder::finish`] is the file.
    pub fn take_encoded(&mut self) -> Bytes {
        Bytes::from(std::mem::take(self.writer.inner_mut()))
    }

    /// Finishes the file and returns its bytes (those not taken yet).
    pub fn finish(self) -> Result<Bytes> {
        // `into_inner` flushes the last row group and writes the footer.
        let bytes = self.writer.into_inner().map_err(|source| Error::Parquet {
            path: self.what.clone(),
            source,
        })?;
        Ok(Bytes::from(bytes))
    }
}

/// Encodes `batches` as one Parquet file.
pub fn encode(schema: SchemaRef, batches: &[RecordBatch], what: &str) -> Result<Bytes> {
    let mut encoder = ParquetEncoder::new(schema, what)?;
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
