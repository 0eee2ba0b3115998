//! The inference pipeline: a registered model and the latest features in; predictions and
//! key-value exports out, each published atomically.
//!
//! [`config`] is the scoring config; [`score`] plans (model, spine, joins), checks the store
//! against the model, scores in batches through `fti-learn` (the same join, preprocessing and
//! model code as training), monitors skew ([`monitor`]) and publishes ([`exports`]).

pub mod config;
pub mod error;
pub mod exports;
pub mod monitor;
pub mod score;

pub use config::LoadedConfig;
pub use error::{Error, Result};
pub use score::{ScoreJob, ScoreSummary, score};

/// Parses a time: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS` (naive, read as UTC) or RFC 3339, to
/// microseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        return Ok(t.and_utc().timestamp_micros());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_micros());
    }
    Err(Error::Flag(format!(
        "cannot parse time {s:?}: use YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or RFC 3339"
    )))
}
