//! The storage crate's one error type: every variant names the object and the rule it broke.

use object_store::path::Path;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading or writing the FTI layout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid {kind} name {name:?}: {rule}")]
    InvalidName {
        kind: &'static str,
        name: String,
        rule: &'static str,
    },

    #[error("invalid store url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("cannot open store {url}")]
    Open {
        url: String,
        #[source]
        source: object_store::Error,
    },

    #[error("object store error on {path}")]
    ObjectStore {
        path: String,
        #[source]
        source: object_store::Error,
    },

    #[error("{path} does not exist")]
    NotFound { path: String },

    #[error(
        "store at {url} has layout {format} version {found}; this binary understands major version {supported}"
    )]
    UnsupportedLayout {
        url: String,
        format: String,
        found: String,
        supported: u32,
    },

    #[error("{path} is corrupted: {reason}")]
    Corrupted { path: String, reason: String },

    #[error("{path} has checksum {actual}, but its manifest recorded {expected}")]
    ChecksumMismatch {
        path: String,
        expected: String,
        actual: String,
    },

    #[error(
        "{path} has {actual} bytes, but its manifest recorded {expected} (truncated or replaced)"
    )]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },

    #[error("cannot decode {path}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("cannot encode {what}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("parquet error on {path}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("arrow error on {path}")]
    Arrow {
        path: String,
        #[source]
        source: arrow::error::ArrowError,
    },

    #[error("feature table {table:?} has no committed version")]
    TableNotFound { table: String },

    #[error("feature table {table:?} has no version {version}")]
    VersionNotFound { table: String, version: u64 },

    #[error("feature table {table:?} has no version committed at or before {timestamp}")]
    NoVersionAt { table: String, timestamp: String },

    #[error(
        "commit to {log} lost the race {attempts} times in a row (version {version} taken by another writer)"
    )]
    CommitConflict {
        log: String,
        version: u64,
        attempts: u32,
    },

    #[error("schema of {table:?} does not match: {reason}")]
    SchemaMismatch { table: String, reason: String },

    #[error("{what} is invalid: {reason}")]
    InvalidArgument { what: String, reason: String },

    #[error("model {model:?} has no version {version}")]
    ModelVersionNotFound { model: String, version: u64 },

    #[error("model {model:?} does not exist in the registry")]
    ModelNotFound { model: String },

    #[error("model {model:?} has no alias {alias:?}")]
    AliasNotFound { model: String, alias: String },

    #[error(
        "alias {alias:?} of model {model:?} moved concurrently: expected move #{expected}, found #{found}"
    )]
    AliasConflict {
        model: String,
        alias: String,
        expected: u64,
        found: u64,
    },

    #[error(
        "model {model:?} version {version} was rejected by its gate ({reason}); it cannot be given an alias"
    )]
    RejectedModel {
        model: String,
        version: u64,
        reason: String,
    },

    #[error("alias {alias:?} of model {model:?} has no earlier version to roll back to")]
    NothingToRollBack { model: String, alias: String },

    #[error("{what} has no file named {file:?}")]
    FileNotFound { what: String, file: String },

    #[error("snapshot {snapshot:?} of {dataset:?} is not sealed (missing or unreadable manifest)")]
    SnapshotNotFound { dataset: String, snapshot: String },

    #[error("{dataset:?} has no published snapshot")]
    NothingPublished { dataset: String },

    #[error("snapshot {snapshot:?} of {dataset:?} is already sealed and cannot change")]
    SnapshotExists { dataset: String, snapshot: String },
}

impl Error {
    pub(crate) fn store(path: &Path, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound {
                path: path.to_string(),
            },
            source => Error::ObjectStore {
                path: path.to_string(),
                source,
            },
        }
    }

    /// True for failures of the infrastructure (network, permissions, server) rather than of
    /// the data or the request: an orchestrator may retry these.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::ObjectStore { .. } | Error::Open { .. } | Error::CommitConflict { .. }
        )
    }
}
