//! `Stack::check_ops` (`resformer run --check-ops`): every step within tolerance when the
//! stack is right, and the first wrong step named exactly when one is not, on the GPU plan
//! and on the CPU backend.

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
    w.input_norm = Some((rng.vec(24, 0.8, 1.2), rng.vec(24, -0.2, 0.2)));
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
