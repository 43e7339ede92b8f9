//! The control plane: command line, admin HTTP API, `/metrics`, hot reload.

pub mod calls;
pub mod cli;
pub mod ctl;
pub mod edit;
pub mod http;
pub mod metrics;
pub mod modifier;
