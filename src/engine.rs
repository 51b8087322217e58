//! [`Engine`]: the entry point for apps that embed resformer. It owns (or
//! shares) one device, and loads stacks and models onto it.
//!
//! ```
//! use resformer::{Engine, EngineOptions};
//! use resformer::model::{BlockConfig, StackWeights};
//!
//! let engine = Engine::new_blocking(EngineOptions::default())?; // a hardware GPU, else the CPU backend
//! let weights = StackWeights::random(0, 2, 64, 256);             // or StackWeights::load(path, prefix)
//! let stack = engine.load_stack(weights, BlockConfig::new(64, 4, 256))?;
//! let (seq, batch) = (10, 2);
//! let y = stack.forward(&vec![0.5; seq * batch * 64], seq, batch, None)?;
//! assert_eq!(y.len(), seq * batch * 64);
//! println!("ran on {}", engine.describe());
//! # Ok::<(), resformer::Error>(())
//! ```
//!
//! An app that already has a wgpu device shares it with [`Engine::from_wgpu`]
//! and can keep results on the GPU with [`GpuStack::record_forward`]; see
//! `examples/embed_in_app.rs`.

use std::path::Path;
use std::sync::Arc;

use crate::device::{Gpu, GpuOptions};
use crate::error::{Error, Result};
use crate::model::cpu::HostKernels;
use crate::model::minilm::SentenceEmbedder;
use crate::model::{cpu_label, Backend, BlockConfig, GpuStack, Precision, Stack, StackWeights};

/// How [`Engine::new`] finds its device.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// `Auto` (default): a hardware GPU when one exists, else the CPU backend; see [`Backend`].
    pub backend: Backend,
    /// Device options (limits) when a GPU is used.
    pub gpu: GpuOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { backend: Backend::Auto, gpu: GpuOptions::default() }
    }
}

/// One device (or a host path) and what runs on it. Cheap to clone; `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Engine {
    gpu: Option<Arc<Gpu>>,
    /// The host kernels when there is no device.
    host: HostKernels,
    /// What was chosen and why, one line.
    choice: String,
}

/// Whether the automatic choice may take a software adapter: when one was named
/// (`WGPU_ADAPTER_NAME`) or the GPU is required (`RESFORMER_REQUIRE_GPU=1`, the tests).
fn software_asked_for() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0");
    set("WGPU_ADAPTER_NAME") || set("RESFORMER_REQUIRE_GPU")
}

impl Engine {
    /// Chooses a device as `options` say; [`Engine::choice`] says what and why.
    pub async fn new(options: EngineOptions) -> Result<Engine> {
        let on_gpu = |gpu: Gpu, why: &str| {
            let a = gpu.adapter();
            let kind = if a.is_software() { "software adapter, no GPU" } else { "GPU" };
            let choice = format!("{} [{kind}]{why}", a.label());
            Engine { gpu: Some(Arc::new(gpu)), host: HostKernels::Fast, choice }
        };
        let on_host =
            |host: HostKernels, why: String| Engine { gpu: None, host, choice: format!("{}: {why}", cpu_label(host)) };
        Ok(match options.backend {
            Backend::Cpu => on_host(HostKernels::Fast, "asked for".into()),
            Backend::Reference => on_host(HostKernels::Reference, "asked for".into()),
            Backend::Gpu => on_gpu(Gpu::new_async(GpuOptions { allow_software: true, ..options.gpu }).await?, ""),
            Backend::Auto => {
                let allow_software = software_asked_for();
                match Gpu::new_async(GpuOptions { allow_software, ..options.gpu }).await {
                    Ok(g) if g.adapter().is_software() => {
                        on_gpu(g, " (asked for by WGPU_ADAPTER_NAME or RESFORMER_REQUIRE_GPU)")
                    }
                    Ok(g) => on_gpu(g, ""),
                    Err(Error::NoAdapter { .. }) => {
                        let (adapters, _) = crate::device::list_adapters();
                        let soft = adapters.iter().find(|a| a.is_software() && a.backend != wgpu::Backend::Gl);
                        let why = match soft {
                            Some(a) => {
                                format!("no hardware GPU; {} ({:?}) available with backend gpu", a.name, a.backend)
                            }
                            None => "no hardware GPU and no software Vulkan/Metal/DX12 adapter".into(),
                        };
                        on_host(HostKernels::Fast, why)
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }

    /// What [`Engine::new`] chose and why, one line for reports: `NVIDIA H100 80GB HBM3 (Vulkan,
    /// DiscreteGpu) [GPU]`, or `CPU backend (threaded sgemm, 2 threads): no hardware GPU; llvmpipe
    /// (LLVM 15.0.6, 256 bits) (Vulkan) available with backend gpu`.
    pub fn choice(&self) -> &str {
        &self.choice
    }

    /// [`Engine::new`], blocking the calling thread.
    pub fn new_blocking(options: EngineOptions) -> Result<Engine> {
        pollster::block_on(Self::new(options))
    }

    /// Shares a device and queue the app already has.
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Engine {
        let gpu = Gpu::from_wgpu(device, queue);
        let choice = format!("{} (the app's device)", gpu.adapter().label());
        Engine { gpu: Some(Arc::new(gpu)), host: HostKernels::Fast, choice }
    }

    /// An engine on a device the caller already opened (a test's shared device, say).
    pub fn from_gpu(gpu: Arc<Gpu>) -> Engine {
        let choice = format!("{} (a device opened by the caller)", gpu.adapter().label());
        Engine { gpu: Some(gpu), host: HostKernels::Fast, choice }
    }

    /// The device, or `None` on the CPU path.
    pub fn gpu(&self) -> Option<&Arc<Gpu>> {
        self.gpu.as_ref()
    }

    /// The adapter, or the host path, for reports.
    pub fn describe(&self) -> String {
        match &self.gpu {
            Some(g) => g.adapter().label(),
            None => cpu_label(self.host),
        }
    }

    /// Uploads `weights` and returns the stack, ready to run.
    pub fn load_stack(&self, weights: StackWeights, cfg: BlockConfig) -> Result<Stack> {
        cfg.validate()?;
        crate::model::check_weights(&weights, &cfg)?;
        match &self.gpu {
            Some(g) => Ok(Stack::Gpu(GpuStack::new(g.clone(), &weights, cfg)?)),
            // the f16 mode computes with f16-rounded matmul weights on every backend
            None if cfg.precision == Precision::F16 => {
                Ok(Stack::Cpu { weights: weights.rounded_to_f16(), cfg, kernels: self.host })
            }
            None => Ok(Stack::Cpu { weights, cfg, kernels: self.host }),
        }
    }

    /// Loads all-MiniLM-L6-v2 from `dir` (see scripts/fetch-minilm.sh).
    pub fn load_minilm(&self, dir: &Path) -> Result<SentenceEmbedder> {
        SentenceEmbedder::on_engine(dir, self)
    }
}
