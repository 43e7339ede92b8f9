//! The control plane: command line, admin HTTP API, `/metrics`, hot reload.

pub mod cli;
pub mod modifier;
