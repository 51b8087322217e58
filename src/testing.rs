//! Helpers for parity tests and benches: the seeded generator, tolerance
//! comparison with a useful failure report, and a shared device that skips or
//! fails (under `RESFORMER_REQUIRE_GPU=1`) when no adapter exists.

use std::sync::{Arc, OnceLock};

use crate::device::{Gpu, GpuOptions};

pub use crate::rng::Rng;

/// An explicit tolerance: an element passes when |got - want| <= atol + rtol · |want|.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    /// Absolute tolerance.
    pub atol: f32,
    /// Tolerance relative to |want|.
    pub rtol: f32,
}

/// What a comparison found.
#[derive(Clone, Debug, Default)]
pub struct Diff {
    /// Elements outside the tolerance (NaN where a number was expected counts).
    pub bad: usize,
    /// Largest |got - want|.
    pub max_abs: f32,
    /// Largest |got - want| / |want| over nonzero want.
    pub max_rel: f32,
    /// Index of the largest absolute error.
    pub worst: usize,
}

/// Compares `got` with `want` elementwise. NaN matches only NaN.
pub fn compare(got: &[f32], want: &[f32], tol: Tol) -> Diff {
    assert_eq!(got.len(), want.len(), "compare: lengths differ");
    let mut d = Diff::default();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if g.is_nan() && w.is_nan() {
            continue;
        }
        let err = if g.is_nan() || w.is_nan() { f32::INFINITY } else { (g - w).abs() };
        let within = err <= tol.atol + tol.rtol * w.abs();
        if !within {
            d.bad += 1;
        }
        if err > d.max_abs || (err.is_nan() && d.max_abs.is_finite()) {
            d.max_abs = err;
            d.worst = i;
        }
        if w != 0.0 {
            d.max_rel = d.max_rel.max(err / w.abs());
        }
    }
    d
}

/// Panics with the count, the max error and its index when `got` is not within `tol` of `want`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tol) {
    let d = compare(got, want, tol);
    if d.bad > 0 {
        panic!(
            "{what}: {} of {} elements outside atol {} + rtol {}; max abs error {} at index {} (got {}, want {})",
            d.bad,
            got.len(),
            tol.atol,
            tol.rtol,
            d.max_abs,
            d.worst,
            got[d.worst],
            want[d.worst]
        );
    }
}

/// True when `RESFORMER_REQUIRE_GPU=1`: a missing adapter is then a failure, not a skip.
pub fn gpu_required() -> bool {
    std::env::var("RESFORMER_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// One device for every test in the process, or `None` (with the reason
/// printed) when there is no adapter. Panics instead under `RESFORMER_REQUIRE_GPU=1`.
pub fn shared_gpu() -> Option<&'static Arc<Gpu>> {
    static GPU: OnceLock<Result<Arc<Gpu>, String>> = OnceLock::new();
    or_skip(GPU.get_or_init(|| Gpu::new().map(Arc::new).map_err(|e| e.to_string())).as_ref().map_err(|e| e.clone()))
}

/// A device of its own with `options`, or `None` (printed) / a panic under
/// `RESFORMER_REQUIRE_GPU=1` when there is no adapter.
pub fn gpu_with(options: GpuOptions) -> Option<Gpu> {
    or_skip(Gpu::with_options(options).map_err(|e| e.to_string()))
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
pub fn assert_params_layout<P>(shader: crate::shaders::Shader) {
    let module = naga::front::wgsl::parse_str(&shader.source()).expect("shader parses");
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).expect("layout");
    let (handle, ty) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some("Params"))
        .unwrap_or_else(|| panic!("{}: no struct Params", shader.name()));
    let naga::TypeInner::Struct { span, .. } = ty.inner else { panic!("Params is not a struct") };
    assert_eq!(std::mem::size_of::<P>(), span as usize, "{}: Params size differs from WGSL", shader.name());
    let wgsl_align = layouter[handle].alignment.round_up(1) as usize;
    assert_eq!(std::mem::align_of::<P>(), wgsl_align, "{}: Params alignment differs from WGSL", shader.name());
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
