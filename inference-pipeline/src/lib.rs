//! The inference pipeline: a registered model and the latest features in; predictions and
//! key-value exports out, each published atomically.
//!
//! [`config`] is the scoring config; [`score`] plans (model, spine, joins), checks the store
//! against the model, scores in passes and batches through `fti-learn` (the same join,
//! preprocessing and model code as training), streams the outputs ([`sinks`]), monitors skew
//! ([`monitor`]) and publishes ([`exports`]).

pub mod config;
pub mod error;
pub mod exports;
pub mod monitor;
pub mod score;
pub mod sinks;

pub use config::LoadedConfig;
pub use error::{Error, Result};
pub use score::{ScoreJob, ScoreSummary, score};

/// Parses a time: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS` (naive, read as UTC) or RFC 3339, to
/// microseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64> {
    fti_runtime::parse_time(s).map_err(Error::Flag)
}
