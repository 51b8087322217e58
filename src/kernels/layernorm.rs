//! `layernorm`: out (rows, C) = LN(x) or, fused, LN(x + residual), per row
//! with γ and β of length C (PyTorch `nn.LayerNorm(C, eps)`).

use super::{check_operand, dispatch, expect_shape, grid_2d, Dispatch};
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::shaders::consts::SUBGROUP8;
use crate::shaders::{Prelude, Shader};
use crate::tensor::{DType, Tensor};

const OP: &str = "layernorm";
/// shaders/layernorm_tiled.wgsl and layernorm_rows.wgsl: invocations per workgroup (WG).
const WG: u32 = 256;
/// shaders/layernorm_subgroup8.wgsl: row values per lane kept in registers (CACHE).
const SG8_CACHE: u32 = 128;
/// shaders/layernorm_rows.wgsl: vec4s per lane kept in registers (CACHE4).
const ROWS_CACHE4: u32 = 8;

/// Which layernorm shader runs. Every variant honours the contract of shaders/layernorm_tiled.wgsl and
/// runs the same parity tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayernormVariant {
    /// shaders/layernorm_tiled.wgsl: a workgroup of 256 per row, tree reductions in workgroup memory;
    /// the portable kernel.
    Tiled,
    /// shaders/layernorm_subgroup8.wgsl: one 8-wide subgroup per row (lavapipe).
    Subgroup8,
    /// shaders/layernorm_rows.wgsl: a subgroup per row, several rows per workgroup, vec4; for
    /// GPUs with subgroups and rows of C % 4 == 0 (others get the automatic choice).
    Rows,
}

impl LayernormVariant {
    /// Every variant, in the order of their names in errors and help.
    pub const ALL: [LayernormVariant; 3] =
        [LayernormVariant::Tiled, LayernormVariant::Subgroup8, LayernormVariant::Rows];

    /// The name in `RESFORMER_LAYERNORM`, policies and reports.
    pub fn name(self) -> &'static str {
        match self {
            LayernormVariant::Tiled => "tiled",
            LayernormVariant::Subgroup8 => "subgroup8",
            LayernormVariant::Rows => "rows",
        }
    }

    /// The variant of that name.
    pub fn parse(s: &str) -> Option<LayernormVariant> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }

    /// Variants this device can run.
    pub fn available(gpu: &Gpu) -> Vec<LayernormVariant> {
        let mut v = vec![LayernormVariant::Tiled];
        if super::has_subgroup8(gpu) {
            v.push(LayernormVariant::Subgroup8);
        }
        if gpu.features().contains(wgpu::Features::SUBGROUP)
            && gpu.limits().max_compute_invocations_per_workgroup >= WG
            && gpu.adapter().subgroup_sizes.1 <= WG
        {
            v.push(LayernormVariant::Rows);
        }
        v
    }

    /// The automatic choice for rows of `cols`, made once per device: rows where subgroups
    /// allow and C % 4 == 0; else subgroup8 on software adapters that can run it; else tiled.
    pub fn auto(gpu: &Gpu, cols: usize) -> LayernormVariant {
        /// The choice for rows of C % 4 == 0 and for the others, made once per device.
        struct Chosen(LayernormVariant, LayernormVariant);
        let pick = |vec4: bool| {
            let available: Vec<_> =
                Self::available(gpu).into_iter().filter(|&v| v != LayernormVariant::Rows || vec4).collect();
            // rows before subgroup8 even on lavapipe: 7.6 against 11.5 ms at 2048x1024 there (PERFORMANCE.md)
            if available.contains(&LayernormVariant::Rows) {
                LayernormVariant::Rows
            } else if gpu.adapter().is_software() && available.contains(&LayernormVariant::Subgroup8) {
                LayernormVariant::Subgroup8
            } else {
                LayernormVariant::Tiled
            }
        };
        let c = gpu.memo(|| Chosen(pick(true), pick(false)));
        if cols.is_multiple_of(4) {
            c.0
        } else {
            c.1
        }
    }

    /// `wanted` (a kernel policy's choice), which must be available here, for rows of `cols`
    /// (rows of C % 4 != 0 get [`Self::auto`] instead of `Rows`); else [`Self::auto`].
    pub fn choose(gpu: &Gpu, wanted: Option<LayernormVariant>, cols: usize) -> Result<LayernormVariant> {
        match wanted {
            Some(LayernormVariant::Rows) if !cols.is_multiple_of(4) => Ok(Self::auto(gpu, cols)),
            Some(v) => super::require_available(gpu, OP, v, &Self::available(gpu), Self::name),
            None => Ok(Self::auto(gpu, cols)),
        }
    }

    /// The shader of this variant.
    fn shader(self) -> Shader {
        let io = include_str!("../../shaders/layernorm_io.wgsl");
        match self {
            LayernormVariant::Tiled => Shader::new(
                "layernorm_tiled",
                "",
                Prelude::new().u32("WG", WG).elem("f32"),
                &[include_str!("../../shaders/layernorm_tiled.wgsl"), io],
            ),
            LayernormVariant::Subgroup8 => Shader::new(
                "layernorm_subgroup8",
                "",
                Prelude::new().u32("SG", SUBGROUP8).u32("CACHE", SG8_CACHE).elem("f32"),
                &[include_str!("../../shaders/layernorm_subgroup8.wgsl"), io],
            ),
            LayernormVariant::Rows => Shader::new(
                "layernorm_rows",
                "",
                Prelude::new().u32("WG", WG).u32("CACHE4", ROWS_CACHE4).elem("vec4<f32>"),
                &[include_str!("../../shaders/layernorm_rows.wgsl"), io],
            ),
        }
    }
}

