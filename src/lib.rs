//! teeform: declarative plan/apply for Phala Cloud confidential VMs.
//!
//! The crate is a functional core with I/O at the edges; see `ARCHITECTURE.md` for the codemap
//! and the invariants each module keeps.

// Errors are cold paths that carry what a user needs (status, codes, hints); boxing them
// would only add noise.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod chain;
pub mod cli;
pub mod compose;
pub mod datasources;
pub mod envcrypt;
pub mod graph;
pub mod lockfile;
pub mod manifest;
pub mod model;
pub mod plan;
pub mod providers;
pub mod redact;
pub mod secrets;
pub mod sim;
pub mod state;
pub mod style;
pub mod verify;
