//! `layernorm`: out (rows, C) = LN(x) or, fused, LN(x + residual), per row
//! with γ and β of length C (PyTorch `nn.LayerNorm(C, eps)`).

use super::{check_operand, dispatch, expect_shape, grid_2d, Dispatch, KernelVariant};
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::shaders::Shader;
use crate::tensor::{DType, Tensor};

const OP: &str = "layernorm";

/// = WGSL `struct Params` in shaders/layernorm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct LayernormParams {
    rows: u32,
    cols: u32,
    eps: f32,
    has_residual: u32,
    groups_x: u32,
    _pad0: u32,
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
    let variant = KernelVariant::for_device(gpu, "RESFORMER_LAYERNORM");
    prepare_layernorm_variant(gpu, variant, x, residual, gamma, beta, eps, out)
}

/// [`prepare_layernorm`] with an explicit shader: [`KernelVariant::Tiled`] is
/// shaders/layernorm.wgsl (a workgroup of 256 and tree reductions in workgroup memory),
/// [`KernelVariant::Subgroup8`] shaders/layernorm_subgroup.wgsl (one subgroup per row, subgroupAdd).
#[allow(clippy::too_many_arguments)]
pub fn prepare_layernorm_variant(
    gpu: &Gpu,
    variant: KernelVariant,
    x: &Tensor,
    residual: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    out: &Tensor,
) -> Result<Dispatch> {
    variant.check_available(gpu, OP)?;
    let shader = match variant {
        KernelVariant::Tiled => Shader::Layernorm,
        KernelVariant::Subgroup8 => Shader::LayernormSubgroup,
    };
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
    let (gx, gy) = grid_2d(gpu, OP, x.shape(), rows as u64)?;
    let params = LayernormParams {
        rows: rows as u32,
        cols: cols as u32,
        eps,
        has_residual: residual.is_some() as u32,
        groups_x: gx,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    let res = residual.unwrap_or(x);
    dispatch(
        gpu,
        shader,
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
        for v in KernelVariant::available(gpu) {
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
        for (rows, cols) in [(1, 1), (1, 7), (7, 63), (65, 257), (3, 1031), (2, 2053), (257, 24)] {
            run_case(gpu, &mut rng, rows, cols, false, 0.0);
        }
        run_case(gpu, &mut rng, 9, 384, false, 100.0);
    }

    #[test]
    fn layernorm_matches_reference_fused_residual() {
        let Some(gpu) = shared_gpu() else { return };
        let mut rng = Rng::new(6);
        for (rows, cols) in [(1, 1), (7, 65), (65, 257), (2, 1031)] {
            run_case(gpu, &mut rng, rows, cols, true, 0.0);
        }
        run_case(gpu, &mut rng, 5, 96, true, -50.0);
    }

    #[test]
    fn layernorm_params_match_wgsl_layout() {
        crate::testing::assert_params_layout::<LayernormParams>(Shader::Layernorm);
        crate::testing::assert_params_layout::<LayernormParams>(Shader::LayernormSubgroup);
    }
}
