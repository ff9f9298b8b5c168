//! Host-side bindings of the guest contract, `wit/worker.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "wasmp:worker/worker",
});
