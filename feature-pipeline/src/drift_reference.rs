//! What a run's `drift` rules compare its rows with: the same rows of the table's latest
//! version.
//!
//! A commit's stored statistics cover the rows it wrote, not the table: a range run's cover
//! its range. So a range run is compared with the latest version's rows in that range, and a
//! full run after a range run with the whole latest version. Where the latest commit wrote
//! exactly those rows (a full refresh before a full run, the same range before a range run),
//! its stored statistics are the reference; otherwise the drift columns of the latest version
//! are read back (only the rows of the range, `TableSnapshot::batches_in_range`) and profiled.

use futures::TryStreamExt;
use storage::{Name, Operation, Store, TableCommit, TableStatistics, VersionSpec};

use crate::error::Result;

/// The statistics `columns` are compared with in a run over `range` (microseconds, `None` for
/// a full run) of `table` with `history`; `None` when the latest version has no such rows.
pub async fn reference(
    store: &Store,
    table: &Name,
    history: &[TableCommit],
    range: Option<(i64, i64)>,
    columns: &[String],
) -> Result<Option<TableStatistics>> {
    let Some(latest) = history.last() else {
        return Ok(None);
    };
    let same_rows = match (range, &latest.operation) {
        (None, Operation::Overwrite) => true,
        (Some((from, to)), Operation::ReplaceRange { from_us, to_us }) => {
            (from, to) == (*from_us, *to_us)
        }
        _ => false,
    };
    if same_rows || columns.is_empty() {
        return Ok(latest.statistics.clone());
    }
    let snapshot = store
        .table(table, VersionSpec::Version(latest.version))
        .await?;
    let definition = snapshot.definition();
    let profiled: Vec<String> = columns
        .iter()
        .filter(|c| definition.column(c).is_some())
        .cloned()
        .collect();
    if profiled.is_empty() {
        return Ok(None);
    }
    let mut batches = match range {
        Some((from, to)) => snapshot.batches_in_range(store, &profiled, from, to),
        None => snapshot.batches(store, Some(profiled.clone())),
    };
    let mut profiler: Option<fti_stats::TableProfiler> = None;
    while let Some(batch) = batches.try_next().await? {
        // Columns come in the file's order (and a range adds the event time): found by name.
        let schema = batch.schema();
        let projected = profiled
            .iter()
            .map(|c| schema.index_of(c))
            .collect::<std::result::Result<Vec<_>, _>>()
            .and_then(|indices| batch.project(&indices))
            .map_err(|source| storage::Error::Arrow {
                path: format!("tables/{table}"),
                source,
            })?;
        profiler
            .get_or_insert_with(|| fti_stats::TableProfiler::new(&projected.schema()))
            .update(&projected);
    }
    Ok(profiler
        .map(|p| p.finish().0)
        .filter(|stats| stats.num_rows > 0))
}
