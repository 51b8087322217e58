//! `residual_add`: out = a + b elementwise, any length.

use super::{check_operand, dispatch, expect_shape, grid_2d, Dispatch};
use crate::device::Gpu;
use crate::error::Result;
use crate::shaders::{Prelude, Shader};
use crate::tensor::{DType, Tensor};

const OP: &str = "residual_add";
/// Invocations per workgroup (WG in shaders/residual_add.wgsl).
const WG: u32 = 256;

/// The shader over f32 elements or, when `vec4` (the length is a multiple of 4), vec4 ones.
fn shader(vec4: bool) -> Shader {
    let p = Prelude::new().u32("WG", WG).elem(if vec4 { "vec4<f32>" } else { "f32" });
    Shader::new(
        "residual_add",
        if vec4 { "vec4" } else { "f32" },
        p,
        &[include_str!("../../shaders/residual_add.wgsl")],
    )
}

/// Both builds (the naga tests validate each).
pub fn shaders() -> Vec<Shader> {
    vec![shader(false), shader(true)]
}

/// = WGSL `struct Params` in shaders/residual_add.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ResidualAddParams {
    len: u32,
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
}

/// Checks operands (same shape, any rank) and binds out = a + b.
pub fn prepare_residual_add(gpu: &Gpu, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let ranks = [1, 2, 3, 4];
    check_operand(gpu, OP, "a", a, &ranks, DType::F32)?;
    check_operand(gpu, OP, "b", b, &ranks, DType::F32)?;
    check_operand(gpu, OP, "out", out, &ranks, DType::F32)?;
    expect_shape(OP, "b", b, a.shape())?;
    expect_shape(OP, "out", out, a.shape())?;
    // four elements per invocation when the length allows (vec4 loads and stores)
    let vec4 = a.len().is_multiple_of(4);
    let len = if vec4 { a.len() / 4 } else { a.len() };
    let (gx, gy) = grid_2d(gpu, OP, a.shape(), len.div_ceil(WG as usize) as u64)?;
    let params = ResidualAddParams { len: len as u32, groups_x: gx, _pad0: 0, _pad1: 0 };
    dispatch(gpu, &shader(vec4), &[a.buffer(), b.buffer(), out.buffer()], bytemuck::bytes_of(&params), [gx, gy, 1])
}

/// Records out = a + b into `enc`.
pub fn residual_add(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    prepare_residual_add(gpu, a, b, out)?.record(enc);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use crate::testing::{assert_close, shared_gpu, Rng, Tol};

    /// One f32 addition, correctly rounded on every backend: exact.
    const RESIDUAL_ADD_TOL: Tol = Tol { atol: 0.0, rtol: 0.0 };

    #[test]
    fn residual_add_matches_reference_any_length() {
        let Some(gpu) = shared_gpu() else { return };
        let mut rng = Rng::new(4);
        // multiples of 4 take the vec4 shader, the rest the scalar one
        for len in [1usize, 4, 7, 255, 256, 257, 1000, 1028, 65 * 257, 300_001, 300_004] {
            let a = rng.vec(len, -10.0, 10.0);
            let b = rng.vec(len, -10.0, 10.0);
            let ta = Tensor::from_f32(gpu, &[len], &a).unwrap();
            let tb = Tensor::from_f32(gpu, &[len], &b).unwrap();
            let out = Tensor::empty(gpu, &[len], DType::F32).unwrap();
            out.poison(gpu).unwrap();
            let mut enc = gpu.encoder("test");
            residual_add(gpu, &mut enc, &ta, &tb, &out).unwrap();
            gpu.submit_and_wait(enc).unwrap();
            let mut want = vec![0.0; len];
            reference::residual_add::residual_add(&mut want, &a, &b);
            assert_close(&format!("residual_add len {len}"), &out.read(gpu).unwrap(), &want, RESIDUAL_ADD_TOL);
        }
    }

    #[test]
    fn residual_add_params_match_wgsl_layout() {
        for vec4 in [false, true] {
            crate::testing::assert_params_layout::<ResidualAddParams>(&shader(vec4));
        }
    }
}
