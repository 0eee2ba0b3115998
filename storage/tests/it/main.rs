//! Integration tests of the storage crate: one conformance suite run against every backend
//! (memory, local filesystem, a real S3 server), plus corruption and S3 canary tests.

mod backend;
mod conformance;
mod corruption;
mod s3_canary;
