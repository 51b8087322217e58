//! `matmul`: out (batch, M, N) = act(x (batch, M, K) · wᵀ + bias), w in
//! PyTorch's Linear layout (N, K), shared by the batch or batched (batch, N, K).

use super::{check_groups, check_operand, dispatch, Dispatch};
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::ops::{compare, Tol};
use crate::shaders::consts::{ACT_GELU, ACT_GELU_TANH, ACT_NONE, ACT_RELU, SUBGROUP8};
use crate::shaders::{MatmulTile, Prelude, Shader};
use crate::tensor::{DType, Tensor};

pub use crate::ops::{Activation, MatmulShape};

const OP: &str = "matmul";

/// The code `activate()` in shaders/matmul_io.wgsl switches on.
fn act_code(a: Activation) -> u32 {
    match a {
        Activation::None => ACT_NONE,
        Activation::Relu => ACT_RELU,
        Activation::Gelu => ACT_GELU,
        Activation::GeluTanh => ACT_GELU_TANH,
    }
}

/// shaders/matmul_subgroup8.wgsl: rows of out per subgroup (RM).
const SG8_ROWS: u32 = 8;
/// shaders/matmul_subgroup8.wgsl: columns of out per lane (RN).
const SG8_COLS_PER_LANE: u32 = 2;

/// shaders/matmul_coop.wgsl: rows of out per workgroup (BM).
const COOP_BM: u32 = 64;
/// shaders/matmul_coop.wgsl: columns of out per workgroup (BN).
const COOP_BN: u32 = 64;
/// shaders/matmul_coop.wgsl: depth of one staged slab of k (BK).
const COOP_BK: u32 = 32;
/// shaders/matmul_coop.wgsl: halves of padding per staged row (PAD).
const COOP_PAD: u32 = 8;
/// The cooperative matrices' side: `coop_mat16x16` in the shader, 16 x 16 x 16 on the adapter.
const COOP_DIM: u32 = 16;
/// Subgroups per workgroup of the cooperative kernel (WG = SG * 4 there: 2 x 2 over BM x BN).
const COOP_SUBGROUPS: u32 = 4;
/// Workgroup memory of shaders/matmul_coop.wgsl: hi and lo f16 slabs of x (BM rows) and w
/// (BN rows), each row BK + PAD halves, and per subgroup one main and one correction f32 tile
/// staged for the epilogue.
const COOP_WORKGROUP_BYTES: u64 =
    ((2 * (COOP_BM + COOP_BN) * (COOP_BK + COOP_PAD) * 2) + COOP_SUBGROUPS * 2 * COOP_DIM * COOP_DIM * 4) as u64;

/// Which matmul shader runs: one configuration of the generated register-tiled family
/// (src/shaders/matmul_tile.rs; workgroup-memory tiles, the GPU kernel),
/// shaders/matmul_subgroup8.wgsl (no workgroup memory, x shared by subgroup broadcasts: lavapipe),
/// or shaders/matmul_coop.wgsl (split-f16 on cooperative matrices, after a self-test).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// The tiled family, in this configuration.
    Tiled(MatmulTile),
    /// The same generated kernel built without bounds checks and workgroup zero-init
    /// ([`crate::shaders::Shader::unchecked`]): a separate tuner candidate, never a default.
    Unchecked(MatmulTile),
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
    /// The kernel policy turned it off (`coop: Off`, `RESFORMER_COOP=off`): the experimental
    /// feature was not even asked of the device.
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
            CoopStatus::Disabled => "split-f16 cooperative-matrix matmul off (kernel policy coop=off)".into(),
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
        (p.m_size, p.n_size, p.k_size) == (COOP_DIM, COOP_DIM, COOP_DIM)
            && p.ab_type == wgpu::CooperativeScalarType::F16
            && p.cr_type == wgpu::CooperativeScalarType::F32
    });
    if !listed {
        return Err(format!("the adapter lists no f16 x f16 -> f32 {COOP_DIM}x{COOP_DIM}x{COOP_DIM} configuration"));
    }
    let (lo, hi) = gpu.adapter().subgroup_sizes;
    if lo != hi || lo == 0 {
        return Err(format!("subgroups of {lo}..{hi} lanes: the kernel needs one fixed width"));
    }
    let l = gpu.limits();
    if COOP_SUBGROUPS * lo > l.max_compute_invocations_per_workgroup
        || COOP_WORKGROUP_BYTES > l.max_compute_workgroup_storage_size as u64
    {
        return Err("the workgroup limits are too small for it".into());
    }
    Ok(lo)
}

