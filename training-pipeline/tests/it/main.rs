//! Integration tests of the training pipeline on small synthetic feature tables.

mod bad_input;
mod gate;
mod support;
