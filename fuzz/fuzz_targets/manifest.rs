//! Any bytes as a manifest: loading must return a config or diagnostics, never panic.
//!
//!     cargo install cargo-fuzz
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run manifest -- -max_total_time=60
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use teeform::manifest::{LoadOptions, load_str};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let dir = std::env::temp_dir();
    let opts = LoadOptions { vars: vec![], env: Arc::new(|_| None), display_base: Some(dir.clone()), ..Default::default() };
    if let Err(e) = load_str(&dir.join("teeform.yaml"), text.to_string(), &opts) {
        for d in &e.diagnostics {
            let _ = d.render(false);
        }
    }
});
