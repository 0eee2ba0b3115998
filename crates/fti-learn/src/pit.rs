//! Point-in-time feature retrieval: for each label row, the latest feature row of the same
//! entity whose event time is at or before (or strictly before) the label's time, optionally
//! no older than a maximum age. Never a value from the label's future.
//!
//! The feature table is loaded once (only the needed columns) and indexed by entity key, with
//! each entity's rows sorted by event time; each lookup is a binary search. Memory grows with
//! the feature table's rows, not with labels x history.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::{cast, concat_batches, take};
use arrow::datatypes::SchemaRef;
use arrow::row::{OwnedRow, RowConverter, SortField};
use futures::TryStreamExt;
use storage::{Store, TableSnapshot};

use crate::error::{Error, Result};

/// How a label row is matched to feature rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsOf {
    /// Feature event time `<=` label time when true, `<` when false.
    pub inclusive: bool,
    /// Older matches count as missing (null), in microseconds.
    pub max_age_us: Option<i64>,
}

/// A feature table indexed by entity key for as-of lookups.
pub struct FeatureIndex {
    schema: SchemaRef,
    batch: RecordBatch,
    key_fields: Vec<SortField>,
    key_types: Vec<arrow::datatypes::DataType>,
    /// Entity key -> (event time µs, row), sorted by time.
    rows: HashMap<OwnedRow, Vec<(i64, u32)>>,
    pub table: String,
    pub version: u64,
}

