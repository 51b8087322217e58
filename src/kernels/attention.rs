//! `attention`: fused scaled-dot-product attention over the packed QKV that
//! the block's in-projection writes. See shaders/attention_tiled.wgsl for the layout.
//!
//! Tokens are rows: with `batch_first = false` (PyTorch's default) the row of
//! (batch b, position s) is `s * batch + b`; with `batch_first = true` it is
//! `b * seq + s`. `qkv` is (tokens, 3E) = [q | k | v] per row, E = heads ·
//! head_dim, head h owning columns h·D..(h+1)·D of each part; `out` is (tokens, E).

use super::{check_groups, check_operand, dispatch, expect_shape, Dispatch};
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::shaders::consts::{MAX_HEAD_DIM as DMAX, SUBGROUP8};
use crate::shaders::{Prelude, Shader};

pub use crate::ops::{AttentionConfig, MAX_HEAD_DIM};
use crate::tensor::{DType, Tensor};

const OP: &str = "attention";
/// shaders/attention_tiled.wgsl: queries per workgroup (BQ).
const TILED_QUERIES: u32 = 64;
/// shaders/attention_tiled.wgsl: keys per staged tile (BK).
const TILED_KEYS: u32 = 16;
/// shaders/attention_flash.wgsl: queries per workgroup, four lanes each (BQ).
const FLASH_QUERIES: u32 = 64;
/// Lanes per query of the flash kernel.
const FLASH_LANES: u32 = 4;
/// The flash kernel's builds: the largest head dim each holds (multiples of 16).
const FLASH_DMAX: [u32; 3] = [32, 64, 128];

/// Keys per staged tile of the flash attention for head dims up to `dmax` (BKV there): 64, or
/// fewer so that the K and V tiles (2 · BKV · DMAX f32) fit 32 KiB.
fn flash_keys_per_tile(dmax: u32) -> u32 {
    (4096 / dmax).min(64)
}

/// Workgroup memory of the flash build for `dmax`: K and V tiles of BKV x DMAX f32, as vec4.
fn flash_workgroup_bytes(dmax: u32) -> u64 {
    2 * 16 * (flash_keys_per_tile(dmax) * dmax / 4) as u64
}

/// Which attention shader runs. Every variant honours the contract of shaders/attention_tiled.wgsl and
/// runs the same parity tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttentionVariant {
    /// shaders/attention_tiled.wgsl: one query per invocation, K and V tiles in workgroup memory;
    /// the portable kernel, for devices without subgroups.
    Tiled,
    /// shaders/attention_flash.wgsl: four lanes per query, K and V tiles as vec4, scores in
    /// registers; for devices with subgroups of 4 lanes or more (the GPU kernel).
    Flash,
    /// shaders/attention_subgroup8.wgsl: no workgroup memory, for 8-wide subgroups (lavapipe).
    Subgroup8,
}

impl AttentionVariant {
    /// Every variant, in the order of their names in errors and help.
    pub const ALL: [AttentionVariant; 3] =
        [AttentionVariant::Tiled, AttentionVariant::Flash, AttentionVariant::Subgroup8];

