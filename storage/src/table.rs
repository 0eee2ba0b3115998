//! Feature tables: versioned sets of immutable Parquet files made visible by commits.
//!
//! Writers stage data files under `data/<upload_id>/` (invisible: no commit names them), then
//! append a commit entry to `_log/` with a create-only put. A table's version `v` is the set of
//! files added and not removed by commits `1..=v`; readers see exactly that set, never a file
//! of a commit that did not complete.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::kernels::{cmp, numeric};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Field, Int64Type, Schema, SchemaRef,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::{
    DOCUMENT_VERSION, DataFile, Operation, TableCommit, TableDefinition, TableStatistics,
    ValidationReport,
};
use crate::layout;
use crate::log::{self, Appended};
use crate::names::{Name, NameKind};
use crate::parquet_io::{self, ParquetEncoder};
use crate::store::{Store, encode_json};
use crate::types::{self, is_temporal, parse_type, type_name};

/// Which version of a table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Version(u64),
    /// The version current at this instant (time travel).
    AsOf(DateTime<Utc>),
}

/// One version of a table: its definition and live files.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    pub table: Name,
    pub version: u64,
    /// The commit that created this version.
    pub commit: TableCommit,
    /// Live data files, in commit order.
    pub files: Vec<DataFile>,
}

impl TableSnapshot {
    pub fn definition(&self) -> &TableDefinition {
        &self.commit.definition
    }

    pub fn num_rows(&self) -> u64 {
        self.commit.num_rows
    }

    /// The Arrow schema declared by the table definition.
    pub fn schema(&self) -> Result<SchemaRef> {
        arrow_schema(self.definition())
    }

    /// Streams the table's rows, file by file, keeping only `columns` (all if `None`).
    /// Memory is bounded by one data file. Each file's checksum is verified before decoding.
    pub fn batches(
        &self,
        store: &Store,
        columns: Option<Vec<String>>,
    ) -> BoxStream<'static, Result<RecordBatch>> {
        let store = store.clone();
        let table = self.table.clone();
        futures::stream::iter(self.files.clone())
            .then(move |file| {
                let store = store.clone();
                let table = table.clone();
                let columns = columns.clone();
                async move {
                    let (path, bytes) = read_data_file(&store, &table, &file).await?;
                    let reader = parquet_io::decode(bytes, columns.as_deref(), path.as_ref())?;
                    let path = path.to_string();
                    Ok::<_, Error>(futures::stream::iter(reader.map(move |batch| {
                        batch.map_err(|source| Error::Arrow {
                            path: path.clone(),
                            source,
                        })
                    })))
                }
            })
            .try_flatten()
            .boxed()
    }

    /// Streams the rows whose event time is in `[from_us, to_us)`, keeping only `columns`
    /// and the event time (last, if not among them); files outside the range are not read.
    pub fn batches_in_range(
        &self,
        store: &Store,
        columns: &[String],
        from_us: i64,
        to_us: i64,
    ) -> BoxStream<'static, Result<RecordBatch>> {
        let mut within = self.clone();
        within.files.retain(|f| overlaps(f, from_us, to_us));
        let event_time = self.definition().event_time.clone();
        let mut read = columns.to_vec();
        if !read.contains(&event_time) {
            read.push(event_time.clone());
        }
        within
            .batches(store, Some(read))
            .and_then(move |batch| {
                let err = |source| Error::Arrow {
                    path: "event time".into(),
                    source,
                };
                let kept = batch
                    .schema()
                    .index_of(&event_time)
                    .map_err(err)
                    .and_then(|at| outside_range(&batch, at, from_us, to_us))
                    .and_then(|outside| arrow::compute::not(&outside).map_err(err))
                    .and_then(|inside| {
                        arrow::compute::filter_record_batch(&batch, &inside).map_err(err)
                    });
                futures::future::ready(kept)
            })
            .boxed()
    }

    /// Reads the whole table into memory.
    pub async fn read_all(
        &self,
        store: &Store,
        columns: Option<Vec<String>>,
    ) -> Result<Vec<RecordBatch>> {
        self.batches(store, columns).try_collect().await
    }
}

