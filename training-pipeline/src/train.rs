//! `training-pipeline train`: assemble, preprocess, fit, evaluate, gate, register, promote.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use arrow::array::ArrayRef;
use chrono::Utc;
use fti_learn::model::{Model, Scores, Target, Task};
use fti_learn::preprocess::Preprocessing;
use serde::Serialize;
use serde_json::{Value, json};
use storage::{
    AliasAction, Lineage, ModelStatus, Name, NameKind, NewModelVersion, ObjectRef, RunRecord,
    RunStatus, Store,
};
use tracing::{info, info_span, warn};

use crate::dataset::{self, Dataset, Part};
use crate::error::{Error, Result};
use crate::metrics::{Evaluation, evaluate};
use crate::report::{ReportContext, render};
use crate::spec::{LoadedSpec, lower_is_better, params_json};

pub const PIPELINE: &str = "training-pipeline";

/// A validated training request.
#[derive(Debug, Clone)]
pub struct TrainJob {
    pub spec: LoadedSpec,
    /// Move the gate's alias to the new version if it passes.
    pub promote: bool,
    pub run_id: Option<String>,
    /// Train and evaluate, register nothing.
    pub dry_run: bool,
    /// Recorded on alias moves.
    pub actor: String,
}

/// The machine-readable result printed on stdout.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub pipeline: &'static str,
    pub run_id: String,
    pub status: RunStatus,
    pub model: String,
    pub version: Option<u64>,
    /// `accepted` or `rejected` by the gate.
    pub verdict: Option<ModelStatus>,
    pub promoted: Option<String>,
    pub algorithm: String,
    pub params: Value,
    pub rows: BTreeMap<&'static str, usize>,
    pub metrics: BTreeMap<String, f64>,
    pub baseline: BTreeMap<String, f64>,
    pub gate: Value,
    pub tables: Vec<ObjectRef>,
    pub timings: BTreeMap<&'static str, f64>,
    pub seconds: f64,
}

