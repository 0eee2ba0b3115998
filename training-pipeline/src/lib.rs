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
