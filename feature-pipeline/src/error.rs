//! The feature pipeline's error type: each variant names the file, group, column or rule.

use datafusion::error::DataFusionError;
use fti_runtime::Exit;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config {path}")]
    ReadConfig {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {message}")]
    ParseConfig { path: String, message: String },

    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.join("\n"))]
    InvalidConfig { path: String, problems: Vec<String> },

    #[error("invalid flag: {0}")]
    Flag(String),

    #[error("source {source_name:?} ({path}): {message}")]
    Source {
        source_name: String,
        path: String,
        message: String,
    },

    #[error("group {group:?}: SQL error: {message}")]
    Sql { group: String, message: String },

    #[error("group {group:?}: query output does not match the declared columns: {message}")]
    Schema { group: String, message: String },

    #[error("group {group:?}: {message}")]
    Execution { group: String, message: String },

    #[error("group {group:?}: the query returned no rows (empty input?){}", if *range {
        "; to commit the range empty, deleting the table's rows there, run with --allow-empty"
    } else {
        ""
    })]
    Empty { group: String, range: bool },

    #[error("validation failed; nothing was committed:\n{}", failures.join("\n"))]
    Validation { failures: Vec<String> },

    #[error(transparent)]
    Storage(#[from] storage::Error),

    /// A group failed, maybe others too, and the groups after it were not started (nothing is
    /// committed). The exit code is the first failure's.
    #[error("{}", stopped(error, also_failed, not_started))]
    Stopped {
        error: Box<Error>,
        /// The other groups' errors, in the order the groups were declared.
        also_failed: Vec<Error>,
        not_started: Vec<String>,
    },
}

fn stopped(error: &Error, also_failed: &[Error], not_started: &[String]) -> String {
    let mut text = error.to_string();
    for other in also_failed {
        text.push_str(&format!("\nalso: {other}"));
    }
    if !not_started.is_empty() {
        text.push_str(&format!(
            "\n(not started after that failure: {})",
            not_started.join(", ")
        ));
    }
    text
}

impl fti_runtime::ExitError for Error {
    fn exit(&self) -> Exit {
        Error::exit(self)
    }
}

impl Error {
    /// For `map_err`: the query engine rejected `group`'s SQL (or a view's).
    pub fn sql(group: &str) -> impl Fn(DataFusionError) -> Error + Copy + '_ {
        move |e| Error::Sql {
            group: group.to_string(),
            message: e.to_string(),
        }
    }

    /// For `map_err`: running `group`'s query failed, on its data.
    pub fn execution(group: &str) -> impl Fn(DataFusionError) -> Error + Copy + '_ {
        move |e| Error::Execution {
            group: group.to_string(),
            message: e.to_string(),
        }
    }

    /// The exit code an orchestrator acts on.
    pub fn exit(&self) -> Exit {
        match self {
            Error::ReadConfig { .. }
            | Error::ParseConfig { .. }
            | Error::InvalidConfig { .. }
            | Error::Flag(_)
            | Error::Sql { .. } => Exit::Config,
            Error::Source { .. }
            | Error::Schema { .. }
            | Error::Execution { .. }
            | Error::Empty { .. } => Exit::BadInput,
            Error::Validation { .. } => Exit::Rejected,
            Error::Storage(e) => fti_runtime::storage_exit(e),
            Error::Stopped { error, .. } => error.exit(),
        }
    }
}
