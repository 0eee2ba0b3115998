//! `feature-pipeline run`: compute the selected groups, validate everything, then commit.
//!
//! Nothing is committed unless every selected group passes its `error` rules. Each group's
//! commit carries an idempotency key derived from (config, group, range, source
//! fingerprints), so re-running the same logical run commits nothing new while its commit is
//! still in effect ([`crate::rerun`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::Utc;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SessionContext, cast, ident, lit};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use serde::Serialize;
use storage::{
    ColumnDef, CommitOutcome, CommitRequest, DataFile, Name, NameKind, ObjectRef, Operation,
    RunRecord, RunStatus, Store, TableDefinition, TableWriter, ValidationReport,
};
use tokio::sync::Semaphore;
use tracing::{Instrument, info, info_span, warn};

use crate::bad_record;
use crate::config::{GroupConfig, LoadedRepo};
use crate::drift_reference;
use crate::engine::{self, EngineOptions};
use crate::error::{Error, Result};
use crate::rerun::{self, Rerun};
use crate::validate::Validator;

pub const PIPELINE: &str = "feature-pipeline";

/// A validated request to build features.
#[derive(Debug, Clone)]
pub struct FeatureJob {
    pub repo: LoadedRepo,
    /// Groups to build; empty means all.
    pub groups: Vec<String>,
    /// Incremental run: only rows with event time in `[from, to)` (microseconds), replacing
    /// that range in the table.
    pub range: Option<(i64, i64)>,
    pub run_id: Option<String>,
    pub dry_run: bool,
    /// Compute and commit even a logical run whose commit is still in effect.
    pub force: bool,
    /// A range run may commit a range the query returns no rows for (deleting the table's
    /// rows there): a day without events. Otherwise no rows is bad input.
    pub allow_empty: bool,
    /// `--source NAME=PATH` overrides.
    pub overrides: Vec<(String, String)>,
    pub engine: EngineOptions,
}

/// The machine-readable result printed on stdout.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub pipeline: &'static str,
    pub run_id: String,
    /// `succeeded`, `already_done`, `rejected`.
    pub status: RunStatus,
    pub dry_run: bool,
    pub store: String,
    pub range: Option<(String, String)>,
    pub groups: Vec<GroupSummary>,
    pub seconds: f64,
}

/// What happened to one group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    pub group: String,
    /// `committed`, `already_committed`, `rejected`, `validated` (dry run).
    pub status: &'static str,
    pub version: Option<u64>,
    pub rows: u64,
    pub files: usize,
    pub rules_passed: usize,
    pub rules_warned: usize,
    pub rules_failed: usize,
    pub failures: Vec<String>,
    pub warnings: Vec<String>,
    pub seconds: f64,
}

/// A computed, validated, staged (not yet committed) group.
struct Staged {
    definition: TableDefinition,
    files: Vec<DataFile>,
    rows: u64,
    statistics: storage::TableStatistics,
    validation: ValidationReport,
    key: String,
    seconds: f64,
}

