//! Kernel policies belong to engines, not to the process: two engines with different policies
//! run side by side, each on the kernels its policy names, each with the results that policy
//! gives when it runs alone.

use std::sync::Arc;

use resformer::kernels::attention::AttentionVariant;
use resformer::kernels::layernorm::LayernormVariant;
use resformer::kernels::matmul::MatmulVariant;
use resformer::model::{host, BlockConfig, Stack, StackWeights};
use resformer::ops::Switch;
use resformer::shaders::MatmulTile;
use resformer::testing::{assert_close, shared_gpu, Rng, Tol};
use resformer::{Engine, KernelPolicy};

/// The stack's tolerance against the f64-summed reference (the block parity tests' own).
const STACK_TOL: Tol = Tol { atol: 1e-4, rtol: 0.0 };

fn kernels_of(stack: &Stack, seq: usize, batch: usize) -> Vec<&'static str> {
    let s = stack.gpu().expect("a GPU stack");
    let mut names = s.with_plan(seq, batch, false, |d| d.iter().map(|x| x.name()).collect::<Vec<_>>()).unwrap();
    names.sort();
    names.dedup();
    names
}

#[test]
fn two_engines_with_different_policies_run_side_by_side() {
    let Some(gpu) = shared_gpu() else { return };
    let portable = KernelPolicy {
        matmul: Some(MatmulVariant::Tiled(MatmulTile::FAMILY[0])),
        attention: Some(AttentionVariant::Tiled),
        layernorm: Some(LayernormVariant::Tiled),
        coop: Switch::Off,
        tune: Switch::Off,
    };
    let engines = [
        Engine::from_gpu_with(Arc::clone(gpu), KernelPolicy::default()).unwrap(),
        Engine::from_gpu_with(Arc::clone(gpu), portable.clone()).unwrap(),
    ];
    let (seq, batch, embed, ff) = (19, 3, 64, 96);
    let cfg = BlockConfig::new(embed, 4, ff);
    let weights = StackWeights::random(21, 2, embed, ff);
    let x = Rng::new(22).vec(seq * batch * embed, -1.0, 1.0);
    let stacks: Vec<Stack> = engines.iter().map(|e| e.load_stack(weights.clone(), cfg).unwrap()).collect();
    // alone, one after the other
    let alone: Vec<Vec<f32>> = stacks.iter().map(|s| s.forward(&x, seq, batch, None).unwrap()).collect();
    // side by side: both engines' forwards at once, several rounds each
    let together: Vec<Vec<Vec<f32>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = stacks
            .iter()
            .map(|s| scope.spawn(|| (0..4).map(|_| s.forward(&x, seq, batch, None).unwrap()).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, runs) in together.iter().enumerate() {
        for y in runs {
            assert!(
                y.iter().zip(&alone[i]).all(|(a, b)| a.to_bits() == b.to_bits()),
                "engine {i}: side by side differs"
            );
        }
    }
    // each ran the kernels its policy names
    let portable_kernels = kernels_of(&stacks[1], seq, batch);
    assert_eq!(portable_kernels, ["attention_tiled", "layernorm_tiled", "matmul"], "{portable_kernels:?}");
    let auto_kernels = kernels_of(&stacks[0], seq, batch);
    let auto_attention = AttentionVariant::auto(gpu);
    assert!(auto_kernels.contains(&format!("attention_{}", auto_attention.name()).as_str()), "{auto_kernels:?}");
    // and both compute the stack: within the parity tolerance of the reference
    let want = host::forward(&weights, &cfg, &x, seq, batch, None);
    for (i, y) in alone.iter().enumerate() {
        assert_close(&format!("engine {i} ({})", engines[i].policy().describe()), y, &want, STACK_TOL);
    }
    if auto_attention != AttentionVariant::Tiled {
        // different kernels: different rounding, so really two paths
        assert!(alone[0].iter().zip(&alone[1]).any(|(a, b)| a != b), "two policies gave bit-identical results");
    }
}

#[test]
fn a_policy_the_device_cannot_honour_is_refused_when_the_engine_opens() {
    let Some(gpu) = shared_gpu() else { return };
    if MatmulVariant::available(gpu).contains(&MatmulVariant::Coop) {
        return; // a device with tensor cores can honour it
    }
    let p = KernelPolicy { matmul: Some(MatmulVariant::Coop), ..Default::default() };
    let e = Engine::from_gpu_with(Arc::clone(gpu), p).unwrap_err().to_string();
    assert!(e.contains("variant coop is not available on") && e.contains("available:"), "{e}");
}
