//! Point-in-time feature retrieval: for each label row, the latest feature row of the same
//! entity whose event time is at or before (or strictly before) the label's time, optionally
//! no older than a maximum age. Never a value from the label's future.
//!
//! The feature table is loaded once (only the needed columns) and indexed by entity key, with
//! each entity's rows sorted by event time; each lookup is a binary search. Memory grows with
//! the feature table's rows, not with labels x history.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::{cast, concat_batches, interleave, take};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
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
    key_types: Vec<DataType>,
    /// Entity key (Arrow row format) -> its range of `entries`.
    rows: KeyMap<(u32, u32)>,
    /// (event time µs, row) of every row, grouped by entity and sorted by time within one.
    entries: Vec<(i64, u32)>,
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
        let wanted = wanted_columns(snapshot, columns)?;
        let projected = projected_schema(snapshot, &wanted)?;
        let batches: Vec<RecordBatch> = snapshot
            .batches(store, Some(wanted.clone()))
            .map_err(Error::from)
            .and_then(|b| std::future::ready(reorder(&projected, &wanted, &b)))
            .try_collect()
            .await?;
        let batch = concat_batches(&projected, &batches)?;
        FeatureIndex::from_batch(snapshot, projected, batch)
    }

    /// Loads, in one streamed read, only each entity's row current at `at` (µs) under `as_of`
    /// among the rows `filter` keeps: memory grows with the entities kept, not with the table's
    /// history. Lookups at `at` then give what [`FeatureIndex::load`] would.
    ///
    /// With `max_keys`, stops early with [`Latest::TooMany`] once more entities than that
    /// are kept, reporting how many it had found in how many table rows.
    pub async fn load_latest(
        store: &Store,
        snapshot: &TableSnapshot,
        columns: &[String],
        at: i64,
        as_of: AsOf,
        filter: &RowFilter,
        max_keys: Option<usize>,
    ) -> Result<Latest> {
        let wanted = wanted_columns(snapshot, columns)?;
        let projected = projected_schema(snapshot, &wanted)?;
        let mut latest = LatestRows::new(snapshot, projected.clone(), at, as_of, filter)?;
        let mut stream = snapshot.batches(store, Some(wanted.clone()));
        while let Some(batch) = stream.try_next().await? {
            latest.push(&reorder(&projected, &wanted, &batch)?)?;
            if let Some(max) = max_keys
                && latest.best.len() > max
            {
                return Ok(Latest::TooMany {
                    rows_read: latest.rows_read,
                    keys: latest.best.len(),
                });
            }
        }
        Ok(Latest::Loaded(latest.finish(snapshot)?))
    }

    /// Indexes a batch whose first columns are the table's entity keys, then its event time.
    fn from_batch(
        snapshot: &TableSnapshot,
        projected: SchemaRef,
        batch: RecordBatch,
    ) -> Result<FeatureIndex> {
        let n_keys = snapshot.definition().entity_keys.len();
        let key_types: Vec<DataType> = (0..n_keys)
            .map(|i| projected.field(i).data_type().clone())
            .collect();
        let key_fields: Vec<SortField> = key_types.iter().cloned().map(SortField::new).collect();
        let converter = RowConverter::new(key_fields.clone())?;
        let keys = converter.convert_columns(&batch.columns()[..n_keys])?;
        let times = storage::table::to_micros(batch.column(n_keys))?;
        // Group rows by key without an allocation per row: number the keys, count, then
        // place every row in its key's range.
        let mut ids: KeyMap<u32> = KeyMap::default();
        let mut group_of = Vec::with_capacity(keys.num_rows());
        let mut counts: Vec<u32> = Vec::new();
        for key in keys.iter() {
            let next = counts.len() as u32;
            let id = *ids.entry(key.as_ref().into()).or_insert(next);
            if id == next {
                counts.push(0);
            }
            counts[id as usize] += 1;
            group_of.push(id);
        }
        let mut starts = Vec::with_capacity(counts.len());
        let mut total = 0u32;
        for c in &counts {
            starts.push(total);
            total += c;
        }
        let mut fill = starts.clone();
        let mut entries = vec![(0i64, 0u32); keys.num_rows()];
        for (i, id) in group_of.into_iter().enumerate() {
            let slot = &mut fill[id as usize];
            entries[*slot as usize] = (times.value(i), i as u32);
            *slot += 1;
        }
        for (start, count) in starts.iter().zip(&counts) {
            if *count > 1 {
                entries[*start as usize..(start + count) as usize].sort_unstable();
            }
        }
        let rows = ids
            .into_iter()
            .map(|(key, id)| (key, (starts[id as usize], counts[id as usize])))
            .collect();
        Ok(FeatureIndex {
            schema: projected,
            batch,
            key_fields,
            key_types,
            rows,
            entries,
            table: snapshot.table.to_string(),
            version: snapshot.version,
        })
    }

    /// The (time, row) entries of a key, sorted by time.
    fn entries_of(&self, key: &[u8]) -> Option<&[(i64, u32)]> {
        let &(start, count) = self.rows.get(key)?;
        Some(&self.entries[start as usize..(start + count) as usize])
    }

    /// The data types of the entity key columns, in order.
    pub fn key_types(&self) -> Vec<DataType> {
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
        let keys = cast_keys(&self.table, keys, &self.key_types)?;
        let converter = RowConverter::new(self.key_fields.clone())?;
        let rows = converter.convert_columns(&keys)?;
        let mut out = Vec::with_capacity(times.len());
        for (i, key) in rows.iter().enumerate() {
            if times.is_null(i) {
                out.push(None);
                continue;
            }
            let t = times.value(i);
            let found = self.entries_of(key.as_ref()).and_then(|entries| {
                // Entries with time <= t (inclusive) or < t (strict).
                let n = if as_of.inclusive {
                    entries.partition_point(|&(et, _)| et <= t)
                } else {
                    entries.partition_point(|&(et, _)| et < t)
                };
                let (et, row) = *entries.get(n.checked_sub(1)?)?;
                match as_of.max_age_us {
                    Some(max_age) if t.saturating_sub(et) > max_age => None,
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
        let mut keys: Vec<&[u8]> = self.rows.keys().map(|k| k.as_ref()).collect();
        keys.sort_unstable();
        keys.into_iter()
            .filter_map(|key| {
                let entries = self.entries_of(key)?;
                let n = if as_of.inclusive {
                    entries.partition_point(|&(et, _)| et <= at)
                } else {
                    entries.partition_point(|&(et, _)| et < at)
                };
                let (et, row) = *entries.get(n.checked_sub(1)?)?;
                match as_of.max_age_us {
                    Some(max_age) if at.saturating_sub(et) > max_age => None,
                    _ => Some(row),
                }
            })
            .collect()
    }

    /// The indexed columns at `rows`, as a batch.
    pub fn take_batch(&self, rows: &[u32]) -> Result<RecordBatch> {
        take_rows(&self.batch, rows)
    }
}

/// Each entity's latest eligible row among the batches pushed (see
/// [`FeatureIndex::load_latest`]); memory grows with the entities, not the rows.
pub(crate) struct LatestRows<'a> {
    projected: SchemaRef,
    n_keys: usize,
    converter: RowConverter,
    at: i64,
    as_of: AsOf,
    filter: &'a RowFilter,
    best: Winners,
    retained: Vec<RecordBatch>,
    retained_rows: usize,
    rows_read: u64,
}

impl<'a> LatestRows<'a> {
    /// `projected`: the table's entity keys, its event time, then other columns.
    pub(crate) fn new(
        snapshot: &TableSnapshot,
        projected: SchemaRef,
        at: i64,
        as_of: AsOf,
        filter: &'a RowFilter,
    ) -> Result<Self> {
        let n_keys = snapshot.definition().entity_keys.len();
        let converter = key_converter(&projected, n_keys)?;
        Ok(LatestRows {
            projected,
            n_keys,
            converter,
            at,
            as_of,
            filter,
            best: Winners::default(),
            retained: Vec::new(),
            retained_rows: 0,
            rows_read: 0,
        })
    }

    /// Adds a batch with the columns of `projected`, in its order.
    pub(crate) fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows_read += batch.num_rows() as u64;
        let keys = self
            .converter
            .convert_columns(&batch.columns()[..self.n_keys])?;
        let times = storage::table::to_micros(batch.column(self.n_keys))?;
        let slot = self.retained.len();
        let mut taken: Vec<u32> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if times.is_null(i)
                || !eligible(times.value(i), self.at, self.as_of)
                || !self.filter.keeps(key.as_ref())
            {
                continue;
            }
            let t = times.value(i);
            let row = taken.len() as u32;
            // Ties go to the later row, as in `lookup`.
            match self.best.get_mut(key.as_ref()) {
                Some(entry) if entry.0 > t => continue,
                Some(entry) => *entry = (t, slot, row),
                None => {
                    self.best.insert(key.as_ref().into(), (t, slot, row));
                }
            }
            taken.push(i as u32);
        }
        if taken.is_empty() {
            return Ok(());
        }
        self.retained_rows += taken.len();
        self.retained.push(take_rows(batch, &taken)?);
        // Rows overtaken by later ones are garbage: compact once they dominate.
        if self.retained_rows > 2 * self.best.len() + 65_536 {
            let batch = gather(&self.projected, &self.retained, &mut self.best, false)?;
            self.retained_rows = batch.num_rows();
            self.retained = vec![batch];
        }
        Ok(())
    }

    pub(crate) fn finish(mut self, snapshot: &TableSnapshot) -> Result<FeatureIndex> {
        let batch = gather(&self.projected, &self.retained, &mut self.best, true)?;
        FeatureIndex::from_batch(snapshot, self.projected, batch)
    }
}

