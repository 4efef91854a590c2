//! End-to-end tests: the real binary over real HTTP against the simulator.

mod harness;

mod apply_flow;
mod errors;
mod local;