    /// The name in `RESFORMER_ATTENTION`, policies and reports.
    pub fn name(self) -> &'static str {
        match self {
            AttentionVariant::Tiled => "tiled",
            AttentionVariant::Flash => "flash",
            AttentionVariant::Subgroup8 => "subgroup8",
        }
    }

    /// The variant of that name.
    pub fn parse(s: &str) -> Option<AttentionVariant> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }

    /// Variants this device can run.
    pub fn available(gpu: &Gpu) -> Vec<AttentionVariant> {
        let mut v = vec![AttentionVariant::Tiled];
        let subgroups = gpu.features().contains(wgpu::Features::SUBGROUP);
        if subgroups
            && gpu.adapter().subgroup_sizes.0 >= FLASH_LANES
            && gpu.limits().max_compute_invocations_per_workgroup >= FLASH_LANES * FLASH_QUERIES
            && gpu.limits().max_compute_workgroup_storage_size as u64 >= flash_workgroup_bytes(DMAX)
        {
            v.push(AttentionVariant::Flash);
        }
        if super::has_subgroup8(gpu) {
            v.push(AttentionVariant::Subgroup8);
        }
        v
    }

    /// The automatic choice, made once per device: the subgroup-8 kernel on software adapters
    /// that can run it; else flash where subgroups allow; else tiled.
    pub fn auto(gpu: &Gpu) -> AttentionVariant {
        /// The choice, made once per device.
        struct Chosen(AttentionVariant);
        gpu.memo(|| {
            let available = Self::available(gpu);
            Chosen(if gpu.adapter().is_software() && available.contains(&AttentionVariant::Subgroup8) {
                AttentionVariant::Subgroup8
            } else if available.contains(&AttentionVariant::Flash) {
                AttentionVariant::Flash
            } else {
                AttentionVariant::Tiled
            })
        })
        .0
    }

    /// `wanted` (a kernel policy's choice), which must be available here; else [`Self::auto`].
    pub fn choose(gpu: &Gpu, wanted: Option<AttentionVariant>) -> Result<AttentionVariant> {
        match wanted {
            None => Ok(Self::auto(gpu)),
            Some(v) => super::require_available(gpu, OP, v, &Self::available(gpu), Self::name),
        }
    }

    /// (shader, queries per workgroup, workgroup memory) for heads of `head_dim`.
    fn shader(self, head_dim: usize) -> (Shader, u32, u64) {
        let io = include_str!("../../shaders/attention_io.wgsl");
        match self {
            AttentionVariant::Tiled => {
                let p = Prelude::new().u32("BQ", TILED_QUERIES).u32("BK", TILED_KEYS).u32("DMAX", DMAX).neg_big();
                let bytes = (2 * TILED_KEYS * DMAX * 4) as u64;
                let body = [include_str!("../../shaders/attention_tiled.wgsl"), io];
                (Shader::new("attention_tiled", "", p, &body), TILED_QUERIES, bytes)
            }
            AttentionVariant::Flash => {
                // the smallest build that holds the head dim: no FMAs on padding past it
                let dmax = FLASH_DMAX.into_iter().find(|&d| head_dim <= d as usize).unwrap_or(DMAX);
                let p = Prelude::new()
                    .u32("DMAX", dmax)
                    .u32("BKV", flash_keys_per_tile(dmax))
                    .u32("BQ", FLASH_QUERIES)
                    .neg_big();
                let body = [include_str!("../../shaders/attention_flash.wgsl"), io];
                let shader = Shader::new("attention_flash", format!("dmax{dmax}"), p, &body);
                (shader, FLASH_QUERIES, flash_workgroup_bytes(dmax))
            }
            AttentionVariant::Subgroup8 => {
                let p = Prelude::new().u32("SG", SUBGROUP8).u32("DMAX", DMAX).neg_big();
                let body = [include_str!("../../shaders/attention_subgroup8.wgsl"), io];
                (Shader::new("attention_subgroup8", "", p, &body), SUBGROUP8, 0)
            }
        }
    }
}

/// Every build of every variant (the naga tests validate each).
pub fn shaders() -> Vec<Shader> {
    let mut v = vec![AttentionVariant::Tiled.shader(64).0, AttentionVariant::Subgroup8.shader(64).0];
    v.extend(FLASH_DMAX.map(|d| AttentionVariant::Flash.shader(d as usize).0));
    v
}

/// = WGSL `struct Params` in shaders/attention_tiled.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct AttentionParams {
    seq: u32,
    head_dim: u32,
    row_seq: u32,
    row_batch: u32,
    qkv_stride: u32,
    out_stride: u32,
    q_off: u32,
    k_off: u32,
    v_off: u32,
    causal: u32,
    has_key_pad: u32,
    scale: f32,
}

/// Checks operands and binds out = softmax(q·kᵀ·scale + masks)·v for every (batch, head).
/// `key_pad` (batch, seq), u32: nonzero hides that key (PyTorch's `key_padding_mask = True`).
pub fn prepare_attention(
    gpu: &Gpu,
    qkv: &Tensor,
    key_pad: Option<&Tensor>,
    cfg: &AttentionConfig,
    out: &Tensor,
) -> Result<Dispatch> {
    prepare_attention_variant(gpu, AttentionVariant::auto(gpu), qkv, key_pad, cfg, out)
}

