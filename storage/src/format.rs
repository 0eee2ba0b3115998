//! The JSON documents of the layout. These types are a file format shared with other
//! languages (see docs/STORAGE.md): fields are only ever added, with defaults, within a major
//! version; anything else is a new major version and a migration.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::layout::DatasetKind;
use crate::names::Name;

/// Name written in `layout.json`.
pub const LAYOUT_FORMAT: &str = "fti-layout";
/// Major version of the layout this crate reads and writes.
pub const LAYOUT_MAJOR: u32 = 1;
/// Minor version this crate writes; readers accept any minor of their major.
pub const LAYOUT_MINOR: u32 = 0;
/// Version number carried by every JSON document (`format_version`).
pub const DOCUMENT_VERSION: u32 = 1;

/// `layout.json` at the store root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayoutFile {
    pub format: String,
    /// `"<major>.<minor>"`.
    pub version: String,
    pub created_at: DateTime<Utc>,
}

/// A file referenced by a manifest, with what a reader needs to detect corruption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Path relative to the directory that owns the manifest (table, model or snapshot dir).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
}

/// A Parquet data file of a feature table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    #[serde(flatten)]
    pub file: StoredFile,
    pub num_rows: u64,
    /// Smallest event time in the file, microseconds since the epoch (naive times read as UTC).
    pub min_event_time_us: Option<i64>,
    /// Largest event time in the file, microseconds since the epoch.
    pub max_event_time_us: Option<i64>,
}

/// One column of a feature table as declared by its owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    /// Arrow type in pyarrow's spelling: `int64`, `double`, `string`, `bool`, `date32[day]`,
    /// `timestamp[us]`, `timestamp[us, tz=UTC]`, ...
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// The declared schema and ownership of a feature group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDefinition {
    pub name: Name,
    /// Columns that identify the entity (e.g. `origin`); with the event time they key a row.
    pub entity_keys: Vec<String>,
    /// The column holding the time at which a row's values became known.
    pub event_time: String,
    /// Every column, keys and event time included, in file order.
    pub columns: Vec<ColumnDef>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl TableDefinition {
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Columns that are neither entity keys nor the event time.
    pub fn feature_columns(&self) -> impl Iterator<Item = &ColumnDef> {
        self.columns
            .iter()
            .filter(|c| c.name != self.event_time && !self.entity_keys.contains(&c.name))
    }
}

/// What a commit does to the set of live files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Operation {
    /// Replace everything (full refresh).
    Overwrite,
    /// Add rows, keep everything.
    Append,
    /// Replace the rows whose event time is in `[from_us, to_us)` (incremental refresh).
    ReplaceRange { from_us: i64, to_us: i64 },
}

/// Statistics of the rows a commit wrote, used for drift and skew checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableStatistics {
    pub num_rows: u64,
    pub columns: BTreeMap<String, ColumnStatistics>,
}

/// Statistics of one column. Numeric fields are absent for non-numeric columns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnStatistics {
    #[serde(rename = "type")]
    pub data_type: String,
    /// Non-null values.
    pub count: u64,
    pub null_count: u64,
    /// NaN or infinite values (floating point columns only; not counted in `count`).
    #[serde(default)]
    pub nan_count: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    /// `(q, value)` pairs for q in 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quantiles: Vec<(f64, f64)>,
    pub histogram: Option<Histogram>,
    /// Exact distinct count for string/bool columns.
    pub distinct_count: Option<u64>,
    /// Most frequent values of string/bool columns, most frequent first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_values: Vec<(String, u64)>,
}

/// Equal-width histogram: `counts[i]` values fall in `[edges[i], edges[i+1])`, the last bin
/// being closed on the right.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// Severity of a validation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warn,
}

/// The outcome of one validation rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleResult {
    /// Rule name, e.g. `max_null_fraction`.
    pub rule: String,
    /// The column checked, if the rule is about one.
    pub column: Option<String>,
    pub severity: Severity,
    pub passed: bool,
    /// What was measured, e.g. `0.12`.
    pub measured: Value,
    /// The limit it was held to, e.g. `"<= 0.05"`.
    pub limit: Value,
    pub message: String,
}

/// Every rule checked before a commit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub rules: Vec<RuleResult>,
}

impl ValidationReport {
    /// Rules of severity `error` that failed.
    pub fn errors(&self) -> impl Iterator<Item = &RuleResult> {
        self.rules
            .iter()
            .filter(|r| !r.passed && r.severity == Severity::Error)
    }

    /// Rules of severity `warn` that failed.
    pub fn warnings(&self) -> impl Iterator<Item = &RuleResult> {
        self.rules
            .iter()
            .filter(|r| !r.passed && r.severity == Severity::Warn)
    }
}

