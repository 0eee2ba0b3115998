//! The scoring config (TOML): which model, which entities, which outputs, which thresholds.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringConfig {
    pub model: ModelSection,
    pub entities: EntitiesSection,
    pub output: OutputSection,
    #[serde(default)]
    pub exports: Vec<ExportSection>,
    pub redis: Option<RedisSection>,
    #[serde(default)]
    pub monitoring: MonitoringSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub name: String,
    /// Alias, version (`3` or `v3`) or `latest` (`--model` overrides).
    #[serde(rename = "ref", default = "champion")]
    pub reference: String,
}

fn champion() -> String {
    "champion".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitiesSection {
    /// The spine: a feature group with one row per entity (latest at the as-of time is used).
    /// It supplies the model's row-level inputs and the keys the feature groups join on.
    pub group: String,
    /// Only these entities: a CSV with a header naming the spine's entity key columns.
    pub file: Option<String>,
    /// Spine columns copied into the predictions.
    #[serde(default)]
    pub carry: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Name of the published dataset (`predictions/<dataset>/`).
    pub dataset: String,
    /// Export key template over spine columns, e.g. `{origin}-{destination}`.
    pub key: String,
    /// Entities scored per batch (bounds memory).
    #[serde(default = "batch_rows")]
    pub batch_rows: usize,
    /// Entities held in memory at once (about: partitions are hash-sized): beyond this many,
    /// the spine is split into hash partitions on local disk and scored one pass each.
    #[serde(default = "entities_per_pass")]
    pub entities_per_pass: usize,
    /// Published snapshots kept in the store (the current one always is); older ones are
    /// deleted after each publish. At least 2, so the previous one can be restored.
    #[serde(default = "keep_snapshots")]
    pub keep_snapshots: usize,
}

fn batch_rows() -> usize {
    65_536
}

fn entities_per_pass() -> usize {
    50_000
}

fn keep_snapshots() -> usize {
    10
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// `{"key": ..., "value": ..., "model_version": N}` per line.
    Jsonl,
    /// `key,value,model_version` with a header.
    Csv,
    /// DynamoDB S3 import format: `{"Item": {"pk": {"S": ...}, ...}}` per line.
    Dynamodb,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSection {
    pub format: ExportFormat,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// Redis URL (`FTI_REDIS_URL` overrides), e.g. redis://127.0.0.1:6379/
    pub url: Option<String>,
    /// Key prefix: values live at `<prefix>:<snapshot>:<key>`, the current snapshot id at
    /// `<prefix>:current`.
    pub prefix: String,
    /// Keyspaces kept for rollback.
    #[serde(default = "keep")]
    pub keep: usize,
}

fn keep() -> usize {
    3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSection {
    /// Largest population stability index allowed on a numeric input.
    pub max_psi: Option<f64>,
    /// Largest increase of an input's null rate over training.
    pub max_null_rate_increase: Option<f64>,
    /// Largest share of categorical values unseen in training.
    pub max_unseen_fraction: Option<f64>,
    /// Exceeding a threshold fails the run (exit 7) when true, only warns when false.
    #[serde(default = "yes")]
    pub fail: bool,
}

impl Default for MonitoringSection {
    fn default() -> Self {
        MonitoringSection {
            max_psi: None,
            max_null_rate_increase: None,
            max_unseen_fraction: None,
            fail: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// A loaded config with its text (for hashing) and path (for messages and relative paths).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub text: String,
    pub config: ScoringConfig,
}

impl LoadedConfig {
    pub fn load(path: &Path) -> Result<LoadedConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.display().to_string(),
            source,
        })?;
        let config: ScoringConfig = toml::from_str(&text).map_err(|e| Error::ParseConfig {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let bad = |message: String| Error::ParseConfig {
            path: path.display().to_string(),
            message,
        };
        storage::Name::new(storage::NameKind::Model, config.model.name.as_str())
            .map_err(|e| bad(format!("model.name: {e}")))?;
        storage::Name::new(
            storage::NameKind::FeatureGroup,
            config.entities.group.as_str(),
        )
        .map_err(|e| bad(format!("entities.group: {e}")))?;
        storage::Name::new(storage::NameKind::Dataset, config.output.dataset.as_str())
            .map_err(|e| bad(format!("output.dataset: {e}")))?;
        if config.output.batch_rows == 0 {
            return Err(bad("output.batch_rows: must be positive".into()));
        }
        if config.output.entities_per_pass == 0 {
            return Err(bad("output.entities_per_pass: must be positive".into()));
        }
        if config.output.keep_snapshots < 2 {
            return Err(bad(
                "output.keep_snapshots: must be at least 2 (the current snapshot and the one a rollback restores)".into(),
            ));
        }
        if template_columns(&config.output.key).is_empty() {
            return Err(bad(format!(
                "output.key: {:?} names no column (use e.g. \"{{origin}}-{{destination}}\")",
                config.output.key
            )));
        }
        Ok(LoadedConfig {
            path: path.to_path_buf(),
            text,
            config,
        })
    }

    /// Resolves a path relative to the config file.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

/// The `{column}` names of a key template.
pub fn template_columns(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        out.push(rest[start + 1..start + end].to_string());
        rest = &rest[start + end + 1..];
    }
    out
}

/// Fills a key template from column values.
pub fn render_template(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&value(&rest[start + 1..start + end]));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}
