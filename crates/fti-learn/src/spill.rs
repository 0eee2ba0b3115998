//! A table's rows split by entity-key hash into local Arrow IPC files, so that a scoring run in
//! several passes reads the table from the store once and each pass reads only its partition.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow::array::Array;
use arrow::datatypes::SchemaRef;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use futures::TryStreamExt;
use storage::{Store, TableSnapshot};

use crate::error::{Error, Result};
use crate::pit::{
    AsOf, FeatureIndex, LatestRows, RowFilter, eligible, key_converter, key_partition,
    projected_schema, reorder, take_rows, wanted_columns,
};

/// The partition files of one table version.
pub struct Partitions {
    projected: SchemaRef,
    files: Vec<PathBuf>,
    /// Rows written (those that can be current at the time given).
    pub rows: u64,
}

fn spill_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Spill {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl Partitions {
    /// Reads `columns` of `snapshot` once and writes the rows that can be current at `at`
    /// into `count` files `<name>-<p>.arrow` under `dir`, row `r` into file
    /// [`key_partition`]`(key(r), count)`. `name` must be unique within `dir`.
    #[allow(clippy::too_many_arguments)]
    pub async fn write(
        store: &Store,
        name: &str,
        snapshot: &TableSnapshot,
        columns: &[String],
        at: i64,
        as_of: AsOf,
        count: u64,
        dir: &Path,
    ) -> Result<Partitions> {
        let wanted = wanted_columns(snapshot, columns)?;
        let projected = projected_schema(snapshot, &wanted)?;
        let n_keys = snapshot.definition().entity_keys.len();
        let converter = key_converter(&projected, n_keys)?;
        let files: Vec<PathBuf> = (0..count)
            .map(|p| dir.join(format!("{name}-{p:05}.arrow")))
            .collect();
        let mut writers = files
            .iter()
            .map(|path| {
                let file = File::create(path).map_err(|e| spill_err(path, e))?;
                FileWriter::try_new(BufWriter::new(file), &projected)
                    .map_err(|e| spill_err(path, e))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut rows = 0u64;
        let mut stream = snapshot.batches(store, Some(wanted.clone()));
        let mut parts: Vec<Vec<u32>> = vec![Vec::new(); count as usize];
        while let Some(batch) = stream.try_next().await? {
            let batch = reorder(&projected, &wanted, &batch)?;
            let keys = converter.convert_columns(&batch.columns()[..n_keys])?;
            let times = storage::table::to_micros(batch.column(n_keys))?;
            for (i, key) in keys.iter().enumerate() {
                if !times.is_null(i) && eligible(times.value(i), at, as_of) {
                    parts[key_partition(key.as_ref(), count) as usize].push(i as u32);
                }
            }
            for (p, indices) in parts.iter_mut().enumerate() {
                if indices.is_empty() {
                    continue;
                }
                rows += indices.len() as u64;
                writers[p]
                    .write(&take_rows(&batch, indices)?)
                    .map_err(|e| spill_err(&files[p], e))?;
                indices.clear();
            }
        }
        for (writer, path) in writers.iter_mut().zip(&files) {
            writer.finish().map_err(|e| spill_err(path, e))?;
        }
        Ok(Partitions {
            projected,
            files,
            rows,
        })
    }

    /// Each entity's row current at `at` in partition `index`, among the entities `filter`
    /// keeps: what [`FeatureIndex::load_latest`] gives for those entities.
    pub fn load_latest(
        &self,
        snapshot: &TableSnapshot,
        index: u64,
        at: i64,
        as_of: AsOf,
        filter: &RowFilter,
    ) -> Result<FeatureIndex> {
        let path = &self.files[index as usize];
        let file = File::open(path).map_err(|e| spill_err(path, e))?;
        let reader =
            FileReader::try_new(BufReader::new(file), None).map_err(|e| spill_err(path, e))?;
        let mut latest = LatestRows::new(snapshot, self.projected.clone(), at, as_of, filter)?;
        for batch in reader {
            latest.push(&batch.map_err(|e| spill_err(path, e))?)?;
        }
        latest.finish(snapshot)
    }
}
