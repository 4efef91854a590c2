//! End-to-end tests: the real binary over real HTTP against the simulator.

// Not every test uses every helper.
#[allow(dead_code)]
mod harness;

mod apply_flow;
mod attest;
mod chain;
mod ci;
mod converge;
mod crash;
mod current_api;
mod env_files;
mod errors;
mod fidelity;
mod fleet;
mod habits;
mod health;
mod hostile;
mod identity;
mod images;
mod local;
mod manifest;
mod postgres;
mod progress;
#[allow(dead_code)]
mod proxy;
mod replicas;
mod schema;
mod secrets;
mod shell;
mod sim_limits;
mod sim_wire;
mod surge;
mod trust;
mod unmanaged;
mod values;
