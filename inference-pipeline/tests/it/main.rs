//! Integration tests of the inference pipeline: a model registered with `fti-learn` (the
//! pipelines never depend on each other, so training is reproduced here in a few lines) and
//! small feature tables in a store.

mod bad_input;
mod redis_switch;
mod scoring;
mod support;
