//! `inference-pipeline score`: resolve the model, check the store against what it expects,
//! score every entity of the spine in batches, monitor skew, then publish one snapshot
//! (predictions Parquet + key-value exports) and switch Redis, each atomically.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::Utc;
use fti_learn::model::{Model, Scores, Task};
use fti_learn::pit::{AsOf, FeatureIndex, JoinSource, Latest, RowFilter, join_loaded, key_set};
use fti_learn::preprocess::Preprocessing;
use fti_learn::spill::Partitions;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use storage::{
    DatasetKind, ModelRef, Name, NameKind, ObjectRef, Published, RunRecord, RunStatus, Store,
    StoredFile, VersionSpec,
};
use tracing::{info, info_span, warn};

use crate::config::{LoadedConfig, render_template, template_columns};
use crate::error::{Error, Result};
use crate::exports::{ExportWriter, RedisTarget, file_name};
use crate::monitor;
use crate::sinks::Sinks;

pub const PIPELINE: &str = "inference-pipeline";
const KIND: DatasetKind = DatasetKind::Predictions;

/// A validated scoring request.
#[derive(Debug, Clone)]
pub struct ScoreJob {
    pub config: LoadedConfig,
    /// Overrides the config's model reference.
    pub model_ref: Option<String>,
    /// Score as of this time (µs); default now.
    pub as_of: Option<i64>,
    pub shard_index: usize,
    pub shard_count: usize,
    pub run_id: Option<String>,
    /// Score and monitor, publish nothing.
    pub dry_run: bool,
    /// Overrides the config's Redis URL.
    pub redis_url: Option<String>,
}

/// The machine-readable result printed on stdout.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreSummary {
    pub pipeline: &'static str,
    pub run_id: String,
    pub status: RunStatus,
    pub dataset: String,
    pub snapshot: String,
    pub model: String,
    pub model_version: u64,
    pub as_of: String,
    pub shard: (usize, usize),
    pub entities: usize,
    /// Hash partitions of the spine scored one after the other (see `entities_per_pass`).
    pub passes: u64,
    /// `published`, `already_published`, `superseded` (published before, since replaced by a
    /// newer snapshot or a rollback: left as is), `part_written` (waiting for other shards),
    /// `dry_run`.
    pub outcome: &'static str,
    pub redis: Option<Value>,
    pub monitoring_failures: Vec<String>,
    pub feature_versions: Vec<ObjectRef>,
    pub timings: BTreeMap<&'static str, f64>,
    pub seconds: f64,
}

/// What a shard leaves for the committer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartManifest {
    files: BTreeMap<String, StoredFile>,
    rows: u64,
}

fn part_dir(index: usize, count: usize) -> String {
    format!("part-{index:05}-of-{count:05}")
}

/// Where each model input comes from.
struct Plan {
    manifest: storage::ModelVersion,
    model: Model,
    preprocessing: Preprocessing,
    training_statistics: Option<storage::TableStatistics>,
    spine: storage::TableSnapshot,
    /// Model inputs read from the spine row itself.
    spine_inputs: Vec<String>,
    joins: Vec<JoinSource>,
    as_of: AsOf,
}

fn model_err(manifest: &storage::ModelVersion, message: String) -> Error {
    Error::Model {
        model: manifest.model.to_string(),
        version: manifest.version,
        message,
    }
}

