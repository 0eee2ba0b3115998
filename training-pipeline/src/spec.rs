//! The model spec (TOML): what to train on, how to split and preprocess, which algorithm,
//! and the gate a model must pass before it may serve. Another dataset or task is a new spec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fti_learn::model::{Task, check_params};
use fti_learn::preprocess::PreprocessSpec;
use serde::Deserialize;
use storage::{Name, NameKind};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub model: ModelSection,
    pub label: LabelSection,
    pub features: Vec<FeatureSource>,
    #[serde(default)]
    pub join: JoinSection,
    pub split: SplitSection,
    #[serde(default)]
    pub preprocessing: PreprocessSpec,
    pub algorithm: AlgorithmSection,
    #[serde(default)]
    pub gate: GateSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Registry name.
    pub name: String,
    pub task: Task,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSection {
    /// The feature group holding one row per training example.
    pub group: String,
    pub column: String,
    /// The time each example is known at (default: the group's event time).
    pub time: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSource {
    pub group: String,
    /// Columns to use (default: every feature column of the group).
    pub columns: Option<Vec<String>>,
    /// Feature-table entity key -> label-group column (default: the same names).
    #[serde(default)]
    pub join: BTreeMap<String, String>,
    /// Older matches count as missing, e.g. "7d", "36h" (overrides `[join] max_age`).
    pub max_age: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinSection {
    /// Feature rows at the label's exact time count (`<=`); false means strictly before.
    #[serde(default = "yes")]
    pub inclusive: bool,
    pub max_age: Option<String>,
}

impl Default for JoinSection {
    fn default() -> Self {
        JoinSection {
            inclusive: true,
            max_age: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitMethod {
    Time,
    Random,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSection {
    pub method: SplitMethod,
    /// Time split: training examples are before this time.
    pub train_before: Option<String>,
    /// Time split: test examples are at or after this time; between the two is validation.
    pub test_from: Option<String>,
    /// Random split: fractions of examples held out.
    pub validation_fraction: Option<f64>,
    pub test_fraction: Option<f64>,
    #[serde(default)]
    pub seed: u64,
    /// Keep only some training examples (validation and test are never sampled).
    pub train_sample: Option<SampleSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleSpec {
    /// Keep rows whose integer `column` is a multiple of `modulo` (deterministic across
    /// languages)...
    pub column: Option<String>,
    pub modulo: Option<i64>,
    /// ...or a seeded random fraction.
    pub fraction: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlgorithmSection {
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub params: toml::Table,
    /// Optional grid: parameter -> candidate values, the best on the validation split wins.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<toml::Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSection {
    /// Alias a passing model may be promoted to.
    #[serde(default = "champion")]
    pub alias: String,
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    pub champion: Option<ChampionRule>,
}

fn champion() -> String {
    "champion".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub metric: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChampionRule {
    /// The metric compared on the same test set.
    pub metric: String,
    /// Required improvement over the champion (absolute, in the metric's direction).
    #[serde(default)]
    pub min_improvement: f64,
    /// Interpret `min_improvement` as a fraction of the champion's value.
    #[serde(default)]
    pub relative: bool,
}

/// Metrics where lower is better.
pub fn lower_is_better(metric: &str) -> bool {
    matches!(metric, "log_loss" | "rmse" | "mae" | "brier")
}

/// Metrics each task reports (usable in the gate).
pub fn metrics_for(task: Task) -> &'static [&'static str] {
    match task {
        Task::Binary => &[
            "accuracy",
            "precision",
            "recall",
            "f1",
            "roc_auc",
            "pr_auc",
            "log_loss",
            "brier",
        ],
        Task::Multiclass => &[
            "accuracy",
            "macro_precision",
            "macro_recall",
            "macro_f1",
            "roc_auc",
            "log_loss",
        ],
        Task::Regression => &["rmse", "mae", "r2"],
    }
}

/// Parses durations like "7d", "36h", "90m", "45s".
pub fn parse_duration_us(s: &str) -> Option<i64> {
    fti_runtime::parse_duration_us(s)
}

/// A loaded spec with its text (for hashing) and path (for messages).
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub path: PathBuf,
    pub text: String,
    pub spec: ModelSpec,
}

impl LoadedSpec {
    pub fn load(path: &Path) -> Result<LoadedSpec> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadSpec {
            path: path.display().to_string(),
            source,
        })?;
        let spec: ModelSpec = toml::from_str(&text).map_err(|e| Error::ParseSpec {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(LoadedSpec {
            path: path.to_path_buf(),
            text,
            spec,
        })
    }

    /// Fails with every problem found without reading data.
    pub fn check(&self) -> Result<()> {
        let problems = self.spec.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidSpec {
                path: self.path.display().to_string(),
                problems,
            })
        }
    }
}

/// TOML parameters as JSON for the algorithm crate.
pub fn params_json(table: &toml::Table) -> serde_json::Value {
    serde_json::to_value(table).unwrap_or(serde_json::Value::Null)
}

impl ModelSpec {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = Name::new(NameKind::Model, self.model.name.as_str()) {
            problems.push(format!("model.name: {e}"));
        }
        if let Err(e) = Name::new(NameKind::FeatureGroup, self.label.group.as_str()) {
            problems.push(format!("label.group: {e}"));
        }
        if self.features.is_empty() {
            problems.push("features: at least one feature source is required".into());
        }
        for (i, f) in self.features.iter().enumerate() {
            if let Err(e) = Name::new(NameKind::FeatureGroup, f.group.as_str()) {
                problems.push(format!("features[{i}].group: {e}"));
            }
            if f.columns.as_ref().is_some_and(Vec::is_empty) {
                problems.push(format!(
                    "features[{i}].columns: empty list (omit it to use every feature column)"
                ));
            }
            if let Some(age) = &f.max_age
                && parse_duration_us(age).is_none()
            {
                problems.push(format!(
                    "features[{i}].max_age: cannot parse {age:?} (use e.g. 7d, 36h)"
                ));
            }
            if f.group == self.label.group && !f.join.is_empty() {
                problems.push(format!("features[{i}].join: columns of the label group are read from the label row; no join"));
            }
        }
        if let Some(age) = &self.join.max_age
            && parse_duration_us(age).is_none()
        {
            problems.push(format!(
                "join.max_age: cannot parse {age:?} (use e.g. 7d, 36h)"
            ));
        }
        match self.split.method {
            SplitMethod::Time => {
                for (key, value) in [
                    ("train_before", &self.split.train_before),
                    ("test_from", &self.split.test_from),
                ] {
                    match value {
                        None => problems.push(format!("split.{key}: required for a time split")),
                        Some(v) if crate::parse_time(v).is_err() => problems.push(format!(
                            "split.{key}: cannot parse {v:?} (YYYY-MM-DD or RFC 3339)"
                        )),
                        _ => {}
                    }
                }
                if let (Some(a), Some(b)) = (&self.split.train_before, &self.split.test_from)
                    && let (Ok(a), Ok(b)) = (crate::parse_time(a), crate::parse_time(b))
                    && a > b
                {
                    problems.push("split: train_before is after test_from".into());
                }
            }
            SplitMethod::Random => {
                let v = self.split.validation_fraction.unwrap_or(0.0);
                let t = self.split.test_fraction.unwrap_or(0.0);
                if !(0.0..1.0).contains(&v) || !(0.0..1.0).contains(&t) || t <= 0.0 || v + t >= 1.0
                {
                    problems.push("split: a random split needs 0 < test_fraction, 0 <= validation_fraction, and their sum < 1".into());
                }
            }
        }
        if let Some(sample) = &self.split.train_sample {
            let modulo = sample.column.is_some() && sample.modulo.is_some_and(|m| m > 0);
            let fraction = sample.fraction.is_some_and(|f| f > 0.0 && f <= 1.0);
            if modulo == fraction {
                problems.push("split.train_sample: give either `column` + `modulo` (> 0) or `fraction` in (0, 1]".into());
            }
        }
        let params = params_json(&self.algorithm.params);
        if let Err(e) = check_params(&self.algorithm.name, self.model.task, &params) {
            problems.push(format!("algorithm: {e}"));
        }
        for (name, values) in &self.algorithm.grid {
            for value in values {
                let mut p = self.algorithm.params.clone();
                p.insert(name.clone(), value.clone());
                if let Err(e) =
                    check_params(&self.algorithm.name, self.model.task, &params_json(&p))
                {
                    problems.push(format!("algorithm.grid.{name}: {e}"));
                    break;
                }
            }
        }
        let known = metrics_for(self.model.task);
        if self.gate.thresholds.is_empty() && self.gate.champion.is_none() {
            problems.push("gate: no rule (a gate without thresholds or a champion comparison would pass anything)".into());
        }
        for (i, t) in self.gate.thresholds.iter().enumerate() {
            if !known.contains(&t.metric.as_str()) {
                problems.push(format!(
                    "gate.thresholds[{i}].metric: unknown metric {:?} for a {} task (known: {})",
                    t.metric,
                    self.model.task,
                    known.join(", ")
                ));
            }
            if t.min.is_none() && t.max.is_none() {
                problems.push(format!("gate.thresholds[{i}]: needs `min`, `max` or both"));
            }
        }
        if let Some(c) = &self.gate.champion
            && !known.contains(&c.metric.as_str())
        {
            problems.push(format!(
                "gate.champion.metric: unknown metric {:?} (known: {})",
                c.metric,
                known.join(", ")
            ));
        }
        if let Err(e) = Name::new(NameKind::Alias, self.gate.alias.as_str()) {
            problems.push(format!("gate.alias: {e}"));
        }
        problems
    }
}
