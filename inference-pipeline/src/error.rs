//! The inference pipeline's error type; each variant names the model, group, column or service.

use fti_runtime::Exit;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read scoring config {path}")]
    ReadConfig {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {message}")]
    ParseConfig { path: String, message: String },

    #[error("invalid flag: {0}")]
    Flag(String),

    #[error("model {model:?} version {version} {message}")]
    Model {
        model: String,
        version: u64,
        message: String,
    },

    #[error("the store does not match what model {model:?} version {version} expects: {message}")]
    Schema {
        model: String,
        version: u64,
        message: String,
    },

    #[error("no entities to score: {0}")]
    NoEntities(String),

    #[error("entity list {path}: {message}")]
    EntityFile { path: String, message: String },

    #[error("redis at {url}: {message}")]
    Redis { url: String, message: String },

    #[error("not every shard has written its part: {missing} of {count} missing ({names})")]
    PartsMissing {
        missing: usize,
        count: usize,
        names: String,
    },

    #[error("monitoring thresholds failed; nothing was published:\n{}", failures.join("\n"))]
    Monitoring { failures: Vec<String> },

    #[error(transparent)]
    Learn(#[from] fti_learn::Error),

    #[error(transparent)]
    Storage(#[from] storage::Error),
}

impl fti_runtime::ExitError for Error {
    fn exit(&self) -> Exit {
        Error::exit(self)
    }
}

impl Error {
    /// The exit code an orchestrator acts on.
    pub fn exit(&self) -> Exit {
        match self {
            Error::ReadConfig { .. } | Error::ParseConfig { .. } | Error::Flag(_) => Exit::Config,
            Error::Model { .. }
            | Error::Schema { .. }
            | Error::NoEntities(_)
            | Error::EntityFile { .. } => Exit::BadInput,
            Error::Learn(_) => Exit::BadInput,
            Error::Redis { .. } => Exit::Infra,
            Error::PartsMissing { .. } => Exit::Infra,
            Error::Monitoring { .. } => Exit::Monitoring,
            Error::Storage(e) => fti_runtime::storage_exit(e),
        }
    }
}
