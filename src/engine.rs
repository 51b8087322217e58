//! [`Engine`]: the entry point for apps that embed resformer. It owns (or
//! shares) one device and a kernel policy, or runs on the host, and loads stacks
//! and models onto it.
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
//! Every choice that differs per engine lives in [`EngineOptions`]: the [`Device`] (`auto`,
//! `cpu`, `reference`, `gpu`, `gpu:N`), the adapter search ([`GpuOptions`]) and the
//! [`KernelPolicy`]. Nothing here reads the environment unless asked:
//! [`EngineOptions::from_env`] does, once, for front ends that honour `WGPU_*` and
//! `RESFORMER_*`.
//!
//! An app that already has a wgpu device shares it with [`Engine::from_wgpu`]
//! and can keep results on the GPU with [`GpuStack::record_forward`]; see
//! `examples/embed_in_app.rs`.

use std::path::Path;
use std::sync::Arc;

use crate::device::{AdapterChoice, Gpu, GpuOptions};
use crate::error::{Error, Result};
use crate::kernels::KernelPolicy;
use crate::model::bert::SentenceEmbedder;
use crate::model::host::HostKernels;
use crate::model::vit::VitClassifier;
use crate::model::{cpu_label, BlockConfig, GpuStack, HostPool, ModelFiles, Placement, Stack, StackWeights};

/// Where an engine runs: one spelling for every front end (`--device`, Python's `device=`,
/// the server's `--device`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// `auto`: a hardware GPU when one exists, else the CPU backend. Software adapters
    /// (lavapipe) only when asked for ([`EngineOptions::software_auto`]).
    #[default]
    Auto,
    /// `gpu`: the best wgpu adapter, a software one when no hardware GPU exists, or an error.
    Gpu,
    /// `gpu:N`: the N-th adapter as [`crate::device::list_adapters`] numbers them (the
    /// hardware adapters of the best backend): GPU 1 of 4 identical cards is `gpu:1`.
    GpuAt(usize),
    /// `cpu`: the CPU backend, the fast host kernels of [`crate::cpu`].
    Cpu,
    /// `reference`: the plain-loop reference kernels; the oracle, slow.
    Reference,
}

impl Device {
    /// The accepted spellings, for errors and help.
    pub const SPELLINGS: &'static str = "auto, cpu, reference, gpu or gpu:N";
}

impl std::str::FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Device> {
        let bad = || Error::BadSetting { name: "device", value: s.to_string(), expected: Self::SPELLINGS.into() };
        Ok(match s.trim() {
            "auto" => Device::Auto,
            "gpu" => Device::Gpu,
            "cpu" => Device::Cpu,
            "reference" => Device::Reference,
            other => match other.strip_prefix("gpu:") {
                Some(n) => Device::GpuAt(n.parse().map_err(|_| bad())?),
                None => return Err(bad()),
            },
        })
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Auto => write!(f, "auto"),
            Device::Gpu => write!(f, "gpu"),
            Device::GpuAt(n) => write!(f, "gpu:{n}"),
            Device::Cpu => write!(f, "cpu"),
            Device::Reference => write!(f, "reference"),
        }
    }
}

/// How [`Engine::new`] finds its device and which kernels it runs.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Where: `Auto` (default) is a hardware GPU when one exists, else the CPU backend.
    pub device: Device,
    /// How the adapter is searched for (backends, a name, limits) when a GPU is used. Its
    /// `adapter` is overridden by `Device::GpuAt`.
    pub gpu: GpuOptions,
    /// Which kernel variants run on the device, and whether the cooperative matmul and the
    /// tuner do.
    pub policy: KernelPolicy,
    /// Whether `Device::Auto` may take a software adapter (lavapipe) when no hardware GPU
    /// exists: `false` by default (the CPU backend is faster there); the test suite sets it
    /// (`RESFORMER_REQUIRE_GPU=1`), and so does naming an adapter (`WGPU_ADAPTER_NAME`).
    pub software_auto: bool,
    /// The CPU backend's threads: `Some(n)` gives the engine a pool of its own with n threads
    /// (several engines or processes sharing a machine each take their share); `None`
    /// (default) runs on rayon's global pool: `RAYON_NUM_THREADS`, else every core.
    pub threads: Option<usize>,
}

