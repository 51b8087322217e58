//! `matmul`: out (batch, M, N) = act(x (batch, M, K) · wᵀ + bias), w in
//! PyTorch's Linear layout (N, K), shared by the batch or batched (batch, N, K).

use super::{check_groups, check_operand, dispatch, Dispatch};
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::shaders::{MatmulTile, Shader};

pub use crate::ops::{Activation, MatmulShape};

/// The code `activate()` in shaders/matmul_io.wgsl switches on.
fn act_code(a: Activation) -> u32 {
    use crate::shaders::consts::{ACT_GELU, ACT_NONE, ACT_RELU};
    match a {
        Activation::None => ACT_NONE,
        Activation::Relu => ACT_RELU,
        Activation::Gelu => ACT_GELU,
    }
}
use crate::tensor::{DType, Tensor};

const OP: &str = "matmul";

/// Which matmul shader runs: one configuration of the generated register-tiled family
/// (src/shaders/matmul_tile.rs; workgroup-memory tiles, the GPU kernel),
/// shaders/matmul_subgroup8.wgsl (no workgroup memory, x shared by subgroup broadcasts: lavapipe),
/// or shaders/matmul_coop.wgsl (split-f16 on cooperative matrices, after a self-test).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// The tiled family, in this configuration.
    Tiled(MatmulTile),
    /// The 8-wide-subgroup kernel.
    Subgroup8,
    /// The split-f16 cooperative-matrix kernel: only where [`coop_status`] passed.
    Coop,
}

/// Whether the split-f16 cooperative-matrix matmul may run on a device, and why.
#[derive(Clone, Debug, PartialEq)]
pub enum CoopStatus {
    /// The device cannot run it (the reason).
    Unavailable(String),
    /// `RESFORMER_COOP=off`.
    Disabled,
    /// It ran and gave a wrong answer on the self-test (the first error): never used.
    Failed(String),
    /// It matched the reference on the self-test (the largest error relative to the tolerance).
    Passed(f32),
}

impl CoopStatus {
    /// One line for reports.
    pub fn describe(&self) -> String {
        match self {
            CoopStatus::Unavailable(why) => format!("split-f16 cooperative-matrix matmul unavailable: {why}"),
            CoopStatus::Disabled => "split-f16 cooperative-matrix matmul off (RESFORMER_COOP=off)".into(),
            CoopStatus::Failed(why) => {
                format!("split-f16 cooperative-matrix matmul failed its self-test, not used: {why}")
            }
            CoopStatus::Passed(r) => {
                format!(
                    "split-f16 cooperative-matrix matmul passed its self-test (worst error {r:.2} of the tolerance)"
                )
            }
        }
    }
}

/// Workgroup memory of shaders/matmul_coop.wgsl: four 64 x 40 f16 slabs and 4 x 2 staged f32 tiles.
const COOP_WORKGROUP_BYTES: u64 = 4 * 64 * 40 * 2 + 8 * 256 * 4;

/// The subgroup width the cooperative kernel would be built for, or why it cannot run here.
fn coop_support(gpu: &Gpu) -> std::result::Result<u32, String> {
    let f = gpu.features();
    if !f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        return Err("the adapter has no cooperative matrices (EXPERIMENTAL_COOPERATIVE_MATRIX)".into());
    }
    if !f.contains(wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP) {
        return Err("the adapter lacks shader f16 or subgroups".into());
    }
    let listed = gpu.cooperative_matrices().iter().any(|p| {
        (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
            && p.ab_type == wgpu::CooperativeScalarType::F16
            && p.cr_type == wgpu::CooperativeScalarType::F32
    });
    if !listed {
        return Err("the adapter lists no f16 x f16 -> f32 16x16x16 configuration".into());
    }
    let (lo, hi) = gpu.adapter().subgroup_sizes;
    if lo != hi || lo == 0 {
        return Err(format!("subgroups of {lo}..{hi} lanes: the kernel needs one fixed width"));
    }
    let l = gpu.limits();
    if 4 * lo > l.max_compute_invocations_per_workgroup
        || COOP_WORKGROUP_BYTES > l.max_compute_workgroup_storage_size as u64
    {
        return Err("the workgroup limits are too small for it".into());
    }
    Ok(lo)
}