/// [`prepare_attention`] with an explicit shader (it must be in [`AttentionVariant::available`]).
pub fn prepare_attention_variant(
    gpu: &Gpu,
    variant: AttentionVariant,
    qkv: &Tensor,
    key_pad: Option<&Tensor>,
    cfg: &AttentionConfig,
    out: &Tensor,
) -> Result<Dispatch> {
    super::require_available(gpu, OP, variant, &AttentionVariant::available(gpu), AttentionVariant::name)?;
    let (shader, block_q, workgroup_bytes) = variant.shader(cfg.head_dim);
    let dims = [("batch", cfg.batch), ("seq", cfg.seq), ("heads", cfg.heads), ("head_dim", cfg.head_dim)];
    if let Some((name, _)) = dims.iter().find(|(_, v)| *v == 0) {
        return Err(Error::ZeroSized { op: OP, what: name, shape: dims.iter().map(|d| d.1).collect() });
    }
    if cfg.head_dim > MAX_HEAD_DIM {
        return Err(Error::InvalidArgument {
            op: OP,
            what: format!("head_dim {} exceeds {MAX_HEAD_DIM}", cfg.head_dim),
        });
    }
    check_operand(gpu, OP, "qkv", qkv, &[2], DType::F32)?;
    check_operand(gpu, OP, "out", out, &[2], DType::F32)?;
    let (t, e) = (cfg.tokens(), cfg.embed());
    expect_shape(OP, "qkv (tokens, 3E)", qkv, &[t, 3 * e])?;
    expect_shape(OP, "out (tokens, E)", out, &[t, e])?;
    if let Some(m) = key_pad {
        check_operand(gpu, OP, "key_pad", m, &[2], DType::U32)?;
        expect_shape(OP, "key_pad (batch, seq)", m, &[cfg.batch, cfg.seq])?;
    }
    let shape = [cfg.batch, cfg.seq, cfg.heads, cfg.head_dim];
    super::check_workgroup_memory(gpu, OP, &shape, workgroup_bytes)?;
    let gx = check_groups(gpu, OP, "seq / queries-per-workgroup", &shape, cfg.seq.div_ceil(block_q as usize) as u64)?;
    let gy = check_groups(gpu, OP, "heads", &shape, cfg.heads as u64)?;
    let gz = check_groups(gpu, OP, "batch", &shape, cfg.batch as u64)?;
    let (row_seq, row_batch) = if cfg.batch_first { (1, cfg.seq) } else { (cfg.batch, 1) };
    let params = AttentionParams {
        seq: cfg.seq as u32,
        head_dim: cfg.head_dim as u32,
        row_seq: row_seq as u32,
        row_batch: row_batch as u32,
        qkv_stride: (3 * e) as u32,
        out_stride: e as u32,
        q_off: 0,
        k_off: e as u32,
        v_off: (2 * e) as u32,
        causal: cfg.causal as u32,
        has_key_pad: key_pad.is_some() as u32,
        scale: cfg.scale(),
    };
    let mask = key_pad.map(|m| m.buffer()).unwrap_or(&gpu.dummy);
    dispatch(gpu, &shader, &[qkv.buffer(), mask, out.buffer()], bytemuck::bytes_of(&params), [gx, gy, gz])
}