async fn read_data_file(
    store: &Store,
    table: &Name,
    file: &DataFile,
) -> Result<(object_store::path::Path, bytes::Bytes)> {
    let path = layout::table_file(table, &file.file.path)?;
    let bytes = store.get_verified(&path, &file.file).await?;
    Ok((path, bytes))
}

/// Builds the Arrow schema a table definition declares.
pub fn arrow_schema(definition: &TableDefinition) -> Result<SchemaRef> {
    let fields = definition
        .columns
        .iter()
        .map(|c| {
            let data_type = parse_type(&c.data_type).map_err(|e| Error::SchemaMismatch {
                table: definition.name.to_string(),
                reason: format!("column {:?}: {e}", c.name),
            })?;
            Ok(Field::new(&c.name, data_type, c.nullable))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// Checks a definition is internally consistent: valid name, unique columns, keys and event
/// time declared, event time temporal.
pub fn check_definition(definition: &TableDefinition) -> Result<SchemaRef> {
    let bad = |reason: String| Error::SchemaMismatch {
        table: definition.name.to_string(),
        reason,
    };
    let schema = arrow_schema(definition)?;
    let mut seen = HashSet::new();
    for c in &definition.columns {
        if !seen.insert(c.name.as_str()) {
            return Err(bad(format!("column {:?} declared twice", c.name)));
        }
    }
    if definition.entity_keys.is_empty() {
        return Err(bad("no entity key column declared".into()));
    }
    for key in &definition.entity_keys {
        if definition.column(key).is_none() {
            return Err(bad(format!("entity key {key:?} is not a column")));
        }
    }
    let event_time = schema
        .field_with_name(&definition.event_time)
        .map_err(|_| {
            bad(format!(
                "event time {:?} is not a column",
                definition.event_time
            ))
        })?;
    if event_time.is_nullable() {
        return Err(bad(format!(
            "event time {:?} must be declared not nullable",
            definition.event_time
        )));
    }
    // Types Parquet cannot hold as themselves: the Parquet writer stores time stamps in
    // seconds as a bare INT64, which pyarrow, DuckDB and Polars read as integers, and pyarrow
    // reads a `date64` back as `date32` whatever it is written as.
    if let Some(c) = schema.fields().iter().find(|f| unportable(f.data_type())) {
        return Err(bad(format!(
            "column {:?} is {}, which Parquet readers do not read back as written; \
             declare time stamps in ms, us or ns and dates as date32[day]",
            c.name(),
            type_name(c.data_type())
        )));
    }
    if !is_temporal(event_time.data_type()) {
        return Err(bad(format!(
            "event time {:?} has type {}, expected a date or timestamp",
            definition.event_time,
            type_name(event_time.data_type())
        )));
    }
    Ok(schema)
}

/// How the columns of `new` differ from `old`: each column gone, new or of another type, or
/// else their order.
fn column_changes(old: &[crate::format::ColumnDef], new: &[crate::format::ColumnDef]) -> String {
    let find = |cols: &[crate::format::ColumnDef], name: &str| {
        cols.iter()
            .find(|c| c.name == name)
            .map(|c| c.data_type.clone())
    };
    let mut changes = Vec::new();
    for c in old {
        match find(new, &c.name) {
            None => changes.push(format!("column {:?} is gone", c.name)),
            Some(t) if t != c.data_type => changes.push(format!(
                "column {:?} was {}, is now {t}",
                c.name, c.data_type
            )),
            Some(_) => {}
        }
    }
    for c in new.iter().filter(|c| find(old, &c.name).is_none()) {
        changes.push(format!("column {:?} ({}) is new", c.name, c.data_type));
    }
    match changes.is_empty() {
        true => "the columns are in another order".to_string(),
        false => changes.join(", "),
    }
}

/// Whether a column of `data_type` cannot be written (see [`check_definition`]); readers
/// still accept such columns.
pub fn unportable(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Timestamp(TimeUnit::Second, _) | DataType::Date64
    )
}

/// How a date or time-stamp type's stored integers become microseconds (times a factor, then
/// divided by a divisor, truncating toward zero), and how to find their smallest and largest
/// without converting every value.
struct MicrosScale {
    factor: i64,
    divisor: i64,
    stored_range: fn(&ArrayRef) -> Option<(i64, i64)>,
}

impl MicrosScale {
    /// A stored integer in microseconds, as [`to_micros`] gives it; `None` on overflow.
    fn micros(&self, stored: i64) -> Option<i64> {
        stored.checked_mul(self.factor).map(|v| v / self.divisor)
    }
}

fn micros_scale(data_type: &DataType) -> Result<MicrosScale> {
    let scale = |factor, divisor, stored_range| MicrosScale {
        factor,
        divisor,
        stored_range,
    };
    Ok(match data_type {
        DataType::Timestamp(TimeUnit::Second, _) => {
            scale(1_000_000, 1, stored_range::<TimestampSecondType>)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            scale(1_000, 1, stored_range::<TimestampMillisecondType>)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            scale(1, 1, stored_range::<TimestampMicrosecondType>)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            scale(1, 1_000, stored_range::<TimestampNanosecondType>)
        }
        DataType::Date32 => scale(86_400_000_000, 1, stored_range::<Date32Type>),
        DataType::Date64 => scale(1_000, 1, stored_range::<Date64Type>),
        other => {
            return Err(Error::InvalidArgument {
                what: "event time column".into(),
                reason: format!("type {} is not a date or timestamp", type_name(other)),
            });
        }
    })
}

/// The smallest and largest stored integer of `array` (`None` when all are null).
fn stored_range<T: ArrowPrimitiveType>(array: &ArrayRef) -> Option<(i64, i64)>
where
    T::Native: Into<i64>,
{
    let values = array.as_primitive::<T>();
    Some((
        arrow::compute::min(values)?.into(),
        arrow::compute::max(values)?.into(),
    ))
}

fn event_time_err(source: arrow::error::ArrowError) -> Error {
    Error::Arrow {
        path: "event time".into(),
        source,
    }
}

/// Converts a date or timestamp array to microseconds since the epoch (the raw instant; a
/// time zone, if any, is not applied).
pub fn to_micros(array: &ArrayRef) -> Result<Int64Array> {
    let MicrosScale {
        factor, divisor, ..
    } = micros_scale(array.data_type())?;
    let mut out = arrow::compute::cast(array, &DataType::Int64).map_err(event_time_err)?;
    if factor != 1 {
        out = numeric::mul(&out, &Int64Array::new_scalar(factor)).map_err(event_time_err)?;
    }
    if divisor != 1 {
        out = numeric::div(&out, &Int64Array::new_scalar(divisor)).map_err(event_time_err)?;
    }
    Ok(out.as_primitive::<Int64Type>().clone())
}

/// The smallest and largest value of a date or timestamp array in microseconds, as
/// [`to_micros`] would give them (`None` when every value is null), including its overflow
/// error. The conversion is monotonic, so it is applied to the two ends only.
pub fn micros_range(array: &ArrayRef) -> Result<Option<(i64, i64)>> {
    let scale = micros_scale(array.data_type())?;
    let Some((lo, hi)) = (scale.stored_range)(array) else {
        return Ok(None);
    };
    let micros = |v: i64| {
        scale.micros(v).ok_or_else(|| {
            event_time_err(arrow::error::ArrowError::ArithmeticOverflow(format!(
                "Overflow happened on: {v:?} * {:?}",
                scale.factor
            )))
        })
    };
    Ok(Some((micros(lo)?, micros(hi)?)))
}

/// [`micros_range`] as floats, for statistics, where it never fails: a value whose
/// microseconds overflow an `i64` (a date past the year 294,000) becomes its product in
/// floating point instead of an error, so one such value cannot drop a column's range.
/// `None` for an all-null array or a type that is not a date or time stamp.
pub fn micros_range_f64(array: &ArrayRef) -> Option<(f64, f64)> {
    let scale = micros_scale(array.data_type()).ok()?;
    let (lo, hi) = (scale.stored_range)(array)?;
    let micros = |v: i64| match scale.micros(v) {
        Some(micros) => micros as f64,
        None => v as f64 * scale.factor as f64 / scale.divisor as f64,
    };
    Some((micros(lo), micros(hi)))
}

/// Writes the data files of one commit; nothing is visible until [`Store::commit_table`].
pub struct TableWriter {
    store: Store,
    table: Name,
    schema: SchemaRef,
    event_time: usize,
    upload_id: String,
    max_rows_per_file: u64,
    encoder: Option<ParquetEncoder>,
    range: (Option<i64>, Option<i64>),
    files: Vec<DataFile>,
}

impl TableWriter {
    /// Rows per data file unless set otherwise.
    pub const DEFAULT_ROWS_PER_FILE: u64 = 2_000_000;

    pub fn new(store: &Store, definition: &TableDefinition) -> Result<Self> {
        let schema = check_definition(definition)?;
        let event_time =
            schema
                .index_of(&definition.event_time)
                .map_err(|_| Error::SchemaMismatch {
                    table: definition.name.to_string(),
                    reason: "no event time column".into(),
                })?;
        Ok(TableWriter {
            store: store.clone(),
            table: definition.name.clone(),
            schema,
            event_time,
            upload_id: Uuid::new_v4().simple().to_string(),
            max_rows_per_file: Self::DEFAULT_ROWS_PER_FILE,
            encoder: None,
            range: (None, None),
            files: Vec::new(),
        })
    }

    pub fn with_rows_per_file(mut self, rows: u64) -> Self {
        self.max_rows_per_file = rows.max(1);
        self
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Adds rows. The batch must have the declared columns, in order, with the declared types,
    /// except that a column declared as strings may come in any Arrow string encoding
    /// (`Utf8`, `LargeUtf8`, `Utf8View`, see [`types::storable_as`]): it is written as the
    /// declared Parquet strings, with no copy.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = self.conform(batch)?;
        if let Some((lo, hi)) = micros_range(batch.column(self.event_time))? {
            self.range.0 = min_opt(self.range.0, Some(lo));
            self.range.1 = max_opt(self.range.1, Some(hi));
        }
        if self.encoder.is_none() {
            let what = format!("tables/{}/data/{}", self.table, self.upload_id);
            self.encoder = Some(ParquetEncoder::new(self.schema.clone(), what));
        }
        let encoder = self.encoder.as_mut().expect("encoder was just created");
        encoder.write(&batch)?;
        if encoder.rows() >= self.max_rows_per_file {
            self.flush().await?;
        }
        Ok(())
    }

    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mismatch = |reason: String| Error::SchemaMismatch {
            table: self.table.to_string(),
            reason,
        };
        let actual = batch.schema();
        if actual.fields().len() != self.schema.fields().len() {
            return Err(mismatch(format!(
                "data has columns [{}], the definition declares [{}]",
                field_names(&actual),
                field_names(&self.schema)
            )));
        }
        let mut same_types = true;
        for (want, got) in self.schema.fields().iter().zip(actual.fields()) {
            let (want_type, got_type) = (want.data_type(), got.data_type());
            same_types &= want_type == got_type;
            if want.name() != got.name() || !types::storable_as(got_type, want_type) {
                return Err(mismatch(format!(
                    "column {:?} of type {} where the definition declares {:?} of type {}",
                    got.name(),
                    type_name(got.data_type()),
                    want.name(),
                    type_name(want.data_type())
                )));
            }
            if !want.is_nullable() {
                let column = batch.column_by_name(got.name()).expect("column exists");
                if column.null_count() > 0 {
                    return Err(mismatch(format!(
                        "column {:?} is declared not nullable but has {} nulls",
                        got.name(),
                        column.null_count()
                    )));
                }
            }
        }
        if !same_types {
            // The encoder writes under the declared schema; an Arrow batch cannot carry it
            // over string views.
            return Ok(batch.clone());
        }
        RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec()).map_err(|source| {
            Error::Arrow {
                path: format!("tables/{}", self.table),
                source,
            }
        })
    }

    async fn flush(&mut self) -> Result<()> {
        let Some(encoder) = self.encoder.take() else {
            return Ok(());
        };
        let rows = encoder.rows();
        let bytes = encoder.finish()?;
        let relative = format!(
            "data/{}/part-{:05}.parquet",
            self.upload_id,
            self.files.len()
        );
        let path = layout::table_file(&self.table, &relative)?;
        let file = self.store.put_file(&path, relative, bytes).await?;
        self.files.push(DataFile {
            file,
            num_rows: rows,
            min_event_time_us: self.range.0,
            max_event_time_us: self.range.1,
        });
        self.range = (None, None);
        Ok(())
    }

    /// The files put so far (not the one being encoded), for a writer given up on: they are
    /// the files to [`Store::discard_staged`].
    pub fn staged(&self) -> &[DataFile] {
        &self.files
    }

    /// Writes the last file and returns every staged file, ready to commit.
    pub async fn finish(mut self) -> Result<Vec<DataFile>> {
        self.flush().await?;
        Ok(self.files)
    }
}

