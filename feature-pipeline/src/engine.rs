//! The query engine: a DataFusion session with the repository's sources and views registered.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{
    CsvReadOptions, DataFrame, JsonReadOptions, ParquetReadOptions, SessionConfig, SessionContext,
    col,
};
use futures::StreamExt;

use crate::config::{Format, LoadedRepo, SourceConfig};
use crate::error::{Error, Result};

/// Engine settings from flags.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Memory the query engine may hold before it spills sorts to disk.
    pub memory_limit: usize,
    /// Threads of parallelism (default: all cores).
    pub target_partitions: usize,
    /// Feature groups computed at the same time (each holds its own query's memory).
    pub concurrent_groups: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memory_limit: 1 << 30,
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            concurrent_groups: 2,
        }
    }
}

fn session_config(target_partitions: usize) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(target_partitions)
        .with_batch_size(64 * 1024);
    // Plain Utf8 strings, as declared in feature tables and read by every Parquet reader.
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    config
}

/// A session with every source and view of `repo` registered; `overrides` replace source
/// paths (`--source NAME=PATH`).
pub async fn session(
    repo: &LoadedRepo,
    overrides: &[(String, String)],
    options: &EngineOptions,
) -> Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        // Shared fairly by the spilling operators of the groups running at the same time.
        .with_memory_pool(Arc::new(FairSpillPool::new(options.memory_limit)))
        .build_arc()
        .map_err(|e| Error::Flag(format!("memory limit: {e}")))?;
    let ctx =
        SessionContext::new_with_config_rt(session_config(options.target_partitions), runtime);
    for (name, source) in &repo.repo.sources {
        let path = overrides
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| repo.resolve(&source.path));
        register_source(&ctx, name, source, &path).await?;
    }
    register_views(&ctx, repo).await?;
    Ok(ctx)
}

/// Resolved source paths, for fingerprints and lineage.
pub fn source_paths(repo: &LoadedRepo, overrides: &[(String, String)]) -> Vec<(String, String)> {
    repo.repo
        .sources
        .iter()
        .map(|(name, source)| {
            let path = overrides
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| repo.resolve(&source.path));
            (name.clone(), path)
        })
        .collect()
}

