//! The FTI object-store layout: the one implementation of the contract through which the
//! feature, training and inference pipelines talk (docs/STORAGE.md is its specification).
//!
//! What it relies on: an object store whose create-only put (`PutMode::Create`) lets exactly
//! one of several concurrent writers create a given key. The local filesystem, memory, and
//! S3-compatible servers that honour `If-None-Match: *` provide it.
//!
//! What it guarantees:
//! - every version of a table, model, alias or published dataset becomes visible through one
//!   create-only put of a small JSON entry, written only after the files it names exist, so a
//!   reader sees all of a commit or none of it;
//! - of concurrent committers to the same version exactly one wins; table committers rebase
//!   and retry, alias movers get [`Error::AliasConflict`];
//! - files are immutable once committed and carry size and SHA-256 in their manifest, checked
//!   on every read;
//! - a process killed at any point leaves only unreferenced files behind, which readers never
//!   see and [`Store::vacuum`] removes.

pub mod error;
pub mod format;
pub mod layout;
mod log;
pub mod names;
pub mod parquet_io;
pub mod registry;
pub mod runs;
pub mod snapshot;
pub mod store;
pub mod table;
pub mod types;
pub mod upload;
pub mod vacuum;

pub use error::{Error, Result};
pub use format::*;
pub use layout::DatasetKind;
pub use names::{Name, NameKind};
pub use registry::{ModelRef, NewModelVersion};
pub use snapshot::{Published, Sealed};
pub use store::{Store, sha256_hex};
pub use table::{CommitOutcome, CommitRequest, TableSnapshot, TableWriter, VersionSpec};
pub use vacuum::{VacuumOptions, VacuumReport};
