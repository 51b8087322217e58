//! An app that brings its own wgpu device: it shares the device with
//! resformer, keeps its data on the GPU, and records the stack's forward into
//! its own command encoder next to its own work.
//!
//! `cargo run --release --example embed_in_app`

use resformer::model::{BlockConfig, StackWeights};
use resformer::Engine;
use wgpu::util::DeviceExt;

fn main() -> std::process::ExitCode {
    // an error is a message for the user, not a debug dump
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // 1. the app's own device (any adapter the app likes; here the first one wgpu offers)
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("my app"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;
    println!("app device: {}", adapter.get_info().name);

    // 2. resformer on the same device: a 2-block stack (random weights; StackWeights::load for real ones)
    let engine = Engine::from_wgpu(device.clone(), queue.clone());
    let (embed, seq, batch) = (64, 12, 2);
    let gpu_stack = engine.load_gpu_stack(StackWeights::random(7, 2, embed, 256), BlockConfig::new(embed, 4, 256))?;

    // 3. the app's buffers: an input it produced on the GPU, an output it keeps there
    let x: Vec<f32> = (0..seq * batch * embed).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
    let input = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("app input"),
        contents: bytemuck::cast_slice(&x),
        usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::STORAGE,
    });
    let bytes = (x.len() * 4) as u64;
    let output = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app output"),
        size: bytes,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });

    // 4. one encoder for the app's work and the forward; the result stays in `output`
    let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("frame") });
    gpu_stack.record_forward(&mut enc, &input, None, &output, seq, batch)?;
    // ... the app would bind `output` to its next pass here; this example reads it back
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    enc.copy_buffer_to_buffer(&output, 0, &readback, 0, bytes);
    queue.submit([enc.finish()]);
    readback.slice(..).map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let y: Vec<f32> = bytemuck::pod_collect_to_vec(&readback.get_mapped_range(..)?);

    // the same forward through the host API gives the same numbers
    let host = gpu_stack.forward(&x, seq, batch, None)?;
    let same = y.iter().zip(&host).all(|(a, b)| a.to_bits() == b.to_bits());
    println!(
        "forward of {seq} x {batch} tokens recorded into the app's encoder: {} values, first {:.4}",
        y.len(),
        y[0]
    );
    println!("equal to the host-API forward: {same}");
    if !same {
        return Err("the recorded forward differs from the host-API forward".into());
    }
    Ok(())
}
