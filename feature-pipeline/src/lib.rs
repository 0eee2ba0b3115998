//! The feature pipeline: raw data in, validated and versioned feature tables out.
//!
//! Feature groups are declared in a TOML feature repository ([`config`]), computed by
//! DataFusion SQL ([`engine`]), checked by validation rules before anything is committed
//! ([`validate`]), and committed through the `storage` crate's layout ([`run`]).

pub mod bad_record;
pub mod config;
pub mod drift_reference;
pub mod engine;
pub mod error;
pub mod framed_window;
pub mod inspect;
pub mod rerun;
pub mod rows_window;
pub mod run;
pub mod source;
pub mod string_concat;
pub mod timestamp_parts;
pub mod validate;

pub use config::LoadedRepo;
pub use engine::EngineOptions;
pub use error::{Error, Result};
pub use run::{FeatureJob, RunSummary, build_features, parse_time};
