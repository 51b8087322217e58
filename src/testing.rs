//! Helpers for parity tests and benches (never used by production code): the seeded
//! generator, tolerance assertions with a useful failure report, and a shared device that
//! skips or fails (under `RESFORMER_REQUIRE_GPU=1`) when no adapter exists.
//!
//! It sits above the device, shaders and tensor layers and below the kernels, so the tests
//! of the kernels and everything above them can use it.

use std::sync::{Arc, OnceLock};

use crate::device::{Gpu, GpuOptions};

pub use crate::ops::{assert_close, compare, Diff, Tol};
pub use crate::rng::Rng;

/// True when `RESFORMER_REQUIRE_GPU=1`: a missing adapter is then a failure, not a skip.
pub fn gpu_required() -> bool {
    std::env::var("RESFORMER_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// One device for every test in the process, or `None` (with the reason
/// printed) when there is no adapter. Panics instead under `RESFORMER_REQUIRE_GPU=1`.
pub fn shared_gpu() -> Option<&'static Arc<Gpu>> {
    static GPU: OnceLock<Result<Arc<Gpu>, String>> = OnceLock::new();
    let open = || Gpu::with_options(from_env(GpuOptions::default())?);
    or_skip(GPU.get_or_init(|| open().map(Arc::new).map_err(|e| e.to_string())).as_ref().map_err(|e| e.clone()))
}

/// A device of its own with `options`, or `None` (printed) / a panic under
/// `RESFORMER_REQUIRE_GPU=1` when there is no adapter. Options that search every backend with
/// the best adapter take `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` from the environment, as the
/// shared device does (scripts/test.sh sets `WGPU_BACKEND=vulkan`).
pub fn gpu_with(options: GpuOptions) -> Option<Gpu> {
    or_skip(from_env(options).and_then(Gpu::with_options).map_err(|e| e.to_string()))
}

/// `options` with the environment's backends and adapter name where they are the defaults.
fn from_env(options: GpuOptions) -> crate::Result<GpuOptions> {
    let env = GpuOptions::from_env()?;
    let defaults = GpuOptions::default();
    Ok(GpuOptions {
        backends: if options.backends == defaults.backends { env.backends } else { options.backends },
        adapter: if options.adapter == defaults.adapter { env.adapter } else { options.adapter },
        ..options
    })
}

fn or_skip<T>(gpu: Result<T, String>) -> Option<T> {
    match gpu {
        Ok(gpu) => Some(gpu),
        Err(e) if gpu_required() => panic!("RESFORMER_REQUIRE_GPU=1 but no adapter: {e}"),
        Err(e) => {
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

/// Asserts that the host params struct `P` has the size and alignment of
/// `struct Params` in `shader`, as naga lays it out.
pub fn assert_params_layout<P>(shader: &crate::shaders::Shader) {
    let module = naga::front::wgsl::parse_str(&shader.wgsl()).expect("shader parses");
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).expect("layout");
    let (handle, ty) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some("Params"))
        .unwrap_or_else(|| panic!("{}: no struct Params", shader.name));
    let naga::TypeInner::Struct { span, .. } = ty.inner else { panic!("Params is not a struct") };
    assert_eq!(std::mem::size_of::<P>(), span as usize, "{}: Params size differs from WGSL", shader.name);
    let wgsl_align = layouter[handle].alignment.round_up(1) as usize;
    assert_eq!(std::mem::align_of::<P>(), wgsl_align, "{}: Params alignment differs from WGSL", shader.name);
}

/// Whether the data a test needs is in place (every one of `files`): when it is not, the test
/// skips with a printed reason, or fails under `RESFORMER_REQUIRE_MODEL=1` (set by
/// scripts/test.sh, which fetches the data with `fetch`).
pub fn require_data(what: &str, files: &[std::path::PathBuf], fetch: &str) -> bool {
    if let Some(missing) = files.iter().find(|f| !f.exists()) {
        if std::env::var("RESFORMER_REQUIRE_MODEL").is_ok_and(|v| v == "1") {
            panic!("RESFORMER_REQUIRE_MODEL=1 but {} is missing: run {fetch}", missing.display());
        }
        eprintln!("skipping the {what} test: {} is missing ({fetch})", missing.display());
        return false;
    }
    true
}
