//! Integration tests of the inference pipeline.