/// Whether the split-f16 kernel may run on `gpu`: decided once per device. Unless the device
/// was opened without cooperative matrices (kernel policy `coop: Off`), a device that can run
/// it first runs a seeded ragged problem (batched, bias, GELU) and compares with the CPU
/// reference; only a device that passes uses it.
pub fn coop_status(gpu: &Gpu) -> CoopStatus {
    /// The status, once per device.
    struct Status(CoopStatus);
    gpu.memo(|| {
        Status(match coop_support(gpu) {
            Err(_) if !gpu.cooperative_matrix_requested() => CoopStatus::Disabled,
            Err(why) => CoopStatus::Unavailable(why),
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
    let tol = matmul_tol(k);
    let d = compare(&got, &want, tol);
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

/// The tolerance every matmul variant meets against the f64 reference at depth `k`: f32 sums
/// in another order (2e-5 · √K absolute, 1e-4 relative). The self-test and the tuner's output
/// check hold candidates to it.
pub fn matmul_tol(k: usize) -> Tol {
    Tol { atol: 2e-5 * (k as f32).sqrt(), rtol: 1e-4 }
}

impl MatmulVariant {
    /// Variants this device can run: every family configuration within its workgroup limits,
    /// the subgroup kernel where subgroups are 8 wide, and the cooperative kernel where it
    /// passed its self-test.
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
            .flat_map(|t| [MatmulVariant::Tiled(t), MatmulVariant::Unchecked(t)])
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
            MatmulVariant::Unchecked(t) => format!("{t}-unchecked"),
            MatmulVariant::Subgroup8 => "subgroup8".into(),
            MatmulVariant::Coop => "coop".into(),
        }
    }

    /// What [`MatmulVariant::parse`] accepts, for error messages.
    pub const SPELLINGS: &'static str =
        "subgroup8, coop, tiled (the default tile), a family tile such as 128x64x16/8x4, or one with -unchecked";

    /// Parses `RESFORMER_MATMUL`'s values: `subgroup8`, `coop`, `tiled` (the default tile) or
    /// a tile name of the family.
    pub fn parse(s: &str) -> Option<MatmulVariant> {
        match s {
            "subgroup8" => Some(MatmulVariant::Subgroup8),
            "coop" => Some(MatmulVariant::Coop),
            "tiled" => Some(MatmulVariant::Tiled(MatmulTile::DEFAULT)),
            _ => {
                let (tile, unchecked) = match s.strip_suffix("-unchecked") {
                    Some(t) => (t, true),
                    None => (s, false),
                };
                let t = MatmulTile::parse(tile).filter(|t| MatmulTile::FAMILY.contains(t))?;
                Some(if unchecked { MatmulVariant::Unchecked(t) } else { MatmulVariant::Tiled(t) })
            }
        }
    }

    /// The fixed choice of this device that no tuning overrides, if it has one: the subgroup
    /// kernel on software adapters that can run it (made once per device).
    pub fn fixed_for_device(gpu: &Gpu) -> Option<MatmulVariant> {
        /// The variant every shape gets on this device, if one does.
        struct Fixed(Option<MatmulVariant>);
        gpu.memo(|| {
            let sg8 = gpu.adapter().is_software() && Self::available(gpu).contains(&MatmulVariant::Subgroup8);
            Fixed(sg8.then_some(MatmulVariant::Subgroup8))
        })
        .0
    }

    /// The variant [`prepare_matmul`] runs when nothing was tuned or asked for: the device's
    /// fixed choice, else [`MatmulTile::DEFAULT`]. (The tuner, `crate::tune`, sits above this
    /// layer and chooses per shape class.)
    pub fn untuned(gpu: &Gpu) -> MatmulVariant {
        Self::fixed_for_device(gpu).unwrap_or(MatmulVariant::Tiled(MatmulTile::DEFAULT))
    }

    /// The variant that reads weights of `w_dtype`: only the tiled family reads f16 weights, so
    /// another variant becomes the default tile there.
    pub fn for_weights(self, w_dtype: DType) -> MatmulVariant {
        match self {
            MatmulVariant::Tiled(_) | MatmulVariant::Unchecked(_) => self,
            _ if w_dtype == DType::F16 => MatmulVariant::Tiled(MatmulTile::DEFAULT),
            _ => self,
        }
    }

    /// (shader, output rows per workgroup, output columns per workgroup, workgroup memory bytes)
    fn shader(self, gpu: &Gpu, k: usize, w_f16: bool) -> (Shader, usize, usize, u64) {
        match self {
            MatmulVariant::Tiled(tile) => (
                tile_shader(tile, k.is_multiple_of(4), w_f16),
                tile.bm as usize,
                tile.bn as usize,
                tile.workgroup_bytes(),
            ),
            MatmulVariant::Unchecked(tile) => (
                tile_shader(tile, k.is_multiple_of(4), w_f16).unchecked(),
                tile.bm as usize,
                tile.bn as usize,
                tile.workgroup_bytes(),
            ),
            MatmulVariant::Coop => {
                (coop_shader(gpu.adapter().subgroup_sizes.0), COOP_BM as usize, COOP_BN as usize, COOP_WORKGROUP_BYTES)
            }
            MatmulVariant::Subgroup8 => (sg8_shader(), SG8_ROWS as usize, (SUBGROUP8 * SG8_COLS_PER_LANE) as usize, 0),
        }
    }
}

const MATMUL_IO: &str = include_str!("../../shaders/matmul_io.wgsl");

/// The generated tiled kernel of `tile`, x and w read as vec4 (`vec4`: K % 4 == 0) or scalars,
/// w as f16 (`w_f16`, the f16 mode) or f32.
fn tile_shader(tile: MatmulTile, vec4: bool, w_f16: bool) -> Shader {
    let mut p = Prelude::new().activations();
    if w_f16 {
        p = p.enable("f16");
    }
    let key = format!("{tile} {} {}", if vec4 { "vec4" } else { "scalar" }, if w_f16 { "f16w" } else { "f32w" });
    Shader::generated("matmul", key, p, move || tile.wgsl(vec4, w_f16) + MATMUL_IO)
}

/// shaders/matmul_subgroup8.wgsl.
fn sg8_shader() -> Shader {
    let p = Prelude::new().u32("SG", SUBGROUP8).u32("RM", SG8_ROWS).u32("RN", SG8_COLS_PER_LANE).activations();
    Shader::new("matmul_subgroup8", "", p, &[include_str!("../../shaders/matmul_subgroup8.wgsl"), MATMUL_IO])
}

/// shaders/matmul_coop.wgsl for subgroups of exactly `sg` lanes.
fn coop_shader(sg: u32) -> Shader {
    let p = Prelude::new()
        .enable("f16")
        .enable("wgpu_cooperative_matrix")
        .u32("SG", sg)
        .u32("BM", COOP_BM)
        .u32("BN", COOP_BN)
        .u32("BK", COOP_BK)
        .u32("PAD", COOP_PAD)
        .activations();
    Shader::new("matmul_coop", format!("sg{sg}"), p, &[include_str!("../../shaders/matmul_coop.wgsl"), MATMUL_IO])
}

/// Every build (each family tile in both load widths and weight types, the subgroup kernel,
/// the cooperative kernel for subgroups of 32 and 64): the naga tests validate each.
pub fn shaders() -> Vec<Shader> {
    let mut v: Vec<Shader> = MatmulTile::FAMILY
        .iter()
        .flat_map(|&t| {
            [(false, false), (true, false), (false, true), (true, true)].map(|(v4, f16)| tile_shader(t, v4, f16))
        })
        .collect();
    v.push(sg8_shader());
    v.extend([32, 64].map(coop_shader));
    v
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

/// The (M, N, K) of a matmul of x (.., M, K) by w (.., N, K), or `None` when a rank is not 2
/// or 3 (the op then refuses the operands by itself).
pub fn problem_shape(x: &Tensor, w: &Tensor) -> Option<(usize, usize, usize)> {
    let ranks = |t: &Tensor| matches!(t.shape().len(), 2 | 3);
    if !(ranks(x) && ranks(w)) {
        return None;
    }
    let ((_, m, k), (_, n, _)) = (batch_rows_cols(x.shape()), batch_rows_cols(w.shape()));
    Some((m, n, k))
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
    prepare_matmul_variant(gpu, MatmulVariant::untuned(gpu).for_weights(w.dtype()), x, w, bias, act, out)
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
    super::require_available(gpu, OP, variant, &MatmulVariant::available(gpu), |v| v.name())?;
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
    let generated = matches!(variant, MatmulVariant::Tiled(_) | MatmulVariant::Unchecked(_));
    if w_f16 && !(generated && gpu.features().contains(wgpu::Features::SHADER_F16)) {
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
    dispatch(gpu, &shader, &[x.buffer(), w.buffer(), bias_buf, out.buffer()], bytemuck::bytes_of(&params), [gx, gy, gz])
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
            for act in [Activation::Relu, Activation::Gelu, Activation::GeluTanh] {
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
        run_case(gpu, MatmulVariant::untuned(gpu), &mut rng, 1, 9, 10, 11, false, true, Activation::Relu);
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
                for variant in [MatmulVariant::Tiled(tile), MatmulVariant::Unchecked(tile)] {
                    out.poison(gpu).unwrap();
                    let mut enc = gpu.encoder("test");
                    prepare_matmul_variant(gpu, variant, &tx, &tw, Some(&tb), Activation::Gelu, &out)
                        .unwrap()
                        .record(&mut enc);
                    gpu.submit_and_wait(enc).unwrap();
                    let mut want = vec![0.0; m * n];
                    let shape = MatmulShape::linear(m, n, k);
                    reference::matmul::matmul(&mut want, &x, &rounded, Some(&b), Activation::Gelu, shape);
                    let tol = Tol { atol: MATMUL_TOL.atol * (k as f32).sqrt(), ..MATMUL_TOL };
                    let what = format!("matmul f16 w {} {m}x{n}x{k}", variant.name());
                    assert_close(&what, &out.read(gpu).unwrap(), &want, tol);
                }
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
    fn every_variant_name_parses_back_to_itself() {
        let mut all: Vec<MatmulVariant> = MatmulTile::FAMILY
            .into_iter()
            .flat_map(|t| [MatmulVariant::Tiled(t), MatmulVariant::Unchecked(t)])
            .collect();
        all.extend([MatmulVariant::Subgroup8, MatmulVariant::Coop]);
        for v in all {
            assert_eq!(MatmulVariant::parse(&v.name()), Some(v), "{}", v.name());
        }
        assert_eq!(MatmulVariant::parse("9x9x9/3x3-unchecked"), None);
        assert_eq!(MatmulVariant::parse("coop-unchecked"), None);
        // the two builds of one tile are two kernels on the device
        let tile = MatmulTile::DEFAULT;
        let (checked, unchecked) = (tile_shader(tile, true, false), tile_shader(tile, true, false).unchecked());
        assert!(!checked.unchecked && unchecked.unchecked && checked.key != unchecked.key);
        assert_eq!(checked.wgsl(), unchecked.wgsl());
    }

    #[test]
    fn matmul_params_match_wgsl_layout() {
        // the f16-weight builds share matmul_io.wgsl's Params with the f32 ones checked here
        for s in shaders().iter().filter(|s| !s.key.contains("f16w")) {
            crate::testing::assert_params_layout::<MatmulParams>(s);
        }
    }

    #[test]
    fn matmul_runs_every_variant_on_a_software_adapter_with_subgroups() {
        // guards against the variant list (so the parity tests above) silently shrinking on lavapipe
        let Some(gpu) = shared_gpu() else { return };
        if gpu.adapter().is_software() && gpu.features().contains(wgpu::Features::SUBGROUP) {
            let mut want: Vec<MatmulVariant> = MatmulTile::FAMILY
                .into_iter()
                .flat_map(|t| [MatmulVariant::Tiled(t), MatmulVariant::Unchecked(t)])
                .collect();
            want.push(MatmulVariant::Subgroup8);
            assert_eq!(MatmulVariant::available(gpu), want);
        }
    }
}