async fn plan(store: &Store, job: &ScoreJob) -> Result<Plan> {
    let cfg = &job.config.config;
    let model_name = Name::new(NameKind::Model, cfg.model.name.as_str())?;
    let reference = ModelRef::parse(job.model_ref.as_deref().unwrap_or(&cfg.model.reference))?;
    let manifest = match store.resolve_model(&model_name, &reference).await {
        Err(storage::Error::AliasNotFound { model, alias }) => {
            return Err(Error::Model {
                model,
                version: 0,
                message: format!(
                    "cannot be resolved: no alias {alias:?} (promote a version first)"
                ),
            });
        }
        other => other?,
    };
    if manifest.status == storage::ModelStatus::Rejected {
        return Err(model_err(
            &manifest,
            "was rejected by its gate; it does not serve".into(),
        ));
    }
    let preprocessing: Preprocessing = serde_json::from_slice(
        &store.model_file(&manifest, "preprocessing.json").await?,
    )
    .map_err(|e| {
        model_err(
            &manifest,
            format!("has an unreadable preprocessing.json: {e}"),
        )
    })?;
    let model = Model::from_json(&store.model_file(&manifest, "model.json").await?)
        .map_err(|e| model_err(&manifest, format!("has an unreadable model.json: {e}")))?;
    let training_statistics = match manifest.files.contains_key("training_statistics.json") {
        true => serde_json::from_slice(
            &store
                .model_file(&manifest, "training_statistics.json")
                .await?,
        )
        .ok(),
        false => None,
    };

    #[derive(Deserialize)]
    struct Source {
        group: String,
        columns: Option<Vec<String>>,
        #[serde(default)]
        join: BTreeMap<String, String>,
        max_age: Option<String>,
    }
    let sources: Vec<Source> = serde_json::from_value(
        manifest
            .metadata
            .get("feature_sources")
            .cloned()
            .unwrap_or_default(),
    )
    .map_err(|e| model_err(&manifest, format!("records no usable feature sources: {e}")))?;
    let label_group = manifest
        .metadata
        .get("label")
        .and_then(|l| l["group"].as_str())
        .unwrap_or_default()
        .to_string();
    let join_meta = manifest.metadata.get("join").cloned().unwrap_or_default();
    let inclusive = join_meta["inclusive"].as_bool().unwrap_or(true);
    let default_age = join_meta["max_age"].as_str().map(str::to_string);

    let spine_name = Name::new(NameKind::FeatureGroup, cfg.entities.group.as_str())?;
    let spine = match store.table(&spine_name, VersionSpec::Latest).await {
        Err(storage::Error::TableNotFound { table }) => {
            return Err(Error::Schema {
                model: manifest.model.to_string(),
                version: manifest.version,
                message: format!("the entity group {table:?} has no committed version"),
            });
        }
        other => other?,
    };
    let expected: HashMap<&str, &str> = manifest
        .features
        .iter()
        .map(|c| (c.name.as_str(), c.data_type.as_str()))
        .collect();
    let schema_err = |message: String| Error::Schema {
        model: manifest.model.to_string(),
        version: manifest.version,
        message,
    };
    let check_type = |table: &storage::TableSnapshot, column: &str| -> Result<()> {
        let found = table.definition().column(column).ok_or_else(|| {
            schema_err(format!(
                "feature {column:?} is missing from {} v{}",
                table.table, table.version
            ))
        })?;
        let want = expected.get(column).copied().unwrap_or_default();
        if found.data_type != want {
            return Err(schema_err(format!(
                "feature {column:?} in {} v{} has type {}, the model was trained on {want}",
                table.table, table.version, found.data_type
            )));
        }
        Ok(())
    };
    let inputs: Vec<String> = preprocessing
        .input_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut joins = Vec::new();
    for source in sources {
        if source.group == label_group {
            continue;
        }
        let name = Name::new(NameKind::FeatureGroup, source.group.as_str())?;
        let snapshot = match store.table(&name, VersionSpec::Latest).await {
            Err(storage::Error::TableNotFound { table }) => {
                return Err(schema_err(format!(
                    "feature group {table:?} has no committed version"
                )));
            }
            other => other?,
        };
        // Without an explicit list: the group's columns the model was trained on.
        let columns = source.columns.unwrap_or_else(|| {
            inputs
                .iter()
                .filter(|c| snapshot.definition().column(c).is_some())
                .cloned()
                .collect()
        });
        for c in &columns {
            check_type(&snapshot, c)?;
        }
        for key in &snapshot.definition().entity_keys {
            let spine_col = source.join.get(key).unwrap_or(key);
            if spine.definition().column(spine_col).is_none() {
                return Err(schema_err(format!(
                    "the entity group {} has no column {spine_col:?} to join {} on",
                    spine.table, snapshot.table
                )));
            }
        }
        let max_age = source
            .max_age
            .or(default_age.clone())
            .as_deref()
            .and_then(fti_runtime::parse_duration_us);
        joins.push(JoinSource::new(
            snapshot,
            columns,
            &source.join,
            AsOf {
                inclusive,
                max_age_us: max_age,
            },
        ));
    }
    // Every input not joined from a feature group comes from the spine row.
    let mut spine_inputs = Vec::new();
    for input in &inputs {
        if !joins.iter().any(|j: &JoinSource| j.columns.contains(input)) {
            check_type(&spine, input)?;
            spine_inputs.push(input.clone());
        }
    }
    Ok(Plan {
        manifest,
        model,
        preprocessing,
        training_statistics,
        spine,
        spine_inputs,
        joins,
        as_of: AsOf {
            inclusive: true,
            max_age_us: None,
        },
    })
}

/// FNV-1a: a stable hash of an entity key, for shard assignment (documented, language-neutral).
pub fn shard_of(key: &str, count: usize) -> usize {
    fti_learn::pit::key_partition(key.as_bytes(), count as u64) as usize
}

/// A run in passes reads the spine, and every joined group keyed like it, from the store once,
/// split by entity-key hash into local files (removed with the run); each pass then reads its
/// own partition. Groups keyed otherwise are read again in each pass, only the keys needed.
struct Spill {
    _dir: tempfile::TempDir,
    spine: Partitions,
    joins: Vec<Option<Partitions>>,
}

impl Spill {
    async fn write(
        store: &Store,
        plan: &Plan,
        spine_cols: &[String],
        as_of: i64,
        passes: u64,
    ) -> Result<Spill> {
        let dir = tempfile::Builder::new()
            .prefix("fti-score-")
            .tempdir()
            .map_err(|e| {
                Error::Learn(fti_learn::Error::Spill {
                    path: std::env::temp_dir().display().to_string(),
                    message: e.to_string(),
                })
            })?;
        // Files are named by role: a joined group may be the spine's own table.
        let spine = Partitions::write(
            store,
            "spine",
            &plan.spine,
            spine_cols,
            as_of,
            plan.as_of,
            passes,
            dir.path(),
        )
        .await?;
        let spine_keys = &plan.spine.definition().entity_keys;
        let spine_schema = plan.spine.schema()?;
        let mut joins = Vec::with_capacity(plan.joins.len());
        for (i, j) in plan.joins.iter().enumerate() {
            // Same partitions only when the keys encode the same: the spine's own key columns,
            // of the same types.
            let same_keys = &j.label_keys == spine_keys
                && j.snapshot.schema().is_ok_and(|s| {
                    j.snapshot
                        .definition()
                        .entity_keys
                        .iter()
                        .zip(spine_keys)
                        .all(|(a, b)| {
                            match (s.field_with_name(a), spine_schema.field_with_name(b)) {
                                (Ok(fa), Ok(fb)) => fa.data_type() == fb.data_type(),
                                _ => false,
                            }
                        })
                });
            joins.push(if same_keys {
                Some(
                    Partitions::write(
                        store,
                        &format!("join-{i}"),
                        &j.snapshot,
                        &j.columns,
                        as_of,
                        j.as_of,
                        passes,
                        dir.path(),
                    )
                    .await?,
                )
            } else {
                None
            });
        }
        Ok(Spill {
            _dir: dir,
            spine,
            joins,
        })
    }
}

