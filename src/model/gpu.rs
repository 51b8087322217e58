//! The stack on the GPU: weights uploaded once; per (seq, batch, masked)
//! shape a plan with the activation buffers, every bind group and the list of
//! dispatches, built once and replayed: one encoder and one submit per forward.

use std::sync::{Arc, Mutex};

use super::block::{block_steps, Act, Step};
use super::config::BlockConfig;
use super::weights::StackWeights;
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::kernels::attention::{prepare_attention, AttentionConfig};
use crate::kernels::layernorm::prepare_layernorm;
use crate::kernels::matmul::prepare_matmul;
use crate::kernels::residual_add::prepare_residual_add;
use crate::kernels::{record_all, Dispatch};
use crate::tensor::{read_mapped, DType, Tensor};

/// Plans kept per stack; the least recently used goes first.
const MAX_PLANS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PlanKey {
    seq: usize,
    batch: usize,
    masked: bool,
}

struct Plan {
    acts: Vec<Tensor>,
    mask: Option<Tensor>,
    dispatches: Vec<Dispatch>,
    staging: wgpu::Buffer,
}

/// L blocks on one device.
pub struct GpuStack {
    gpu: Arc<Gpu>,
    cfg: BlockConfig,
    /// Per block, its 12 parameters in [`super::weights::block_tensor_names`] order.
    layers: Vec<Vec<Tensor>>,
    /// (γ, β) of the LayerNorm applied to the input before block 0, if any.
    input_norm: Option<(Tensor, Tensor)>,
    plans: Mutex<Vec<(PlanKey, Arc<Mutex<Plan>>)>>,
}

impl GpuStack {
    /// Uploads `weights` to `gpu`.
    pub fn new(gpu: Arc<Gpu>, weights: &StackWeights, cfg: BlockConfig) -> Result<GpuStack> {
        cfg.validate()?;
        super::check_weights(weights, &cfg)?;
        let names = super::weights::block_tensor_names(cfg.embed, cfg.ff);
        let layers = weights
            .blocks
            .iter()
            .map(|b| {
                names.iter().zip(b.tensors()).map(|((_, shape), data)| Tensor::from_f32(&gpu, shape, data)).collect()
            })
            .collect::<Result<Vec<Vec<Tensor>>>>()?;
        let input_norm = match &weights.input_norm {
            Some((g, b)) => Some((Tensor::from_f32(&gpu, &[cfg.embed], g)?, Tensor::from_f32(&gpu, &[cfg.embed], b)?)),
            None => None,
        };
        Ok(GpuStack { gpu, cfg, layers, input_norm, plans: Mutex::new(Vec::new()) })
    }

    /// The device this stack runs on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    fn build_plan(&self, key: PlanKey) -> Result<Plan> {
        let (gpu, cfg) = (&*self.gpu, &self.cfg);
        let t = key.seq * key.batch;
        let acts =
            Act::ALL.iter().map(|a| Tensor::empty(gpu, &[t, a.cols(cfg)], DType::F32)).collect::<Result<Vec<_>>>()?;
        let mask = if key.masked { Some(Tensor::empty(gpu, &[key.batch, key.seq], DType::U32)?) } else { None };
        let att = AttentionConfig {
            batch: key.batch,
            seq: key.seq,
            heads: cfg.heads,
            head_dim: cfg.head_dim(),
            batch_first: cfg.batch_first,
            causal: cfg.causal,
        };
        let steps = block_steps(cfg);
        let mut dispatches = Vec::with_capacity(steps.len() * self.layers.len() + 1);
        // with an input norm the input is written to Xb and normalised into X
        if let Some((g, b)) = &self.input_norm {
            let (xb, x) = (&acts[Act::Xb as usize], &acts[Act::X as usize]);
            dispatches.push(prepare_layernorm(gpu, xb, None, g, b, cfg.eps, x)?);
        }
        for p in &self.layers {
            for step in &steps {
                let a = |x: Act| &acts[x as usize];
                dispatches.push(match *step {
                    Step::Matmul { x, w, b, act, out } => {
                        prepare_matmul(gpu, a(x), &p[w as usize], Some(&p[b as usize]), act, a(out))?
                    }
                    Step::Attention { qkv, out } => prepare_attention(gpu, a(qkv), mask.as_ref(), &att, a(out))?,
                    Step::Layernorm { x, residual, gamma, beta, out } => prepare_layernorm(
                        gpu,
                        a(x),
                        residual.map(a),
                        &p[gamma as usize],
                        &p[beta as usize],
                        cfg.eps,
                        a(out),
                    )?,
                    Step::Add { a: l, b: r, out } => prepare_residual_add(gpu, a(l), a(r), a(out))?,
                });
            }
        }
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("resformer.output"),
            size: acts[Act::X as usize].bytes(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Plan { acts, mask, dispatches, staging })
    }

    fn plan(&self, key: PlanKey) -> Result<Arc<Mutex<Plan>>> {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = plans.iter().position(|(k, _)| *k == key) {
            let entry = plans.remove(i);
            let plan = entry.1.clone();
            plans.push(entry);
            return Ok(plan);
        }
        let plan = Arc::new(Mutex::new(self.build_plan(key)?));
        if plans.len() == MAX_PLANS {
            plans.remove(0);
        }
        plans.push((key, plan.clone()));
        Ok(plan)
    }

    /// Calls `f` with the dispatch list of the plan for (seq, batch, masked): what
    /// one forward records, for timing it without the upload and readback.
    pub fn with_plan<R>(&self, seq: usize, batch: usize, masked: bool, f: impl FnOnce(&[Dispatch]) -> R) -> Result<R> {
        let plan = self.plan(PlanKey { seq, batch, masked })?;
        let plan = plan.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&plan.dispatches))
    }

    /// Number of shape plans currently cached (at most 8).
    pub fn cached_plans(&self) -> usize {
        self.plans.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Runs the stack on `x` (T, E) in token-row order; returns (T, E).
    pub fn forward(&self, x: &[f32], seq: usize, batch: usize, key_pad: Option<&[u32]>) -> Result<Vec<f32>> {
        super::check_input(&self.cfg, x, seq, batch, key_pad)?;
        let plan = self.plan(PlanKey { seq, batch, masked: key_pad.is_some() })?;
        let plan = plan.lock().unwrap_or_else(|p| p.into_inner());
        let gpu = &*self.gpu;
        let xt = &plan.acts[Act::X as usize];
        let input = if self.input_norm.is_some() { &plan.acts[Act::Xb as usize] } else { xt };
        input.write(gpu, x)?;
        if let (Some(m), Some(data)) = (&plan.mask, key_pad) {
            gpu.queue.write_buffer(m.buffer(), 0, bytemuck::cast_slice(data));
        }
        let mut enc = gpu.encoder("resformer.forward");
        record_all(&mut enc, &plan.dispatches);
        enc.copy_buffer_to_buffer(xt.buffer(), 0, &plan.staging, 0, xt.bytes());
        gpu.queue.submit([enc.finish()]);
        let out = read_mapped(gpu, &plan.staging)?;
        if out.len() != x.len() {
            return Err(Error::Gpu(format!("read {} values back, expected {}", out.len(), x.len())));
        }
        Ok(out)
    }
}
