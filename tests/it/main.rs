//! End-to-end and architecture tests of the workspace.

mod architecture;
mod crash;
mod end_to_end;
mod flights;
mod orchestration;
mod python_reader;
mod stdout;
