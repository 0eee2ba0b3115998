//! The query engine: a DataFusion session with the repository's sources and views registered.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

use crate::config::LoadedRepo;
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
    // A source read in file order (a row index) is one stream; spreading its batches over
    // the cores and merging them back in order cost more than the projection they share
    // (flights labels: 0.2 CPU-s and 50 MiB of the 1.3 s group). Groups run side by side and
    // file scans are split by byte range anyway, so both cores stay busy.
    config
        .options_mut()
        .optimizer
        .enable_round_robin_repartition = false;
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
    ctx.add_optimizer_rule(Arc::new(crate::timestamp_parts::TimestampPartsRule));
    ctx.add_optimizer_rule(Arc::new(crate::rows_window::RowsWindowRule));
    for (name, source) in &repo.repo.sources {
        let path = overrides
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| repo.resolve(&source.path));
        crate::source::register_source(&ctx, name, source, &path).await?;
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

/// Registers views in dependency order (a view may use views declared after it).
async fn register_views(ctx: &SessionContext, repo: &LoadedRepo) -> Result<()> {
    let mut pending: Vec<(&String, &crate::config::ViewConfig)> = repo.repo.views.iter().collect();
    while !pending.is_empty() {
        let mut failed = Vec::new();
        let mut last_error = String::new();
        for (name, view) in pending.iter().copied() {
            match ctx.sql(&view.sql).await {
                Ok(df) => {
                    let table = match view.cache {
                        true => Arc::new(CachedView::new(df)),
                        false => df.into_view(),
                    };
                    ctx.register_table(name.as_str(), table)
                        .map_err(Error::sql(&format!("view {name}")))?;
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

/// A view declared `cache = true`: computed when a plan first reads it (so a run of groups that
/// do not read it never computes it) and then held in memory, shared by every group of the run.
/// Groups planning at the same time wait for the one computation.
#[derive(Debug)]
struct CachedView {
    view: DataFrame,
    schema: SchemaRef,
    cached: tokio::sync::OnceCell<Arc<dyn TableProvider>>,
}

impl CachedView {
    fn new(view: DataFrame) -> Self {
        let schema = Arc::new(view.schema().as_arrow().clone());
        CachedView {
            view,
            schema,
            cached: tokio::sync::OnceCell::new(),
        }
    }
}

#[async_trait]
impl TableProvider for CachedView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let table = self
            .cached
            .get_or_try_init(|| async {
                Ok::<_, DataFusionError>(self.view.clone().cache().await?.into_view())
            })
            .await?;
        table.scan(state, projection, filters, limit).await
    }
}

/// A group's query plan as the engine runs it (`feature-pipeline explain`): the physical
/// plan, or with `analyze` the plan after running the query (nothing is written) with each
/// operator's rows and time, to see where a group's time goes when tuning its SQL.
pub async fn explain(
    repo: &LoadedRepo,
    group: &str,
    overrides: &[(String, String)],
    options: &EngineOptions,
    analyze: bool,
) -> Result<String> {
    let config = repo.repo.groups.get(group).ok_or_else(|| {
        Error::Flag(format!(
            "no group {group:?} (groups: {})",
            repo.repo
                .groups
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let ctx = session(repo, overrides, options).await?;
    let (sql_err, exec_err) = (Error::sql(group), Error::execution(group));
    let df = ctx.sql(&config.sql).await.map_err(sql_err)?;
    let batches = df
        .explain(false, analyze)
        .map_err(sql_err)?
        .collect()
        .await
        .map_err(exec_err)?;
    let mut out = String::new();
    for batch in &batches {
        let (Some(kind), Some(plan)) = (
            batch.column_by_name("plan_type"),
            batch.column_by_name("plan"),
        ) else {
            continue;
        };
        for row in 0..batch.num_rows() {
            let value = |a: &arrow::array::ArrayRef| {
                arrow::util::display::array_value_to_string(a, row).unwrap_or_default()
            };
            out.push_str(&format!("-- {}\n{}\n", value(kind), value(plan)));
        }
    }
    Ok(out)
}
