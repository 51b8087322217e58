//! A library other apps can trust: concurrency, device limits, memory held
//! over a long soak, NaN/Inf inputs, a lost device, and results that stay on
//! the GPU in buffers the caller owns.

use std::sync::Arc;

use resformer::model::gpu::MAX_PLANS;
use resformer::model::host::HostKernels;
use resformer::model::{host as cpu, BlockConfig, GpuStack, Stack, StackWeights};
use resformer::testing::{assert_close, gpu_with, shared_gpu, Rng, Tol};
use resformer::{Device, Engine, EngineOptions, Error, Gpu, GpuOptions};

fn small_cfg() -> (StackWeights, BlockConfig) {
    (StackWeights::random(11, 2, 16, 32), BlockConfig::new(16, 2, 32))
}

#[test]
fn engine_and_stacks_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Engine>();
    both::<Stack>();
    both::<GpuStack>();
    both::<Gpu>();
    both::<resformer::model::bert::SentenceEmbedder>();
}

#[test]
fn eight_threads_get_the_serial_results_bit_for_bit() {
    let Some(gpu) = shared_gpu() else { return };
    let (w, cfg) = small_cfg();
    let stack = Arc::new(GpuStack::new(gpu.clone(), &w, cfg).unwrap());
    // 8 inputs of 4 shapes, two threads per shape, 5 forwards each
    let inputs: Vec<(usize, usize, Vec<f32>)> = (0..8)
        .map(|i| {
            let (seq, batch) = [(3, 2), (7, 1), (5, 3), (9, 2)][i % 4];
            (seq, batch, Rng::new(100 + i as u64).vec(seq * batch * 16, -2.0, 2.0))
        })
        .collect();
    let serial: Vec<Vec<f32>> = inputs.iter().map(|(s, b, x)| stack.forward(x, *s, *b, None).unwrap()).collect();
    let handles: Vec<_> = inputs
        .into_iter()
        .map(|(s, b, x)| {
            let stack = stack.clone();
            std::thread::spawn(move || (0..5).map(|_| stack.forward(&x, s, b, None).unwrap()).collect::<Vec<_>>())
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        for got in h.join().unwrap() {
            assert!(got.iter().zip(&serial[i]).all(|(a, b)| a.to_bits() == b.to_bits()), "thread {i} differs");
        }
    }
}

/// A device whose storage bindings are capped at 16 KiB (4096 f32).
fn tiny_binding_gpu() -> Option<Arc<Gpu>> {
    gpu_with(GpuOptions { adjust_limits: Some(|l| l.max_storage_buffer_binding_size = 16 << 10), ..Default::default() })
        .map(Arc::new)
}

#[test]
fn a_batch_over_the_binding_limit_is_split_exactly() {
    let (Some(small), Some(gpu)) = (tiny_binding_gpu(), shared_gpu()) else { return };
    let (w, mut cfg) = small_cfg();
    for batch_first in [false, true] {
        cfg.batch_first = batch_first;
        // (seq 20 x batch 6) tokens x ff 32 x 4 bytes = 15 KiB per H... 3E = 48 columns: 23 KiB > 16 KiB
        let (seq, batch) = (20, 6);
        let x = Rng::new(5).vec(seq * batch * 16, -1.0, 1.0);
        let pad: Vec<u32> = (0..batch * seq).map(|i| (i % seq >= seq - i / seq) as u32).collect();
        let whole = GpuStack::new(gpu.clone(), &w, cfg).unwrap().forward(&x, seq, batch, Some(&pad)).unwrap();
        let split = GpuStack::new(small.clone(), &w, cfg).unwrap().forward(&x, seq, batch, Some(&pad)).unwrap();
        assert!(whole.iter().zip(&split).all(|(a, b)| a.to_bits() == b.to_bits()), "batch_first={batch_first}");
        let want = cpu::forward(&w, &cfg, &x, seq, batch, Some(&pad));
        assert_close("split vs cpu", &split, &want, Tol { atol: 1e-4, rtol: 0.0 });
    }
}

#[test]
fn a_sequence_over_the_binding_limit_is_refused_with_the_limit_and_size() {
    let Some(small) = tiny_binding_gpu() else { return };
    let (w, cfg) = small_cfg();
    let stack = GpuStack::new(small, &w, cfg).unwrap();
    let seq = 100; // 100 x 48 x 4 = 19200 bytes for one sequence's qkv
    let e = stack.forward(&vec![0.0; seq * 16], seq, 1, None).unwrap_err();
    match &e {
        Error::LimitExceeded { needed, limit, limit_name, .. } => {
            assert_eq!((*needed, *limit, *limit_name), (19200, 16384, "max_storage_buffer_binding_size"));
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    assert!(e.to_string().contains("19200") && e.to_string().contains("16384"), "{e}");
}

#[test]
fn a_thousand_forwards_over_changing_shapes_hold_bounded_memory() {
    let Some(gpu) = shared_gpu() else { return };
    let gpu = Arc::new(Gpu::from_wgpu(gpu.device.clone(), gpu.queue.clone())); // its own counter
    let (w, cfg) = (StackWeights::random(3, 1, 8, 16), BlockConfig::new(8, 2, 16));
    let stack = GpuStack::new(gpu.clone(), &w, cfg).unwrap();
    let weights_bytes = gpu.allocated_bytes();
    let shapes: Vec<(usize, usize)> = (1..=12).map(|i| (i, 1 + i % 3)).collect();
    let mut peak = 0;
    let mut after_first_cycle = 0;
    for n in 0..1000 {
        let (seq, batch) = shapes[n % shapes.len()];
        let masked = n % 5 == 0;
        let x = vec![0.25; seq * batch * 8];
        let pad = vec![0u32; seq * batch];
        let y = stack.forward(&x, seq, batch, masked.then_some(&pad[..])).unwrap();
        assert!(y.iter().all(|v| v.is_finite()));
        assert!(stack.cached_plans() <= MAX_PLANS);
        peak = peak.max(gpu.allocated_bytes());
        if n == 2 * shapes.len() * 5 {
            after_first_cycle = peak;
        }
    }
    // MAX_PLANS plans of at most seq 12 x batch 3 tokens: a handful of (T, <= 3E) buffers each
    let plan_bound = MAX_PLANS * 10 * (12 * 3) * 3 * 8 * 4;
    assert!(peak <= weights_bytes + plan_bound as u64, "peak {peak} over {weights_bytes} + {plan_bound}");
    assert_eq!(peak, after_first_cycle, "memory kept growing after the shapes had all been seen");
    drop(stack);
    assert_eq!(gpu.allocated_bytes(), 0, "dropping the stack frees everything it held");
}

/// One way to run the stack: input (T, E) to output (T, E).
type Path<'a> = Box<dyn Fn(&[f32]) -> Vec<f32> + 'a>;

#[test]
fn nan_and_inf_inputs_propagate_as_in_pytorch() {
    // PyTorch (scripts/make_fixtures.py's block): a NaN or Inf in one token of batch
    // element b makes every output of b NaN, through attention; other elements stay finite.
    let (w, cfg) = small_cfg();
    let packs = cpu::HostPacks::new(&w);
    let (seq, batch) = (5, 3);
    let mut paths: Vec<Path<'_>> = vec![
        Box::new(|x| cpu::forward(&w, &cfg, x, seq, batch, None)),
        Box::new(|x| cpu::forward_with(HostKernels::Fast, &w, None, &cfg, x, seq, batch, None)),
        Box::new(|x| cpu::forward_with(HostKernels::Fast, &w, Some(&packs), &cfg, x, seq, batch, None)),
    ];
    if let Some(gpu) = shared_gpu() {
        let stack = GpuStack::new(gpu.clone(), &w, cfg).unwrap();
        paths.push(Box::new(move |x| stack.forward(x, seq, batch, None).unwrap()));
    }
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut x = Rng::new(1).vec(seq * batch * 16, -1.0, 1.0);
        x[(2 * batch + 1) * 16 + 3] = bad; // token s = 2 of batch element 1
        for path in &paths {
            let y = path(&x);
            for s in 0..seq {
                for b in 0..batch {
                    let row = &y[(s * batch + b) * 16..(s * batch + b + 1) * 16];
                    if b == 1 {
                        assert!(row.iter().all(|v| v.is_nan()), "{bad}: (s {s}, b 1) should be NaN");
                    } else {
                        assert!(row.iter().all(|v| v.is_finite()), "{bad}: (s {s}, b {b}) should be finite");
                    }
                }
            }
        }
    }
}

#[test]
fn a_lost_device_is_an_error_not_a_panic_or_a_hang() {
    let Some(gpu) = gpu_with(GpuOptions::default()) else { return };
    let gpu = Arc::new(gpu);
    let (w, cfg) = small_cfg();
    let stack = GpuStack::new(gpu.clone(), &w, cfg).unwrap();
    stack.forward(&[0.1; 2 * 16], 2, 1, None).unwrap();
    gpu.device.destroy();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stack.forward(&[0.1; 2 * 16], 2, 1, None)));
    match r {
        Ok(Err(e)) => eprintln!("lost device reported as: {e}"),
        Ok(Ok(_)) => panic!("a forward on a destroyed device succeeded"),
        Err(_) => panic!("a forward on a destroyed device panicked"),
    }
}