/// Whether a row at `t` can be the one current at `at`: not after it (or not at it, when
/// strict) and not older than the maximum age.
pub(crate) fn eligible(t: i64, at: i64, as_of: AsOf) -> bool {
    (if as_of.inclusive { t <= at } else { t < at })
        && as_of
            .max_age_us
            .is_none_or(|max_age| at.saturating_sub(t) <= max_age)
}

/// What [`FeatureIndex::load_latest`] found.
pub enum Latest {
    Loaded(FeatureIndex),
    /// More entities than allowed: `keys` of them in the first `rows_read` table rows.
    TooMany {
        rows_read: u64,
        keys: usize,
    },
}

/// Which entities a streamed read keeps, by their entity key in Arrow's row format (see
/// [`key_set`]).
#[derive(Debug, Default, Clone)]
pub struct RowFilter {
    /// Only these keys.
    pub keys: Option<KeySet>,
    /// Only keys in partition `.0` of `.1` ([`key_partition`]).
    pub partition: Option<(u64, u64)>,
}

impl RowFilter {
    fn keeps(&self, key: &[u8]) -> bool {
        self.partition
            .is_none_or(|(index, count)| key_partition(key, count) == index)
            && self.keys.as_ref().is_none_or(|keys| keys.contains(key))
    }
}

