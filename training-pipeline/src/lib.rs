//! The training pipeline: feature tables in, an evaluated, gated, registered model version out.
//!
//! A model spec ([`spec`]) names the label and feature groups; [`dataset`] joins them
//! point-in-time and splits; `fti-learn` fits the preprocessing and the model; [`metrics`]
//! and [`report`] evaluate; [`train`] gates, registers and promotes.

pub mod dataset;
pub mod error;
pub mod metrics;
pub mod registry;
pub mod report;
pub mod spec;
pub mod train;

pub use error::{Error, Result};
pub use spec::LoadedSpec;
pub use train::{TrainJob, TrainSummary, train_model};

/// Parses a time: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS` (naive, read as UTC) or RFC 3339, to
/// microseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64> {
    fti_runtime::parse_time(s).map_err(Error::Flag)
}
