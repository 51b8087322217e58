//! What several integration tests share.

use resformer::testing::shared_gpu;
use resformer::{Device, Engine, EngineOptions};

/// An engine on every path a model must agree on: the reference first (the oracle), the CPU
/// backend, and the test device (lavapipe in CI; required under `RESFORMER_REQUIRE_GPU=1`).
pub fn every_path() -> Vec<Engine> {
    let mut v: Vec<Engine> =
        [Device::Reference, Device::Cpu].map(|d| Engine::new_blocking(EngineOptions::on(d)).unwrap()).into();
    if let Some(gpu) = shared_gpu() {
        v.push(Engine::from_gpu(gpu.clone()));
    }
    v
}
