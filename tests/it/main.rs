//! End-to-end tests: the real binary over real HTTP against the simulator.

// Not every test uses every helper.
#[allow(dead_code)]
mod harness;

mod apply_flow;
mod chain;
mod crash;
mod errors;
mod images;
mod local;
mod manifest;
mod postgres;
mod secrets;