/// Runs the job against `store`.
pub async fn train_model(store: &Store, job: &TrainJob) -> Result<TrainSummary> {
    let started = Instant::now();
    let started_at = Utc::now();
    job.spec.check()?;
    let spec = &job.spec.spec;
    let model_name = Name::new(NameKind::Model, spec.model.name.as_str())?;
    let alias = Name::new(NameKind::Alias, spec.gate.alias.as_str())?;
    let mut timings = BTreeMap::new();
    let mut lap = Instant::now();
    let mut tick = |name: &'static str, timings: &mut BTreeMap<&'static str, f64>| {
        timings.insert(name, lap.elapsed().as_secs_f64());
        lap = Instant::now();
    };

    // The champion's features are joined too, so the gate can re-evaluate it on the same rows.
    let champion = store.alias(&model_name, &alias).await?;
    let champion_sources: Vec<crate::spec::FeatureSource> = match &champion {
        Some(current) => {
            let manifest = store.model_version(&model_name, current.version).await?;
            serde_json::from_value(
                manifest
                    .metadata
                    .get("feature_sources")
                    .cloned()
                    .unwrap_or_default(),
            )
            .unwrap_or_default()
        }
        None => Vec::new(),
    };
    let data = dataset::assemble(store, spec, &champion_sources).await?;
    tick("assemble", &mut timings);
    let config_hash = fti_runtime::hash_parts([job.spec.text.as_bytes()]);
    let lineage_key: Vec<String> = data.tables.iter().map(|t| format!("{t:?}")).collect();
    let derived = fti_runtime::hash_parts(
        std::iter::once(config_hash.as_bytes()).chain(lineage_key.iter().map(|k| k.as_bytes())),
    );
    let run_id = job
        .run_id
        .clone()
        .unwrap_or_else(|| format!("train-{}", &derived[..16]));
    let span = info_span!("run", run_id = %run_id, pipeline = PIPELINE);
    let _enter = span.enter();

    // The same spec on the same table versions was already trained and registered.
    if !job.dry_run {
        for version in store.model_versions(&model_name).await?.into_iter().rev() {
            let existing = store.model_version(&model_name, version).await?;
            if existing.lineage.run_id == run_id {
                info!(version, "this run already registered a model version");
                return Ok(TrainSummary {
                    pipeline: PIPELINE,
                    run_id,
                    status: RunStatus::AlreadyDone,
                    model: spec.model.name.clone(),
                    version: Some(version),
                    verdict: Some(existing.status),
                    promoted: None,
                    algorithm: existing.algorithm,
                    params: existing.params,
                    rows: BTreeMap::new(),
                    metrics: serde_json::from_value(existing.metrics["test"].clone())
                        .unwrap_or_default(),
                    baseline: BTreeMap::new(),
                    gate: existing.gate,
                    tables: data.tables,
                    timings,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
        }
    }

    let train = data.indices(Part::Train);
    let validation = data.indices(Part::Validation);
    let test = data.indices(Part::Test);
    if train.is_empty() {
        return Err(Error::EmptySplit { split: "train" });
    }
    if test.is_empty() {
        return Err(Error::EmptySplit { split: "test" });
    }
    info!(
        train = train.len(),
        validation = validation.len(),
        test = test.len(),
        "split"
    );
    let task = spec.model.task;
    let label_name = &spec.label.column;
    let y_train = dataset::target(task, &data.label, label_name, &train, &train, None)?;
    let classes = match &y_train {
        Target::Classes { classes, .. } => Some(classes.clone()),
        Target::Values(_) => None,
    };
    let y_test = dataset::target(
        task,
        &data.label,
        label_name,
        &train,
        &test,
        classes.as_deref(),
    )?;

    let train_columns = data.ordered(&train)?;
    let preprocessing = Preprocessing::fit(&spec.preprocessing, &train_columns)?;
    // Statistics of the raw training inputs: the reference for training-serving skew checks.
    let training_statistics = {
        let fields: Vec<arrow::datatypes::Field> = train_columns
            .iter()
            .map(|(n, a)| arrow::datatypes::Field::new(n, a.data_type().clone(), true))
            .collect();
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            train_columns.iter().map(|(_, a)| a.clone()).collect(),
        )
        .map_err(fti_learn::Error::from)?;
        let mut profiler = fti_stats::TableProfiler::new(&schema);
        profiler.update(&batch);
        profiler.finish().0
    };
    let x_train = preprocessing.transform(&data.take(&train)?)?.matrix;
    let x_test = preprocessing.transform(&data.take(&test)?)?.matrix;
    tick("preprocess", &mut timings);

    // Candidate parameters: the grid's product over the base params, chosen on validation.
    let candidates = grid(&spec.algorithm.params, &spec.algorithm.grid);
    let selection_metric = spec
        .gate
        .champion
        .as_ref()
        .map(|c| c.metric.clone())
        .or_else(|| spec.gate.thresholds.first().map(|t| t.metric.clone()))
        .unwrap_or_else(|| {
            if task == Task::Regression {
                "rmse".into()
            } else {
                "roc_auc".into()
            }
        });
    // The validation split, transformed once for every grid candidate (none without a grid).
    let validation_set = if validation.is_empty() || grid_size(&spec.algorithm.grid) == 1 {
        None
    } else {
        let x_val = preprocessing.transform(&data.take(&validation)?)?.matrix;
        let y_val = dataset::target(
            task,
            &data.label,
            label_name,
            &train,
            &validation,
            classes.as_deref(),
        )?;
        Some((x_val, y_val))
    };
    let mut chosen: Option<(Model, Value, Option<f64>)> = None;
    let mut grid_results = Vec::new();
    for params in candidates {
        let p = params_json(&params);
        let model = Model::fit(
            &spec.algorithm.name,
            task,
            &p,
            spec.algorithm.seed,
            &x_train,
            &y_train,
        )?;
        let score = match &validation_set {
            None => None,
            Some((x_val, y_val)) => {
                let e = evaluate(task, &model.predict(x_val)?, y_val, &y_train);
                e.metrics.get(&selection_metric).copied()
            }
        };
        grid_results.push(json!({"params": p, selection_metric.clone(): score}));
        let better = match (&chosen, score) {
            (None, _) => true,
            (Some((_, _, Some(best))), Some(s)) => {
                if lower_is_better(&selection_metric) {
                    s < *best
                } else {
                    s > *best
                }
            }
            _ => false,
        };
        if better {
            chosen = Some((model, p, score));
        }
    }
    let (model, params, _) = chosen.expect("at least one candidate");
    tick("fit", &mut timings);

    let scores = model.predict(&x_test)?;
    let evaluation = evaluate(task, &scores, &y_test, &y_train);
    tick("evaluate", &mut timings);
    info!(metrics = ?evaluation.metrics, "test metrics");

    // Gate: thresholds, then the current champion on the same test rows.
    let (passed, gate) = judge(
        store,
        job,
        &model_name,
        champion.as_ref(),
        &data,
        &test,
        &y_test,
        &y_train,
        &evaluation,
    )
    .await?;
    let verdict = if passed {
        ModelStatus::Accepted
    } else {
        ModelStatus::Rejected
    };
    if !passed {
        warn!(reason = %gate["reason"], "the gate rejected the model");
    }

    let importance = model.feature_importance().map(|values| {
        let mut named: Vec<(String, f64)> = preprocessing
            .output_names()
            .into_iter()
            .zip(values)
            .collect();
        named.sort_by(|a, b| b.1.total_cmp(&a.1));
        named
    });
    let mut summary = TrainSummary {
        pipeline: PIPELINE,
        run_id: run_id.clone(),
        status: if passed {
            RunStatus::Succeeded
        } else {
            RunStatus::Rejected
        },
        model: spec.model.name.clone(),
        version: None,
        verdict: Some(verdict),
        promoted: None,
        algorithm: spec.algorithm.name.clone(),
        params: params.clone(),
        rows: BTreeMap::from([
            ("train", train.len()),
            ("validation", validation.len()),
            ("test", test.len()),
        ]),
        metrics: evaluation.metrics.clone(),
        baseline: evaluation.baseline.clone(),
        gate: gate.clone(),
        tables: data.tables.clone(),
        timings,
        seconds: 0.0,
    };
    if job.dry_run {
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    let next_version = store
        .model_versions(&model_name)
        .await?
        .last()
        .copied()
        .unwrap_or(0)
        + 1;
    let verdict_text = if passed { "accepted" } else { "rejected" };
    let report = render(
        &ReportContext {
            model: &spec.model.name,
            version: Some(next_version),
            algorithm: &spec.algorithm.name,
            task: &task.to_string(),
            verdict: verdict_text,
            gate: &gate,
            importance: importance.clone(),
            train_rows: train.len(),
            tables: &data.tables,
        },
        &evaluation,
    );
    let features = data.inputs.clone();
    let new = NewModelVersion {
        status: verdict,
        gate: gate.clone(),
        task: task.to_string(),
        algorithm: spec.algorithm.name.clone(),
        features,
        metrics: json!({"test": evaluation.metrics, "baseline": evaluation.baseline, "rows": summary.rows, "grid": grid_results}),
        params: params.clone(),
        lineage: Lineage {
            tables: data.tables.clone(),
            config_hash: config_hash.clone(),
            code_version: fti_runtime::code_version(env!("CARGO_PKG_VERSION")),
            run_id: run_id.clone(),
        },
        metadata: BTreeMap::from([
            ("label".to_string(), json!({"group": spec.label.group, "column": spec.label.column, "time": spec.label.time})),
            ("feature_sources".to_string(), json!(spec.features.iter().map(|f| json!({"group": f.group, "columns": f.columns, "join": f.join, "max_age": f.max_age})).collect::<Vec<_>>())),
            ("join".to_string(), json!({"inclusive": spec.join.inclusive, "max_age": spec.join.max_age})),
            ("classes".to_string(), json!(classes)),
            ("importance".to_string(), json!(importance)),
            ("evaluation".to_string(), json!({"confusion": evaluation.confusion, "calibration": evaluation.calibration})),
            ("spec".to_string(), json!(job.spec.text)),
        ]),
        files: vec![
            ("model.json".into(), model.to_json()?.into()),
            ("preprocessing.json".into(), serde_json::to_vec(&preprocessing).map_err(|e| fti_learn::Error::Artifact(e.to_string()))?.into()),
            ("report.html".into(), report.into_bytes().into()),
            (
                "training_statistics.json".into(),
                serde_json::to_vec(&training_statistics).map_err(|e| fti_learn::Error::Artifact(e.to_string()))?.into(),
            ),
        ],
    };
    let registered = store.register_model(&model_name, new).await?;
    summary.version = Some(registered.version);
    let mut outputs = vec![ObjectRef::Model {
        name: spec.model.name.clone(),
        version: registered.version,
    }];
    if job.promote && passed {
        let expected = champion.as_ref().map_or(0, |c| c.seq);
        let reason = format!(
            "passed the gate ({})",
            gate["reason"].as_str().unwrap_or("thresholds met")
        );
        store
            .move_alias(
                &model_name,
                &alias,
                registered.version,
                expected,
                AliasAction::Promote,
                &job.actor,
                &reason,
            )
            .await?;
        summary.promoted = Some(alias.to_string());
        outputs.push(ObjectRef::Model {
            name: format!("{}@{}", spec.model.name, alias),
            version: registered.version,
        });
    }
    summary.seconds = started.elapsed().as_secs_f64();
    let record = RunRecord {
        format_version: storage::DOCUMENT_VERSION,
        pipeline: Name::new(NameKind::Pipeline, PIPELINE)?,
        run_id: Name::new(NameKind::RunId, run_id.as_str())?,
        attempt: storage::runs::new_attempt_id(started_at),
        status: summary.status,
        started_at,
        finished_at: Utc::now(),
        inputs: data.tables.clone(),
        outputs,
        config_hash,
        code_version: fti_runtime::code_version(env!("CARGO_PKG_VERSION")),
        summary: serde_json::to_value(&summary).unwrap_or_default(),
        error: None,
    };
    store.write_run_record(&record).await?;
    info!(
        version = registered.version,
        verdict = verdict_text,
        seconds = summary.seconds,
        "training run finished"
    );
    Ok(summary)
}

fn grid_size(grid: &BTreeMap<String, Vec<toml::Value>>) -> usize {
    grid.values().map(|v| v.len().max(1)).product()
}

/// Every combination of the grid's values over the base parameters.
fn grid(base: &toml::Table, grid: &BTreeMap<String, Vec<toml::Value>>) -> Vec<toml::Table> {
    let mut out = vec![base.clone()];
    for (name, values) in grid {
        let mut next = Vec::new();
        for params in &out {
            for v in values {
                let mut p = params.clone();
                p.insert(name.clone(), v.clone());
                next.push(p);
            }
        }
        if !next.is_empty() {
            out = next;
        }
    }
    out
}

/// Judges the gate; returns (passed, the gate record stored with the version).
#[allow(clippy::too_many_arguments)]
async fn judge(
    store: &Store,
    job: &TrainJob,
    model_name: &Name,
    champion: Option<&storage::AliasMove>,
    data: &Dataset,
    test: &[usize],
    y_test: &Target,
    y_train: &Target,
    evaluation: &Evaluation,
) -> Result<(bool, Value)> {
    let spec = &job.spec.spec;
    let mut checks = Vec::new();
    let mut failures = Vec::new();
    for t in &spec.gate.thresholds {
        let value = evaluation
            .metrics
            .get(&t.metric)
            .copied()
            .unwrap_or(f64::NAN);
        let ok = value.is_finite()
            && t.min.is_none_or(|m| value >= m)
            && t.max.is_none_or(|m| value <= m);
        if !ok {
            failures.push(format!(
                "{} = {value:.5} outside [{:?}, {:?}]",
                t.metric, t.min, t.max
            ));
        }
        checks.push(json!({"kind": "threshold", "metric": t.metric, "value": value, "min": t.min, "max": t.max, "passed": ok}));
    }
    if let Some(rule) = &spec.gate.champion {
        match champion {
            None => checks.push(json!({"kind": "champion", "passed": true, "note": "no champion yet: judged by thresholds alone"})),
            Some(current) => {
                let manifest = store.model_version(model_name, current.version).await?;
                let champion_eval = evaluate_champion(store, &manifest, data, test, y_test, y_train, spec.model.task).await;
                match champion_eval {
                    Ok(e) => {
                        let ours = evaluation.metrics.get(&rule.metric).copied().unwrap_or(f64::NAN);
                        let theirs = e.metrics.get(&rule.metric).copied().unwrap_or(f64::NAN);
                        let margin = if rule.relative { rule.min_improvement * theirs.abs() } else { rule.min_improvement };
                        let improvement = if lower_is_better(&rule.metric) { theirs - ours } else { ours - theirs };
                        let ok = improvement.is_finite() && improvement >= margin;
                        if !ok {
                            failures.push(format!(
                                "{} = {ours:.5} does not beat champion v{} ({theirs:.5}) by {margin:.5}",
                                rule.metric, current.version
                            ));
                        }
                        checks.push(json!({"kind": "champion", "metric": rule.metric, "champion_version": current.version, "champion_value": theirs, "value": ours, "required_improvement": margin, "improvement": improvement, "passed": ok}));
                    }
                    Err(e) => {
                        failures.push(format!("cannot re-evaluate champion v{}: {e}", current.version));
                        checks.push(json!({"kind": "champion", "champion_version": current.version, "passed": false, "error": e.to_string()}));
                    }
                }
            }
        }
    }
    let passed = failures.is_empty();
    let reason = if passed {
        "all gate rules passed".to_string()
    } else {
        failures.join("; ")
    };
    Ok((
        passed,
        json!({"passed": passed, "reason": reason, "checks": checks}),
    ))
}

/// The champion's metrics on the same test rows, through its own stored preprocessing.
async fn evaluate_champion(
    store: &Store,
    manifest: &storage::ModelVersion,
    data: &Dataset,
    test: &[usize],
    y_test: &Target,
    y_train: &Target,
    task: Task,
) -> Result<Evaluation> {
    let preprocessing: Preprocessing =
        serde_json::from_slice(&store.model_file(manifest, "preprocessing.json").await?)
            .map_err(|e| fti_learn::Error::Artifact(e.to_string()))?;
    let model = Model::from_json(&store.model_file(manifest, "model.json").await?)?;
    let columns: HashMap<String, ArrayRef> = data.take(test)?;
    let x = preprocessing.transform(&columns)?.matrix;
    let scores = model.predict(&x)?;
    // Align class order with this run's classes (the champion may order them differently).
    let scores = match (scores, y_test) {
        (Scores::Probabilities { classes, probs }, Target::Classes { classes: ours, .. })
            if classes != *ours =>
        {
            let mut data_out = Vec::with_capacity(probs.rows * ours.len());
            for r in 0..probs.rows {
                for c in ours {
                    data_out.push(
                        classes
                            .iter()
                            .position(|x| x == c)
                            .map_or(0.0, |i| probs.row(r)[i]),
                    );
                }
            }
            Scores::Probabilities {
                classes: ours.clone(),
                probs: fti_learn::Matrix {
                    rows: probs.rows,
                    cols: ours.len(),
                    data: data_out,
                },
            }
        }
        (s, _) => s,
    };
    Ok(evaluate(task, &scores, y_test, y_train))
}