/// The export key of every row: the key template over the row's columns.
fn render_keys(batch: &RecordBatch, key_cols: &[String], template: &str) -> Result<Vec<String>> {
    let parts: Vec<Vec<String>> = key_cols
        .iter()
        .map(|c| strings(batch.column_by_name(c).expect("spine column")))
        .collect::<Result<_>>()?;
    Ok((0..batch.num_rows())
        .map(|i| {
            render_template(template, |c| {
                parts[key_cols
                    .iter()
                    .position(|k| k == c)
                    .expect("template column")][i]
                    .clone()
            })
        })
        .collect())
}

fn strings(array: &ArrayRef) -> Result<Vec<String>> {
    let s = arrow::compute::cast(array, &DataType::Utf8).map_err(fti_learn::Error::from)?;
    Ok(s.as_string::<i32>()
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect())
}

fn read_entity_file(path: &std::path::Path, keys: &[String]) -> Result<HashSet<String>> {
    let err = |message: String| Error::EntityFile {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| err("empty file".into()))?
        .split(',')
        .map(str::trim)
        .collect();
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| {
            header.iter().position(|h| h == k).ok_or_else(|| {
                err(format!(
                    "no column {k:?} in the header (need {})",
                    keys.join(", ")
                ))
            })
        })
        .collect::<Result<_>>()?;
    let mut out = HashSet::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let key: Vec<&str> = positions
            .iter()
            .map(|&p| {
                fields.get(p).copied().ok_or_else(|| {
                    err(format!(
                        "line {}: {} fields, the header has {}",
                        i + 2,
                        fields.len(),
                        header.len()
                    ))
                })
            })
            .collect::<Result<_>>()?;
        out.insert(key.join("\u{1f}"));
    }
    Ok(out)
}