/// Every variant's shader (the naga tests validate each).
pub fn shaders() -> Vec<Shader> {
    LayernormVariant::ALL.iter().map(|v| v.shader()).collect()
}

/// = WGSL `struct Params` in shaders/layernorm_tiled.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct LayernormParams {
    rows: u32,
    cols: u32,
    eps: f32,
    has_residual: u32,
    groups_x: u32,
    rows_per_group: u32,
    _pad1: u32,
    _pad2: u32,
}

/// Checks operands and binds out = LN(x [+ residual]) · γ + β over the last dimension.
pub fn prepare_layernorm(
    gpu: &Gpu,
    x: &Tensor,
    residual: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    out: &Tensor,
) -> Result<Dispatch> {
    let variant = LayernormVariant::auto(gpu, *x.shape().last().unwrap_or(&0));
    prepare_layernorm_variant(gpu, variant, x, residual, gamma, beta, eps, out)
}

/// [`prepare_layernorm`] with an explicit shader (it must be in [`LayernormVariant::available`];
/// [`LayernormVariant::Rows`] needs C % 4 == 0).
#[allow(clippy::too_many_arguments)]
pub fn prepare_layernorm_variant(
    gpu: &Gpu,
    variant: LayernormVariant,
    x: &Tensor,
    residual: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    out: &Tensor,
) -> Result<Dispatch> {
    super::require_available(gpu, OP, variant, &LayernormVariant::available(gpu), LayernormVariant::name)?;
    let ranks = [1, 2, 3];
    check_operand(gpu, OP, "x", x, &ranks, DType::F32)?;
    check_operand(gpu, OP, "out", out, &ranks, DType::F32)?;
    check_operand(gpu, OP, "gamma", gamma, &[1], DType::F32)?;
    check_operand(gpu, OP, "beta", beta, &[1], DType::F32)?;
    let cols = *x.shape().last().expect("rank >= 1");
    let rows = x.len() / cols;
    expect_shape(OP, "gamma", gamma, &[cols])?;
    expect_shape(OP, "beta", beta, &[cols])?;
    expect_shape(OP, "out", out, x.shape())?;
    if let Some(r) = residual {
        check_operand(gpu, OP, "residual", r, &ranks, DType::F32)?;
        expect_shape(OP, "residual", r, x.shape())?;
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::InvalidArgument { op: OP, what: format!("eps must be finite and >= 0, got {eps}") });
    }
    let rows_per_group = match variant {
        LayernormVariant::Tiled | LayernormVariant::Subgroup8 => 1,
        LayernormVariant::Rows => {
            if !cols.is_multiple_of(4) {
                return Err(Error::InvalidArgument {
                    op: OP,
                    what: format!("the rows variant reads vec4: C must be a multiple of 4, got {cols}"),
                });
            }
            // one row per subgroup of the widest size the adapter may pick; narrower ones leave some idle
            (WG / gpu.adapter().subgroup_sizes.1.max(1)).max(1) as usize
        }
    };
    let (gx, gy) = grid_2d(gpu, OP, x.shape(), rows.div_ceil(rows_per_group) as u64)?;
    let params = LayernormParams {
        rows: rows as u32,
        cols: cols as u32,
        eps,
        has_residual: residual.is_some() as u32,
        groups_x: gx,
        rows_per_group: rows_per_group as u32,
        _pad1: 0,
        _pad2: 0,
    };
    let res = residual.unwrap_or(x);
    dispatch(
        gpu,
        &variant.shader(),
        &[x.buffer(), res.buffer(), gamma.buffer(), beta.buffer(), out.buffer()],
        bytemuck::bytes_of(&params),
        [gx, gy, 1],
    )
}

