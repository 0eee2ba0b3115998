//! The training pipeline's error type; each variant names the spec key, group or column.

use fti_runtime::Exit;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read model spec {path}")]
    ReadSpec {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {message}")]
    ParseSpec { path: String, message: String },

    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.join("\n"))]
    InvalidSpec { path: String, problems: Vec<String> },

    #[error("invalid flag: {0}")]
    Flag(String),

    #[error("feature group {group:?} ({role}) has no committed version in the store")]
    MissingGroup { group: String, role: &'static str },

    #[error("feature group {group:?} has no column {column:?} (columns: {available})")]
    MissingColumn {
        group: String,
        column: String,
        available: String,
    },

    #[error("{what}: {message}")]
    BadData { what: String, message: String },

    #[error("the {split} split is empty after the join and split (check split dates and sampling)")]
    EmptySplit { split: &'static str },

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
        use fti_learn::Error as L;
        match self {
            Error::ReadSpec { .. }
            | Error::ParseSpec { .. }
            | Error::InvalidSpec { .. }
            | Error::Flag(_) => Exit::Config,
            Error::Learn(L::Params { .. } | L::UnsupportedTask { .. }) => Exit::Config,
            Error::MissingGroup { .. }
            | Error::MissingColumn { .. }
            | Error::BadData { .. }
            | Error::EmptySplit { .. }
            | Error::Learn(_) => Exit::BadInput,
            Error::Storage(e) => fti_runtime::storage_exit(e),
        }
    }
}
