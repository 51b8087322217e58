//! `--check-ops`: the model op by op against the reference kernels, every step of its list
//! ([`super::steps`]), the steps around the blocks included. Each step
//! runs on the reference's own inputs, so a step's error is its own and the
//! first step over the tolerance is where a new adapter or driver goes wrong.

use super::host::{attention_config, run_model_step, HostKernels, Rows};
use super::steps::ModelStep;
use super::{check_input, check_weights, InputSpec, Stack, StackWeights};
use crate::error::{Error, Result};
use crate::ops::{compare, Tol};

/// One step compared: f32 kernels on the reference's inputs against the f64 reference.
/// Looser than a kernel's own test tolerance (the shapes are the user's, K up to thousands).
pub const OPS_TOL: Tol = Tol { atol: 1e-4, rtol: 1e-3 };

/// The comparison of one step.
#[derive(Clone, Debug)]
pub struct OpCheck {
    /// Block index; `None` for a step before or after the blocks (an input norm, a head).
    pub block: Option<usize>,
    /// The step and its shapes, e.g. `ffn.0 matmul (512, 1024) = (512, 256) x (1024, 256)^T`.
    pub step: String,
    /// Largest |ours - reference|.
    pub max_abs: f32,
    /// Largest relative difference over nonzero reference values.
    pub max_rel: f32,
    /// Elements outside [`OPS_TOL`].
    pub bad: usize,
    /// Index of the largest difference.
    pub worst: usize,
}

impl OpCheck {
    /// Within [`OPS_TOL`] everywhere.
    pub fn ok(&self) -> bool {
        self.bad == 0
    }
}

impl Stack {
    /// Runs every step of this stack once on the reference's inputs and compares its output
    /// with the reference step's: the GPU plan's dispatches one at a time, or the CPU
    /// backend's kernels. `weights` are what the reference runs: the stack's own (the GPU
    /// stack keeps no host copy), or others to see where they part.
    pub fn check_ops(
        &self,
        weights: &StackWeights,
        x: &[f32],
        seq: usize,
        batch: usize,
        key_pad: Option<&[u32]>,
    ) -> Result<Vec<OpCheck>> {
        let cfg = *self.config();
        check_weights(weights, &cfg)?;
        if weights.layers() != self.layers() {
            return Err(Error::InvalidArgument {
                op: "check_ops",
                what: format!("the stack has {} blocks, the weights {}", self.layers(), weights.layers()),
            });
        }
        let layout = weights.layout(&cfg);
        let edges = weights.edges();
        check_input(InputSpec::new(&layout, &edges), x, seq, batch, key_pad)?;
        let t = seq * batch;
        let rows = Rows::Grid { att: attention_config(&cfg, seq, batch), key_pad };
        let mut bufs: Vec<Vec<f32>> = layout.cols.iter().map(|c| vec![0.0; t * c]).collect();
        bufs[layout.input].copy_from_slice(x);
        let mut checks = Vec::new();
        // every step of the model's list: dispatch `index` of a GPU plan is step `index`
        for (index, step) in layout.steps.iter().enumerate() {
            let out = step.out();
            let got = match self {
                Stack::Gpu(s) => {
                    let inputs: Vec<(usize, &[f32])> = step.inputs().into_iter().map(|i| (i, &bufs[i][..])).collect();
                    s.replay_step((seq, batch), key_pad, index, &inputs, out)?
                }
                Stack::Cpu { kernels, weights: own, packs, .. } => {
                    // the stack's own weights: `weights` is only what the reference runs
                    let mut mine = bufs.clone();
                    run_model_step(*kernels, step, own, Some(packs), &own.edges(), &cfg, &rows, &mut mine);
                    std::mem::take(&mut mine[out])
                }
            };
            run_model_step(HostKernels::Reference, step, weights, None, &edges, &cfg, &rows, &mut bufs);
            let (block, label) = match *step {
                ModelStep::Block { block, step } => (Some(block), step.label(&cfg, t)),
                ModelStep::Edge { edge, .. } => (None, edges[edge].label(t)),
            };
            let d = compare(&got, &bufs[out], OPS_TOL);
            checks.push(OpCheck {
                block,
                step: label,
                max_abs: d.max_abs,
                max_rel: d.max_rel,
                bad: d.bad,
                worst: d.worst,
            });
        }
        Ok(checks)
    }
}
