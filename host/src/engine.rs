//! The one wasmtime `Config` both sides use.
//!
//! The parent compiles components to `.cwasm` and the worker process loads them; wasmtime
//! refuses a `.cwasm` made under different settings, so both build their engine here.

use anyhow::Result;
use wasmtime::{Config, Engine};

/// Builds the engine shared by the compiling parent and the loading workers.
///
/// Epoch interruption is always on (it costs ≈0.4 %) so that a timeout can stop a spinning
/// guest with a clean trap; every `Store` must therefore set an epoch deadline.
pub(crate) fn new_engine() -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    Ok(Engine::new(&config)?)
}