impl EngineOptions {
    /// The options on `device`, everything else default.
    pub fn on(device: Device) -> EngineOptions {
        EngineOptions { device, ..Default::default() }
    }

    /// The defaults with the environment applied, read once: `WGPU_BACKEND` and
    /// `WGPU_ADAPTER_NAME` ([`GpuOptions::from_env`]), the kernel policy's `RESFORMER_MATMUL`,
    /// `RESFORMER_ATTENTION`, `RESFORMER_LAYERNORM`, `RESFORMER_COOP`, `RESFORMER_TUNE`
    /// ([`KernelPolicy::from_env`]), and `RESFORMER_REQUIRE_GPU=1` or an adapter name letting
    /// `auto` take a software adapter. A value it does not know is an error naming the
    /// variable and the accepted values.
    pub fn from_env() -> Result<EngineOptions> {
        let gpu = GpuOptions::from_env()?;
        let required = std::env::var("RESFORMER_REQUIRE_GPU").is_ok_and(|v| v == "1");
        let software_auto = required || matches!(gpu.adapter, AdapterChoice::Name(_));
        Ok(EngineOptions { device: Device::Auto, gpu, policy: KernelPolicy::from_env()?, software_auto, threads: None })
    }

    /// These options on `device`.
    pub fn with_device(self, device: Device) -> EngineOptions {
        EngineOptions { device, ..self }
    }

    /// These options with the CPU backend on a pool of `threads` threads of its own.
    pub fn with_threads(self, threads: usize) -> EngineOptions {
        EngineOptions { threads: Some(threads), ..self }
    }
}

/// One device (or the host) and what runs on it. Cheap to clone; `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Engine {
    place: Placement,
    /// What was chosen and why, one line.
    choice: String,
}