/// The partition of an encoded entity key: FNV-1a, stable across processes and platforms.
pub fn key_partition(key: &[u8], count: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % count.max(1)
}

/// The distinct keys of `columns` (label columns holding `snapshot`'s entity keys, in key
/// order), encoded as that table's keys, for [`RowFilter::keys`].
pub fn key_set(snapshot: &TableSnapshot, columns: &[ArrayRef]) -> Result<KeySet> {
    let def = snapshot.definition();
    let projected = projected_schema(snapshot, &def.entity_keys)?;
    let types: Vec<DataType> = projected
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    let columns = cast_keys(snapshot.table.as_ref(), columns, &types)?;
    let rows = key_converter(&projected, types.len())?.convert_columns(&columns)?;
    Ok(rows.iter().map(|r| r.as_ref().into()).collect())
}

/// Label key columns cast to a table's key types, for encoding as that table's keys.
fn cast_keys(table: &str, columns: &[ArrayRef], types: &[DataType]) -> Result<Vec<ArrayRef>> {
    if columns.len() != types.len() {
        return Err(Error::Join {
            key: table.to_string(),
            message: format!(
                "{} key columns given, the table has {}",
                columns.len(),
                types.len()
            ),
        });
    }
    columns
        .iter()
        .zip(types)
        .map(|(k, t)| {
            if k.data_type() == t {
                Ok(k.clone())
            } else {
                cast(k, t).map_err(|e| Error::Join {
                    key: table.to_string(),
                    message: format!("cannot cast {} to {t}: {e}", k.data_type()),
                })
            }
        })
        .collect()
}

