//! [`Engine`]: the entry point for apps that embed resformer. It owns (or
//! shares) one device, and loads stacks and models onto it.
//!
//! ```
//! use resformer::{Engine, EngineOptions};
//! use resformer::model::{BlockConfig, StackWeights};
//!
//! let engine = Engine::new_blocking(EngineOptions::default())?; // a GPU, lavapipe, or the CPU path
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
use crate::model::minilm::SentenceEmbedder;
use crate::model::{Backend, BlockConfig, GpuStack, Stack, StackWeights};

/// How [`Engine::new`] finds its device.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// `Auto` (default): a wgpu adapter when one exists, else the CPU path.
    pub backend: Backend,
    /// Device options (limits) when a GPU is used.
    pub gpu: GpuOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { backend: Backend::Auto, gpu: GpuOptions::default() }
    }
}

/// One device (or the CPU path) and what runs on it. Cheap to clone; `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Engine {
    gpu: Option<Arc<Gpu>>,
}

impl Engine {
    /// Chooses a device as `options` say.
    pub async fn new(options: EngineOptions) -> Result<Engine> {
        let gpu = match options.backend {
            Backend::Cpu => None,
            Backend::Gpu => Some(Gpu::new_async(options.gpu).await?),
            Backend::Auto => match Gpu::new_async(options.gpu).await {
                Ok(g) => Some(g),
                Err(Error::NoAdapter { .. }) => None,
                Err(e) => return Err(e),
            },
        };
        Ok(Engine { gpu: gpu.map(Arc::new) })
    }

    /// [`Engine::new`], blocking the calling thread.
    pub fn new_blocking(options: EngineOptions) -> Result<Engine> {
        pollster::block_on(Self::new(options))
    }

    /// Shares a device and queue the app already has.
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Engine {
        Engine { gpu: Some(Arc::new(Gpu::from_wgpu(device, queue))) }
    }

    /// The device, or `None` on the CPU path.
    pub fn gpu(&self) -> Option<&Arc<Gpu>> {
        self.gpu.as_ref()
    }

    /// The adapter, or "CPU reference path", for reports.
    pub fn describe(&self) -> String {
        match &self.gpu {
            Some(g) => g.adapter().label(),
            None => "CPU reference path (no wgpu adapter used)".into(),
        }
    }

    /// Uploads `weights` and returns the stack, ready to run.
    pub fn load_stack(&self, weights: StackWeights, cfg: BlockConfig) -> Result<Stack> {
        cfg.validate()?;
        crate::model::check_weights(&weights, &cfg)?;
        match &self.gpu {
            Some(g) => Ok(Stack::Gpu(GpuStack::new(g.clone(), &weights, cfg)?)),
            None => Ok(Stack::Cpu { weights, cfg }),
        }
    }

    /// Loads all-MiniLM-L6-v2 from `dir` (see scripts/fetch-minilm.sh).
    pub fn load_minilm(&self, dir: &Path) -> Result<SentenceEmbedder> {
        match &self.gpu {
            Some(g) => SentenceEmbedder::from_dir_on(dir, g.clone()),
            None => SentenceEmbedder::from_dir(dir, Backend::Cpu),
        }
    }
}