fn field_names(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Everything about a commit except its data files.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub definition: TableDefinition,
    pub operation: Operation,
    pub run_id: Option<String>,
    /// If a commit with this key exists, nothing is committed again.
    pub idempotency_key: Option<String>,
    pub statistics: Option<TableStatistics>,
    pub validation: Option<ValidationReport>,
    pub metadata: BTreeMap<String, Value>,
    /// How many times to rebase and retry after losing a race for a version.
    pub max_attempts: u32,
}

impl CommitRequest {
    pub fn new(definition: TableDefinition, operation: Operation) -> Self {
        CommitRequest {
            definition,
            operation,
            run_id: None,
            idempotency_key: None,
            statistics: None,
            validation: None,
            metadata: BTreeMap::new(),
            max_attempts: 20,
        }
    }
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed {
        version: u64,
    },
    /// A commit with the same idempotency key already exists; nothing was written.
    AlreadyCommitted {
        version: u64,
    },
}

impl CommitOutcome {
    pub fn version(self) -> u64 {
        match self {
            CommitOutcome::Committed { version } | CommitOutcome::AlreadyCommitted { version } => {
                version
            }
        }
    }
}

impl Store {
    /// Names of every table that has at least one directory in the store.
    pub async fn list_tables(&self) -> Result<Vec<Name>> {
        let mut names: Vec<Name> = self
            .list_dirs(&layout::tables_root())
            .await?
            .into_iter()
            .filter_map(|n| Name::new(NameKind::FeatureGroup, n).ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every commit of a table, oldest first (empty if the table has none).
    pub async fn table_history(&self, table: &Name) -> Result<Vec<TableCommit>> {
        let dir = layout::table_log_dir(table);
        let entries: Vec<(u64, TableCommit)> = log::read_all(self, &dir).await?;
        entries
            .into_iter()
            .enumerate()
            .map(|(i, (n, commit))| {
                // Versions are dense from 1: a gap means a lost or deleted entry.
                log::check_number(&dir, i as u64 + 1, n)?;
                log::check_number(&dir, n, commit.version)?;
                Ok(commit)
            })
            .collect()
    }

    /// Reads a version of a table.
    pub async fn table(&self, table: &Name, at: VersionSpec) -> Result<TableSnapshot> {
        let history = self.table_history(table).await?;
        if history.is_empty() {
            return Err(Error::TableNotFound {
                table: table.to_string(),
            });
        }
        let upto = match at {
            VersionSpec::Latest => history.len(),
            VersionSpec::Version(v) => {
                if v == 0 || v as usize > history.len() {
                    return Err(Error::VersionNotFound {
                        table: table.to_string(),
                        version: v,
                    });
                }
                v as usize
            }
            VersionSpec::AsOf(ts) => history.iter().take_while(|c| c.timestamp <= ts).count(),
        };
        if upto == 0 {
            let VersionSpec::AsOf(ts) = at else {
                unreachable!("versions start at 1")
            };
            return Err(Error::NoVersionAt {
                table: table.to_string(),
                timestamp: ts.to_rfc3339(),
            });
        }
        Ok(snapshot_of(table, &history[..upto]))
    }

    /// Commits staged `files` as the next version of the table, rebasing and retrying when
    /// another writer takes the version first.
    pub async fn commit_table(
        &self,
        request: &CommitRequest,
        files: Vec<DataFile>,
    ) -> Result<CommitOutcome> {
        check_definition(&request.definition)?;
        self.init().await?;
        let table = &request.definition.name;
        let dir = layout::table_log_dir(table);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let history = self.table_history(table).await?;
            if let Some(key) = &request.idempotency_key
                && let Some(done) = history
                    .iter()
                    .find(|c| c.idempotency_key.as_ref() == Some(key))
            {
                // Only files no commit names: a retried call may pass the very files of the
                // commit that already landed.
                let committed: HashSet<&str> = history
                    .iter()
                    .flat_map(|c| c.add.iter().map(|f| f.file.path.as_str()))
                    .collect();
                let orphans: Vec<DataFile> = files
                    .iter()
                    .filter(|f| !committed.contains(f.file.path.as_str()))
                    .cloned()
                    .collect();
                self.discard_staged(table, &orphans).await;
                return Ok(CommitOutcome::AlreadyCommitted {
                    version: done.version,
                });
            }
            let version = history.len() as u64 + 1;
            let previous = (!history.is_empty()).then(|| snapshot_of(table, &history));
            let (add, remove, num_rows) = self.plan(request, previous.as_ref(), &files).await?;
            let commit = TableCommit {
                format_version: DOCUMENT_VERSION,
                table: table.clone(),
                version,
                commit_id: Uuid::new_v4(),
                timestamp: Utc::now(),
                operation: request.operation.clone(),
                definition: request.definition.clone(),
                add,
                remove,
                num_rows,
                run_id: request.run_id.clone(),
                idempotency_key: request.idempotency_key.clone(),
                statistics: request.statistics.clone(),
                validation: request.validation.clone(),
                metadata: request.metadata.clone(),
            };
            let bytes = encode_json("table commit", &commit)?;
            match log::try_append(self, &dir, version, bytes).await? {
                Appended::Yes => {
                    tracing::info!(table = %table, version, rows = num_rows, "committed table version");
                    return Ok(CommitOutcome::Committed { version });
                }
                Appended::Taken if attempt < request.max_attempts => {
                    tracing::debug!(table = %table, version, attempt, "lost the race for a version; rebasing");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Appended::Taken => {
                    return Err(Error::CommitConflict {
                        log: dir.to_string(),
                        version,
                        attempts: attempt,
                    });
                }
            }
        }
    }

    /// Works out which files a commit adds and removes on top of `previous`.
    async fn plan(
        &self,
        request: &CommitRequest,
        previous: Option<&TableSnapshot>,
        files: &[DataFile],
    ) -> Result<(Vec<DataFile>, Vec<String>, u64)> {
        let added_rows: u64 = files.iter().map(|f| f.num_rows).sum();
        let Some(previous) = previous else {
            return Ok((files.to_vec(), Vec::new(), added_rows));
        };
        if request.operation != Operation::Overwrite {
            let (old, new) = (&previous.definition().columns, &request.definition.columns);
            let strip = |cols: &[crate::format::ColumnDef]| {
                cols.iter()
                    .map(|c| (c.name.clone(), c.data_type.clone()))
                    .collect::<Vec<_>>()
            };
            if strip(old) != strip(new) {
                return Err(Error::SchemaMismatch {
                    table: request.definition.name.to_string(),
                    reason: format!(
                        "{}; an append or range replace must keep the columns and types of the \
                         current version; use a full refresh (overwrite) to change them",
                        column_changes(old, new)
                    ),
                });
            }
        }
        let mut add = files.to_vec();
        let mut remove = Vec::new();
        let mut kept_rows = previous.num_rows();
        match request.operation {
            Operation::Append => {}
            Operation::Overwrite => {
                remove = previous.files.iter().map(|f| f.file.path.clone()).collect();
                kept_rows = 0;
            }
            Operation::ReplaceRange { from_us, to_us } => {
                let mut rewriter: Option<TableWriter> = None;
                for file in &previous.files {
                    if !overlaps(file, from_us, to_us) {
                        continue;
                    }
                    remove.push(file.file.path.clone());
                    kept_rows -= file.num_rows;
                    if file.min_event_time_us >= Some(from_us)
                        && file.max_event_time_us < Some(to_us)
                    {
                        continue;
                    }
                    // Partly inside the range: keep the rows outside it in a new file.
                    let writer = match &mut rewriter {
                        Some(w) => w,
                        None => rewriter.insert(TableWriter::new(self, previous.definition())?),
                    };
                    let (path, bytes) = read_data_file(self, &previous.table, file).await?;
                    for batch in parquet_io::decode_all(bytes, None, path.as_ref())? {
                        let keep = outside_range(&batch, writer.event_time, from_us, to_us)?;
                        let kept = arrow::compute::filter_record_batch(&batch, &keep).map_err(
                            |source| Error::Arrow {
                                path: path.to_string(),
                                source,
                            },
                        )?;
                        writer.write(&kept).await?;
                    }
                }
                if let Some(writer) = rewriter {
                    let rewritten = writer.finish().await?;
                    kept_rows += rewritten.iter().map(|f| f.num_rows).sum::<u64>();
                    add.extend(rewritten);
                }
            }
        }
        Ok((add, remove, kept_rows + added_rows))
    }

    /// Deletes staged files that will not be committed (best effort: vacuum collects what
    /// this misses). Never pass files a commit names.
    pub async fn discard_staged(&self, table: &Name, files: &[DataFile]) {
        for file in files {
            if let Ok(path) = layout::table_file(table, &file.file.path) {
                let _ = self.delete(&path).await;
            }
        }
    }
}

fn outside_range(
    batch: &RecordBatch,
    column: usize,
    from_us: i64,
    to_us: i64,
) -> Result<BooleanArray> {
    let micros = to_micros(batch.column(column))?;
    let err = |source| Error::Arrow {
        path: "event time".into(),
        source,
    };
    let before = cmp::lt(&micros, &Int64Array::new_scalar(from_us)).map_err(err)?;
    let after = cmp::gt_eq(&micros, &Int64Array::new_scalar(to_us)).map_err(err)?;
    arrow::compute::or(&before, &after).map_err(err)
}

/// Whether `file` may hold rows whose event time is in `[from_us, to_us)` (a file without a
/// range has no rows).
fn overlaps(file: &DataFile, from_us: i64, to_us: i64) -> bool {
    matches!((file.min_event_time_us, file.max_event_time_us),
        (Some(lo), Some(hi)) if hi >= from_us && lo < to_us)
}

fn backoff(attempt: u32) -> std::time::Duration {
    let jitter = rand_jitter();
    std::time::Duration::from_millis((5u64 << attempt.min(6)) + jitter)
}

fn rand_jitter() -> u64 {
    (Uuid::new_v4().as_u128() % 20) as u64
}

/// The live files after replaying `history` (commits 1..=n in order).
fn snapshot_of(table: &Name, history: &[TableCommit]) -> TableSnapshot {
    let mut files: Vec<DataFile> = Vec::new();
    for commit in history {
        let removed: HashSet<&str> = commit.remove.iter().map(String::as_str).collect();
        files.retain(|f| !removed.contains(f.file.path.as_str()));
        files.extend(commit.add.iter().cloned());
    }
    let commit = history.last().expect("history is not empty").clone();
    TableSnapshot {
        table: table.clone(),
        version: commit.version,
        commit,
        files,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        Date32Array, Date64Array, TimestampMicrosecondArray, TimestampMillisecondArray,
        TimestampNanosecondArray, TimestampSecondArray,
    };

    use super::*;
    use crate::format::ColumnDef;

    /// A schema change a range replace cannot take is said column by column.
    #[test]
    fn column_changes_name_each_column() {
        let cols = |spec: &[(&str, &str)]| -> Vec<ColumnDef> {
            spec.iter()
                .map(|(n, t)| ColumnDef {
                    name: n.to_string(),
                    data_type: t.to_string(),
                    nullable: true,
                    description: String::new(),
                })
                .collect()
        };
        let old = cols(&[("id", "int64"), ("v", "int64"), ("gone", "string")]);
        let new = cols(&[("id", "int64"), ("v", "double"), ("extra", "bool")]);
        assert_eq!(
            column_changes(&old, &new),
            "column \"v\" was int64, is now double, column \"gone\" is gone, column \"extra\" (bool) is new"
        );
        let reordered = cols(&[("v", "int64"), ("id", "int64"), ("gone", "string")]);
        assert_eq!(
            column_changes(&old, &reordered),
            "the columns are in another order"
        );
    }

    /// Writers refuse the types Parquet readers do not read back as written; the others of
    /// a definition are fine.
    #[test]
    fn definitions_with_seconds_or_date64_cannot_be_written() {
        let definition = |t: &str| TableDefinition {
            name: Name::new(NameKind::FeatureGroup, "g").unwrap(),
            entity_keys: vec!["k".into()],
            event_time: "t".into(),
            columns: vec![
                ColumnDef {
                    name: "k".into(),
                    data_type: "int64".into(),
                    nullable: false,
                    description: String::new(),
                },
                ColumnDef {
                    name: "t".into(),
                    data_type: t.into(),
                    nullable: false,
                    description: String::new(),
                },
            ],
            description: String::new(),
            owner: String::new(),
            tags: Default::default(),
        };
        for t in ["timestamp[s]", "timestamp[s, tz=UTC]", "date64[ms]"] {
            let err = check_definition(&definition(t)).unwrap_err().to_string();
            assert!(err.contains("do not read back as written"), "{t}: {err}");
        }
        for t in ["timestamp[ms]", "timestamp[us, tz=UTC]", "date32[day]"] {
            assert!(check_definition(&definition(t)).is_ok(), "{t}");
        }
    }

    /// The range found on the stored integers is the range of the converted values, for
    /// every date and time-stamp type, with nulls, negative values, all-null arrays, and the
    /// overflow error `to_micros` gives.
    #[test]
    fn micros_range_is_the_range_of_to_micros() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..200 {
            let len = (next() % 20) as usize;
            // Magnitudes from 1 to 1e9: the days of a Date32 overflow microseconds past ~1e8.
            let span = 10i64.pow(case % 10);
            let values: Vec<Option<i64>> = (0..len)
                .map(|_| (next() % 4 != 0).then(|| (next() % (2 * span as u64 + 1)) as i64 - span))
                .collect();
            let small = || values.iter().map(|v| v.map(|v| v as i32));
            let arrays: Vec<ArrayRef> = vec![
                Arc::new(Date32Array::from_iter(small())),
                Arc::new(Date64Array::from(values.clone())),
                Arc::new(TimestampSecondArray::from(values.clone())),
                Arc::new(TimestampMillisecondArray::from(values.clone())),
                Arc::new(TimestampMicrosecondArray::from(values.clone())),
                Arc::new(TimestampNanosecondArray::from(values.clone())),
            ];
            for array in arrays {
                let expected = to_micros(&array)
                    .map(|m| arrow::compute::min(&m).zip(arrow::compute::max(&m)))
                    .ok();
                let range = micros_range(&array).ok();
                assert_eq!(range, expected, "case {case}: {:?}", array.data_type());
                // Where the integers do not overflow, the float range is theirs.
                if let Some(Some((lo, hi))) = range {
                    let floats = micros_range_f64(&array);
                    assert_eq!(floats, Some((lo as f64, hi as f64)), "case {case}");
                }
            }
        }
        let huge: ArrayRef = Arc::new(TimestampSecondArray::from(vec![0, i64::MAX / 1000]));
        assert!(to_micros(&huge).is_err());
        assert!(micros_range(&huge).is_err());
        let text: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["2024-01-01"]));
        assert!(micros_range(&text).is_err());
    }
}