/// The row encoder of the first `n_keys` columns of `schema` (the entity keys).
pub(crate) fn key_converter(schema: &SchemaRef, n_keys: usize) -> Result<RowConverter> {
    Ok(RowConverter::new(
        (0..n_keys)
            .map(|i| SortField::new(schema.field(i).data_type().clone()))
            .collect(),
    )?)
}

/// The table's entity keys, event time, then `columns`, each checked to exist.
pub(crate) fn wanted_columns(snapshot: &TableSnapshot, columns: &[String]) -> Result<Vec<String>> {
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
    Ok(wanted)
}

pub(crate) fn projected_schema(snapshot: &TableSnapshot, wanted: &[String]) -> Result<SchemaRef> {
    let schema = snapshot.schema()?;
    let indices = wanted
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(std::sync::Arc::new(schema.project(&indices)?))
}

/// Columns come back from a read in file order; puts them in `wanted` order.
pub(crate) fn reorder(
    projected: &SchemaRef,
    wanted: &[String],
    batch: &RecordBatch,
) -> Result<RecordBatch> {
    let cols = wanted
        .iter()
        .map(|c| {
            batch
                .column_by_name(c)
                .cloned()
                .expect("projected column present")
        })
        .collect();
    Ok(RecordBatch::try_new(projected.clone(), cols)?)
}

pub(crate) fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch> {
    let indices = UInt32Array::from(rows.to_vec());
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c, &indices, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// A set of encoded entity keys.
pub type KeySet = HashSet<Box<[u8]>, foldhash::fast::RandomState>;

/// A hash map keyed by encoded entity keys, with a fast non-cryptographic hasher.
type KeyMap<V> = HashMap<Box<[u8]>, V, foldhash::fast::RandomState>;

/// Entity key -> (event time, retained batch, row) of its latest row so far.
type Winners = KeyMap<(i64, usize, u32)>;

/// The winning rows of `best` as one batch (in key order when `sorted`), re-pointing `best`
/// at it.
fn gather(
    schema: &SchemaRef,
    retained: &[RecordBatch],
    best: &mut Winners,
    sorted: bool,
) -> Result<RecordBatch> {
    if best.is_empty() {
        return Ok(RecordBatch::new_empty(schema.clone()));
    }
    let mut entries: Vec<_> = best.iter_mut().collect();
    if sorted {
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    let picks: Vec<(usize, usize)> = entries
        .iter()
        .map(|(_, (_, slot, row))| (*slot, *row as usize))
        .collect();
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn Array> = retained.iter().map(|b| b.column(c).as_ref()).collect();
            interleave(&arrays, &picks)
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, (_, entry)) in entries.iter_mut().enumerate() {
        entry.1 = 0;
        entry.2 = i as u32;
    }
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(picks.len())),
    )?)
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
