//! The query engine: a DataFusion session with the repository's sources and views registered.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::common::utils::memory::RecordBatchMemoryCounter;
use datafusion::error::Result as DfResult;
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryPool, MemoryReservation,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
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
    /// Cores the queries of a run share (default: all).
    pub cores: usize,
    /// Feature groups computed at the same time (each holds its own query's memory).
    pub concurrent_groups: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memory_limit: 1 << 30,
            cores: std::thread::available_parallelism().map_or(2, |n| n.get()),
            concurrent_groups: 2,
        }
    }
}

impl EngineOptions {
    /// Partitions (parallel streams) of each query in a run of `groups` groups: the cores are
    /// split between the groups that run side by side, rounding up (a core left idle for a
    /// whole run costs more than a little oversubscription). Groups that fill the cores between
    /// them gain nothing from splitting their own queries too, and pay for it: a partial and a
    /// final aggregation instead of one, rows hashed across partitions, sorted partitions
    /// merged (flights, 2 cores, 2 groups at a time, 6 interleaved runs against 2 partitions
    /// each: 10% less CPU, 6% less wall time, 35 MiB less memory). A run of one group uses
    /// every core.
    pub fn partitions(&self, groups: usize) -> usize {
        let side_by_side = self.concurrent_groups.clamp(1, groups.max(1));
        self.cores.div_ceil(side_by_side).max(1)
    }
}

fn session_config(options: &EngineOptions, groups: usize) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(options.partitions(groups))
        .with_batch_size(64 * 1024)
        .with_extension(Arc::new(crate::source::SourceChecks::default()))
        .with_extension(Arc::new(crate::bad_record::TextSources::default()));
    // Parquet strings are read as Utf8View (DataFusion's default, kept on purpose): decoding
    // makes views into the dictionary page instead of copying every value, and short strings
    // (airport codes) are grouped and joined by comparing 16-byte views, not bytes (flights:
    // about 7% less CPU). Feature tables are still written as plain strings (`conform`).
    // When the groups running side by side already fill the cores, a one-partition stream (a
    // source read in file order for its row index, a small or compressed file) is not spread
    // over the cores round-robin: for an ordered one that is only to merge it back in order,
    // which cost more than the work shared (flights labels: 0.2 CPU-s and 50 MiB of 1.3 s).
    // With more than one partition per query (a run of one group, or more cores than groups
    // at a time), file scans are still split by byte range and hash exchanges still
    // parallelise joins and aggregations.
    config
        .options_mut()
        .optimizer
        .enable_round_robin_repartition = options.cores > options.concurrent_groups;
    config
}

/// A session with every source and view of `repo` registered, for a run of `groups` groups;
/// `overrides` replace source paths (`--source NAME=PATH`).
pub async fn session(
    repo: &LoadedRepo,
    overrides: &[(String, String)],
    options: &EngineOptions,
    groups: usize,
) -> Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        // Shared fairly by the spilling operators of the groups running at the same time.
        .with_memory_pool(Arc::new(FairSpillPool::new(options.memory_limit)))
        .build_arc()
        .map_err(|e| Error::Flag(format!("memory limit: {e}")))?;
    let state = SessionStateBuilder::new()
        .with_config(session_config(options, groups))
        .with_runtime_env(runtime)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(crate::framed_window::FramedWindowRule))
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.add_optimizer_rule(Arc::new(crate::timestamp_parts::TimestampPartsRule));
    ctx.add_optimizer_rule(Arc::new(crate::rows_window::RowsWindowRule));
    ctx.add_optimizer_rule(Arc::new(crate::string_concat::StringConcatRule));
    for (name, path) in source_paths(repo, overrides)? {
        let source = &repo.repo.sources[&name];
        crate::source::register_source(&ctx, &name, source, &path).await?;
    }
    register_views(&ctx, repo).await?;
    Ok(ctx)
}

