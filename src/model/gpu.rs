//! The stack on the GPU: weights uploaded once; per (seq, batch, masked)
//! shape a plan with the activation buffers, every bind group and the list of
//! dispatches, built once and replayed: one encoder and one submit per forward.

use std::sync::{Arc, Mutex};

use super::block::{Act, Step};
use super::config::{BlockConfig, Precision};
use super::steps::{Edge, Layout, ModelStep};
use super::weights::StackWeights;
use super::InputSpec;
use crate::device::{Gpu, TrackedBuffer};
use crate::error::{Error, Result};
use crate::kernels::attention::{prepare_attention_variant, AttentionConfig, AttentionVariant};
use crate::kernels::layernorm::{prepare_layernorm_variant, LayernormVariant};
use crate::kernels::residual_add::prepare_residual_add;
use crate::kernels::{record_all, Dispatch, KernelPolicy};
use crate::ops::Activation;
use crate::tensor::{DType, Tensor};
use crate::tune::prepare_matmul;

/// Plans kept per stack; the least recently used goes first.
pub const MAX_PLANS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PlanKey {
    seq: usize,
    batch: usize,
    masked: bool,
}

struct Plan {
    /// Every buffer of the step list ([`Layout::cols`]): the activations, then the edges'.
    bufs: Vec<Tensor>,
    /// Bound by dispatches, never read on the host (the position table per row).
    _consts: Vec<Tensor>,
    mask: Option<Tensor>,
    dispatches: Vec<Dispatch>,
    /// Host input (and mask) land here with `write_buffer` and are copied in by the
    /// forward's own command buffer, so a forward recorded into a caller's encoder
    /// can never see another forward's input.
    upload: TrackedBuffer,
    mask_upload: Option<TrackedBuffer>,
    staging: TrackedBuffer,
}

/// L blocks on one device.
pub struct GpuStack {
    gpu: Arc<Gpu>,
    /// Which kernels the plans bind.
    policy: KernelPolicy,
    cfg: BlockConfig,
    /// Per block, its 12 parameters in [`super::weights::block_tensor_names`] order.
    layers: Vec<Vec<Tensor>>,
    /// The steps around the blocks (`before ++ after`), as on the host, and their tensors.
    edges: Vec<Edge>,
    edge_tensors: Vec<Vec<Tensor>>,
    /// The model's step list; every plan is built from it.
    layout: Layout,
    /// What an input must be (from the layout and the edges).
    input: InputSpec,
    plans: Mutex<Vec<(PlanKey, Arc<Mutex<Plan>>)>>,
}

impl GpuStack {
    /// Uploads `weights` to `gpu`; the kernels are the device's automatic choice.
    pub fn new(gpu: Arc<Gpu>, weights: &StackWeights, cfg: BlockConfig) -> Result<GpuStack> {
        Self::with_policy(gpu, weights, cfg, KernelPolicy::default())
    }

    /// Uploads `weights` to `gpu`; its plans bind the kernels `policy` asks for.
    pub fn with_policy(
        gpu: Arc<Gpu>,
        weights: &StackWeights,
        cfg: BlockConfig,
        policy: KernelPolicy,
    ) -> Result<GpuStack> {
        cfg.validate()?;
        policy.check(&gpu)?;
        super::check_weights(weights, &cfg)?;
        if cfg.precision == Precision::F16 && !gpu.features().contains(wgpu::Features::SHADER_F16) {
            return Err(Error::InvalidArgument {
                op: "precision",
                what: format!("the f16 mode needs shader f16, which {} lacks", gpu.adapter().label()),
            });
        }
        let names = super::weights::block_tensor_names(cfg.embed, cfg.ff);
        let layers = weights
            .blocks
            .iter()
            .map(|b| {
                let upload = |i: usize, shape: &[usize], data: &[f32]| match cfg.precision {
                    // the f16 mode: matmul weights as f16, the rest f32
                    Precision::F16 if super::weights::is_matmul_weight(i) => Tensor::from_f16(&gpu, shape, data),
                    _ => Tensor::from_f32(&gpu, shape, data),
                };
                names
                    .iter()
                    .zip(b.tensors())
                    .enumerate()
                    .map(|(i, ((_, shape), data))| upload(i, shape, data))
                    .collect()
            })
            .collect::<Result<Vec<Vec<Tensor>>>>()?;
        let edges: Vec<Edge> = weights.edges().into_iter().cloned().collect();
        let edge_tensors = edges
            .iter()
            .map(|e| match e {
                Edge::Layernorm { gamma, beta, .. } => Ok(vec![
                    Tensor::from_f32(&gpu, &[gamma.len()], gamma)?,
                    Tensor::from_f32(&gpu, &[beta.len()], beta)?,
                ]),
                Edge::Linear { weight, bias, n, k, .. } => {
                    Ok(vec![Tensor::from_f32(&gpu, &[*n, *k], weight)?, Tensor::from_f32(&gpu, &[*n], bias)?])
                }
                // expanded per plan: its rows depend on (seq, batch)
                Edge::AddPositions { .. } => Ok(Vec::new()),
            })
            .collect::<Result<Vec<_>>>()?;
        let layout = weights.layout(&cfg);
        let input = InputSpec::new(&layout, &weights.edges());
        Ok(GpuStack { gpu, policy, cfg, layers, edges, edge_tensors, layout, input, plans: Mutex::new(Vec::new()) })
    }