impl FeatureIndex {
    /// Loads `columns` of a table version and indexes them by the table's entity keys.
    pub async fn load(
        store: &Store,
        snapshot: &TableSnapshot,
        columns: &[String],
    ) -> Result<FeatureIndex> {
        let def = snapshot.definition();
        let mut wanted: Vec<String> = def.entity_keys.clone();
        wanted.push(def.event_time.clone());
        for c in columns {
            if !wanted.contains(c) {
                wanted.push(c.clone());
            }
        }
        for c in &wanted {
            if def.column(c).is_none() {
                return Err(Error::MissingColumn {
                    column: format!("{}.{c}", snapshot.table),
                });
            }
        }
        let schema = snapshot.schema()?;
        let projected = std::sync::Arc::new(
            schema.project(
                &wanted
                    .iter()
                    .map(|c| schema.index_of(c))
                    .collect::<Result<Vec<_>, _>>()?,
            )?,
        );
        let batches: Vec<RecordBatch> = snapshot
            .batches(store, Some(wanted.clone()))
            .try_collect()
            .await?;
        // Columns come back in file order; reorder to `wanted`.
        let batches = batches
            .iter()
            .map(|b| {
                let cols = wanted
                    .iter()
                    .map(|c| {
                        b.column_by_name(c)
                            .cloned()
                            .expect("projected column present")
                    })
                    .collect();
                RecordBatch::try_new(projected.clone(), cols)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch = concat_batches(&projected, &batches)?;
        let n_keys = def.entity_keys.len();
        let key_types: Vec<arrow::datatypes::DataType> = (0..n_keys)
            .map(|i| projected.field(i).data_type().clone())
            .collect();
        let key_fields: Vec<SortField> = key_types.iter().cloned().map(SortField::new).collect();
        let converter = RowConverter::new(key_fields.clone())?;
        let keys = converter.convert_columns(&batch.columns()[..n_keys])?;
        let times = storage::table::to_micros(batch.column(n_keys))?;
        let mut rows: HashMap<OwnedRow, Vec<(i64, u32)>> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            rows.entry(key.owned())
                .or_default()
                .push((times.value(i), i as u32));
        }
        for entries in rows.values_mut() {
            entries.sort_unstable();
        }
        Ok(FeatureIndex {
            schema: projected,
            batch,
            key_fields,
            key_types,
            rows,
            table: snapshot.table.to_string(),
            version: snapshot.version,
        })
    }

    /// The data types of the entity key columns, in order.
    pub fn key_types(&self) -> Vec<arrow::datatypes::DataType> {
        self.key_types.clone()
    }

    /// For each label row, the matching feature row, if any. `keys` are the label's key
    /// columns (in the table's key order, cast to the table's key types if needed), `times`
    /// the label times in microseconds.
    pub fn lookup(
        &self,
        keys: &[ArrayRef],
        times: &Int64Array,
        as_of: AsOf,
    ) -> Result<Vec<Option<u32>>> {
        if keys.len() != self.key_fields.len() {
            return Err(Error::Join {
                key: self.table.clone(),
                message: format!(
                    "{} key columns given, the table has {}",
                    keys.len(),
                    self.key_fields.len()
                ),
            });
        }
        let keys: Vec<ArrayRef> = keys
            .iter()
            .zip(&self.key_types)
            .map(|(k, t)| {
                if k.data_type() == t {
                    Ok(k.clone())
                } else {
                    cast(k, t).map_err(|e| Error::Join {
                        key: self.table.clone(),
                        message: format!("cannot cast {} to {t}: {e}", k.data_type()),
                    })
                }
            })
            .collect::<Result<_>>()?;
        let converter = RowConverter::new(self.key_fields.clone())?;
        let rows = converter.convert_columns(&keys)?;
        let mut out = Vec::with_capacity(times.len());
        for (i, key) in rows.iter().enumerate() {
            if times.is_null(i) {
                out.push(None);
                continue;
            }
            let t = times.value(i);
            let found = self.rows.get(&key.owned()).and_then(|entries| {
                // Entries with time <= t (inclusive) or < t (strict).
                let n = if as_of.inclusive {
                    entries.partition_point(|&(et, _)| et <= t)
                } else {
                    entries.partition_point(|&(et, _)| et < t)
                };
                let (et, row) = *entries.get(n.checked_sub(1)?)?;
                match as_of.max_age_us {
                    Some(max_age) if t - et > max_age => None,
                    _ => Some(row),
                }
            });
            out.push(found);
        }
        Ok(out)
    }

    /// The values of `column` at the matched rows (null where there was no match).
    pub fn take(&self, column: &str, rows: &[Option<u32>]) -> Result<ArrayRef> {
        let index = self.schema.index_of(column)?;
        let indices = UInt32Array::from(rows.to_vec());
        Ok(take(self.batch.column(index), &indices, None)?)
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// Per entity, the row current at `at` (µs), entities in key order: the scoring spine.
    pub fn latest_rows(&self, at: i64, as_of: AsOf) -> Vec<u32> {
        let mut keys: Vec<&OwnedRow> = self.rows.keys().collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|key| {
                let entries = &self.rows[key];
                let n = if as_of.inclusive {
                    entries.partition_point(|&(et, _)| et <= at)
                } else {
                    entries.partition_point(|&(et, _)| et < at)
                };
                let (et, row) = *entries.get(n.checked_sub(1)?)?;
                match as_of.max_age_us {
                    Some(max_age) if at - et > max_age => None,
                    _ => Some(row),
                }
            })
            .collect()
    }

    /// The indexed columns at `rows`, as a batch.
    pub fn take_batch(&self, rows: &[u32]) -> Result<RecordBatch> {
        let indices = UInt32Array::from(rows.to_vec());
        let columns = self
            .batch
            .columns()
            .iter()
            .map(|c| take(c, &indices, None))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// One feature group to join onto label (or scoring) rows: the exact table version, the
/// columns wanted, and which label columns hold its entity keys.
pub struct JoinSource {
    pub snapshot: TableSnapshot,
    pub columns: Vec<String>,
    /// Label columns matching the table's entity keys, in key order.
    pub label_keys: Vec<String>,
    pub as_of: AsOf,
}

impl JoinSource {
    /// Maps the table's entity keys to label columns: `join` (feature key -> label column)
    /// where given, the same name otherwise.
    pub fn new(
        snapshot: TableSnapshot,
        columns: Vec<String>,
        join: &std::collections::BTreeMap<String, String>,
        as_of: AsOf,
    ) -> JoinSource {
        let label_keys = snapshot
            .definition()
            .entity_keys
            .iter()
            .map(|k| join.get(k).cloned().unwrap_or_else(|| k.clone()))
            .collect();
        JoinSource {
            snapshot,
            columns,
            label_keys,
            as_of,
        }
    }
}

/// Loads the index of every source (once per run; lookups are then per batch).
pub async fn load_sources(store: &Store, sources: &[JoinSource]) -> Result<Vec<FeatureIndex>> {
    let mut out = Vec::with_capacity(sources.len());
    for source in sources {
        out.push(FeatureIndex::load(store, &source.snapshot, &source.columns).await?);
    }
    Ok(out)
}

/// Joins every loaded source onto `labels` (rows stamped `times`, µs): the one point-in-time
/// join used by training and by inference. Returns the feature columns by name.
pub fn join_loaded(
    labels: &RecordBatch,
    times: &Int64Array,
    sources: &[JoinSource],
    indices: &[FeatureIndex],
) -> Result<Vec<(String, ArrayRef)>> {
    let mut out = Vec::new();
    for (source, index) in sources.iter().zip(indices) {
        let keys = source
            .label_keys
            .iter()
            .map(|k| {
                labels
                    .column_by_name(k)
                    .cloned()
                    .ok_or_else(|| Error::Join {
                        key: k.clone(),
                        message: format!("no such column to join {} on", source.snapshot.table),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let matched = index.lookup(&keys, times, source.as_of)?;
        for c in &source.columns {
            out.push((c.clone(), index.take(c, &matched)?));
        }
    }
    Ok(out)
}

/// [`load_sources`] then [`join_loaded`].
pub async fn join_sources(
    store: &Store,
    labels: &RecordBatch,
    times: &Int64Array,
    sources: &[JoinSource],
) -> Result<Vec<(String, ArrayRef)>> {
    let indices = load_sources(store, sources).await?;
    join_loaded(labels, times, sources, &indices)
}