#[test]
fn record_forward_leaves_the_result_in_a_buffer_the_caller_owns() {
    let Some(gpu) = shared_gpu() else { return };
    let engine = Engine::from_wgpu(gpu.device.clone(), gpu.queue.clone());
    let (w, cfg) = small_cfg();
    let stack = engine.load_stack(w, cfg).unwrap();
    let (seq, batch) = (6, 2);
    let x = Rng::new(9).vec(seq * batch * 16, -1.0, 1.0);
    let want = stack.forward(&x, seq, batch, None).unwrap();
    let dev = &gpu.device;
    let input = wgpu::util::DeviceExt::create_buffer_init(
        dev,
        &wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&x),
            usage: wgpu::BufferUsages::COPY_SRC,
        },
    );
    let bytes = (x.len() * 4) as u64;
    let usage = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ;
    let output =
        dev.create_buffer(&wgpu::BufferDescriptor { label: None, size: bytes, usage, mapped_at_creation: false });
    let mut enc = dev.create_command_encoder(&Default::default());
    stack.gpu().unwrap().record_forward(&mut enc, &input, None, &output, seq, batch).unwrap();
    // a host forward of the same shape in between must not disturb the recorded one
    stack.forward(&vec![9.0; x.len()], seq, batch, None).unwrap();
    gpu.queue.submit([enc.finish()]);
    output.slice(..).map_async(wgpu::MapMode::Read, |_| {});
    dev.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&output.get_mapped_range(..).unwrap());
    assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
    // wrong usage or size is an error, not a wgpu validation panic
    let mut enc = dev.create_command_encoder(&Default::default());
    let e = stack.gpu().unwrap().record_forward(&mut enc, &output, None, &input, seq, batch).unwrap_err();
    assert!(e.to_string().contains("usage"), "{e}");
}

