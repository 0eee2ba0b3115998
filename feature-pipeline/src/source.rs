//! Sources: the repository's raw tables, registered with the query engine.
//!
//! A source declared `ordered_by` is checked once per session, reading only that column in
//! file order. The check starts in the background when a group's plan first scans the source
//! (a run whose groups do not read the source does not read it), so the scans do not wait for
//! it; every group waits for the checks started so far before its output can be committed
//! ([`ordered_sources_checked`]). A source with a `row_index` is registered as an
//! [`IndexedTable`]: a scan that uses the index reads the file in order on one partition and
//! numbers the rows; a scan that does not is the raw table's own scan (parallel, reading only
//! the projected columns).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::{
    CsvReadOptions, DataFrame, JsonReadOptions, ParquetReadOptions, SessionContext,
};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::bad_record::{Kept, TextSource, TextSources};
use crate::config::{Format, SourceConfig};
use crate::error::{Error, Result};

/// The message of a source whose local path does not exist.
pub const NO_SUCH_FILE: &str = "no such file or directory";

/// Registers source `name` read from `path`, checking its declared order first.
pub async fn register_source(
    ctx: &SessionContext,
    name: &str,
    source: &SourceConfig,
    path: &str,
) -> Result<()> {
    let err = |message: String| Error::Source {
        source_name: name.to_string(),
        path: path.to_string(),
        message,
    };
    if !path.contains("://") && !std::path::Path::new(path).exists() {
        return Err(err(NO_SUCH_FILE.into()));
    }
    if let Some((base, store)) = cloud_store(path).map_err(|e| err(e.to_string()))? {
        ctx.register_object_store(&base, store);
    }
    let schema = match &source.columns {
        None => None,
        Some(columns) => {
            let fields = columns
                .iter()
                .map(|c| {
                    storage::types::parse_type(&c.data_type)
                        .map(|t| Field::new(&c.name, t, true))
                        .map_err(|e| err(e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            Some(Schema::new(fields))
        }
    };
    // With a row index or a declared order, the raw table is registered under a hidden name
    // and `name` is the indexed or checked table over it.
    let raw_name = match source.row_index.is_some() || source.ordered_by.is_some() {
        true => format!("__raw_{name}"),
        false => name.to_string(),
    };
    let (csv_ext, json_ext) = (extension(path, ".csv"), extension(path, ".jsonl"));
    if let (Format::Parquet, Some(declared)) = (source.format, &schema) {
        check_parquet_files(ctx, name, path, Some(declared)).await?;
    }
    if source.format == Format::Csv && source.has_header.unwrap_or(true) {
        check_csv_headers(
            ctx,
            path,
            schema.as_ref(),
            source.delimiter.unwrap_or(',') as u8,
            &csv_ext,
        )
        .await
        .map_err(|(file, message)| Error::Source {
            source_name: name.to_string(),
            path: file,
            message,
        })?;
    }
    let registered = match source.format {
        Format::Parquet => {
            ctx.register_parquet(&raw_name, path, ParquetReadOptions::default())
                .await
        }
        Format::Csv => {
            let mut options = CsvReadOptions::new()
                .has_header(source.has_header.unwrap_or(true))
                .delimiter(source.delimiter.unwrap_or(',') as u8)
                .file_extension(&csv_ext);
            if let Some(schema) = &schema {
                options = options.schema(schema);
            }
            ctx.register_csv(&raw_name, path, options).await
        }
        Format::Jsonl => {
            let mut options = JsonReadOptions::default().file_extension(&json_ext);
            if let Some(schema) = &schema {
                options = options.schema(schema);
            }
            ctx.register_json(&raw_name, path, options).await
        }
    };
    let registered = match (registered, source.format, &schema) {
        // The files' schemas do not merge (string layouts, or another column's types): with
        // declared columns, which every file has, they are the table's schema (strings as
        // views, as the engine reads them).
        (Err(_), Format::Parquet, Some(declared)) => {
            let declared = as_views(declared);
            let options = ParquetReadOptions::default().schema(&declared);
            ctx.register_parquet(&raw_name, path, options).await
        }
        (registered, _, _) => registered,
    };
    if let Err(e) = registered {
        // DataFusion says two files' schemas do not merge, not which files.
        if source.format == Format::Parquet
            && let Err(located) = check_parquet_files(ctx, name, path, None).await
        {
            return Err(located);
        }
        return Err(err(e.to_string()));
    }
    let raw = ctx
        .table_provider(&raw_name)
        .await
        .map_err(|e| err(e.to_string()))?;
    if source.format != Format::Parquet
        && let Some(text) = ctx.state().config().get_extension::<TextSources>()
    {
        text.add(TextSource {
            name: name.to_string(),
            path: path.to_string(),
            format: source.format,
            extension: match source.format {
                Format::Csv => csv_ext.clone(),
                _ => json_ext.clone(),
            },
            schema: raw.schema(),
            has_header: source.has_header.unwrap_or(true),
            delimiter: source.delimiter.unwrap_or(',') as u8,
            declared: source.columns.is_some(),
        });
    }
    if source.row_index.is_none() && source.ordered_by.is_none() {
        return Ok(());
    }
    let in_file_order = file_order_scan(ctx, &raw_name, raw.clone())
        .await
        .map_err(|e| err(e.to_string()))?;
    let input = raw.schema();
    let check = match &source.ordered_by {
        None => None,
        Some(column) => {
            let field = input
                .field_with_name(column)
                .map_err(|_| err(format!("ordered_by column {column:?} is not in the source")))?;
            if order_key(&arrow::array::new_empty_array(field.data_type())).is_err() {
                return Err(err(format!(
                    "ordered_by column {column:?} is {}; it must be a date, time stamp or integer",
                    field.data_type()
                )));
            }
            Some(Arc::new(SourceCheck {
                column: column.clone(),
                in_file_order: in_file_order.clone(),
                what: format!("source {name:?} ({path})"),
                outcome: tokio::sync::OnceCell::new(),
            }))
        }
    };
    let table: Arc<dyn TableProvider> = match &source.row_index {
        Some(index) => {
            if input.field_with_name(index).is_ok() {
                return Err(err(format!(
                    "row_index column {index:?} already exists in the source"
                )));
            }
            let mut fields = vec![Field::new(index, DataType::Int64, false)];
            fields.extend(input.fields().iter().map(|f| f.as_ref().clone()));
            Arc::new(IndexedTable {
                schema: Arc::new(Schema::new(fields)),
                raw,
                in_file_order,
                check,
            })
        }
        None => Arc::new(CheckedTable {
            raw,
            check: check.expect("a source without row_index here has ordered_by"),
        }),
    };
    ctx.register_table(name, table)
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// A column's values as comparable integers (days, time units or the integer itself).
fn order_key(array: &ArrayRef) -> std::result::Result<Int64Array, ArrowError> {
    let int64 = match array.data_type() {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::Date32
        | DataType::Date64
        | DataType::Timestamp(..) => arrow::compute::cast(array, &DataType::Int64)?,
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "cannot order by {other}"
            )));
        }
    };
    Ok(int64.as_primitive::<arrow::datatypes::Int64Type>().clone())
}

/// For an `s3://`, `gs://` or `az://` path: the bucket URL and its object store (configured
/// from the standard environment, like the store itself).
pub fn cloud_store(
    path: &str,
) -> storage::Result<Option<(url::Url, Arc<dyn object_store::ObjectStore>)>> {
    let Ok(parsed) = url::Url::parse(path) else {
        return Ok(None);
    };
    if !matches!(
        parsed.scheme(),
        "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss"
    ) {
        return Ok(None);
    }
    let store = storage::store::remote_bucket(&parsed, path)?;
    let mut base = parsed.clone();
    base.set_path("");
    base.set_query(None);
    Ok(Some((base, store)))
}

/// CSV files are read by position, the header line skipped: a file whose header names other
/// columns, or the same in another order (an upstream change), would be read silently
/// mislabelled. Each file's header (its first line, read with a ranged get, 16 files at a
/// time) must name the declared columns in order or, without declared columns, the columns of
/// the first file's header; an empty file is left to the scan. `Err` is the file and the
/// problem.
async fn check_csv_headers(
    ctx: &SessionContext,
    path: &str,
    declared: Option<&Schema>,
    delimiter: u8,
    extension: &str,
) -> std::result::Result<(), (String, String)> {
    let state = ctx.state();
    let (store, files) = source_files(&state, path, extension)
        .await
        .map_err(|e| (path.to_string(), format!("cannot list the files: {e}")))?;
    let mut want: Option<(Vec<String>, String)> = declared.map(|d| {
        (
            d.fields().iter().map(|f| f.name().clone()).collect(),
            String::new(),
        )
    });
    let mut headers = futures::stream::iter(files)
        .filter(|(_, meta)| std::future::ready(meta.size > 0))
        .map(|(file, meta)| {
            let store = store.clone();
            async move {
                let start = store
                    .get_range(&meta.location, 0..meta.size.min(64 << 10))
                    .await;
                (file, start)
            }
        })
        .buffered(16);
    while let Some((file, start)) = headers.next().await {
        let start =
            start.map_err(|e| (file.clone(), format!("cannot read the CSV header: {e}")))?;
        let (header, _) = arrow::csv::reader::Format::default()
            .with_header(true)
            .with_delimiter(delimiter)
            .infer_schema(start.as_ref(), Some(0))
            .map_err(|e| (file.clone(), format!("cannot read the CSV header: {e}")))?;
        let found: Vec<String> = header.fields().iter().map(|f| f.name().clone()).collect();
        let Some((want, first)) = &want else {
            want = Some((found, file));
            continue;
        };
        if &found != want {
            let (theirs, rule) = match declared {
                Some(_) => ("the source declares".to_string(), "declared columns are"),
                None => (format!("the first file ({first}) names"), "files are"),
            };
            return Err((
                file,
                format!(
                    "the CSV header names the columns [{}], {theirs} [{}] ({rule} read by \
                     position, so the header must name them in order)",
                    found.join(", "),
                    want.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The files of a source in path order, each with the name errors give it (the path as
/// given, for a single file).
pub(crate) async fn source_files(
    state: &dyn Session,
    path: &str,
    extension: &str,
) -> DfResult<(Arc<dyn ObjectStore>, Vec<(String, ObjectMeta)>)> {
    let url = ListingTableUrl::parse(path)?;
    let store = state.runtime_env().object_store(url.object_store())?;
    let mut files: Vec<ObjectMeta> = url
        .list_all_files(state, store.as_ref(), extension)
        .await?
        .try_collect()
        .await?;
    files.sort_by(|a, b| a.location.cmp(&b.location));
    let single = files.len() == 1;
    let named = files
        .into_iter()
        .map(|file| {
            let name = match (single, url.scheme()) {
                (true, _) => path.to_string(),
                (false, "file") => format!("/{}", file.location),
                (false, _) => format!("{}{}", url.object_store().as_str(), file.location),
            };
            (name, file)
        })
        .collect();
    Ok((store, named))
}

/// Checks each file of a Parquet source against its declared columns (each present, with its
/// type; string layouts and other columns may differ) or, without any, against the files
/// before it (each column one type: the engine cannot merge a `string` and a `large_string`
/// column, nor two types of a column). The error names the file and column.
async fn check_parquet_files(
    ctx: &SessionContext,
    name: &str,
    path: &str,
    declared: Option<&Schema>,
) -> Result<()> {
    let err = |file: &str, message: String| Error::Source {
        source_name: name.to_string(),
        path: file.to_string(),
        message,
    };
    let state = ctx.state();
    let (store, files) = source_files(&state, path, &extension(path, ".parquet"))
        .await
        .map_err(|e| err(path, e.to_string()))?;
    // Undeclared: each column's type and the first file that had it.
    let mut seen: HashMap<String, (DataType, String)> = HashMap::new();
    // Footers are read 16 at a time (a prefix in an object store may hold many files).
    let format = ParquetFormat::default().with_force_view_types(false);
    let mut footers = futures::stream::iter(files)
        .map(|(file, meta)| {
            let (format, state, store) = (&format, &state, &store);
            async move { (file, format.infer_schema(state, store, &[meta]).await) }
        })
        .buffered(16);
    while let Some((file, schema)) = footers.next().await {
        let schema = schema.map_err(|e| err(&file, e.to_string()))?;
        let problem = match declared {
            Some(declared) => declared.fields().iter().find_map(|want| {
                let problem = match schema.field_with_name(want.name()) {
                    Err(_) => format!(
                        "is missing (declared {}); the file has {}",
                        storage::types::type_name(want.data_type()),
                        schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Ok(found) if storable_as(found.data_type(), want.data_type()) => return None,
                    Ok(found) => format!(
                        "is {}, expected {}",
                        type_name(found.data_type()),
                        storage::types::type_name(want.data_type())
                    ),
                };
                Some(format!(
                    "column {:?} {problem} (rule: the source's declared columns)",
                    want.name()
                ))
            }),
            None => schema.fields().iter().find_map(|field| {
                let (data_type, first) = seen
                    .entry(field.name().clone())
                    .or_insert_with(|| (field.data_type().clone(), file.clone()));
                (data_type != field.data_type()).then(|| {
                    format!(
                        "column {:?} is {}, but {} in {first} (rule: the files of a source \
                         agree on column types; declared columns let string layouts differ)",
                        field.name(),
                        storage::types::type_name(field.data_type()),
                        storage::types::type_name(data_type),
                    )
                })
            }),
        };
        if let Some(problem) = problem {
            return Err(err(&file, problem));
        }
    }
    Ok(())
}

/// A file column that reads as the declared type: the same type, or strings in any layout
/// (dictionary-encoded included).
fn storable_as(found: &DataType, declared: &DataType) -> bool {
    match found {
        DataType::Dictionary(_, values) => storage::types::storable_as(values, declared),
        found => storage::types::storable_as(found, declared),
    }
}

/// `schema` with its string columns as string views.
fn as_views(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type().is_string() {
            true => f.as_ref().clone().with_data_type(DataType::Utf8View),
            false => f.as_ref().clone(),
        })
        .collect();
    Schema::new(fields)
}

/// A file column's type as errors name it, in pyarrow's spelling: any string layout (which
/// readers choose) is `string`.
fn type_name(t: &DataType) -> String {
    match t {
        t if t.is_string() => "string".to_string(),
        DataType::Dictionary(_, values) => format!("dictionary<values={}>", type_name(values)),
        DataType::Decimal128(p, s) => format!("decimal128({p}, {s})"),
        DataType::Null => "null".to_string(),
        t => storage::types::type_name(t),
    }
}

/// A file name's extension if it has one, so a single file of any name can be registered.
fn extension(path: &str, default: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    match file.rsplit_once('.') {
        Some((_, ext)) if !path.ends_with('/') => format!(".{ext}"),
        _ => default.to_string(),
    }
}

/// A scan of a table in a single-partition session: file order is preserved.
async fn file_order_scan(
    ctx: &SessionContext,
    table: &str,
    provider: Arc<dyn TableProvider>,
) -> DfResult<DataFrame> {
    let state = ctx.state();
    let mut config = state.config().clone();
    config.options_mut().execution.target_partitions = 1;
    config.options_mut().optimizer.repartition_file_scans = false;
    let single = SessionContext::new_with_config_rt(config, ctx.runtime_env());
    single.register_table(table, provider)?;
    single.table(table).await
}

fn display(array: &ArrayRef, i: usize) -> String {
    arrow::util::display::array_value_to_string(array, i).unwrap_or_else(|_| "?".into())
}

/// The order checks a session's scans have started, in a [`SessionConfig`] extension so that
/// scans (which see only the session) can add theirs and groups can wait for them.
///
/// [`SessionConfig`]: datafusion::prelude::SessionConfig
#[derive(Debug, Default)]
pub struct SourceChecks(std::sync::Mutex<Vec<Arc<SourceCheck>>>);

impl SourceChecks {
    /// Starts `check` on its own task unless it has been started already.
    fn start(&self, check: &Arc<SourceCheck>) {
        let mut started = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if started.iter().any(|c| Arc::ptr_eq(c, check)) {
            return;
        }
        started.push(check.clone());
        let check = check.clone();
        tokio::spawn(async move { check.ensure().await });
    }
}

/// Waits for every order check started in the session `config` so far; the first broken
/// rule is the error. A group calls it once its query has run: every source its rows came from
/// (directly or through a cached view) was scanned, so its check was started, by then.
pub async fn ordered_sources_checked(config: &datafusion::prelude::SessionConfig) -> DfResult<()> {
    let Some(checks) = config.get_extension::<SourceChecks>() else {
        return Ok(());
    };
    let started: Vec<Arc<SourceCheck>> = checks.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for check in started {
        check.ensure().await?;
    }
    Ok(())
}

/// Starts `check` in the session behind `state` (on the spot when the session has no
/// registry: then nothing would wait for it later).
async fn start_check(state: &dyn Session, check: &Arc<SourceCheck>) -> DfResult<()> {
    match state.config().get_extension::<SourceChecks>() {
        Some(checks) => {
            checks.start(check);
            Ok(())
        }
        None => check.ensure().await,
    }
}

/// A source's `ordered_by` rule (values ascending in file order, no nulls), started by the
/// first scan of the source in a session, so a run whose groups do not read the source does
/// not read it either.
#[derive(Debug)]
pub struct SourceCheck {
    column: String,
    in_file_order: DataFrame,
    /// `source "name" (path)`, for errors.
    what: String,
    outcome: tokio::sync::OnceCell<std::result::Result<(), Kept>>,
}

impl SourceCheck {
    async fn ensure(&self) -> DfResult<()> {
        let outcome = self.outcome.get_or_init(|| self.run()).await;
        outcome.clone().map_err(|kept| kept.error())
    }

    /// Reads the column in file order; the first row that breaks the rule is the error.
    async fn run(&self) -> std::result::Result<(), Kept> {
        let what = &self.what;
        let text = |e: DataFusionError| Kept::new(&e, format!("{what}: {e}"));
        let mut stream = self
            .in_file_order
            .clone()
            .select_columns(&[self.column.as_str()])
            .map_err(text)?
            .execute_stream()
            .await
            .map_err(text)?;
        let mut rows = 0i64;
        let mut last: Option<(i64, String)> = None;
        while let Some(batch) = stream.next().await {
            let values = batch.map_err(text)?.column(0).clone();
            self.check(&values, rows, &mut last)
                .map_err(|m| Kept::other(format!("{what}: {m}")))?;
            rows += values.len() as i64;
        }
        Ok(())
    }

    /// Checks one batch starting at row `start`; `last` is the value before it (and how it
    /// reads), updated to the batch's last value.
    fn check(
        &self,
        values: &ArrayRef,
        start: i64,
        last: &mut Option<(i64, String)>,
    ) -> std::result::Result<(), String> {
        let n = values.len();
        let keys = order_key(values).map_err(|e| e.to_string())?;
        let mut previous = last.as_ref().map(|(v, _)| *v);
        // One branch-free pass for the usual batch, in order; the row-by-row search below
        // only runs to name the row that breaks the rule.
        let in_order = keys.null_count() == 0 && {
            let keys = keys.values();
            let joins = match (previous, keys.first()) {
                (Some(p), Some(&first)) => p <= first,
                _ => true,
            };
            joins
                && keys
                    .windows(2)
                    .fold(true, |ok, pair| ok & (pair[0] <= pair[1]))
        };
        let search = if in_order { 0..0 } else { 0..n };
        for i in search {
            let problem = if keys.is_null(i) {
                Some("is null".to_string())
            } else {
                let value = keys.value(i);
                let earlier = previous.is_some_and(|p| value < p);
                previous = Some(value);
                earlier.then(|| {
                    let before = if i > 0 {
                        display(values, i - 1)
                    } else {
                        last.as_ref().map(|(_, t)| t.clone()).unwrap_or_default()
                    };
                    format!(
                        "is {}, earlier than {before} in the row before",
                        display(values, i)
                    )
                })
            };
            if let Some(problem) = problem {
                let column = &self.column;
                return Err(format!(
                    "row {} (0-based, in file order): column {column:?} {problem} \
                     (rule ordered_by: rows must be in ascending {column:?} order, no nulls)",
                    start + i as i64
                ));
            }
        }
        if n > 0 {
            *last = Some((keys.value(n - 1), display(values, n - 1)));
        }
        Ok(())
    }
}

/// A source with a declared order and no row index: the raw table (read in parallel, with
/// its own projection and filter pushdown), its order check started by the first scan.
#[derive(Debug)]
struct CheckedTable {
    raw: Arc<dyn TableProvider>,
    check: Arc<SourceCheck>,
}

#[async_trait]
impl TableProvider for CheckedTable {
    fn schema(&self) -> SchemaRef {
        self.raw.schema()
    }

    fn table_type(&self) -> TableType {
        self.raw.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.raw.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        start_check(state, &self.check).await?;
        self.raw.scan(state, projection, filters, limit).await
    }
}

/// A source with a 0-based row index column (first) prepended in file order.
#[derive(Debug)]
struct IndexedTable {
    /// The index, then the raw table's columns.
    schema: SchemaRef,
    raw: Arc<dyn TableProvider>,
    /// The raw table read in file order.
    in_file_order: DataFrame,
    check: Option<Arc<SourceCheck>>,
}

#[async_trait]
impl TableProvider for IndexedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let Some(check) = &self.check {
            start_check(state, check).await?;
        }
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        if !projection.contains(&0) {
            // Without the index, row order does not matter.
            let raw: Vec<usize> = projection.iter().map(|i| i - 1).collect();
            return self.raw.scan(state, Some(&raw), &[], limit).await;
        }
        // The index and the projected columns, in schema order, read on one partition.
        let mut read: Vec<usize> = projection.clone();
        read.sort_unstable();
        read.dedup();
        let names: Vec<&str> = read[1..]
            .iter()
            .map(|&i| self.schema.field(i).name().as_str())
            .collect();
        let partition = IndexedStream {
            schema: Arc::new(self.schema.project(&read)?),
            scan: self.in_file_order.clone().select_columns(&names)?,
        };
        let output: Vec<usize> = projection
            .iter()
            .map(|i| {
                read.binary_search(i)
                    .expect("projection is a subset of read")
            })
            .collect();
        let at = projection.iter().position(|&i| i == 0).unwrap_or_default();
        let index = Column::new(self.schema.field(0).name(), at);
        let ordering = LexOrdering::new([PhysicalSortExpr::new(
            Arc::new(index),
            SortOptions {
                descending: false,
                nulls_first: false,
            },
        )]);
        Ok(Arc::new(StreamingTableExec::try_new(
            partition.schema.clone(),
            vec![Arc::new(partition)],
            Some(&output),
            ordering,
            false,
            limit,
        )?))
    }
}

/// The raw table in file order with the row index prepended. Each execution plans the scan
/// afresh: physical plans may hold single-use state.
#[derive(Debug)]
struct IndexedStream {
    schema: SchemaRef,
    scan: DataFrame,
}

impl PartitionStream for IndexedStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let scan = self.scan.clone();
        let schema = self.schema.clone();
        let stream = futures::stream::once(async move { scan.execute_stream().await })
            .flat_map(move |inner| match inner {
                Ok(stream) => stream.boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .scan(0i64, move |rows, batch| {
                let result = batch.and_then(|batch| {
                    let start = *rows;
                    *rows += batch.num_rows() as i64;
                    let index = Int64Array::from_iter_values(start..*rows);
                    let mut columns: Vec<ArrayRef> = vec![Arc::new(index)];
                    columns.extend(batch.columns().iter().cloned());
                    Ok(RecordBatch::try_new(schema.clone(), columns)?)
                });
                futures::future::ready(Some(result))
            });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}