async fn register_source(
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
        return Err(err("no such file or directory".into()));
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
    // and read in file order through `OrderedSource`.
    let in_order = source.row_index.is_some() || source.ordered_by.is_some();
    let raw_name = if in_order {
        format!("__raw_{name}")
    } else {
        name.to_string()
    };
    let (csv_ext, json_ext) = (extension(path, ".csv"), extension(path, ".jsonl"));
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
    registered.map_err(|e| err(e.to_string()))?;
    if in_order {
        let scan = ordered_scan(ctx, &raw_name)
            .await
            .map_err(|e| err(e.to_string()))?;
        let input: SchemaRef = Arc::new(scan.schema().as_arrow().clone());
        let mut fields: Vec<Field> = Vec::new();
        let mut sort_order = Vec::new();
        if let Some(index) = &source.row_index {
            if input.field_with_name(index).is_ok() {
                return Err(err(format!(
                    "row_index column {index:?} already exists in the source"
                )));
            }
            fields.push(Field::new(index, DataType::Int64, false));
            sort_order.push(col(index).sort(true, false));
        }
        fields.extend(input.fields().iter().map(|f| f.as_ref().clone()));
        let ordered_by = match &source.ordered_by {
            None => None,
            Some(column) => {
                let field = input.field_with_name(column).map_err(|_| {
                    err(format!("ordered_by column {column:?} is not in the source"))
                })?;
                if order_key(&arrow::array::new_empty_array(field.data_type())).is_err() {
                    return Err(err(format!(
                        "ordered_by column {column:?} is {}; it must be a date, time stamp or integer",
                        field.data_type()
                    )));
                }
                if source.row_index.is_none() {
                    sort_order.push(col(column).sort(true, false));
                }
                Some(column.clone())
            }
        };
        let schema = Arc::new(Schema::new(fields));
        let partition = OrderedSource {
            schema: schema.clone(),
            scan,
            check: OrderCheck {
                schema,
                with_index: source.row_index.is_some(),
                ordered_by,
                what: format!("source {name:?} ({path})"),
            },
        };
        let table = StreamingTable::try_new(partition.schema.clone(), vec![Arc::new(partition)])
            .map_err(|e| err(e.to_string()))?
            .with_sort_order(sort_order);
        ctx.register_table(name, Arc::new(table))
            .map_err(|e| err(e.to_string()))?;
    }
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

/// A file name's extension if it has one, so a single file of any name can be registered.
fn extension(path: &str, default: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    match file.rsplit_once('.') {
        Some((_, ext)) if !path.ends_with('/') => format!(".{ext}"),
        _ => default.to_string(),
    }
}

/// A scan of a table in a single-partition session: file order is preserved.
async fn ordered_scan(ctx: &SessionContext, table: &str) -> datafusion::error::Result<DataFrame> {
    let state = ctx.state();
    let mut config = state.config().clone();
    config.options_mut().execution.target_partitions = 1;
    config.options_mut().optimizer.repartition_file_scans = false;
    let single = SessionContext::new_with_config_rt(config, ctx.runtime_env());
    single.register_table(table, ctx.table_provider(table).await?)?;
    single.table(table).await
}

/// A source read in file order, with a 0-based row index column prepended and/or its
/// declared order checked row by row. Each execution plans the scan afresh: physical plans
/// may hold single-use state.
#[derive(Debug)]
struct OrderedSource {
    schema: SchemaRef,
    scan: DataFrame,
    check: OrderCheck,
}

/// What an ordered read adds to and checks in each batch.
#[derive(Debug, Clone)]
struct OrderCheck {
    schema: SchemaRef,
    with_index: bool,
    ordered_by: Option<String>,
    /// `source "name" (path)`, for errors.
    what: String,
}

/// Where the ordered stream is: rows seen, the last order value and how it reads.
#[derive(Default)]
struct Position {
    rows: i64,
    last: Option<(i64, String)>,
}

fn display(array: &ArrayRef, i: usize) -> String {
    arrow::util::display::array_value_to_string(array, i).unwrap_or_else(|_| "?".into())
}

impl OrderCheck {
    fn next_batch(&self, at: &mut Position, batch: RecordBatch) -> DfResult<RecordBatch> {
        let n = batch.num_rows();
        if let Some(column) = &self.ordered_by {
            let values = batch.column_by_name(column).ok_or_else(|| {
                DataFusionError::Execution(format!("{}: no column {column:?}", self.what))
            })?;
            let keys = order_key(values)?;
            let mut previous = at.last.as_ref().map(|(v, _)| *v);
            for i in 0..n {
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
                            at.last.as_ref().map(|(_, t)| t.clone()).unwrap_or_default()
                        };
                        format!(
                            "is {}, earlier than {before} in the row before",
                            display(values, i)
                        )
                    })
                };
                if let Some(problem) = problem {
                    return Err(DataFusionError::Execution(format!(
                        "{}: row {} (0-based, in file order): column {column:?} {problem} \
                         (rule ordered_by: rows must be in ascending {column:?} order, no nulls)",
                        self.what,
                        at.rows + i as i64
                    )));
                }
            }
            if n > 0 {
                at.last = Some((keys.value(n - 1), display(values, n - 1)));
            }
        }
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        if self.with_index {
            let start = at.rows;
            columns
                .push(Arc::new(Int64Array::from_iter_values(start..start + n as i64)) as ArrayRef);
        }
        columns.extend(batch.columns().iter().cloned());
        at.rows += n as i64;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

impl PartitionStream for OrderedSource {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let scan = self.scan.clone();
        let check = self.check.clone();
        let stream = futures::stream::once(async move { scan.execute_stream().await })
            .flat_map(move |inner| match inner {
                Ok(stream) => stream.boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .scan(Position::default(), move |at, batch| {
                let result = batch.and_then(|batch| check.next_batch(at, batch));
                futures::future::ready(Some(result))
            });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Registers views in dependency order (a view may use views declared after it).
async fn register_views(ctx: &SessionContext, repo: &LoadedRepo) -> Result<()> {
    let mut pending: Vec<(&String, &crate::config::ViewConfig)> = repo.repo.views.iter().collect();
    while !pending.is_empty() {
        let mut failed = Vec::new();
        let mut last_error = String::new();
        for (name, view) in pending.iter().copied() {
            match ctx.sql(&view.sql).await {
                Ok(df) => {
                    let df = if view.cache {
                        df.cache().await.map_err(|e| Error::Execution {
                            group: format!("view {name}"),
                            message: e.to_string(),
                        })?
                    } else {
                        df
                    };
                    ctx.register_table(name.as_str(), df.into_view())
                        .map_err(|e| Error::Sql {
                            group: format!("view {name}"),
                            message: e.to_string(),
                        })?;
                }
                Err(e) => {
                    last_error = format!("view {name}: {e}");
                    failed.push((name, view));
                }
            }
        }
        if failed.len() == pending.len() {
            return Err(Error::Sql {
                group: format!("views ({} unresolved)", failed.len()),
                message: last_error,
            });
        }
        pending = failed;
    }
    Ok(())
}
