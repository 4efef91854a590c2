//! End-to-end tests: the real binary over real HTTP against the simulator.

// Not every test uses every helper.
#[allow(dead_code)]
mod harness;

mod apply_flow;
mod chain;
mod converge;
mod crash;
mod errors;
mod fidelity;
mod hostile;
mod images;
mod local;
mod postgres;
#[allow(dead_code)]
mod proxy;
mod secrets;
mod sim_limits;
