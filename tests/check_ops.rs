//! `Stack::check_ops` (`resformer run --check-ops`): every step within tolerance when the
//! stack is right, and the first wrong step named exactly when one is not, on the GPU plan
//! and on the CPU backend.

use resformer::model::steps::Edge;
use resformer::model::{BlockConfig, GpuStack, Stack, StackWeights};
use resformer::testing::{shared_gpu, Rng};
use resformer::{Device, Engine, EngineOptions};

fn stacks(w: &StackWeights, cfg: BlockConfig) -> Vec<Stack> {
    let engine = Engine::new_blocking(EngineOptions::on(Device::Cpu)).unwrap();
    let mut v = vec![engine.load_stack(w.clone(), cfg).unwrap()];
    if let Some(gpu) = shared_gpu() {
        v.push(Stack::Gpu(GpuStack::new(gpu.clone(), w, cfg).unwrap()));
    }
    v
}

#[test]
fn every_step_is_within_tolerance_with_masks_and_an_input_norm() {
    let mut cfg = BlockConfig::new(24, 3, 40);
    cfg.batch_first = true;
    let mut w = StackWeights::random(5, 3, 24, 40);
    let mut rng = Rng::new(6);
    w.before = vec![Edge::layernorm("embeddings.LayerNorm", rng.vec(24, 0.8, 1.2), rng.vec(24, -0.2, 0.2))];
    let (seq, batch) = (9, 3);
    let x = rng.vec(seq * batch * 24, -1.0, 1.0);
    let pad: Vec<u32> = (0..batch * seq).map(|i| (i % seq >= seq - i / seq) as u32).collect();
    for stack in stacks(&w, cfg) {
        let checks = stack.check_ops(&w, &x, seq, batch, Some(&pad)).unwrap();
        assert_eq!(checks.len(), 1 + 3 * 7, "{}: input norm + 3 blocks of 7 steps", stack.describe());
        assert_eq!(checks[0].block, None);
        for c in &checks {
            assert!(c.ok(), "{}: {:?}", stack.describe(), c);
        }
    }
}

#[test]
fn the_first_wrong_step_is_named() {
    let cfg = BlockConfig::new(16, 2, 32);
    let w = StackWeights::random(7, 3, 16, 32);
    // the stacks run `w`; the check is told block 1's ffn.0 weight is something else
    let mut told = w.clone();
    told.blocks[1] = {
        let mut t: Vec<Vec<f32>> = told.blocks[1].tensors().iter().map(|v| v.to_vec()).collect();
        t[4].iter_mut().for_each(|v| *v += 0.05); // ffn.0.weight
        resformer::model::BlockWeights::from_tensors(t)
    };
    let (seq, batch) = (5, 2);
    let x = Rng::new(8).vec(seq * batch * 16, -1.0, 1.0);
    for stack in stacks(&w, cfg) {
        let checks = stack.check_ops(&told, &x, seq, batch, None).unwrap();
        let first = checks.iter().position(|c| !c.ok()).expect("a wrong step must be found");
        let c = &checks[first];
        assert_eq!((c.block, first), (Some(1), 7 + 4), "{}: {:?}", stack.describe(), c);
        assert!(c.step.starts_with("ffn.0 matmul"), "{}", c.step);
    }
}

/// A ViT-shaped model: patch matmul and position add before the blocks, norm and head after.
fn with_edges(w: &mut StackWeights, rng: &mut Rng, inp: usize, positions: usize, classes: usize) {
    let e = w.embed;
    let bound = 1.0 / (inp as f32).sqrt();
    w.before = vec![
        Edge::Linear {
            name: "patch".into(),
            weight: rng.vec(e * inp, -bound, bound),
            bias: rng.vec(e, -0.1, 0.1),
            n: e,
            k: inp,
        },
        Edge::AddPositions { name: "pos".into(), table: rng.vec(positions * e, -0.5, 0.5), width: e },
    ];
    w.after = vec![
        Edge::layernorm("norm", rng.vec(e, 0.8, 1.2), rng.vec(e, -0.2, 0.2)),
        Edge::Linear {
            name: "head".into(),
            weight: rng.vec(classes * e, -0.2, 0.2),
            bias: rng.vec(classes, -0.1, 0.1),
            n: classes,
            k: e,
        },
    ];
}

#[test]
fn the_steps_around_the_blocks_are_checked_too_and_a_wrong_head_is_named() {
    for batch_first in [true, false] {
        let mut cfg = BlockConfig::new(20, 4, 36);
        cfg.batch_first = batch_first;
        let mut w = StackWeights::random(11, 2, 20, 36);
        let mut rng = Rng::new(12);
        with_edges(&mut w, &mut rng, 7, 9, 5);
        // 6 of 9 positions, 3 elements, 7 input columns; out: 5 columns
        let (seq, batch) = (6, 3);
        let x = rng.vec(seq * batch * 7, -1.0, 1.0);
        let mut told = w.clone();
        if let Edge::Linear { bias, .. } = &mut told.after[1] {
            bias[3] += 0.01;
        }
        for stack in stacks(&w, cfg) {
            let y = stack.forward(&x, seq, batch, None).unwrap();
            assert_eq!(y.len(), seq * batch * 5, "{}: the head's columns come out", stack.describe());
            let checks = stack.check_ops(&w, &x, seq, batch, None).unwrap();
            assert_eq!(checks.len(), 2 + 2 * 7 + 2, "{}: 2 edges, 2 blocks of 7 steps, 2 edges", stack.describe());
            let labels: Vec<&str> = checks.iter().map(|c| c.step.as_str()).collect();
            assert!(labels[0].starts_with("patch matmul (18, 20) = (18, 7)"), "{labels:?}");
            assert!(labels[1].starts_with("pos add") && labels[16].starts_with("norm layernorm"), "{labels:?}");
            assert!(checks.iter().all(|c| c.ok()), "{}: {checks:?}", stack.describe());
            // the reference is told another head bias: the last step, and only it, is over
            let checks = stack.check_ops(&told, &x, seq, batch, None).unwrap();
            let bad: Vec<usize> = (0..checks.len()).filter(|&i| !checks[i].ok()).collect();
            assert_eq!(bad, vec![checks.len() - 1], "{}: {checks:?}", stack.describe());
            assert!(checks[bad[0]].step.starts_with("head matmul") && checks[bad[0]].block.is_none());
            assert!(checks[bad[0]].bad == seq * batch, "one column of every row: {:?}", checks[bad[0]]);
        }
        // a sequence longer than the position table is refused, not read past its end
        for stack in stacks(&w, cfg) {
            let long = rng.vec(10 * 7, -1.0, 1.0);
            let e = stack.forward(&long, 10, 1, None).unwrap_err().to_string();
            assert!(e.contains("seq 10 is longer than the model's 9 positions"), "{e}");
        }
    }
}