/// Runs the job against `store`.
pub async fn build_features(store: &Store, job: &FeatureJob) -> Result<RunSummary> {
    let started = Instant::now();
    let started_at = Utc::now();
    job.repo.repo.check(&job.repo.path)?;
    let selected = select_groups(job)?;
    let sources = engine::source_paths(&job.repo, &job.overrides)?;
    let mut fingerprints = Vec::with_capacity(sources.len());
    for (name, path) in &sources {
        fingerprints.push(fingerprint(name, path).await?);
    }
    let config_hash = fti_runtime::hash_parts([job.repo.text.as_bytes()]);
    let range_text = job
        .range
        .map(|(a, b)| format!("{a}..{b}"))
        .unwrap_or_default();
    let group_key = |group: &str| {
        let mut parts: Vec<&[u8]> = vec![
            config_hash.as_bytes(),
            group.as_bytes(),
            range_text.as_bytes(),
        ];
        parts.extend(fingerprints.iter().map(|f| f.as_bytes()));
        fti_runtime::hash_parts(parts)
    };
    let run_id = match &job.run_id {
        Some(id) => id.clone(),
        None => {
            // Sorted, so the id does not depend on the order groups are declared or run in.
            let mut keys: Vec<String> = selected.iter().map(|g| group_key(g)).collect();
            keys.sort();
            let hash = fti_runtime::hash_parts(keys.iter().map(|k| k.as_bytes()));
            format!("features-{}", &hash[..16])
        }
    };
    let run_name = Name::new(NameKind::RunId, run_id.clone())?;
    let span = info_span!("run", run_id = %run_id, pipeline = PIPELINE);
    let _enter = span.enter();
    info!(groups = ?selected, store = store.url(), dry_run = job.dry_run, "feature run starting");
    if !job.dry_run {
        store.init().await?;
    }

    // This attempt's run record: written when the run finishes, or fails (below).
    let pipeline = Name::new(NameKind::Pipeline, PIPELINE)?;
    let record = |status, outputs, summary, error| RunRecord {
        format_version: storage::DOCUMENT_VERSION,
        pipeline: pipeline.clone(),
        run_id: run_name.clone(),
        attempt: storage::runs::new_attempt_id(started_at),
        status,
        started_at,
        finished_at: Utc::now(),
        inputs: sources
            .iter()
            .map(|(_, p)| ObjectRef::Source { url: p.clone() })
            .collect(),
        outputs,
        config_hash: config_hash.clone(),
        code_version: fti_runtime::code_version(env!("CARGO_PKG_VERSION")),
        summary,
        error,
    };
    // Everything after the store is ready runs in this block, so that an error in it is
    // recorded as a failed attempt of the run before it is returned.
    let outcome: Result<RunSummary> = async {
        let mut summaries = Vec::new();
        // Groups are independent (their own query, validation, statistics and staged files): they
        // run as tasks, `concurrent_groups` at a time, started in declaration order (a permit is
        // taken before a task is spawned, so the runtime's task order does not reorder them) and
        // taken back in that order.
        let mut tasks = Vec::new();
        let mut pending = Vec::new();
        for group in &selected {
            let group_started = Instant::now();
            let config = &job.repo.repo.groups[group];
            let table = Name::new(NameKind::FeatureGroup, group.as_str())?;
            let history = store.table_history(&table).await?;
            let key = match rerun::plan(&history, &group_key(group), job.force) {
                Rerun::Compute { key } => key,
                Rerun::Done { version } => {
                    info!(
                        group,
                        version, "already committed by an earlier run with the same inputs"
                    );
                    let rows = history
                        .iter()
                        .find(|c| c.version == version)
                        .map_or(0, |c| c.num_rows);
                    summaries.push(GroupSummary {
                        group: group.clone(),
                        status: "already_committed",
                        version: Some(version),
                        rows,
                        files: 0,
                        rules_passed: 0,
                        rules_warned: 0,
                        rules_failed: 0,
                        failures: vec![],
                        warnings: vec![],
                        seconds: group_started.elapsed().as_secs_f64(),
                    });
                    continue;
                }
            };
            let drift_columns: Vec<String> = config
                .rules
                .iter()
                .filter(|r| r.rule == crate::config::RuleKind::Drift)
                .filter_map(|r| r.column.clone())
                .collect();
            let previous = match drift_columns.is_empty() {
                true => None,
                false => {
                    drift_reference::reference(store, &table, &history, job.range, &drift_columns)
                        .await?
                }
            };
            pending.push((group.clone(), config.clone(), previous, key));
        }
        // Nothing above is spawned, so an error there leaves no task running. The session (which
        // reads and checks ordered sources) is made only when a group has work to do.
        let ctx = match pending.is_empty() {
            true => None,
            false => {
                Some(engine::session(&job.repo, &job.overrides, &job.engine, pending.len()).await?)
            }
        };
        let permits = Arc::new(Semaphore::new(job.engine.concurrent_groups.max(1)));
        // Once a group has failed nothing will be committed: its task closes the semaphore, so
        // the groups still waiting for a permit are not started (a failing source no longer
        // costs the whole run's time) and the error names them. A group that only fails
        // validation does not stop the others: the run reports every group's rules at once.
        let mut not_started = Vec::new();
        for (group, config, previous, key) in pending {
            let ctx = ctx
                .clone()
                .expect("a session exists when a group is pending");
            let store = store.clone();
            let (range, dry_run) = (job.range, job.dry_run);
            let empty_ok = job.allow_empty && range.is_some();
            let Ok(permit) = permits.clone().acquire_owned().await else {
                not_started.push(group);
                continue;
            };
            let permits = permits.clone();
            let task = async move {
                let _permit = permit;
                let started = Instant::now();
                let staged = compute_group(
                    &store,
                    &ctx,
                    &group,
                    &config,
                    range,
                    empty_ok,
                    dry_run,
                    previous.as_ref(),
                    key,
                )
                .await;
                // Closed before this task's permit is returned, so no group starts after it.
                if staged.is_err() {
                    permits.close();
                }
                let mut staged = staged?;
                staged.seconds = started.elapsed().as_secs_f64();
                Ok::<_, Error>((group, staged))
            };
            tasks.push(tokio::spawn(task.instrument(span.clone())));
        }
        // Every task finishes (so no staged file is left behind by a running one) before errors
        // are acted on.
        let mut staged: Vec<(String, Staged)> = Vec::new();
        let mut errors = Vec::new();
        let mut panic = None;
        for task in tasks {
            match task.await {
                Ok(Ok(done)) => staged.push(done),
                Ok(Err(e)) => errors.push(e),
                Err(e) => {
                    panic.get_or_insert(e);
                }
            }
        }
        if !errors.is_empty() || panic.is_some() {
            discard(store, &staged).await;
        }
        if let Some(e) = panic {
            std::panic::resume_unwind(e.into_panic());
        }
        // Every failed group is reported, the first one declared giving the exit code.
        let mut errors = errors.into_iter();
        if let Some(e) = errors.next() {
            // Groups that failed on the same bad record (a source they share) report it once.
            let mut said = vec![e.to_string()];
            let also_failed: Vec<Error> = errors
                .filter(|other| {
                    let text = other.to_string();
                    let new = !said.contains(&text);
                    said.push(text);
                    new
                })
                .collect();
            return Err(match also_failed.is_empty() && not_started.is_empty() {
                true => e,
                false => Error::Stopped {
                    error: Box::new(e),
                    also_failed,
                    not_started,
                },
            });
        }

        let rejected = staged
            .iter()
            .any(|(_, s)| s.validation.errors().next().is_some());
        let mut outputs = Vec::new();
        for (group, s) in &staged {
            let failures: Vec<String> = s.validation.errors().map(|r| r.message.clone()).collect();
            let warnings: Vec<String> =
                s.validation.warnings().map(|r| r.message.clone()).collect();
            for w in &warnings {
                warn!(group, "{w}");
            }
            for f in &failures {
                tracing::error!(group, "{f}");
            }
            let status = if !failures.is_empty() {
                "rejected"
            } else if rejected {
                // Another group failed: nothing is committed.
                "not_committed"
            } else if job.dry_run {
                "validated"
            } else {
                "pending"
            };
            summaries.push(GroupSummary {
                group: group.clone(),
                status,
                version: None,
                rows: s.rows,
                files: s.files.len(),
                rules_passed: s.validation.rules.iter().filter(|r| r.passed).count(),
                rules_warned: warnings.len(),
                rules_failed: failures.len(),
                failures,
                warnings,
                seconds: s.seconds,
            });
        }
        if rejected || job.dry_run {
            discard(store, &staged).await;
        } else {
            for (group, s) in staged {
                let operation = match job.range {
                    Some((from_us, to_us)) => Operation::ReplaceRange { from_us, to_us },
                    None => Operation::Overwrite,
                };
                let mut request = CommitRequest::new(s.definition, operation);
                request.run_id = Some(run_id.clone());
                request.idempotency_key = Some(s.key);
                request.statistics = Some(s.statistics);
                request.validation = Some(s.validation);
                request.metadata = BTreeMap::from([
                    ("config_hash".to_string(), config_hash.clone().into()),
                    (
                        "code_version".to_string(),
                        fti_runtime::code_version(env!("CARGO_PKG_VERSION")).into(),
                    ),
                    (
                        "sources".to_string(),
                        serde_json::to_value(&sources).unwrap_or_default(),
                    ),
                ]);
                let outcome = store.commit_table(&request, s.files).await?;
                let summary = summaries
                    .iter_mut()
                    .find(|g| g.group == group)
                    .expect("every staged group has a summary");
                summary.version = Some(outcome.version());
                summary.status = match outcome {
                    CommitOutcome::Committed { .. } => "committed",
                    CommitOutcome::AlreadyCommitted { .. } => "already_committed",
                };
                outputs.push(ObjectRef::Table {
                    name: group,
                    version: outcome.version(),
                });
            }
        }

        let status = if rejected {
            RunStatus::Rejected
        } else if summaries.iter().all(|g| g.status == "already_committed") {
            RunStatus::AlreadyDone
        } else {
            RunStatus::Succeeded
        };
        let summary = RunSummary {
            pipeline: PIPELINE,
            run_id: run_id.clone(),
            status,
            dry_run: job.dry_run,
            store: store.url().to_string(),
            range: job
                .range
                .map(|(a, b)| (micros_to_string(a), micros_to_string(b))),
            groups: summaries,
            seconds: started.elapsed().as_secs_f64(),
        };
        if !job.dry_run {
            let summary_json = serde_json::to_value(&summary).unwrap_or_default();
            let record = record(status, outputs, summary_json, None);
            store.write_run_record(&record).await?;
        }
        info!(status = ?summary.status, seconds = summary.seconds, "feature run finished");
        Ok(summary)
    }
    .await;
    match outcome {
        Err(error) if !job.dry_run => {
            let record = record(
                RunStatus::Failed,
                vec![],
                serde_json::Value::Null,
                Some(error.to_string()),
            );
            // The run's own error matters more than a failure to record it.
            if let Err(e) = store.write_run_record(&record).await {
                warn!("cannot write the failed run's record: {e}");
            }
            Err(error)
        }
        outcome => outcome,
    }
}

