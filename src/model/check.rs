//! `--check-ops`: the stack op by op against the reference kernels. Each step
//! runs on the reference's own inputs, so a step's error is its own and the
//! first step over the tolerance is where a new adapter or driver goes wrong.

use super::block::{block_steps, Act};
use super::host::{attention_config, input_norm, run_step, HostKernels};
use super::{check_input, check_weights, Stack, StackWeights};
use crate::error::{Error, Result};
use crate::ops::{compare, Tol};

/// One step compared: f32 kernels on the reference's inputs against the f64 reference.
/// Looser than a kernel's own test tolerance (the shapes are the user's, K up to thousands).
pub const OPS_TOL: Tol = Tol { atol: 1e-4, rtol: 1e-3 };

/// The comparison of one step.
#[derive(Clone, Debug)]
pub struct OpCheck {
    /// Block index; `None` for the stack's input LayerNorm.
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
        check_input(&cfg, x, seq, batch, key_pad)?;
        let t = seq * batch;
        let att = attention_config(&cfg, seq, batch);
        let mut bufs: Vec<Vec<f32>> = Act::ALL.iter().map(|a| vec![0.0; t * a.cols(&cfg)]).collect();
        let mut checks = Vec::new();
        let judge = |block, step: String, got: &[f32], want: &[f32]| {
            let d = compare(got, want, OPS_TOL);
            OpCheck { block, step, max_abs: d.max_abs, max_rel: d.max_rel, bad: d.bad, worst: d.worst }
        };
        // 1. the input LayerNorm, when the stack has one (dispatch 0 of a GPU plan)
        let mut index = 0;
        input_norm(HostKernels::Reference, weights, &cfg, x, &mut bufs[Act::X as usize]);
        if weights.input_norm.is_some() {
            let got = match self {
                Stack::Gpu(s) => s.replay_step((seq, batch), key_pad, 0, &[(Act::Xb, x)], Act::X)?,
                Stack::Cpu { kernels, weights: own, .. } => {
                    let mut o = vec![0.0; x.len()];
                    input_norm(*kernels, own, &cfg, x, &mut o);
                    o
                }
            };
            checks.push(judge(None, format!("input layernorm ({t}, {})", cfg.embed), &got, &bufs[Act::X as usize]));
            index = 1;
        }
        // 2. every step of every block
        let steps = block_steps(&cfg);
        for (b, block) in weights.blocks.iter().enumerate() {
            for step in &steps {
                let out = step.out();
                let got = match self {
                    Stack::Gpu(s) => {
                        let inputs: Vec<(Act, &[f32])> =
                            step.inputs().into_iter().map(|a| (a, &bufs[a as usize][..])).collect();
                        s.replay_step((seq, batch), key_pad, index, &inputs, out)?
                    }
                    Stack::Cpu { kernels, weights: own, .. } => {
                        // the stack's own weights: `weights` is only what the reference runs
                        let mut mine = bufs.clone();
                        run_step(*kernels, step, &own.blocks[b], &cfg, &att, key_pad, &mut mine);
                        std::mem::take(&mut mine[out as usize])
                    }
                };
                run_step(HostKernels::Reference, step, block, &cfg, &att, key_pad, &mut bufs);
                checks.push(judge(Some(b), step.label(&cfg, t), &got, &bufs[out as usize]));
                index += 1;
            }
        }
        Ok(checks)
    }
}