#[test]
fn the_engine_runs_the_same_stack_on_the_cpu_backend_and_the_reference() {
    let (w, cfg) = small_cfg();
    let x = Rng::new(4).vec(3 * 2 * 16, -1.0, 1.0);
    let want = cpu::forward(&w, &cfg, &x, 3, 2, None);
    let engine = Engine::new_blocking(EngineOptions::on(Device::Reference)).unwrap();
    assert!(engine.gpu().is_none() && engine.choice().contains("reference"), "{}", engine.choice());
    assert_eq!(engine.load_stack(w.clone(), cfg).unwrap().forward(&x, 3, 2, None).unwrap(), want);
    let engine = Engine::new_blocking(EngineOptions::on(Device::Cpu)).unwrap();
    assert!(engine.gpu().is_none() && engine.choice().starts_with("CPU backend"), "{}", engine.choice());
    let y = engine.load_stack(w, cfg).unwrap().forward(&x, 3, 2, None).unwrap();
    assert_close("cpu backend", &y, &want, Tol { atol: 1e-5, rtol: 0.0 });
}

#[test]
fn bad_input_gets_the_same_errors_on_every_backend() {
    // the checks live in front of every path: wrong length, wrong mask, zero sizes
    let (w, cfg) = small_cfg();
    let mut stacks = Vec::new();
    for backend in [Device::Cpu, Device::Reference] {
        let engine = Engine::new_blocking(EngineOptions::on(backend)).unwrap();
        stacks.push(engine.load_stack(w.clone(), cfg).unwrap());
    }
    if let Some(gpu) = shared_gpu() {
        stacks.push(Stack::Gpu(GpuStack::new(gpu.clone(), &w, cfg).unwrap()));
    }
    let messages: Vec<Vec<String>> = stacks
        .iter()
        .map(|stack| {
            [
                stack.forward(&[0.0; 5], 3, 2, None).unwrap_err(),
                stack.forward(&[0.0; 96], 3, 2, Some(&[0; 5])).unwrap_err(),
                stack.forward(&[], 0, 2, None).unwrap_err(),
            ]
            .iter()
            .map(|e| e.to_string())
            .collect()
        })
        .collect();
    assert!(messages[0][0].contains("96"), "the length error names the expected size: {}", messages[0][0]);
    for (stack, m) in stacks.iter().zip(&messages) {
        assert_eq!(m, &messages[0], "{} reports bad input differently", stack.describe());
    }
}

/// Sums in another order on another number of threads.
const THREADS_TOL: Tol = Tol { atol: 2e-5, rtol: 1e-4 };

/// An engine's thread option: its own pool with that many threads, named in its report,
/// the same results as rayon's global pool; zero threads is refused with a message.
#[test]
fn an_engine_with_its_own_threads_says_so_and_computes_the_same() {
    let cfg = BlockConfig { batch_first: true, ..BlockConfig::new(32, 4, 48) };
    let weights = StackWeights::random(43, 2, 32, 48);
    let x = Rng::new(44).vec(2 * 9 * 32, -1.0, 1.0);
    let run = |options: EngineOptions| {
        let engine = Engine::new_blocking(options).unwrap();
        let stack = engine.load_stack(weights.clone(), cfg).unwrap();
        (engine.describe(), stack.describe(), stack.forward_packed(&x, &[9, 9]).unwrap())
    };
    let (engine, stack, one) = run(EngineOptions::on(Device::Cpu).with_threads(1));
    assert!(engine.contains("1 thread)") && stack.contains("1 thread)"), "{engine} / {stack}");
    let (engine, _, three) = run(EngineOptions::on(Device::Cpu).with_threads(3));
    assert!(engine.contains("3 threads)"), "{engine}");
    let (_, _, global) = run(EngineOptions::on(Device::Cpu));
    assert_close("1 thread against the global pool", &one, &global, THREADS_TOL);
    assert_close("3 threads against the global pool", &three, &global, THREADS_TOL);
    let Err(err) = Engine::new_blocking(EngineOptions::on(Device::Cpu).with_threads(0)) else {
        panic!("0 threads must be refused")
    };
    assert!(err.to_string().contains("at least 1 thread"), "{err}");
}