/// A table commit: the log entry `tables/<t>/_log/<version>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableCommit {
    pub format_version: u32,
    pub table: Name,
    pub version: u64,
    /// Unique per commit attempt; lets a writer recognise its own entry after a retried put.
    pub commit_id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub operation: Operation,
    pub definition: TableDefinition,
    /// Files made live by this commit.
    pub add: Vec<DataFile>,
    /// Paths (relative to the table directory) of files no longer live after this commit.
    pub remove: Vec<String>,
    /// Rows live in the table at this version.
    pub num_rows: u64,
    pub run_id: Option<String>,
    /// A re-run with the same key finds this commit and does not commit again.
    pub idempotency_key: Option<String>,
    /// Statistics of the rows this commit wrote.
    pub statistics: Option<TableStatistics>,
    pub validation: Option<ValidationReport>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
}

/// A reference to a specific version of something in the store, for lineage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ObjectRef {
    Table {
        name: String,
        version: u64,
    },
    Model {
        name: String,
        version: u64,
    },
    Snapshot {
        dataset_kind: DatasetKind,
        dataset: String,
        snapshot: String,
    },
    /// Raw input outside the layout (a file or URL).
    Source {
        url: String,
    },
}

/// Where a model version came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The exact feature-table versions the training set was built from.
    pub tables: Vec<ObjectRef>,
    pub config_hash: String,
    pub code_version: String,
    pub run_id: String,
}

/// The verdict of a model's validation gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    /// Passed its gate: may be given an alias.
    Accepted,
    /// Failed its gate: kept for the record, never aliased.
    Rejected,
}

/// The manifest of an immutable model version: `models/<m>/versions/<version>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub format_version: u32,
    pub model: Name,
    pub version: u64,
    /// Unique per registration attempt; the files live under `files/<upload_id>/`.
    pub upload_id: String,
    pub created_at: DateTime<Utc>,
    pub status: ModelStatus,
    /// Gate checks and their outcome (free-form, written by the training pipeline).
    pub gate: Value,
    /// `binary`, `multiclass` or `regression`.
    pub task: String,
    pub algorithm: String,
    /// The inputs the model expects, in order, with pyarrow type names.
    pub features: Vec<ColumnDef>,
    /// Files by logical name (`model`, `preprocessing`, `report.html`, ...).
    pub files: BTreeMap<String, StoredFile>,
    pub metrics: Value,
    pub params: Value,
    pub lineage: Lineage,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
}

/// Why an alias moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AliasAction {
    Promote,
    Rollback,
}

/// One move of an alias: `models/<m>/aliases/<a>/<seq>.json`. The newest entry is current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasMove {
    pub format_version: u32,
    pub model: Name,
    pub alias: Name,
    pub seq: u64,
    pub version: u64,
    /// The version the alias pointed to before this move.
    pub previous_version: Option<u64>,
    pub action: AliasAction,
    pub actor: String,
    pub reason: String,
    pub timestamp: DateTime<Utc>,
    pub move_id: Uuid,
}

/// Seal of an immutable snapshot: `<kind>/<d>/snapshots/<s>/_snapshot.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub format_version: u32,
    pub dataset_kind: DatasetKind,
    pub dataset: Name,
    pub snapshot: Name,
    pub created_at: DateTime<Utc>,
    /// Files by logical name (e.g. `predictions.parquet`, `kv.jsonl`).
    pub files: BTreeMap<String, StoredFile>,
    pub num_rows: u64,
    pub run_id: Option<String>,
    /// What the snapshot was computed from.
    #[serde(default)]
    pub inputs: Vec<ObjectRef>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
}

/// One move of a dataset's `current` pointer: `<kind>/<d>/current/<seq>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointerMove {
    pub format_version: u32,
    pub dataset_kind: DatasetKind,
    pub dataset: Name,
    pub seq: u64,
    pub snapshot: Name,
    pub previous_snapshot: Option<Name>,
    pub actor: String,
    pub reason: String,
    pub timestamp: DateTime<Utc>,
    pub move_id: Uuid,
}

/// How a pipeline run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    /// Nothing to do: the same logical run had already committed.
    AlreadyDone,
    /// Validation or gate rejected the output; nothing was committed (or committed as rejected).
    Rejected,
    Failed,
}

/// One attempt of a pipeline run: `runs/<pipeline>/<run_id>/<attempt>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format_version: u32,
    pub pipeline: Name,
    pub run_id: Name,
    /// `<started_at_ms:013>-<8 hex>`: sorts by start time.
    pub attempt: String,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub inputs: Vec<ObjectRef>,
    pub outputs: Vec<ObjectRef>,
    pub config_hash: String,
    pub code_version: String,
    /// The run summary printed on stdout.
    pub summary: Value,
    pub error: Option<String>,
}
