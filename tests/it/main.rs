//! End-to-end and architecture tests of the workspace.

mod architecture;
mod crash;
mod flights;
mod python_reader;