/// Records out = LN(x [+ residual]) into `enc`.
#[allow(clippy::too_many_arguments)]
pub fn layernorm(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    x: &Tensor,
    residual: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    out: &Tensor,
) -> Result<()> {
    prepare_layernorm(gpu, x, residual, gamma, beta, eps, out)?.record(enc);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use crate::testing::{assert_close, shared_gpu, Rng, Tol};

    /// f32 tree sums of up to 1031 terms against an f64 reference; outputs are O(1..10).
    const LAYERNORM_TOL: Tol = Tol { atol: 2e-5, rtol: 2e-5 };
    /// Rows offset by ~100: one f32 ulp of the mean (7.6e-6) times rstd (~1.7) and gamma (<= 1.5).
    /// Still 10x tighter than what the E[x^2] - E[x]^2 shortcut would miss by.
    const LAYERNORM_OFFSET_TOL: Tol = Tol { atol: 1e-4, rtol: 2e-5 };

    fn run_case(gpu: &Gpu, rng: &mut Rng, rows: usize, cols: usize, fused: bool, offset: f32) {
        // an offset far from zero stresses the variance: E[x^2] - E[x]^2 would cancel
        let x: Vec<f32> = rng.vec(rows * cols, -1.0, 1.0).iter().map(|v| v + offset).collect();
        let r = rng.vec(rows * cols, -1.0, 1.0);
        let g = rng.vec(cols, 0.5, 1.5);
        let b = rng.vec(cols, -0.5, 0.5);
        let eps = 1e-5;
        let shape = [rows, cols];
        let tx = Tensor::from_f32(gpu, &shape, &x).unwrap();
        let tr = Tensor::from_f32(gpu, &shape, &r).unwrap();
        let tg = Tensor::from_f32(gpu, &[cols], &g).unwrap();
        let tb = Tensor::from_f32(gpu, &[cols], &b).unwrap();
        let mut want = vec![0.0; rows * cols];
        reference::layernorm::layernorm(&mut want, &x, fused.then_some(&r[..]), &g, &b, rows, cols, eps);
        let tol = if offset == 0.0 { LAYERNORM_TOL } else { LAYERNORM_OFFSET_TOL };
        for v in LayernormVariant::available(gpu) {
            if v == LayernormVariant::Rows && !cols.is_multiple_of(4) {
                continue; // the host never picks it there; refused, as a test below checks
            }
            let out = Tensor::empty(gpu, &shape, DType::F32).unwrap();
            out.poison(gpu).unwrap();
            let mut enc = gpu.encoder("test");
            prepare_layernorm_variant(gpu, v, &tx, fused.then_some(&tr), &tg, &tb, eps, &out).unwrap().record(&mut enc);
            gpu.submit_and_wait(enc).unwrap();
            let got = out.read(gpu).unwrap();
            assert_close(&format!("layernorm {v:?} {rows}x{cols} fused={fused} offset={offset}"), &got, &want, tol);
        }
    }

    #[test]
    fn layernorm_matches_reference() {
        let Some(gpu) = shared_gpu() else { return };
        let mut rng = Rng::new(5);
        // 1031 and 2053 columns take the subgroup kernel's reload path (rows over 1024 values)
        // 4 .. 1028: multiples of 4 for the rows kernel, 1028 past its register cache at 8 lanes
        for (rows, cols) in [(1, 1), (1, 7), (7, 63), (65, 257), (3, 1031), (2, 2053), (257, 24), (33, 4), (5, 1028)] {
            run_case(gpu, &mut rng, rows, cols, false, 0.0);
        }
        run_case(gpu, &mut rng, 9, 384, false, 100.0);
    }

    #[test]
    fn layernorm_matches_reference_fused_residual() {
        let Some(gpu) = shared_gpu() else { return };
        let mut rng = Rng::new(6);
        for (rows, cols) in [(1, 1), (7, 65), (65, 257), (2, 1031), (67, 384), (3, 2052)] {
            run_case(gpu, &mut rng, rows, cols, true, 0.0);
        }
        run_case(gpu, &mut rng, 5, 96, true, -50.0);
    }

    #[test]
    fn layernorm_params_match_wgsl_layout() {
        for s in shaders() {
            crate::testing::assert_params_layout::<LayernormParams>(&s);
        }
    }

    #[test]
    fn layernorm_runs_every_variant_on_a_software_adapter_with_subgroups() {
        // guards against the variant list (so the parity tests) silently shrinking on lavapipe
        let Some(gpu) = shared_gpu() else { return };
        if gpu.adapter().is_software() && gpu.features().contains(wgpu::Features::SUBGROUP) {
            let want = vec![LayernormVariant::Tiled, LayernormVariant::Subgroup8, LayernormVariant::Rows];
            assert_eq!(LayernormVariant::available(gpu), want);
            let t = |shape: &[usize]| Tensor::empty(gpu, shape, DType::F32).unwrap();
            let (x, g) = (t(&[2, 7]), t(&[7]));
            let e = prepare_layernorm_variant(gpu, LayernormVariant::Rows, &x, None, &g, &g, 1e-5, &x).err();
            assert!(matches!(e, Some(Error::InvalidArgument { op: "layernorm", .. })), "{e:?}");
        }
    }
}