/// Whether the split-f16 kernel may run on `gpu`: decided once per device. Unless
/// `RESFORMER_COOP=off`, a device that can run it first runs a seeded ragged problem (batched,
/// bias, GELU) and compares with the CPU reference; only a device that passes uses it.
pub fn coop_status(gpu: &Gpu) -> CoopStatus {
    /// The status, once per device.
    struct Status(CoopStatus);
    gpu.memo(|| {
        Status(match coop_support(gpu) {
            Err(why) => CoopStatus::Unavailable(why),
            Ok(_) if std::env::var("RESFORMER_COOP").is_ok_and(|v| v == "off") => CoopStatus::Disabled,
            Ok(_) => coop_self_test(gpu).unwrap_or_else(|e| CoopStatus::Failed(e.to_string())),
        })
    })
    .0
    .clone()
}

/// The self-test: one seeded problem with ragged M, N, K, two batch elements, bias and GELU.
fn coop_self_test(gpu: &Gpu) -> Result<CoopStatus> {
    let (batch, m, n, k) = (2, 70, 65, 100);
    let mut rng = crate::rng::Rng::new(0xc00b);
    let (xd, wd, bd) = (rng.vec(batch * m * k, -1.0, 1.0), rng.vec(n * k, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
    let x = Tensor::from_f32(gpu, &[batch, m, k], &xd)?;
    let w = Tensor::from_f32(gpu, &[n, k], &wd)?;
    let b = Tensor::from_f32(gpu, &[n], &bd)?;
    let out = Tensor::empty(gpu, &[batch, m, n], DType::F32)?;
    out.poison(gpu)?;
    let mut enc = gpu.encoder("resformer.coop_self_test");
    prepare_checked(gpu, MatmulVariant::Coop, &x, &w, Some(&b), Activation::Gelu, &out)?.record(&mut enc);
    gpu.submit_and_wait(enc)?;
    let got = out.read(gpu)?;
    let mut want = vec![0.0; batch * m * n];
    let shape = MatmulShape { batch, m, n, k, w_batched: false };
    crate::reference::matmul::matmul(&mut want, &xd, &wd, Some(&bd), Activation::Gelu, shape);
    // the SIMT kernels' tolerance: the split keeps f32 accuracy, so it must meet it too
    let tol = crate::testing::Tol { atol: 2e-5 * (k as f32).sqrt(), rtol: 1e-4 };
    let d = crate::testing::compare(&got, &want, tol);
    if d.bad > 0 {
        return Ok(CoopStatus::Failed(format!(
            "{} of {} values off, largest error {:.3e} at {}",
            d.bad,
            got.len(),
            d.max_abs,
            d.worst
        )));
    }
    Ok(CoopStatus::Passed(d.max_abs / tol.atol))
}

impl MatmulVariant {
    /// Variants this device can run: every family configuration within its workgroup limits,
    /// and the subgroup kernel where subgroups are 8 wide.
    pub fn available(gpu: &Gpu) -> Vec<MatmulVariant> {
        let l = gpu.limits();
        let mut v: Vec<MatmulVariant> = MatmulTile::FAMILY
            .into_iter()
            .filter(|t| {
                let (x, y) = t.workgroup();
                t.threads() <= l.max_compute_invocations_per_workgroup
                    && x <= l.max_compute_workgroup_size_x
                    && y <= l.max_compute_workgroup_size_y
                    && t.workgroup_bytes() <= l.max_compute_workgroup_storage_size as u64
            })
            .map(MatmulVariant::Tiled)
            .collect();
        if super::has_subgroup8(gpu) {
            v.push(MatmulVariant::Subgroup8);
        }
        if matches!(coop_status(gpu), CoopStatus::Passed(_)) {
            v.push(MatmulVariant::Coop);
        }
        v
    }

    /// Short name for tables, caches and `RESFORMER_MATMUL`: a tile name, `subgroup8` or `coop`.
    pub fn name(&self) -> String {
        match self {
            MatmulVariant::Tiled(t) => t.name(),
            MatmulVariant::Subgroup8 => "subgroup8".into(),
            MatmulVariant::Coop => "coop".into(),
        }
    }

    /// Parses `RESFORMER_MATMUL`'s values: `subgroup8`, `tiled` (the default tile) or a tile name.
    pub fn parse(s: &str) -> Option<MatmulVariant> {
        match s {
            "subgroup8" => Some(MatmulVariant::Subgroup8),
            "coop" => Some(MatmulVariant::Coop),
            "tiled" => Some(MatmulVariant::Tiled(MatmulTile::DEFAULT)),
            _ => MatmulTile::parse(s).map(MatmulVariant::Tiled),
        }
    }

    /// The variant [`prepare_matmul`] runs for an (M, N, K) product: `RESFORMER_MATMUL` when set
    /// and available; else the cooperative kernel under `RESFORMER_COOP=on` where it passed its
    /// self-test; else the subgroup kernel on software adapters that can run it; else what the
    /// tuner chose for this shape class ([`crate::tune`]: a tile, or the cooperative kernel when
    /// it passed and measured faster).
    /// The override and the subgroup-8 choice are made once per device.
    pub fn for_shape(gpu: &Gpu, m: usize, n: usize, k: usize) -> MatmulVariant {
        /// The variant every shape gets on this device, if one does.
        struct Fixed(Option<MatmulVariant>);
        let fixed = gpu.memo(|| {
            let available = Self::available(gpu);
            let forced = std::env::var("RESFORMER_MATMUL").ok().as_deref().and_then(Self::parse);
            let coop_on = std::env::var("RESFORMER_COOP").is_ok_and(|v| v == "on");
            Fixed(match forced {
                Some(v) if available.contains(&v) => Some(v),
                // RESFORMER_COOP=on: the cooperative kernel for every shape, once it passed its self-test
                _ if coop_on && available.contains(&MatmulVariant::Coop) => Some(MatmulVariant::Coop),
                _ if gpu.adapter().is_software() && available.contains(&MatmulVariant::Subgroup8) => {
                    Some(MatmulVariant::Subgroup8)
                }
                _ => None,
            })
        });
        fixed.0.unwrap_or_else(|| crate::tune::matmul_variant(gpu, m, n, k))
    }

    /// (shader, output rows per workgroup, output columns per workgroup, workgroup memory bytes)
    fn shader(self, gpu: &Gpu, k: usize, w_f16: bool) -> (Shader, usize, usize, u64) {
        match self {
            MatmulVariant::Tiled(tile) => {
                let shader = Shader::Matmul { tile, vec4: k.is_multiple_of(4), w_f16 };
                (shader, tile.bm as usize, tile.bn as usize, tile.workgroup_bytes())
            }
            MatmulVariant::Coop => {
                (Shader::MatmulCoop { sg: gpu.adapter().subgroup_sizes.0 }, 64, 64, COOP_WORKGROUP_BYTES)
            }
            MatmulVariant::Subgroup8 => {
                use crate::shaders::consts::{MATMUL_SG8_COLS_PER_LANE, MATMUL_SG8_ROWS, SUBGROUP8};
                (Shader::MatmulSubgroup8, MATMUL_SG8_ROWS as usize, (SUBGROUP8 * MATMUL_SG8_COLS_PER_LANE) as usize, 0)
            }
        }
    }
}

/// = WGSL `struct Params` in shaders/matmul_io.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    w_batch_stride: u32,
    act: u32,
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
}

/// Splits a rank-2 or rank-3 shape into (batch, rows, cols).
fn batch_rows_cols(shape: &[usize]) -> (usize, usize, usize) {
    match *shape {
        [r, c] => (1, r, c),
        [b, r, c] => (b, r, c),
        _ => unreachable!("rank checked before"),
    }
}

/// Checks operands and binds a matmul; record the result with [`Dispatch::record`].
pub fn prepare_matmul(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    out: &Tensor,
) -> Result<Dispatch> {
    check_operand(gpu, OP, "x", x, &[2, 3], DType::F32)?;
    check_operand(gpu, OP, "w", w, &[2, 3], w.dtype())?;
    let (_, m, k) = batch_rows_cols(x.shape());
    let n = batch_rows_cols(w.shape()).1;
    let mut variant = MatmulVariant::for_shape(gpu, m, n, k);
    if w.dtype() == DType::F16 && !matches!(variant, MatmulVariant::Tiled(_)) {
        // only the tiled family reads f16 weights
        variant = MatmulVariant::Tiled(MatmulTile::DEFAULT);
    }
    prepare_matmul_variant(gpu, variant, x, w, bias, act, out)
}

/// [`prepare_matmul`] with an explicit shader variant (it must be in [`MatmulVariant::available`]).
pub fn prepare_matmul_variant(
    gpu: &Gpu,
    variant: MatmulVariant,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    out: &Tensor,
) -> Result<Dispatch> {
    if !MatmulVariant::available(gpu).contains(&variant) {
        return Err(Error::InvalidArgument {
            op: OP,
            what: format!("variant {variant:?} is not available on this device"),
        });
    }
    prepare_checked(gpu, variant, x, w, bias, act, out)
}

/// [`prepare_matmul_variant`] after the availability check (the cooperative self-test calls it
/// before the variant is available).
fn prepare_checked(
    gpu: &Gpu,
    variant: MatmulVariant,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    out: &Tensor,
) -> Result<Dispatch> {
    check_operand(gpu, OP, "x", x, &[2, 3], DType::F32)?;
    let w_f16 = w.dtype() == DType::F16;
    if w_f16 && !(matches!(variant, MatmulVariant::Tiled(_)) && gpu.features().contains(wgpu::Features::SHADER_F16)) {
        return Err(Error::InvalidArgument {
            op: OP,
            what: format!("f16 weights need the tiled kernels and the device's SHADER_F16 (variant {variant:?})"),
        });
    }
    check_operand(gpu, OP, "w", w, &[2, 3], if w_f16 { DType::F16 } else { DType::F32 })?;
    check_operand(gpu, OP, "out", out, &[2, 3], DType::F32)?;
    let (batch, m, k) = batch_rows_cols(x.shape());
    let (wb, n, wk) = batch_rows_cols(w.shape());
    let (shader, tile_m, tile_n, workgroup_bytes) = variant.shader(gpu, k, w_f16);
    super::check_workgroup_memory(gpu, OP, x.shape(), workgroup_bytes)?;
    let w_batched = w.shape().len() == 3;
    if wk != k || (w_batched && wb != batch) {
        let expected = if w_batched { vec![batch, n, k] } else { vec![n, k] };
        return Err(Error::ShapeMismatch { op: OP, what: "w (N, K), K from x", expected, got: w.shape().to_vec() });
    }
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("rank >= 2") = n;
    super::expect_shape(OP, "out", out, &out_shape)?;
    if let Some(b) = bias {
        check_operand(gpu, OP, "bias", b, &[1], DType::F32)?;
        super::expect_shape(OP, "bias", b, &[n])?;
    }
    let gx = check_groups(gpu, OP, "N / tile workgroups", x.shape(), n.div_ceil(tile_n) as u64)?;
    let gy = check_groups(gpu, OP, "M / tile workgroups", x.shape(), m.div_ceil(tile_m) as u64)?;
    let gz = check_groups(gpu, OP, "batch", x.shape(), batch as u64)?;
    let params = MatmulParams {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        w_batch_stride: if w_batched { (n * k) as u32 } else { 0 },
        act: act_code(act),
        has_bias: bias.is_some() as u32,
        _pad0: 0,
        _pad1: 0,
    };
    let bias_buf = bias.map(|b| b.buffer()).unwrap_or(&gpu.dummy);
    dispatch(gpu, shader, &[x.buffer(), w.buffer(), bias_buf, out.buffer()], bytemuck::bytes_of(&params), [gx, gy, gz])
}

/// Records out = act(x · wᵀ + bias) into `enc`.
pub fn matmul(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    out: &Tensor,
) -> Result<()> {
    prepare_matmul(gpu, x, w, bias, act, out)?.record(enc);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use crate::testing::{assert_close, shared_gpu, Rng, Tol};

    /// f32 sums of up to 257 products in another order than the f64 reference.
    const MATMUL_TOL: Tol = Tol { atol: 2e-5, rtol: 1e-4 };

    #[allow(clippy::too_many_arguments)]
    fn run_case(
        gpu: &Gpu,
        variant: MatmulVariant,
        rng: &mut Rng,
        batch: usize,
        m: usize,
        n: usize,
        k: usize,
        w_batched: bool,
        bias: bool,
        act: Activation,
    ) {
        let xs: Vec<usize> = if batch == 1 { vec![m, k] } else { vec![batch, m, k] };
        let ws: Vec<usize> = if w_batched { vec![batch, n, k] } else { vec![n, k] };
        let os: Vec<usize> = if batch == 1 { vec![m, n] } else { vec![batch, m, n] };
        let x = rng.vec(xs.iter().product(), -1.0, 1.0);
        let w = rng.vec(ws.iter().product(), -1.0, 1.0);
        let b = rng.vec(n, -1.0, 1.0);
        let tx = Tensor::from_f32(gpu, &xs, &x).unwrap();
        let tw = Tensor::from_f32(gpu, &ws, &w).unwrap();
        let tb = Tensor::from_f32(gpu, &[n], &b).unwrap();
        let out = Tensor::empty(gpu, &os, DType::F32).unwrap();
        out.poison(gpu).unwrap();
        let mut enc = gpu.encoder("test");
        prepare_matmul_variant(gpu, variant, &tx, &tw, bias.then_some(&tb), act, &out).unwrap().record(&mut enc);
        gpu.submit_and_wait(enc).unwrap();
        let got = out.read(gpu).unwrap();
        let mut want = vec![0.0; os.iter().product()];
        let shape = MatmulShape { batch, m, n, k, w_batched };
        reference::matmul::matmul(&mut want, &x, &w, bias.then_some(&b[..]), act, shape);
        let tol = Tol { atol: MATMUL_TOL.atol * (k as f32).sqrt(), ..MATMUL_TOL };
        assert_close(
            &format!("matmul {variant:?} b{batch} {m}x{n}x{k} wb={w_batched} bias={bias} {act:?}"),
            &got,
            &want,
            tol,
        );
    }

    #[test]
    fn matmul_matches_reference_ragged_shapes() {
        let Some(gpu) = shared_gpu() else { return };
        for v in MatmulVariant::available(gpu) {
            let mut rng = Rng::new(1);
            let dims = [1usize, 7, 63, 65, 257];
            for &m in &dims {
                for &n in &dims {
                    // odd K reads scalars, K % 4 == 0 takes the family's vec4 loads
                    for &k in &[1usize, 4, 7, 63, 68, 257] {
                        // keep the lavapipe bill small: skip the largest cubes
                        if m * n * k > 257 * 257 * 68 {
                            continue;
                        }
                        run_case(gpu, v, &mut rng, 1, m, n, k, false, true, Activation::None);
                    }
                }
            }
            run_case(gpu, v, &mut rng, 1, 257, 257, 257, false, true, Activation::None);
            run_case(gpu, v, &mut rng, 1, 130, 129, 256, false, true, Activation::None);
        }
    }

    #[test]
    fn matmul_matches_reference_batched() {
        let Some(gpu) = shared_gpu() else { return };
        for v in MatmulVariant::available(gpu) {
            let mut rng = Rng::new(2);
            run_case(gpu, v, &mut rng, 3, 65, 7, 63, false, true, Activation::None);
            run_case(gpu, v, &mut rng, 5, 17, 33, 9, true, false, Activation::None);
            run_case(gpu, v, &mut rng, 2, 1, 1, 1, true, true, Activation::None);
            run_case(gpu, v, &mut rng, 3, 33, 70, 20, true, true, Activation::None);
        }
    }

    #[test]
    fn matmul_matches_reference_activations() {
        let Some(gpu) = shared_gpu() else { return };
        for v in MatmulVariant::available(gpu) {
            let mut rng = Rng::new(3);
            for act in [Activation::Relu, Activation::Gelu] {
                run_case(gpu, v, &mut rng, 1, 70, 67, 33, false, true, act);
                run_case(gpu, v, &mut rng, 2, 9, 130, 5, false, false, act);
                run_case(gpu, v, &mut rng, 1, 131, 9, 36, false, true, act);
            }
        }
    }

    #[test]
    fn matmul_coop_runs_only_where_its_self_test_passed_and_says_why_elsewhere() {
        let Some(gpu) = shared_gpu() else { return };
        let status = coop_status(gpu);
        if gpu.features().contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // a device with tensor cores: the kernel must be right on it, or be refused by name
            assert!(!matches!(status, CoopStatus::Failed(_)), "{}", status.describe());
            return;
        }
        // lavapipe and the like: the fallback, with its reason
        assert!(matches!(&status, CoopStatus::Unavailable(why) if why.contains("cooperative")), "{status:?}");
        assert!(status.describe().starts_with("split-f16 cooperative-matrix matmul unavailable"));
        assert!(!MatmulVariant::available(gpu).contains(&MatmulVariant::Coop));
        assert!(!crate::tune::candidates(gpu).contains(&MatmulVariant::Coop));
        let t = |s: &[usize]| Tensor::empty(gpu, s, DType::F32).unwrap();
        let e = prepare_matmul_variant(
            gpu,
            MatmulVariant::Coop,
            &t(&[4, 8]),
            &t(&[5, 8]),
            None,
            Activation::None,
            &t(&[4, 5]),
        );
        assert!(matches!(e, Err(Error::InvalidArgument { op: "matmul", .. })));
        // and the matmul the engine picks still runs
        let mut rng = Rng::new(12);
        run_case(gpu, MatmulVariant::for_shape(gpu, 9, 10, 11), &mut rng, 1, 9, 10, 11, false, true, Activation::Relu);
    }

    #[test]
    fn matmul_matches_reference_with_f16_weights() {
        // the f16 mode: w stored as f16, widened on load; the reference gets the same rounded w
        let Some(gpu) = shared_gpu() else { return };
        if !gpu.features().contains(wgpu::Features::SHADER_F16) {
            return; // lavapipe has it; a device without it refuses f16 weights (checked below)
        }
        let mut rng = Rng::new(13);
        for tile in MatmulTile::FAMILY {
            for (m, n, k) in [(1, 1, 1), (65, 7, 63), (33, 70, 36), (7, 130, 257)] {
                let x = rng.vec(m * k, -1.0, 1.0);
                let w = rng.vec(n * k, -1.0, 1.0);
                let b = rng.vec(n, -1.0, 1.0);
                let rounded: Vec<f32> = w.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
                let (tx, tb) = (Tensor::from_f32(gpu, &[m, k], &x).unwrap(), Tensor::from_f32(gpu, &[n], &b).unwrap());
                let tw = Tensor::from_f16(gpu, &[n, k], &w).unwrap();
                let out = Tensor::empty(gpu, &[m, n], DType::F32).unwrap();
                out.poison(gpu).unwrap();
                let mut enc = gpu.encoder("test");
                let variant = MatmulVariant::Tiled(tile);
                prepare_matmul_variant(gpu, variant, &tx, &tw, Some(&tb), Activation::Gelu, &out)
                    .unwrap()
                    .record(&mut enc);
                gpu.submit_and_wait(enc).unwrap();
                let mut want = vec![0.0; m * n];
                let shape = MatmulShape::linear(m, n, k);
                reference::matmul::matmul(&mut want, &x, &rounded, Some(&b), Activation::Gelu, shape);
                let tol = Tol { atol: MATMUL_TOL.atol * (k as f32).sqrt(), ..MATMUL_TOL };
                assert_close(&format!("matmul f16 w {tile} {m}x{n}x{k}"), &out.read(gpu).unwrap(), &want, tol);
            }
        }
        // the subgroup kernel reads no f16: asked for it, the op refuses
        if MatmulVariant::available(gpu).contains(&MatmulVariant::Subgroup8) {
            let (x, w) = (
                Tensor::from_f32(gpu, &[2, 4], &[0.5; 8]).unwrap(),
                Tensor::from_f16(gpu, &[3, 4], &[0.5; 12]).unwrap(),
            );
            let out = Tensor::empty(gpu, &[2, 3], DType::F32).unwrap();
            let e = prepare_matmul_variant(gpu, MatmulVariant::Subgroup8, &x, &w, None, Activation::None, &out);
            assert!(matches!(e, Err(Error::InvalidArgument { op: "matmul", .. })));
        }
    }

    #[test]
    fn matmul_params_match_wgsl_layout() {
        for tile in MatmulTile::FAMILY {
            for vec4 in [false, true] {
                crate::testing::assert_params_layout::<MatmulParams>(Shader::Matmul { tile, vec4, w_f16: false });
            }
        }
        crate::testing::assert_params_layout::<MatmulParams>(Shader::MatmulCoop { sg: 32 });
        crate::testing::assert_params_layout::<MatmulParams>(Shader::MatmulSubgroup8);
    }

    #[test]
    fn matmul_runs_every_variant_on_a_software_adapter_with_subgroups() {
        // guards against the variant list (so the parity tests above) silently shrinking on lavapipe
        let Some(gpu) = shared_gpu() else { return };
        if gpu.adapter().is_software() && gpu.features().contains(wgpu::Features::SUBGROUP) {
            let mut want: Vec<MatmulVariant> = MatmulTile::FAMILY.into_iter().map(MatmulVariant::Tiled).collect();
            want.push(MatmulVariant::Subgroup8);
            assert_eq!(MatmulVariant::available(gpu), want);
        }
    }
}