fn select_groups(job: &FeatureJob) -> Result<Vec<String>> {
    if job.groups.is_empty() {
        return Ok(job.repo.repo.groups.keys().cloned().collect());
    }
    for g in &job.groups {
        if !job.repo.repo.groups.contains_key(g) {
            return Err(Error::Flag(format!(
                "--group {g:?} is not defined in {} (groups: {})",
                job.repo.path.display(),
                job.repo
                    .repo
                    .groups
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    // Declaration order, each group once, whatever the order of the flags.
    Ok(job
        .repo
        .repo
        .groups
        .keys()
        .filter(|g| job.groups.contains(g))
        .cloned()
        .collect())
}

/// Identifies a source's content cheaply: size and modification time (and ETag in object
/// stores) of every file, so a changed input makes a new logical run.
async fn fingerprint(name: &str, path: &str) -> Result<String> {
    let source_err = |message: String| Error::Source {
        source_name: name.to_string(),
        path: path.to_string(),
        message,
    };
    if let Some((_, store)) =
        crate::source::cloud_store(path).map_err(|e| source_err(e.to_string()))?
    {
        let parsed = url::Url::parse(path).map_err(|e| source_err(e.to_string()))?;
        let prefix = object_store::path::Path::from(parsed.path().trim_start_matches('/'));
        let mut metas: Vec<String> = store
            .list(Some(&prefix))
            .map(|m| {
                m.map(|m| {
                    format!(
                        "{}:{}:{}:{:?}",
                        m.location, m.size, m.last_modified, m.e_tag
                    )
                })
            })
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| source_err(e.to_string()))?;
        metas.sort();
        return Ok(format!("{name}={path}:{}", metas.join(",")));
    }
    let meta = |p: &std::path::Path| {
        std::fs::metadata(p).ok().map(|m| {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            (m.len(), modified)
        })
    };
    let local = std::path::Path::new(path);
    let parts: Vec<String> = if local.is_dir() {
        let mut entries: Vec<String> = std::fs::read_dir(local)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| meta(&e.path()).map(|m| format!("{}:{m:?}", e.path().display())))
            .collect();
        entries.sort();
        entries
    } else {
        vec![format!("{:?}", meta(local))]
    };
    Ok(format!("{name}={path}:{}", parts.join(",")))
}

async fn discard(store: &Store, staged: &[(String, Staged)]) {
    for (group, s) in staged {
        if let Ok(table) = Name::new(NameKind::FeatureGroup, group.as_str()) {
            store.discard_staged(&table, &s.files).await;
        }
    }
}

/// Runs one group's query and stages its output.
#[allow(clippy::too_many_arguments)]
async fn compute_group(
    store: &Store,
    ctx: &SessionContext,
    group: &str,
    config: &GroupConfig,
    range: Option<(i64, i64)>,
    // No rows is a result to commit (an empty range), not bad input.
    empty_ok: bool,
    dry_run: bool,
    previous: Option<&storage::TableStatistics>,
    key: String,
) -> Result<Staged> {
    let (sql_err, exec_err) = (Error::sql(group), Error::execution(group));
    let mut df = ctx.sql(&config.sql).await.map_err(sql_err)?;
    let output: Schema = df.schema().as_arrow().clone();
    let definition = definition_for(group, config, &output)?;
    let target = storage::table::arrow_schema(&definition)?;
    if let Some((from, to)) = range {
        let et = cast(
            ident(&config.event_time),
            DataType::Timestamp(TimeUnit::Microsecond, None),
        );
        let from = lit(ScalarValue::TimestampMicrosecond(Some(from), None));
        let to = lit(ScalarValue::TimestampMicrosecond(Some(to), None));
        df = df
            .filter(et.clone().gt_eq(from).and(et.lt(to)))
            .map_err(exec_err)?;
    }
    let plan = match df.create_physical_plan().await {
        Ok(plan) => plan,
        // Planning computes the cached views the query reads.
        Err(e) if bad_record::is_reader_error(&e) => {
            return Err(
                bad_record::first_bad_record(ctx, &e.to_string(), &Default::default())
                    .await
                    .unwrap_or_else(|| exec_err(e)),
            );
        }
        Err(e) => return Err(exec_err(e)),
    };
    let batches = batch_schema(&target, &plan.schema());
    let sorted_by = leading_columns(plan.as_ref());
    tracing::debug!(group, sorted_by = ?sorted_by, "output ordering");
    let scanned = bad_record::scanned_files(plan.as_ref());
    let mut stream = execute_stream(plan, ctx.task_ctx()).map_err(exec_err)?;
    let mut validator = Validator::new(group, config, &batches, &sorted_by);
    let mut profiler = fti_stats::TableProfiler::new(&target);
    let mut writer = (!dry_run)
        .then(|| TableWriter::new(store, &definition))
        .transpose()?
        .map(BackgroundWriter::start);
    let mut rows = 0u64;
    let mut last_log = Instant::now();
    // The reader's error, if a source's reader failed the stream.
    let mut reader_failed: Option<String> = None;
    let streamed: Result<()> = loop {
        let Some(batch) = stream.next().await else {
            break Ok(());
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                reader_failed = bad_record::is_reader_error(&e).then(|| e.to_string());
                break Err(exec_err(e));
            }
        };
        let batch = match conform(group, &batch, &batches) {
            Ok(batch) => batch,
            Err(e) => break Err(e),
        };
        rows += batch.num_rows() as u64;
        if let Some(writer) = &mut writer
            && let Err(e) = writer.send(batch.clone()).await
        {
            break Err(e);
        }
        profiler.update(&batch);
        validator.update(&batch, &profiler);
        if last_log.elapsed().as_secs() >= 5 {
            info!(group, rows, "progress");
            last_log = Instant::now();
        }
    };
    // The rows may come from a source whose order check is still running. Its error comes
    // first: it names the file and row of what the rows only showed as a symptom (a null in
    // the declared order column becomes a null key, reported without a row).
    let checked = crate::source::ordered_sources_checked(&ctx.copied_config()).await;
    // A reader's error names neither the file nor (reading in parallel) the right line.
    let reader_error = match &checked {
        Err(e) if bad_record::is_reader_error(e) => Some(e.to_string()),
        _ => reader_failed,
    };
    let located = match reader_error {
        Some(engine_error) => bad_record::first_bad_record(ctx, &engine_error, &scanned).await,
        None => None,
    };
    let failed = match (located, checked, streamed) {
        (Some(e), _, _) => Some(e),
        (None, Err(e), _) => Some(exec_err(e)),
        (None, _, Err(e)) => Some(e),
        _ if rows == 0 && !empty_ok => Some(Error::Empty {
            group: group.to_string(),
            range: range.is_some(),
        }),
        _ => None,
    };
    if let Some(e) = failed {
        // A long group puts a file per rows-per-file limit as it goes: delete those now
        // rather than leave them to vacuum.
        if let Some(writer) = writer {
            store
                .discard_staged(&definition.name, &writer.abandon().await)
                .await;
        }
        return Err(e);
    }
    let files = match writer {
        Some(writer) => writer.finish().await?,
        None => Vec::new(),
    };
    let (statistics, samples) = profiler.finish();
    let validation = validator.finish(&target, &statistics, &samples, previous);
    info!(
        group,
        rows,
        files = files.len(),
        "group computed and validated"
    );
    Ok(Staged {
        definition,
        files,
        rows,
        statistics,
        validation,
        key,
        seconds: 0.0,
    })
}

/// A [`TableWriter`] on its own task, so that encoding the files runs beside the query,
/// validation and statistics instead of after them. Batches go through a short channel; the
/// files are written only on [`BackgroundWriter::finish`]: dropped before, it stops without
/// writing the last file.
struct BackgroundWriter {
    batches: tokio::sync::mpsc::Sender<Message>,
    task: tokio::task::JoinHandle<storage::Result<Vec<DataFile>>>,
}

enum Message {
    Batch(RecordBatch),
    Finish,
    /// Stop and return the files put so far.
    Abandon,
}

impl BackgroundWriter {
    fn start(mut writer: TableWriter) -> Self {
        let (batches, mut received) = tokio::sync::mpsc::channel(2);
        let task = tokio::spawn(
            async move {
                while let Some(message) = received.recv().await {
                    match message {
                        Message::Batch(batch) => writer.write(&batch).await?,
                        Message::Finish => return writer.finish().await,
                        Message::Abandon => return Ok(writer.staged().to_vec()),
                    }
                }
                Ok(Vec::new())
            }
            .in_current_span(),
        );
        BackgroundWriter { batches, task }
    }

    /// Queues a batch; if the writer has stopped on an error, returns that error.
    async fn send(&mut self, batch: RecordBatch) -> Result<()> {
        if self.batches.send(Message::Batch(batch)).await.is_err() {
            Self::result(&mut self.task).await?;
        }
        Ok(())
    }

    /// Writes the last file and returns every staged file.
    async fn finish(mut self) -> Result<Vec<DataFile>> {
        let _ = self.batches.send(Message::Finish).await;
        Self::result(&mut self.task).await
    }

    /// Stops the writer and returns the files it has put (none if it failed itself).
    async fn abandon(mut self) -> Vec<DataFile> {
        let _ = self.batches.send(Message::Abandon).await;
        Self::result(&mut self.task).await.unwrap_or_default()
    }

    async fn result(
        task: &mut tokio::task::JoinHandle<storage::Result<Vec<DataFile>>>,
    ) -> Result<Vec<DataFile>> {
        match task.await {
            Ok(files) => Ok(files?),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only `Drop` aborts the task, and nothing awaits it after that.
            Err(e) => Err(Error::Execution {
                group: "(file writer)".into(),
                message: e.to_string(),
            }),
        }
    }
}

/// A writer dropped before `finish` (the group failed) stops at once, writing nothing more.
impl Drop for BackgroundWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The plain columns the plan's output is sorted by, leading ones first (stopping at the first
/// sort key that is an expression). None unless the plan has one output partition: several
/// are merged in arrival order, which keeps no ordering.
fn leading_columns(plan: &dyn ExecutionPlan) -> Vec<String> {
    let properties = plan.properties();
    if properties.output_partitioning().partition_count() != 1 {
        return Vec::new();
    }
    properties
        .output_ordering()
        .map(|ordering| {
            ordering
                .iter()
                .map_while(|sort| sort.expr.downcast_ref::<Column>())
                .map(|c| c.name().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The table definition: declared columns if any (checked against the query output), else
/// the output's own schema.
pub(crate) fn definition_for(
    group: &str,
    config: &GroupConfig,
    output: &Schema,
) -> Result<TableDefinition> {
    let schema_err = |message: String| Error::Schema {
        group: group.to_string(),
        message,
    };
    let is_key =
        |name: &str| config.entity_keys.iter().any(|k| k == name) || config.event_time == name;
    let declared = config.declared_columns().map_err(schema_err)?;
    let columns: Vec<ColumnDef> = match declared {
        Some(declared) => {
            let names: Vec<&str> = declared.iter().map(|c| c.name.as_str()).collect();
            let extra: Vec<&str> = output
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .filter(|n| !names.contains(n))
                .collect();
            if !extra.is_empty() {
                return Err(schema_err(format!(
                    "the query returns undeclared columns: {}",
                    extra.join(", ")
                )));
            }
            let mut columns = Vec::new();
            for c in declared {
                let field = output.field_with_name(&c.name).map_err(|_| {
                    schema_err(format!(
                        "declared column {:?} is missing from the query output",
                        c.name
                    ))
                })?;
                let want = storage::types::parse_type(&c.config.data_type)?;
                if !storage::types::storable_as(field.data_type(), &want)
                    && plain(field.data_type()) != want
                {
                    return Err(schema_err(format!(
                        "column {:?} is {} but declared {}",
                        c.name,
                        storage::types::type_name(field.data_type()),
                        c.config.data_type
                    )));
                }
                columns.push(ColumnDef {
                    name: c.name.clone(),
                    data_type: storage::types::type_name(&want),
                    nullable: c.config.nullable.unwrap_or(!is_key(&c.name)),
                    description: c.config.description.clone(),
                });
            }
            columns
        }
        None => output
            .fields()
            .iter()
            .map(|f| ColumnDef {
                name: f.name().clone(),
                data_type: storage::types::type_name(&plain(f.data_type())),
                nullable: !is_key(f.name()),
                description: String::new(),
            })
            .collect(),
    };
    Ok(TableDefinition {
        name: Name::new(NameKind::FeatureGroup, group)?,
        entity_keys: config.entity_keys.clone(),
        event_time: config.event_time.clone(),
        columns,
        description: config.description.clone(),
        owner: config.owner.clone(),
        tags: config.tags.clone(),
    })
}

/// The stored type of a query column whose type is not declared: strings as `string`, and
/// the types Parquet cannot hold as themselves ([`storage::table::unportable`]) as the nearest
/// ones it can: time stamps in seconds as milliseconds (a CSV source's inferred times), `date64`
/// as `date32`.
fn plain(t: &DataType) -> DataType {
    match t {
        t if t.is_string() => DataType::Utf8,
        DataType::Timestamp(TimeUnit::Second, tz) => {
            DataType::Timestamp(TimeUnit::Millisecond, tz.clone())
        }
        DataType::Date64 => DataType::Date32,
        // A dictionary-encoded column (a Parquet source's strings, say) as its values.
        DataType::Dictionary(_, values) => plain(values),
        t => t.clone(),
    }
}

/// The schema of the batches handed to validation, statistics and the writer: the table's
/// columns, in its order, with its types, except that a string column keeps the query's
/// string encoding. The engine hands out `Utf8View`, which every consumer reads as is and the
/// Parquet writer writes as the declared strings: casting 3M-row columns to `Utf8` only copied
/// their bytes.
fn batch_schema(target: &SchemaRef, output: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = target
        .fields()
        .iter()
        .map(|field| match output.field_with_name(field.name()) {
            Ok(out) if storage::types::storable_as(out.data_type(), field.data_type()) => field
                .as_ref()
                .clone()
                .with_data_type(out.data_type().clone()),
            _ => field.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, target.metadata().clone()))
}

/// Reorders and casts a query batch to the schema of [`batch_schema`].
fn conform(group: &str, batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let err = |message: String| Error::Execution {
        group: group.to_string(),
        message,
    };
    let mut columns = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let column = batch
            .column_by_name(field.name())
            .ok_or_else(|| err(format!("column {:?} missing from a batch", field.name())))?;
        let column = if column.data_type() == field.data_type() {
            column.clone()
        } else {
            arrow::compute::cast(column, field.data_type()).map_err(|e| err(e.to_string()))?
        };
        columns.push(column);
    }
    let mut nullable_checked = HashMap::new();
    for (field, column) in target.fields().iter().zip(&columns) {
        if !field.is_nullable() && column.null_count() > 0 {
            nullable_checked.insert(field.name().clone(), column.null_count());
        }
    }
    if let Some((name, nulls)) = nullable_checked.into_iter().next() {
        return Err(err(format!(
            "column {name:?} is not nullable (a key or the event time) but has {nulls} null values"
        )));
    }
    RecordBatch::try_new(target.clone(), columns).map_err(|e| err(e.to_string()))
}

fn micros_to_string(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.naive_utc().to_string())
        .unwrap_or_else(|| us.to_string())
}

/// Parses `--from` / `--to`: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS` (naive, read as UTC) or RFC 3339.
pub fn parse_time(s: &str) -> Result<i64> {
    fti_runtime::parse_time(s).map_err(Error::Flag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Date32Array, Int64Array};
    use futures::TryStreamExt;
    use storage::{ColumnDef, Name, NameKind, TableDefinition};

    /// A writer given up on (its group failed after it had put files) gives back the files it
    /// put, and discarding them leaves none of them in the store.
    #[tokio::test]
    async fn an_abandoned_writer_gives_back_the_files_it_put() {
        let store = Store::memory();
        let column = |name: &str, data_type: &str| ColumnDef {
            name: name.into(),
            data_type: data_type.into(),
            nullable: false,
            description: String::new(),
        };
        let definition = TableDefinition {
            name: Name::new(NameKind::FeatureGroup, "g").unwrap(),
            entity_keys: vec!["k".into()],
            event_time: "t".into(),
            columns: vec![column("k", "int64"), column("t", "date32[day]")],
            description: String::new(),
            owner: String::new(),
            tags: Default::default(),
        };
        let writer = TableWriter::new(&store, &definition)
            .unwrap()
            .with_rows_per_file(2);
        let mut background = BackgroundWriter::start(writer);
        for day in 0..5 {
            let batch = RecordBatch::try_from_iter([
                ("k", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
                ("t", Arc::new(Date32Array::from(vec![day, day])) as ArrayRef),
            ])
            .unwrap();
            background.send(batch).await.unwrap();
        }
        let objects = || async {
            let all: Vec<_> = store.object_store().list(None).try_collect().await.unwrap();
            all.len()
        };
        let files = background.abandon().await;
        assert_eq!(files.len(), 5, "a file per 2 rows");
        let before = objects().await;
        assert!(before >= 5, "{before} objects");
        store.discard_staged(&definition.name, &files).await;
        assert_eq!(objects().await, before - 5);
    }
}