/// Scores, monitors and publishes.
pub async fn score(store: &Store, job: &ScoreJob) -> Result<ScoreSummary> {
    let started = Instant::now();
    let started_at = Utc::now();
    let cfg = &job.config.config;
    if job.shard_count == 0 || job.shard_index >= job.shard_count {
        return Err(Error::Flag(format!(
            "--shard-index {} must be below --shard-count {}",
            job.shard_index, job.shard_count
        )));
    }
    if job.shard_count > 1 && job.as_of.is_none() {
        return Err(Error::Flag(
            "--as-of is required with --shard-count > 1: every shard must name the same snapshot"
                .into(),
        ));
    }
    let mut timings = BTreeMap::new();
    let plan = plan(store, job).await?;
    let as_of = job.as_of.unwrap_or_else(|| Utc::now().timestamp_micros());
    let dataset = Name::new(NameKind::Dataset, cfg.output.dataset.as_str())?;
    let Identity {
        snapshot,
        hash: snapshot_hash,
        feature_versions,
        versions_text,
    } = identity(&plan, job, as_of)?;
    let run_id = job
        .run_id
        .clone()
        .unwrap_or_else(|| format!("score-{}-{}", &snapshot_hash[..16], job.shard_index));
    let span = info_span!("run", run_id = %run_id, pipeline = PIPELINE);
    let _enter = span.enter();
    let as_of_text = chrono::DateTime::from_timestamp_micros(as_of)
        .map_or(as_of.to_string(), |t| t.naive_utc().to_string());
    let mut summary = ScoreSummary {
        pipeline: PIPELINE,
        run_id: run_id.clone(),
        status: RunStatus::Succeeded,
        dataset: dataset.to_string(),
        snapshot: snapshot.to_string(),
        model: plan.manifest.model.to_string(),
        model_version: plan.manifest.version,
        as_of: as_of_text,
        shard: (job.shard_index, job.shard_count),
        entities: 0,
        passes: 0,
        outcome: "published",
        redis: None,
        monitoring_failures: vec![],
        feature_versions: feature_versions.clone(),
        timings: BTreeMap::new(),
        seconds: 0.0,
    };

    // Already published, or published and since replaced (even if pruned since), or sealed by a
    // run killed before it published: nothing to score.
    if !job.dry_run {
        let done = match standing(store, &dataset, &snapshot).await? {
            Standing::Current => {
                info!(snapshot = %snapshot, "already published");
                summary.status = RunStatus::AlreadyDone;
                summary.outcome = "already_published";
                // A run killed between the store pointer and the Redis switch left Redis
                // behind: finish the switch (a no-op when it is already current).
                summary.redis = publish(store, job, &dataset, &snapshot).await?;
                true
            }
            Standing::Superseded => {
                // A retry or backfill of an old job must not move readers back.
                info!(snapshot = %snapshot, "published before and since replaced (newer snapshot or rollback): left as is");
                summary.status = RunStatus::AlreadyDone;
                summary.outcome = "superseded";
                true
            }
            Standing::NeverPublished => match store.snapshot(KIND, &dataset, &snapshot).await {
                Ok(_) => {
                    summary.redis = publish(store, job, &dataset, &snapshot).await?;
                    true
                }
                Err(storage::Error::SnapshotNotFound { .. }) => false,
                Err(e) => return Err(e.into()),
            },
        };
        if done {
            // Absent when a superseded snapshot has since been pruned.
            if let Ok(sealed) = store.snapshot(KIND, &dataset, &snapshot).await {
                summary.entities = sealed.num_rows as usize;
            }
            summary.seconds = started.elapsed().as_secs_f64();
            return Ok(summary);
        }
    }
    let mut lap = Instant::now();

    // The spine: every entity's row current at the as-of time.
    let key_cols = template_columns(&cfg.output.key);
    let spine_def = plan.spine.definition().clone();
    let mut spine_cols: Vec<String> = spine_def.entity_keys.clone();
    for c in key_cols
        .iter()
        .chain(&cfg.entities.carry)
        .chain(&plan.spine_inputs)
    {
        if spine_def.column(c).is_none() {
            return Err(Error::Schema {
                model: plan.manifest.model.to_string(),
                version: plan.manifest.version,
                message: format!("the entity group {} has no column {c:?}", plan.spine.table),
            });
        }
        spine_cols.push(c.clone());
    }
    for j in &plan.joins {
        spine_cols.extend(j.label_keys.iter().cloned());
    }
    spine_cols.sort();
    spine_cols.dedup();
    let wanted: Option<HashSet<String>> = match &cfg.entities.file {
        Some(file) => Some(read_entity_file(
            &job.config.resolve(file),
            &spine_def.entity_keys,
        )?),
        None => None,
    };

    // Outputs are written while scoring, into the snapshot that is not sealed yet (invisible
    // to readers), and abandoned on any failure before the seal.
    let prefix = if job.shard_count > 1 {
        format!("{}/", part_dir(job.shard_index, job.shard_count))
    } else {
        String::new()
    };
    let mut sinks = Sinks::default();
    if !job.dry_run {
        store.init().await?;
        sinks.snapshot = snapshot.to_string();
        sinks.delete_redis_on_abort = job.shard_count == 1;
        let open = async |name: &str| {
            store
                .snapshot_file_upload(KIND, &dataset, &snapshot, &format!("{prefix}{name}"))
                .await
        };
        sinks.parquet = Some((None, open("predictions.parquet").await?));
        for e in &cfg.exports {
            sinks.exports.push((
                ExportWriter::new(e.format),
                open(file_name(e.format)).await?,
            ));
        }
        if let Some(r) = &cfg.redis {
            let url = job
                .redis_url
                .clone()
                .or_else(|| r.url.clone())
                .ok_or_else(|| {
                    Error::Flag(
                        "redis: no url (set [redis] url, --redis-url or FTI_REDIS_URL)".into(),
                    )
                })?;
            sinks.redis = Some(RedisTarget::connect(&url, &r.prefix, r.keep).await?);
        }
    }
    timings.insert("open", lap.elapsed().as_secs_f64());
    lap = Instant::now();

    let mut input_profiler: Option<fti_stats::TableProfiler> = None;
    let mut score_profiler = fti_stats::ColumnProfiler::new(&DataType::Float64);
    let mut unseen: BTreeMap<String, usize> = BTreeMap::new();
    let version = plan.manifest.version;
    let mut entities = 0usize;
    let mut out_schema: Option<SchemaRef> = None;
    // Entities are scored in passes, each holding one hash partition of the spine: memory
    // is bounded by `entities_per_pass`, whatever the number of entities. The number of
    // passes is found by the first one, which stops early when it holds too many.
    let cap = cfg.output.entities_per_pass;
    let passes_result: Result<u64> = async {
        let mut passes: u64 = 1;
        let mut pass: u64 = 0;
        let mut spill: Option<Spill> = None;
        while pass < passes {
            let spine_index = match &spill {
                Some(spill) => spill.spine.load_latest(
                    &plan.spine,
                    pass,
                    as_of,
                    plan.as_of,
                    &RowFilter::default(),
                )?,
                None => match FeatureIndex::load_latest(
                    store,
                    &plan.spine,
                    &spine_cols,
                    as_of,
                    plan.as_of,
                    &RowFilter::default(),
                    Some(cap),
                )
                .await?
                {
                    Latest::Loaded(index) => index,
                    Latest::TooMany { rows_read, keys } => {
                        // Entities seen so far, extrapolated to the whole spine table.
                        let total = plan.spine.num_rows().max(rows_read) as f64;
                        let estimate = keys as f64 * total / rows_read.max(1) as f64;
                        passes = ((estimate * 1.25 / cap as f64).ceil() as u64).max(2);
                        info!(passes, entities_per_pass = cap, "scoring in passes");
                        spill = Some(Spill::write(store, &plan, &spine_cols, as_of, passes).await?);
                        continue;
                    }
                },
            };
            pass += 1;
            let out_schema = match &out_schema {
                Some(s) => s.clone(),
                None => out_schema
                    .insert(predictions_schema(
                        &plan,
                        &spine_index,
                        &cfg.entities.carry,
                        &spine_def.entity_keys,
                    )?)
                    .clone(),
            };

            // Entity filters: an entity list file, then this shard's hash partition.
            let rows = spine_index.latest_rows(as_of, plan.as_of);
            let all = spine_index.take_batch(&rows)?;
            let keys_text = render_keys(&all, &key_cols, &cfg.output.key)?;
            // Only an entity list needs the entities' ids as text.
            let entity_ids: Option<Vec<String>> = match &wanted {
                None => None,
                Some(_) => {
                    let parts: Vec<Vec<String>> = spine_def
                        .entity_keys
                        .iter()
                        .map(|c| strings(all.column_by_name(c).expect("key column")))
                        .collect::<Result<_>>()?;
                    Some(
                        (0..all.num_rows())
                            .map(|i| {
                                parts
                                    .iter()
                                    .map(|p| p[i].as_str())
                                    .collect::<Vec<_>>()
                                    .join("\u{1f}")
                            })
                            .collect(),
                    )
                }
            };
            let mut keep = Vec::new();
            for (i, (row, key)) in rows.iter().zip(keys_text).enumerate() {
                let in_list = match (&wanted, &entity_ids) {
                    (Some(w), Some(ids)) => w.contains(&ids[i]),
                    _ => true,
                };
                if in_list && shard_of(&key, job.shard_count) == job.shard_index {
                    keep.push((*row, key));
                }
            }
            drop(all);
            let rows: Vec<u32> = keep.iter().map(|(r, _)| *r).collect();
            let export_keys: Vec<String> = keep.into_iter().map(|(_, k)| k).collect();
            if rows.is_empty() {
                continue;
            }
            entities += rows.len();

            // Each joined group: only the keys these entities need, at their latest row.
            let selected = spine_index.take_batch(&rows)?;
            let mut indices = Vec::with_capacity(plan.joins.len());
            for (ji, j) in plan.joins.iter().enumerate() {
                let key_columns: Vec<ArrayRef> = j
                    .label_keys
                    .iter()
                    .map(|k| selected.column_by_name(k).expect("spine join key").clone())
                    .collect();
                let filter = RowFilter {
                    keys: Some(key_set(&j.snapshot, &key_columns)?),
                    partition: None,
                };
                if let Some(partitions) = spill.as_ref().and_then(|s| s.joins[ji].as_ref()) {
                    indices.push(partitions.load_latest(
                        &j.snapshot,
                        pass - 1,
                        as_of,
                        j.as_of,
                        &filter,
                    )?);
                    continue;
                }
                match FeatureIndex::load_latest(
                    store,
                    &j.snapshot,
                    &j.columns,
                    as_of,
                    j.as_of,
                    &filter,
                    None,
                )
                .await?
                {
                    Latest::Loaded(index) => indices.push(index),
                    Latest::TooMany { .. } => unreachable!("no cap was given"),
                }
            }
            drop(selected);

            // Score in batches.
            for (chunk_rows, chunk_keys) in rows
                .chunks(cfg.output.batch_rows)
                .zip(export_keys.chunks(cfg.output.batch_rows))
            {
                let spine_batch = spine_index.take_batch(chunk_rows)?;
                let n = spine_batch.num_rows();
                let times = Int64Array::from(vec![as_of; n]);
                let mut columns: HashMap<String, ArrayRef> =
                    join_loaded(&spine_batch, &times, &plan.joins, &indices)?
                        .into_iter()
                        .collect();
                for c in &plan.spine_inputs {
                    columns.insert(
                        c.clone(),
                        spine_batch.column_by_name(c).expect("spine input").clone(),
                    );
                }
                // Monitoring sees the raw inputs, before imputation.
                let input_batch = {
                    let names = plan.preprocessing.input_names();
                    let fields: Vec<Field> = names
                        .iter()
                        .map(|n| Field::new(*n, columns[*n].data_type().clone(), true))
                        .collect();
                    RecordBatch::try_new(
                        Arc::new(Schema::new(fields)),
                        names.iter().map(|n| columns[*n].clone()).collect(),
                    )
                    .map_err(fti_learn::Error::from)?
                };
                input_profiler
                    .get_or_insert_with(|| fti_stats::TableProfiler::new(&input_batch.schema()))
                    .update(&input_batch);
                let transformed = plan.preprocessing.transform(&columns)?;
                for (k, v) in transformed.unseen {
                    *unseen.entry(k).or_default() += v;
                }
                let scores = plan.model.predict(&transformed.matrix)?;
                let (values, score_columns) = score_outputs(&scores, plan.model.task);
                if let Some((_, numeric)) = score_columns
                    .iter()
                    .find(|(_, a)| a.data_type() == &DataType::Float64)
                {
                    score_profiler.update(numeric);
                }
                let batch = predictions_batch(
                    &out_schema,
                    &spine_batch,
                    chunk_keys,
                    score_columns,
                    &plan,
                    as_of,
                    &run_id,
                    &versions_text,
                )?;
                sinks
                    .write(&out_schema, &batch, chunk_keys, &values, version)
                    .await?;
            }
        }
        Ok(passes)
    }
    .await;
    let passes = match passes_result {
        Ok(passes) if entities > 0 || job.shard_count > 1 => passes,
        Ok(_) => {
            sinks.abort().await;
            return Err(Error::NoEntities(format!(
                "{} has no entity with a row at or before {}{}",
                plan.spine.table,
                summary.as_of,
                if wanted.is_some() {
                    " among the listed entities"
                } else {
                    ""
                }
            )));
        }
        Err(e) => {
            sinks.abort().await;
            return Err(e);
        }
    };
    summary.entities = entities;
    summary.passes = passes;
    timings.insert("score", lap.elapsed().as_secs_f64());
    lap = Instant::now();

    // Monitoring, before anything is published.
    let (scored_stats, samples) = match input_profiler {
        Some(p) => p.finish(),
        None => (storage::TableStatistics::default(), HashMap::new()),
    };
    let monitoring = monitor::compare(
        plan.training_statistics.as_ref(),
        &scored_stats,
        &samples,
        &unseen,
        &score_profiler.finish().stats,
        &cfg.monitoring,
    );
    summary.monitoring_failures = monitoring.failures.clone();
    for f in &monitoring.failures {
        warn!("monitoring: {f}");
    }
    if job.dry_run {
        summary.outcome = "dry_run";
        summary.timings = timings;
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    if !monitoring.failures.is_empty() && cfg.monitoring.fail {
        sinks.abort().await;
        return Err(Error::Monitoring {
            failures: monitoring.failures,
        });
    }

    // Complete this part's files in the (unsealed) snapshot.
    let out_schema = out_schema.expect("the first pass set the schema");
    let (mut files, redis_keys) = sinks.finish(&out_schema).await?;
    let put = async |name: &str,
                     bytes: bytes::Bytes,
                     files: &mut BTreeMap<String, StoredFile>|
           -> Result<()> {
        let relative = format!("{prefix}{name}");
        let stored = store
            .put_snapshot_file(KIND, &dataset, &snapshot, &relative, bytes)
            .await?;
        files.insert(relative, stored);
        Ok(())
    };
    put(
        "monitoring.json",
        serde_json::to_vec_pretty(&monitoring.report)
            .unwrap_or_default()
            .into(),
        &mut files,
    )
    .await?;
    let title = format!(
        "{} v{} scored as of {}",
        plan.manifest.model, version, summary.as_of
    );
    put(
        "monitoring.html",
        monitor::html(&title, &monitoring.report)
            .into_bytes()
            .into(),
        &mut files,
    )
    .await?;
    if cfg.redis.is_some() {
        info!(keys = redis_keys, "loaded the redis keyspace");
    }
    timings.insert("write", lap.elapsed().as_secs_f64());

    let part = PartManifest {
        files,
        rows: entities as u64,
    };
    if job.shard_count > 1 {
        let bytes = serde_json::to_vec(&part).unwrap_or_default();
        store
            .put_snapshot_file(
                KIND,
                &dataset,
                &snapshot,
                &format!("{}/part.json", part_dir(job.shard_index, job.shard_count)),
                bytes.into(),
            )
            .await?;
        match commit(
            store,
            job,
            &plan.manifest,
            &dataset,
            &snapshot,
            &feature_versions,
            &run_id,
        )
        .await
        {
            Ok(redis) => summary.redis = redis,
            Err(Error::PartsMissing { missing, .. }) => {
                info!(
                    missing,
                    "part written; the last shard (or `commit`) publishes the snapshot"
                );
                summary.outcome = "part_written";
            }
            Err(e) => return Err(e),
        }
    } else {
        seal(
            store,
            &plan.manifest,
            &dataset,
            &snapshot,
            part.files,
            part.rows,
            &feature_versions,
            &run_id,
        )
        .await?;
        summary.redis = publish(store, job, &dataset, &snapshot).await?;
    }
    summary.timings = timings;
    summary.seconds = started.elapsed().as_secs_f64();
    let mut inputs = vec![ObjectRef::Model {
        name: plan.manifest.model.to_string(),
        version,
    }];
    inputs.extend(feature_versions.clone());
    let record = RunRecord {
        format_version: storage::DOCUMENT_VERSION,
        pipeline: Name::new(NameKind::Pipeline, PIPELINE)?,
        run_id: Name::new(NameKind::RunId, run_id.as_str())?,
        attempt: storage::runs::new_attempt_id(started_at),
        status: summary.status,
        started_at,
        finished_at: Utc::now(),
        inputs,
        outputs: vec![ObjectRef::Snapshot {
            dataset_kind: KIND,
            dataset: dataset.to_string(),
            snapshot: snapshot.to_string(),
        }],
        config_hash: fti_runtime::hash_parts([job.config.text.as_bytes()]),
        code_version: fti_runtime::code_version(env!("CARGO_PKG_VERSION")),
        summary: serde_json::to_value(&summary).unwrap_or_default(),
        error: None,
    };
    store.write_run_record(&record).await?;
    info!(snapshot = %snapshot, entities = summary.entities, outcome = summary.outcome, seconds = summary.seconds, "scoring run finished");
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
async fn seal(
    store: &Store,
    manifest: &storage::ModelVersion,
    dataset: &Name,
    snapshot: &Name,
    files: BTreeMap<String, StoredFile>,
    rows: u64,
    feature_versions: &[ObjectRef],
    run_id: &str,
) -> Result<()> {
    let mut inputs = vec![ObjectRef::Model {
        name: manifest.model.to_string(),
        version: manifest.version,
    }];
    inputs.extend(feature_versions.iter().cloned());
    inputs.extend(manifest.lineage.tables.iter().cloned());
    let metadata = BTreeMap::from([(
        "model".to_string(),
        json!({"name": manifest.model, "version": manifest.version, "training_run": manifest.lineage.run_id, "training_tables": manifest.lineage.tables}),
    )]);
    store
        .seal_snapshot(
            KIND,
            dataset,
            snapshot,
            files,
            rows,
            Some(run_id.to_string()),
            inputs,
            metadata,
        )
        .await?;
    Ok(())
}

/// Publishes the sealed snapshot (pointer), then switches Redis to it.
async fn publish(
    store: &Store,
    job: &ScoreJob,
    dataset: &Name,
    snapshot: &Name,
) -> Result<Option<Value>> {
    let cfg = &job.config.config;
    let moved = store
        .publish(KIND, dataset, snapshot, PIPELINE, "scored")
        .await?;
    if let Published::Moved(m) = &moved {
        info!(seq = m.seq, snapshot = %snapshot, "published");
    }
    let redis = switch_redis(job, snapshot).await?;
    if matches!(moved, Published::Moved(_)) {
        // Retention, best effort once readers have moved: the oldest snapshots beyond
        // `keep_snapshots` go (never the current one nor the rollback target).
        match store
            .prune_snapshots(KIND, dataset, cfg.output.keep_snapshots)
            .await
        {
            Ok(pruned) if !pruned.is_empty() => {
                info!(pruned = ?pruned, keep = cfg.output.keep_snapshots, "pruned old snapshots");
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "could not prune old snapshots; the next run retries"),
        }
    }
    Ok(redis)
}

/// Points Redis readers at the snapshot's keyspace, when the job exports to Redis.
async fn switch_redis(job: &ScoreJob, snapshot: &Name) -> Result<Option<Value>> {
    let cfg = &job.config.config;
    let Some(r) = &cfg.redis else { return Ok(None) };
    let url = job
        .redis_url
        .clone()
        .or_else(|| r.url.clone())
        .ok_or_else(|| Error::Flag("redis: no url".into()))?;
    let mut target = RedisTarget::connect(&url, &r.prefix, r.keep).await?;
    let pruned = target.switch(snapshot.as_str()).await?;
    Ok(Some(
        json!({"current": snapshot.as_str(), "current_key": target.current_key(), "pruned": pruned}),
    ))
}

/// Where a sealed snapshot stands in its dataset's pointer history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Readers see it now.
    Current,
    /// It was published, then replaced by a newer snapshot or a rollback.
    Superseded,
    NeverPublished,
}

pub async fn standing(store: &Store, dataset: &Name, snapshot: &Name) -> Result<Standing> {
    let history = store.pointer_history(KIND, dataset).await?;
    Ok(match history.last() {
        Some(m) if &m.snapshot == snapshot => Standing::Current,
        _ if history.iter().any(|m| &m.snapshot == snapshot) => Standing::Superseded,
        _ => Standing::NeverPublished,
    })
}

/// Seals and publishes a sharded snapshot once every part exists.
pub async fn commit(
    store: &Store,
    job: &ScoreJob,
    manifest: &storage::ModelVersion,
    dataset: &Name,
    snapshot: &Name,
    feature_versions: &[ObjectRef],
    run_id: &str,
) -> Result<Option<Value>> {
    let mut files = BTreeMap::new();
    let mut rows = 0;
    let mut missing = Vec::new();
    for i in 0..job.shard_count {
        let name = format!("{}/part.json", part_dir(i, job.shard_count));
        match store
            .staged_snapshot_file(KIND, dataset, snapshot, &name)
            .await?
        {
            Some(bytes) => {
                let part: PartManifest =
                    serde_json::from_slice(&bytes).map_err(|e| storage::Error::Corrupted {
                        path: name.clone(),
                        reason: e.to_string(),
                    })?;
                rows += part.rows;
                files.extend(part.files);
            }
            None => missing.push(part_dir(i, job.shard_count)),
        }
    }
    if !missing.is_empty() {
        return Err(Error::PartsMissing {
            missing: missing.len(),
            count: job.shard_count,
            names: missing.join(", "),
        });
    }
    seal(
        store,
        manifest,
        dataset,
        snapshot,
        files,
        rows,
        feature_versions,
        run_id,
    )
    .await?;
    publish(store, job, dataset, snapshot).await
}

/// The snapshot a job would write, for `commit` and `rollback`.
pub async fn snapshot_for(
    store: &Store,
    job: &ScoreJob,
) -> Result<(storage::ModelVersion, Name, Name, Vec<ObjectRef>)> {
    let plan = plan(store, job).await?;
    let as_of = job.as_of.ok_or_else(|| {
        Error::Flag("--as-of is required to name the snapshot of a sharded run".into())
    })?;
    let dataset = Name::new(NameKind::Dataset, job.config.config.output.dataset.as_str())?;
    let id = identity(&plan, job, as_of)?;
    let (snapshot, feature_versions) = (id.snapshot, id.feature_versions);
    Ok((plan.manifest, dataset, snapshot, feature_versions))
}

/// What names a scoring job's snapshot: the model version, the as-of time, the config and the
/// exact table versions (and the shard count, so every shard names the same snapshot).
struct Identity {
    snapshot: Name,
    hash: String,
    feature_versions: Vec<ObjectRef>,
    versions_text: String,
}

fn identity(plan: &Plan, job: &ScoreJob, as_of: i64) -> Result<Identity> {
    let mut feature_versions = vec![ObjectRef::Table {
        name: plan.spine.table.to_string(),
        version: plan.spine.version,
    }];
    feature_versions.extend(plan.joins.iter().map(|j| ObjectRef::Table {
        name: j.snapshot.table.to_string(),
        version: j.snapshot.version,
    }));
    let versions_text = feature_versions
        .iter()
        .map(|r| match r {
            ObjectRef::Table { name, version } => format!("{name}@{version}"),
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join(",");
    let hash = fti_runtime::hash_parts([
        plan.manifest.model.as_str().as_bytes(),
        plan.manifest.version.to_string().as_bytes(),
        as_of.to_string().as_bytes(),
        job.config.text.as_bytes(),
        versions_text.as_bytes(),
        job.shard_count.to_string().as_bytes(),
    ]);
    let snapshot = Name::new(NameKind::Snapshot, format!("s-{}", &hash[..16]))?;
    Ok(Identity {
        snapshot,
        hash,
        feature_versions,
        versions_text,
    })
}

/// Values for the exports and score columns for the predictions table.
fn score_outputs(scores: &Scores, task: Task) -> (Vec<Value>, Vec<(String, ArrayRef)>) {
    match scores {
        Scores::Values(v) => (
            v.iter().map(|x| json!(x)).collect(),
            vec![(
                "prediction".into(),
                Arc::new(Float64Array::from(v.clone())) as ArrayRef,
            )],
        ),
        Scores::Probabilities { classes, probs } => {
            let predicted: Vec<String> = (0..probs.rows)
                .map(|r| {
                    let row = probs.row(r);
                    let best = row
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map_or(0, |(i, _)| i);
                    classes[best].clone()
                })
                .collect();
            if task == Task::Binary {
                let p: Vec<f64> = (0..probs.rows).map(|r| probs.row(r)[1]).collect();
                (
                    p.iter().map(|x| json!(x)).collect(),
                    vec![
                        ("score".into(), Arc::new(Float64Array::from(p)) as ArrayRef),
                        (
                            "predicted".into(),
                            Arc::new(StringArray::from(predicted)) as ArrayRef,
                        ),
                    ],
                )
            } else {
                let mut cols: Vec<(String, ArrayRef)> = classes
                    .iter()
                    .enumerate()
                    .map(|(c, name)| {
                        (
                            format!("prob_{name}"),
                            Arc::new(Float64Array::from(
                                (0..probs.rows).map(|r| probs.row(r)[c]).collect::<Vec<_>>(),
                            )) as ArrayRef,
                        )
                    })
                    .collect();
                let values = predicted.iter().map(|p| json!(p)).collect();
                cols.insert(
                    0,
                    (
                        "predicted".into(),
                        Arc::new(StringArray::from(predicted)) as ArrayRef,
                    ),
                );
                (values, cols)
            }
        }
    }
}

fn predictions_schema(
    plan: &Plan,
    spine: &FeatureIndex,
    carry: &[String],
    keys: &[String],
) -> Result<SchemaRef> {
    let probe = spine.take_batch(&[])?;
    let mut fields: Vec<Field> = Vec::new();
    for c in keys.iter().chain(carry) {
        if fields.iter().any(|f| f.name() == c) {
            continue;
        }
        let f = probe
            .schema()
            .field_with_name(c)
            .map_err(fti_learn::Error::from)?
            .clone();
        fields.push(f.with_nullable(true));
    }
    fields.push(Field::new("key", DataType::Utf8, false));
    let empty = fti_learn::Matrix::zeros(0, 0);
    let scores = match plan.model.task {
        Task::Regression => Scores::Values(vec![]),
        _ => Scores::Probabilities {
            classes: plan.model.classes.clone(),
            probs: empty,
        },
    };
    for (name, array) in score_outputs(&scores, plan.model.task).1 {
        fields.push(Field::new(name, array.data_type().clone(), true));
    }
    fields.push(Field::new("model_name", DataType::Utf8, false));
    fields.push(Field::new("model_version", DataType::Int64, false));
    fields.push(Field::new(
        "as_of",
        DataType::Timestamp(TimeUnit::Microsecond, None),
        false,
    ));
    fields.push(Field::new("run_id", DataType::Utf8, false));
    fields.push(Field::new("feature_versions", DataType::Utf8, false));
    Ok(Arc::new(Schema::new(fields)))
}

#[allow(clippy::too_many_arguments)]
fn predictions_batch(
    schema: &SchemaRef,
    spine: &RecordBatch,
    keys: &[String],
    scores: Vec<(String, ArrayRef)>,
    plan: &Plan,
    as_of: i64,
    run_id: &str,
    versions: &str,
) -> Result<RecordBatch> {
    let n = keys.len();
    let scores: HashMap<String, ArrayRef> = scores.into_iter().collect();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "key" => Arc::new(StringArray::from(keys.to_vec())),
                "model_name" => Arc::new(StringArray::from(vec![plan.manifest.model.as_str(); n])),
                "model_version" => {
                    Arc::new(Int64Array::from(vec![plan.manifest.version as i64; n]))
                }
                "as_of" => Arc::new(TimestampMicrosecondArray::from(vec![as_of; n])),
                "run_id" => Arc::new(StringArray::from(vec![run_id; n])),
                "feature_versions" => Arc::new(StringArray::from(vec![versions; n])),
                name => scores
                    .get(name)
                    .cloned()
                    .or_else(|| spine.column_by_name(name).cloned())
                    .expect("every schema column has a source"),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns).map_err(fti_learn::Error::from)?)
}
