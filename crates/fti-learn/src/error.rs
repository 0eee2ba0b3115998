//! Errors of feature retrieval, preprocessing and models; each names the column or rule.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("feature {column:?} has a NaN or infinite value at row {row}")]
    NonFinite { column: String, row: usize },

    #[error(
        "feature {column:?} has the category {value:?}, unseen at training time (policy: error)"
    )]
    UnseenCategory { column: String, value: String },

    #[error("feature {column:?} is missing from the input")]
    MissingColumn { column: String },

    #[error("feature {column:?} has type {found}, the model expects {expected}")]
    WrongType {
        column: String,
        expected: String,
        found: String,
    },

    #[error("the input has {found} columns, the model expects {expected}")]
    ColumnCount { expected: usize, found: usize },

    #[error("cannot fit on an empty training set")]
    EmptyTrainingSet,

    #[error("the label has a single class ({class:?}): a classifier needs at least two")]
    SingleClass { class: String },

    #[error("label column {column:?} has {nulls} null values in the training set")]
    NullLabels { column: String, nulls: usize },

    #[error("algorithm {algorithm:?} does not support task {task}")]
    UnsupportedTask { algorithm: String, task: String },

    #[error("invalid parameters for {algorithm}: {message}")]
    Params { algorithm: String, message: String },

    #[error("{algorithm} failed: {message}")]
    Algorithm { algorithm: String, message: String },

    #[error("cannot decode the model artifact: {0}")]
    Artifact(String),

    #[error("join key {key:?}: {message}")]
    Join { key: String, message: String },

    #[error("local spill file {path}: {message}")]
    Spill { path: String, message: String },

    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),

    #[error(transparent)]
    Storage(#[from] storage::Error),
}