    /// The block configuration.
    pub fn config(&self) -> &BlockConfig {
        &self.cfg
    }

    /// Number of blocks.
    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// The device this stack runs on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// The kernel policy its plans bind.
    pub fn policy(&self) -> &KernelPolicy {
        &self.policy
    }

    fn build_plan(&self, key: PlanKey) -> Result<Plan> {
        let (gpu, cfg, policy) = (&*self.gpu, &self.cfg, &self.policy);
        let attention = AttentionVariant::choose(gpu, policy.attention)?;
        let t = key.seq * key.batch;
        let bufs =
            self.layout.cols.iter().map(|&c| Tensor::empty(gpu, &[t, c], DType::F32)).collect::<Result<Vec<_>>>()?;
        let mask = if key.masked { Some(Tensor::empty(gpu, &[key.batch, key.seq], DType::U32)?) } else { None };
        let att = AttentionConfig {
            batch: key.batch,
            seq: key.seq,
            heads: cfg.heads,
            head_dim: cfg.head_dim(),
            batch_first: cfg.batch_first,
            causal: cfg.causal,
        };
        let mut consts = Vec::new();
        let mut dispatches = Vec::with_capacity(self.layout.steps.len());
        let a = |i: usize| &bufs[i];
        for step in &self.layout.steps {
            dispatches.push(match *step {
                ModelStep::Edge { edge, x, out } => {
                    let p = &self.edge_tensors[edge];
                    match &self.edges[edge] {
                        Edge::Layernorm { gamma, .. } => {
                            let ln = LayernormVariant::choose(gpu, policy.layernorm, gamma.len())?;
                            prepare_layernorm_variant(gpu, ln, a(x), None, &p[0], &p[1], cfg.eps, a(out))?
                        }
                        Edge::Linear { .. } => {
                            prepare_matmul(gpu, policy, a(x), &p[0], Some(&p[1]), Activation::None, a(out))?
                        }
                        Edge::AddPositions { table, width, .. } => {
                            let rows = Edge::expand_positions(table, *width, &att);
                            consts.push(Tensor::from_f32(gpu, &[t, *width], &rows)?);
                            prepare_residual_add(gpu, a(x), consts.last().expect("just pushed"), a(out))?
                        }
                    }
                }
                ModelStep::Block { block, step } => {
                    let p = &self.layers[block];
                    let a = |x: Act| &bufs[x as usize];
                    match step {
                        Step::Matmul { x, w, b, act, out } => {
                            prepare_matmul(gpu, policy, a(x), &p[w as usize], Some(&p[b as usize]), act, a(out))?
                        }
                        Step::Attention { qkv, out } => {
                            prepare_attention_variant(gpu, attention, a(qkv), mask.as_ref(), &att, a(out))?
                        }
                        Step::Layernorm { x, residual, gamma, beta, out } => {
                            let ln = LayernormVariant::choose(gpu, policy.layernorm, cfg.embed)?;
                            prepare_layernorm_variant(
                                gpu,
                                ln,
                                a(x),
                                residual.map(a),
                                &p[gamma as usize],
                                &p[beta as usize],
                                cfg.eps,
                                a(out),
                            )?
                        }
                        Step::ResidualAdd { a: l, b: r, out } => prepare_residual_add(gpu, a(l), a(r), a(out))?,
                    }
                }
            });
        }
        let host = |label, size, usage| {
            gpu.buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
        };
        let copy_in = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let upload = host("resformer.input", bufs[self.layout.input].bytes(), copy_in)?;
        let mask_upload = match &mask {
            Some(m) => Some(host("resformer.mask", m.bytes(), copy_in)?),
            None => None,
        };
        let staging = host(
            "resformer.output",
            bufs[self.layout.output].bytes(),
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(Plan { bufs, _consts: consts, mask, dispatches, upload, mask_upload, staging })
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

    /// Runs dispatch `index` of the (seq, batch) plan alone, on `inputs` written into its
    /// buffers (numbered as in [`Layout`]; `key_pad` into the mask), and returns buffer `out`,
    /// poisoned with NaN first: one step of `--check-ops`, on the reference's inputs.
    pub(crate) fn replay_step(
        &self,
        (seq, batch): (usize, usize),
        key_pad: Option<&[u32]>,
        index: usize,
        inputs: &[(usize, &[f32])],
        out: usize,
    ) -> Result<Vec<f32>> {
        if self.batch_per_plan(seq, batch)? < batch {
            return Err(Error::InvalidArgument {
                op: "check_ops",
                what: format!("batch {batch} needs splitting on this device; check a smaller batch"),
            });
        }
        let plan = self.plan(PlanKey { seq, batch, masked: key_pad.is_some() })?;
        let plan = plan.lock().unwrap_or_else(|p| p.into_inner());
        let gpu = &*self.gpu;
        for (buf, data) in inputs {
            plan.bufs[*buf].write(gpu, data)?;
        }
        if let (Some(m), Some(data)) = (&plan.mask, key_pad) {
            gpu.queue.write_buffer(m.buffer(), 0, bytemuck::cast_slice(data));
        }
        let target = &plan.bufs[out];
        target.poison(gpu)?;
        let step = plan.dispatches.get(index).ok_or_else(|| Error::InvalidArgument {
            op: "check_ops",
            what: format!("no step {index} in a plan of {}", plan.dispatches.len()),
        })?;
        let mut enc = gpu.encoder("resformer.check_ops");
        step.record(&mut enc);
        gpu.submit_and_wait(enc)?;
        target.read(gpu)
    }

    /// Number of shape plans currently cached (at most [`MAX_PLANS`]).
    pub fn cached_plans(&self) -> usize {
        self.plans.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The model's step list.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The largest activation of a (seq, batch) forward in bytes, and the limit it must fit.
    fn largest_activation(&self, tokens: usize) -> (u64, u64) {
        let cols = self.layout.widest();
        let limits = self.gpu.limits();
        (4 * (tokens * cols) as u64, limits.max_storage_buffer_binding_size.min(limits.max_buffer_size))
    }

    /// How many batch elements one plan may hold for `seq` within the device's limits.
    fn batch_per_plan(&self, seq: usize, batch: usize) -> Result<usize> {
        let (one, limit) = self.largest_activation(seq);
        if one > limit {
            let cols = self.layout.widest();
            return Err(Error::LimitExceeded {
                op: "forward",
                what: "widest activation (seq, cols) of one batch element",
                shape: vec![seq, cols],
                needed: one,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
        Ok(((limit / one) as usize).clamp(1, batch))
    }

    /// Runs the model on `x` (T, in) in token-row order; returns (T, out) (both E for a plain
    /// stack; see [`super::Stack::forward`]).
    ///
    /// A batch whose activations would exceed the device's storage-binding
    /// limit is split into sub-batches (exact: batch elements never interact);
    /// a single sequence that does not fit is refused with
    /// [`Error::LimitExceeded`].
    pub fn forward(&self, x: &[f32], seq: usize, batch: usize, key_pad: Option<&[u32]>) -> Result<Vec<f32>> {
        crate::device::blocking(self.forward_async(x, seq, batch, key_pad))
    }

    /// [`GpuStack::forward`] without blocking: the readback is awaited, so it runs in a
    /// browser's event loop (natively it polls the device, as the blocking form does).
    pub async fn forward_async(
        &self,
        x: &[f32],
        seq: usize,
        batch: usize,
        key_pad: Option<&[u32]>,
    ) -> Result<Vec<f32>> {
        super::check_input(self.input, x, seq, batch, key_pad)?;
        let per = self.batch_per_plan(seq, batch)?;
        if per >= batch {
            return self.forward_whole(x, seq, batch, key_pad).await;
        }
        let (ci, co) = (self.layout.in_cols(), self.layout.out_cols());
        // token row of (b, s) in the full and in a sub-batch of `n` elements
        let row = |b: usize, s: usize, n: usize| if self.cfg.batch_first { b * seq + s } else { s * n + b };
        let mut out = vec![0.0; seq * batch * co];
        for b0 in (0..batch).step_by(per) {
            let n = per.min(batch - b0);
            let mut xs = vec![0.0; seq * n * ci];
            for b in 0..n {
                for s in 0..seq {
                    let (src, dst) = (row(b0 + b, s, batch), row(b, s, n));
                    xs[dst * ci..(dst + 1) * ci].copy_from_slice(&x[src * ci..(src + 1) * ci]);
                }
            }
            let mask = key_pad.map(|m| m[b0 * seq..(b0 + n) * seq].to_vec());
            let ys = self.forward_whole(&xs, seq, n, mask.as_deref()).await?;
            for b in 0..n {
                for s in 0..seq {
                    let (dst, src) = (row(b0 + b, s, batch), row(b, s, n));
                    out[dst * co..(dst + 1) * co].copy_from_slice(&ys[src * co..(src + 1) * co]);
                }
            }
        }
        Ok(out)
    }

    // The plan's lock is held until its staging buffer is read back: a second forward of this
    // shape must not overwrite the buffers meanwhile. Natively the future runs to the end on
    // the calling thread (block_on), as the blocking read did; in a page the one thread runs
    // one call at a time (resformer-web queues them), so the lock is never contended there.
    #[allow(clippy::await_holding_lock)]
    async fn forward_whole(&self, x: &[f32], seq: usize, batch: usize, key_pad: Option<&[u32]>) -> Result<Vec<f32>> {
        let plan = self.plan(PlanKey { seq, batch, masked: key_pad.is_some() })?;
        let plan = plan.lock().unwrap_or_else(|p| p.into_inner());
        let gpu = &*self.gpu;
        gpu.queue.write_buffer(&plan.upload, 0, bytemuck::cast_slice(x));
        if let (Some(m), Some(data)) = (&plan.mask_upload, key_pad) {
            gpu.queue.write_buffer(m, 0, bytemuck::cast_slice(data));
        }
        let mut enc = gpu.encoder("resformer.forward");
        self.record_plan(&mut enc, &plan, &plan.upload, plan.mask_upload.as_deref(), &plan.staging);
        gpu.queue.submit([enc.finish()]);
        let out: Vec<f32> =
            bytemuck::pod_collect_to_vec(&crate::device::read_mapped_bytes_async(gpu, &plan.staging).await?);
        let want = seq * batch * self.layout.out_cols();
        if out.len() != want {
            return Err(Error::Gpu(format!("read {} values back, expected {want}", out.len())));
        }
        Ok(out)
    }

    /// Copies `input` (and `mask`) in, runs the step list, copies the result out to `output`.
    fn record_plan(
        &self,
        enc: &mut wgpu::CommandEncoder,
        plan: &Plan,
        input: &wgpu::Buffer,
        mask: Option<&wgpu::Buffer>,
        output: &wgpu::Buffer,
    ) {
        let x = &plan.bufs[self.layout.input];
        enc.copy_buffer_to_buffer(input, 0, x.buffer(), 0, x.bytes());
        if let (Some(src), Some(dst)) = (mask, &plan.mask) {
            enc.copy_buffer_to_buffer(src, 0, dst.buffer(), 0, dst.bytes());
        }
        record_all(enc, &plan.dispatches);
        let y = &plan.bufs[self.layout.output];
        enc.copy_buffer_to_buffer(y.buffer(), 0, output, 0, y.bytes());
    }

    /// Records a whole forward into the caller's encoder: reads `input` (T·in f32
    /// in token-row order, usage COPY_SRC), and `key_pad` ((batch, seq) u32,
    /// COPY_SRC) when given, and leaves the output (T, out) in `output` (usage
    /// COPY_DST), a buffer the caller owns. Nothing is submitted; submit the
    /// encoder when it suits the app. Batches that would need splitting are
    /// refused here ([`Error::LimitExceeded`]): split them yourself or use
    /// [`GpuStack::forward`].
    pub fn record_forward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        input: &wgpu::Buffer,
        key_pad: Option<&wgpu::Buffer>,
        output: &wgpu::Buffer,
        seq: usize,
        batch: usize,
    ) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument { op: "record_forward", what });
        if seq == 0 || batch == 0 {
            return bad(format!("seq and batch must be at least 1, got seq {seq} batch {batch}"));
        }
        if self.batch_per_plan(seq, batch)? < batch {
            let (needed, limit) = self.largest_activation(seq * batch);
            return Err(Error::LimitExceeded {
                op: "record_forward",
                what: "largest activation",
                shape: vec![seq, batch, self.cfg.embed],
                needed,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
        let bytes = |cols: usize| 4 * (seq * batch * cols) as u64;
        let check = |b: &wgpu::Buffer, name: &str, usage: wgpu::BufferUsages, size: u64| {
            if b.size() < size || !b.usage().contains(usage) {
                return bad(format!(
                    "{name} needs {size} bytes and usage {usage:?}; it has {} bytes, {:?}",
                    b.size(),
                    b.usage()
                ));
            }
            Ok(())
        };
        check(input, "input", wgpu::BufferUsages::COPY_SRC, bytes(self.layout.in_cols()))?;
        check(output, "output", wgpu::BufferUsages::COPY_DST, bytes(self.layout.out_cols()))?;
        if let Some(m) = key_pad {
            check(m, "key_pad", wgpu::BufferUsages::COPY_SRC, 4 * (seq * batch) as u64)?;
        }
        let plan = self.plan(PlanKey { seq, batch, masked: key_pad.is_some() })?;
        let plan = plan.lock().unwrap_or_else(|p| p.into_inner());
        self.record_plan(enc, &plan, input, key_pad, output);
        Ok(())
    }
}