/// Records fused attention into `enc`.
pub fn attention(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    qkv: &Tensor,
    key_pad: Option<&Tensor>,
    cfg: &AttentionConfig,
    out: &Tensor,
) -> Result<()> {
    prepare_attention(gpu, qkv, key_pad, cfg, out)?.record(enc);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use crate::testing::{assert_close, shared_gpu, Rng, Tol};

    /// Online softmax rescales in f32 and sums up to D products per score; f64 reference.
    const ATTENTION_TOL: Tol = Tol { atol: 3e-5, rtol: 1e-4 };

    fn run_case(gpu: &Gpu, rng: &mut Rng, cfg: AttentionConfig, padded: bool) {
        let (t, e) = (cfg.tokens(), cfg.embed());
        // scores of O(±4): a softmax that is neither flat nor one-hot
        let qkv = rng.vec(t * 3 * e, -1.0, 1.0);
        let pad: Vec<u32> = (0..cfg.batch * cfg.seq)
            .map(|i| {
                let (b, s) = (i / cfg.seq, i % cfg.seq);
                // batch b keeps its first seq - b keys (never all of them masked)
                (padded && s >= cfg.seq.saturating_sub(b).max(1)) as u32
            })
            .collect();
        let tq = Tensor::from_f32(gpu, &[t, 3 * e], &qkv).unwrap();
        let tm = Tensor::from_u32(gpu, &[cfg.batch, cfg.seq], &pad).unwrap();
        let mut want = vec![0.0; t * e];
        reference::attention::attention(&mut want, &qkv, padded.then_some(&pad[..]), &cfg);
        for v in AttentionVariant::available(gpu) {
            let out = Tensor::empty(gpu, &[t, e], DType::F32).unwrap();
            out.poison(gpu).unwrap();
            let mut enc = gpu.encoder("test");
            prepare_attention_variant(gpu, v, &tq, padded.then_some(&tm), &cfg, &out).unwrap().record(&mut enc);
            gpu.submit_and_wait(enc).unwrap();
            let got = out.read(gpu).unwrap();
            assert_close(&format!("attention {v:?} {cfg:?} padded={padded}"), &got, &want, ATTENTION_TOL);
        }
    }

    fn cfg(batch: usize, seq: usize, heads: usize, head_dim: usize) -> AttentionConfig {
        AttentionConfig { batch, seq, heads, head_dim, batch_first: false, causal: false }
    }

    #[test]
    fn attention_matches_reference_head_dims() {
        let Some(gpu) = shared_gpu() else { return };
        let mut rng = Rng::new(7);
        // 32, 64, 128: the flash kernel's builds at their edge; 33, 100 just past or inside one
        for d in [8, 32, 33, 64, 100, 128] {
            run_case(gpu, &mut rng, cfg(2, 37, 2, d), false);
        }
        run_case(gpu, &mut rng, cfg(1, 1, 1, 8), false);
        run_case(gpu, &mut rng, cfg(3, 65, 3, 7), false);
        run_case(gpu, &mut rng, cfg(1, 130, 1, 64), false);
    }

    #[test]
    fn attention_matches_reference_causal() {
        let Some(gpu) = shared_gpu() else { return };
        let mut rng = Rng::new(8);
        for (seq, d) in [(1, 8), (17, 32), (65, 64), (129, 16)] {
            run_case(gpu, &mut rng, AttentionConfig { causal: true, ..cfg(2, seq, 2, d) }, false);
        }
    }

    #[test]
    fn attention_matches_reference_key_padding() {
        let Some(gpu) = shared_gpu() else { return };
        let mut rng = Rng::new(9);
        for (seq, d) in [(1, 8), (19, 32), (70, 128)] {
            run_case(gpu, &mut rng, cfg(3, seq, 2, d), true);
        }
        run_case(gpu, &mut rng, AttentionConfig { causal: true, ..cfg(3, 23, 3, 16) }, true);
    }

    #[test]
    fn attention_matches_reference_batch_first() {
        let Some(gpu) = shared_gpu() else { return };
        let mut rng = Rng::new(10);
        run_case(gpu, &mut rng, AttentionConfig { batch_first: true, ..cfg(3, 29, 2, 32) }, true);
        run_case(gpu, &mut rng, AttentionConfig { batch_first: true, causal: true, ..cfg(2, 66, 1, 64) }, false);
    }

    #[test]
    fn attention_fully_masked_query_is_nan_like_pytorch() {
        let Some(gpu) = shared_gpu() else { return };
        let c = cfg(2, 5, 1, 8);
        let qkv = Rng::new(11).vec(c.tokens() * 3 * c.embed(), -1.0, 1.0);
        let pad: Vec<u32> = (0..10).map(|i| (i < 5) as u32).collect(); // batch 0: every key hidden
        let tq = Tensor::from_f32(gpu, &[c.tokens(), 3 * c.embed()], &qkv).unwrap();
        let tm = Tensor::from_u32(gpu, &[2, 5], &pad).unwrap();
        for v in AttentionVariant::available(gpu) {
            let out = Tensor::empty(gpu, &[c.tokens(), c.embed()], DType::F32).unwrap();
            let mut enc = gpu.encoder("test");
            prepare_attention_variant(gpu, v, &tq, Some(&tm), &c, &out).unwrap().record(&mut enc);
            gpu.submit_and_wait(enc).unwrap();
            let got = out.read(gpu).unwrap();
            for s in 0..5 {
                let r0 = c.row(0, s) * 8;
                let r1 = c.row(1, s) * 8;
                assert!(got[r0..r0 + 8].iter().all(|x| x.is_nan()), "{v:?}: batch 0 row {s} should be NaN");
                assert!(got[r1..r1 + 8].iter().all(|x| x.is_finite()), "{v:?}: batch 1 row {s} should be finite");
            }
        }
    }

    #[test]
    fn attention_runs_every_variant_on_a_software_adapter_with_subgroups() {
        // guards against the variant list (so the parity tests) silently shrinking on lavapipe
        let Some(gpu) = shared_gpu() else { return };
        if gpu.adapter().is_software() && gpu.features().contains(wgpu::Features::SUBGROUP) {
            let want = vec![AttentionVariant::Tiled, AttentionVariant::Flash, AttentionVariant::Subgroup8];
            assert_eq!(AttentionVariant::available(gpu), want);
        }
    }

    #[test]
    fn attention_params_match_wgsl_layout() {
        for s in shaders() {
            crate::testing::assert_params_layout::<AttentionParams>(&s);
        }
    }
}