impl Engine {
    /// Chooses a device as `options` say; [`Engine::choice`] says what and why. A kernel
    /// policy that names a variant the device cannot run is refused here.
    pub async fn new(options: EngineOptions) -> Result<Engine> {
        let policy = options.policy.clone();
        let gpu_options = |allow_software: bool, adapter: Option<AdapterChoice>| GpuOptions {
            allow_software,
            cooperative_matrix: options.gpu.cooperative_matrix && policy.coop != crate::ops::Switch::Off,
            adapter: adapter.unwrap_or_else(|| options.gpu.adapter.clone()),
            ..options.gpu.clone()
        };
        let on_gpu = |gpu: Gpu, why: &str| -> Result<Engine> {
            policy.check(&gpu)?;
            let a = gpu.adapter();
            let kind = if a.is_software() { "software adapter, no GPU" } else { "GPU" };
            let fixed = match policy.describe().as_str() {
                "automatic" => String::new(),
                p => format!("; kernels: {p}"),
            };
            let choice = format!("{} [{kind}]{why}{fixed}", a.label());
            Ok(Engine {
                place: Placement {
                    gpu: Some(Arc::new(gpu)),
                    host: HostKernels::Fast,
                    policy: policy.clone(),
                    pool: Default::default(),
                },
                choice,
            })
        };
        let on_host = |host: HostKernels, why: String| -> Result<Engine> {
            let pool = match options.threads {
                Some(n) => HostPool::with_threads(n)?,
                None => HostPool::default(),
            };
            let choice = format!("{}: {why}", cpu_label(host, pool.threads()));
            Ok(Engine { place: Placement { gpu: None, host, policy: policy.clone(), pool }, choice })
        };
        match options.device {
            Device::Cpu => on_host(HostKernels::Fast, "asked for".into()),
            Device::Reference => on_host(HostKernels::Reference, "asked for".into()),
            Device::Gpu => on_gpu(Gpu::new_async(gpu_options(true, None)).await?, ""),
            Device::GpuAt(n) => on_gpu(Gpu::new_async(gpu_options(true, Some(AdapterChoice::Index(n)))).await?, ""),
            Device::Auto => {
                let allow_software = options.software_auto;
                match Gpu::new_async(gpu_options(allow_software, None)).await {
                    Ok(g) if g.adapter().is_software() => {
                        on_gpu(g, " (software allowed: RESFORMER_REQUIRE_GPU or an adapter name)")
                    }
                    Ok(g) => on_gpu(g, ""),
                    Err(Error::NoAdapter { .. }) => {
                        let list = crate::device::list_adapters(&options.gpu);
                        let soft = list.adapters.iter().find(|a| a.is_software() && a.backend != wgpu::Backend::Gl);
                        let why = match soft {
                            Some(a) => {
                                format!("no hardware GPU; {} ({:?}) available with device gpu", a.name, a.backend)
                            }
                            None => "no hardware GPU and no software Vulkan/Metal/DX12 adapter".into(),
                        };
                        on_host(HostKernels::Fast, why)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// What [`Engine::new`] chose and why, one line for reports: `NVIDIA H100 80GB HBM3 (Vulkan,
    /// DiscreteGpu) [GPU]`, or `CPU backend (AVX-512 kernels, 2 threads): no hardware GPU; llvmpipe
    /// (LLVM 15.0.6, 256 bits) (Vulkan) available with device gpu`.
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
        Engine { place: Placement::gpu(Arc::new(gpu)), choice }
    }

    /// An engine on a device the caller already opened (a test's shared device, say), with
    /// the device's automatic kernels.
    pub fn from_gpu(gpu: Arc<Gpu>) -> Engine {
        let choice = format!("{} (a device opened by the caller)", gpu.adapter().label());
        Engine { place: Placement::gpu(gpu), choice }
    }

    /// [`Engine::from_gpu`] with a kernel policy (checked against the device).
    pub fn from_gpu_with(gpu: Arc<Gpu>, policy: KernelPolicy) -> Result<Engine> {
        policy.check(&gpu)?;
        let choice =
            format!("{} (a device opened by the caller; kernels: {})", gpu.adapter().label(), policy.describe());
        Ok(Engine {
            place: Placement { gpu: Some(gpu), host: HostKernels::Fast, policy, pool: Default::default() },
            choice,
        })
    }

    /// The device, or `None` on the CPU path.
    pub fn gpu(&self) -> Option<&Arc<Gpu>> {
        self.place.gpu.as_ref()
    }

    /// The kernel policy.
    pub fn policy(&self) -> &KernelPolicy {
        &self.place.policy
    }

    /// Where models load: the device with its policy, or the host kernels.
    pub fn placement(&self) -> &Placement {
        &self.place
    }

    /// The adapter, or the host path, for reports.
    pub fn describe(&self) -> String {
        self.place.describe()
    }

    /// Uploads `weights` and returns the stack, ready to run.
    pub fn load_stack(&self, weights: StackWeights, cfg: BlockConfig) -> Result<Stack> {
        self.place.load_stack(weights, cfg)
    }

    /// Uploads `weights` as a [`GpuStack`] (an error on the host).
    pub fn load_gpu_stack(&self, weights: StackWeights, cfg: BlockConfig) -> Result<GpuStack> {
        match self.load_stack(weights, cfg)? {
            Stack::Gpu(s) => Ok(s),
            Stack::Cpu { .. } => {
                Err(Error::InvalidArgument { op: "engine", what: format!("{} has no device", self.describe()) })
            }
        }
    }

    /// Loads the BERT sentence-transformers model in `dir` (all-MiniLM-L6-v2 from
    /// scripts/fetch-minilm.sh, or another of its family: the directory's files configure it).
    pub fn load_bert(&self, dir: &Path) -> Result<SentenceEmbedder> {
        SentenceEmbedder::load(dir, &self.place)
    }

    /// [`Engine::load_bert`]: all-MiniLM-L6-v2 is one configuration of the BERT loader.
    pub fn load_minilm(&self, dir: &Path) -> Result<SentenceEmbedder> {
        self.load_bert(dir)
    }

    /// Loads the ViT classifier in `dir` (config.json, model.safetensors).
    pub fn load_vit(&self, dir: &Path) -> Result<VitClassifier> {
        VitClassifier::load(dir, &self.place)
    }

    /// [`Engine::load_bert`] of files on disk or in memory (a browser's fetches).
    pub fn load_bert_files(&self, files: &ModelFiles<'_>) -> Result<SentenceEmbedder> {
        SentenceEmbedder::load_files(files, &self.place)
    }

    /// [`Engine::load_vit`] of files on disk or in memory.
    pub fn load_vit_files(&self, files: &ModelFiles<'_>) -> Result<VitClassifier> {
        VitClassifier::load_files(files, &self.place)
    }
}
