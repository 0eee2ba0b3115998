//! Integration tests of the feature pipeline, calling `build_features` on small hand-made
//! sources in a temporary directory.

mod bad_input;
mod runs;
mod support;