/// An override naming no source of the repository is a flag error: ignored, a typo such as
/// `--source flight=…` would run on the configured data instead.
fn check_overrides(repo: &LoadedRepo, overrides: &[(String, String)]) -> Result<()> {
    match overrides
        .iter()
        .find(|(name, _)| !repo.repo.sources.contains_key(name))
    {
        Some((name, _)) => Err(Error::Flag(format!(
            "--source {name}=…: no source {name:?} in {} (sources: {})",
            repo.path.display(),
            repo.repo
                .sources
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        None => Ok(()),
    }
}

/// Resolved source paths, for fingerprints and lineage.
pub fn source_paths(
    repo: &LoadedRepo,
    overrides: &[(String, String)],
) -> Result<Vec<(String, String)>> {
    check_overrides(repo, overrides)?;
    Ok(repo
        .repo
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
        .collect())
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
                        true => Arc::new(CachedView::new(name, df)),
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
/// Groups planning at the same time wait for the one computation; its outcome, error included,
/// is kept, so a failing view is computed once, not once per group.
///
/// The held rows count against the run's memory limit, like the queries' own memory: the
/// cache reserves their size from the session's pool for the rest of the run, so the limit
/// bounds the whole engine and the queries spill earlier instead of the process outgrowing
/// it. Rows that do not fit are dropped and every plan reading the view computes it again:
/// slower, the same rows, and within the limit.
#[derive(Debug)]
struct CachedView {
    name: String,
    view: DataFrame,
    /// The view's declared (logical) schema: the rows are held under it, so plans over the
    /// view see the schema they were planned with.
    schema: SchemaRef,
    cached: tokio::sync::OnceCell<std::result::Result<Option<Held>, crate::bad_record::Kept>>,
}

/// A cached view's rows and the memory reserved for them.
#[derive(Debug)]
struct Held {
    table: Arc<MemTable>,
    _reservation: MemoryReservation,
}

impl CachedView {
    fn new(name: &str, view: DataFrame) -> Self {
        let schema = Arc::new(view.schema().as_arrow().clone());
        CachedView {
            name: name.to_string(),
            view,
            schema,
            cached: tokio::sync::OnceCell::new(),
        }
    }

    /// The view's rows with their memory reserved from `pool`, or `None` when they do not fit.
    async fn compute(&self, pool: &Arc<dyn MemoryPool>) -> DfResult<Option<Held>> {
        let partitions = self.view.clone().collect_partitioned().await?;
        let partitions = partitions
            .into_iter()
            .map(|batches| {
                batches
                    .into_iter()
                    .map(|b| RecordBatch::try_new(self.schema.clone(), b.columns().to_vec()))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        // Each buffer once: an aggregation emits its groups as slices of one batch, and
        // `get_array_memory_size` per slice counted the whole batch each time (the flights
        // `pair_daily` on 12M rows: 5.8 GB for about 200 MB).
        let mut counter = RecordBatchMemoryCounter::new();
        let bytes: usize = partitions
            .iter()
            .flatten()
            .map(|batch| counter.count_batch(batch))
            .sum();
        let reservation = MemoryConsumer::new(format!("cached view {}", self.name)).register(pool);
        if let Err(e) = reservation.try_grow(bytes) {
            tracing::warn!(
                view = %self.name,
                mib = bytes >> 20,
                "the cached view's rows do not fit the memory limit: each query reading it \
                 computes it again ({e})"
            );
            return Ok(None);
        }
        tracing::info!(view = %self.name, mib = bytes >> 20, "cached view held");
        let table = Arc::new(MemTable::try_new(self.schema.clone(), partitions)?);
        Ok(Some(Held {
            table,
            _reservation: reservation,
        }))
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
        let pool = &state.runtime_env().memory_pool;
        let held = self
            .cached
            .get_or_init(|| async {
                self.compute(pool).await.map_err(|e| {
                    crate::bad_record::Kept::new(&e, format!("view {}: {e}", self.name))
                })
            })
            .await
            .as_ref()
            .map_err(|kept| kept.error())?;
        match held {
            Some(held) => held.table.scan(state, projection, filters, limit).await,
            None => {
                let view = self.view.clone().into_view();
                view.scan(state, projection, filters, limit).await
            }
        }
    }
}

/// Plans every view and group of `repo` against its sources' schemas, without running a
/// query (`feature-pipeline check`): the problems a run would meet before reading rows, such as
/// an unknown table, column or function, or an output that does not match the declared
/// columns. Parquet sources give their schema from the file footer, CSV and JSON sources their
/// declared columns (or a schema inferred from their first rows). `Err` says why nothing could
/// be planned: a source that cannot be opened here.
pub async fn plan_problems(repo: &LoadedRepo) -> Result<std::result::Result<Vec<String>, String>> {
    let options = EngineOptions::default();
    let ctx = match session(repo, &[], &options, repo.repo.groups.len()).await {
        Ok(ctx) => ctx,
        // Not on this machine (a missing file, a store it cannot reach): nothing to plan.
        Err(e @ Error::Source { .. }) if unavailable(repo, &e) => return Ok(Err(e.to_string())),
        // On this machine and not what the repository declares: bad input, as a run says.
        Err(e @ Error::Source { .. }) => return Err(e),
        Err(e) => return Ok(Ok(vec![e.to_string()])),
    };
    let mut problems = Vec::new();
    for (name, group) in &repo.repo.groups {
        match ctx.sql(&group.sql).await {
            Ok(df) => {
                let output = df.schema().as_arrow().clone();
                // The table it would commit: declared columns that match, types the layout
                // stores, a date or time stamp as event time.
                let definition = crate::run::definition_for(name, group, &output).and_then(|d| {
                    storage::table::check_definition(&d)?;
                    Ok(d)
                });
                if let Err(e) = definition {
                    problems.push(format!("groups.{name}: {e}"));
                }
            }
            Err(e) => problems.push(format!("groups.{name}.sql: {e}")),
        }
    }
    Ok(Ok(problems))
}

/// Whether a source error is the source's absence from this machine: a local path that does
/// not exist, or any error of a source in a remote store.
fn unavailable(repo: &LoadedRepo, error: &Error) -> bool {
    let Error::Source {
        source_name,
        message,
        ..
    } = error
    else {
        return false;
    };
    let remote = repo
        .repo
        .sources
        .get(source_name)
        .is_some_and(|s| s.path.contains("://"));
    remote || message == crate::source::NO_SUCH_FILE
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
    // Planned as in a run of every group of the repository.
    let ctx = session(repo, overrides, options, repo.repo.groups.len()).await?;
    let (sql_err, exec_err) = (Error::sql(group), Error::execution(group));
    let df = ctx.sql(&config.sql).await.map_err(sql_err)?;
    let batches = df
        .explain(false, analyze)
        .map_err(sql_err)?
        .collect()
        .await
        .map_err(exec_err)?;
    crate::source::ordered_sources_checked(&ctx.copied_config())
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

#[cfg(test)]
mod tests {
    use super::EngineOptions;

    fn options(cores: usize, concurrent_groups: usize) -> EngineOptions {
        EngineOptions {
            memory_limit: 1 << 20,
            cores,
            concurrent_groups,
        }
    }

    /// The cores are shared by the groups that can run at once, no fewer than one partition
    /// per query, and a run with fewer groups than the limit gives each a larger share.
    #[test]
    fn partitions_split_the_cores_between_groups_running_at_once() {
        let cases = [
            // (cores, concurrent_groups, groups in the run, partitions per query)
            (2, 2, 5, 1),
            (2, 2, 2, 1),
            (2, 2, 1, 2),
            (2, 2, 0, 2),
            (2, 1, 5, 2),
            (2, 0, 5, 2),
            (1, 2, 5, 1),
            (3, 2, 5, 2),
            (8, 2, 5, 4),
            (8, 3, 5, 3),
            (8, 10, 3, 3),
        ];
        for (cores, concurrent, groups, expected) in cases {
            assert_eq!(
                options(cores, concurrent).partitions(groups),
                expected,
                "{cores} cores, {concurrent} at a time, {groups} groups"
            );
        }
    }
}
