//! What a run's `drift` rules compare its rows with: the same rows of the table's latest
//! version.
//!
//! A commit's stored statistics cover the rows it wrote, not the table: a range run's cover
//! its range. So a range run is compared with the latest version's rows in that range, and a
//! full run after a range run with the whole latest version. Where the latest commit wrote
//! exactly those rows (a full refresh before a full run, the same range before a range run),
//! its stored statistics are the reference; otherwise the drift columns of the latest version
//! are read back (only the files that can hold rows of the range) and profiled.

use arrow::array::{BooleanArray, Int64Array, RecordBatch};
use arrow::compute::kernels::cmp;
use arrow::error::ArrowError;
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
    let mut snapshot = store
        .table(table, VersionSpec::Version(latest.version))
        .await?;
    let definition = snapshot.definition().clone();
    let profiled: Vec<String> = columns
        .iter()
        .filter(|c| definition.column(c).is_some())
        .cloned()
        .collect();
    if profiled.is_empty() {
        return Ok(None);
    }
    let mut read = profiled.clone();
    if let Some((from, to)) = range {
        snapshot.files.retain(|f| {
            f.min_event_time_us.is_none_or(|lo| lo < to)
                && f.max_event_time_us.is_none_or(|hi| hi >= from)
        });
        read.push(definition.event_time.clone());
    }
    let arrow_err = |source: ArrowError| storage::Error::Arrow {
        path: format!("tables/{table}"),
        source,
    };
    let mut batches = snapshot.batches(store, Some(read));
    let mut profiler: Option<fti_stats::TableProfiler> = None;
    while let Some(batch) = batches.try_next().await? {
        // Columns come in the file's order: found by name.
        let batch = match range {
            Some((from, to)) => {
                in_range(&batch, &definition.event_time, from, to).map_err(arrow_err)?
            }
            None => batch,
        };
        let schema = batch.schema();
        let indices = profiled
            .iter()
            .map(|c| schema.index_of(c))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(arrow_err)?;
        let batch = batch.project(&indices).map_err(arrow_err)?;
        profiler
            .get_or_insert_with(|| fti_stats::TableProfiler::new(&batch.schema()))
            .update(&batch);
    }
    Ok(profiler
        .map(|p| p.finish().0)
        .filter(|stats| stats.num_rows > 0))
}

/// The rows of `batch` whose event time (column `event_time`) is in `[from, to)` microseconds.
fn in_range(
    batch: &RecordBatch,
    event_time: &str,
    from: i64,
    to: i64,
) -> std::result::Result<RecordBatch, ArrowError> {
    let column = batch
        .column_by_name(event_time)
        .ok_or_else(|| ArrowError::SchemaError(format!("no event time column {event_time:?}")))?;
    let micros =
        storage::table::to_micros(column).map_err(|e| ArrowError::ComputeError(e.to_string()))?;
    let (lo, hi) = (Int64Array::new_scalar(from), Int64Array::new_scalar(to));
    let keep: BooleanArray =
        arrow::compute::and(&cmp::gt_eq(&micros, &lo)?, &cmp::lt(&micros, &hi)?)?;
    arrow::compute::filter_record_batch(batch, &keep)
}
