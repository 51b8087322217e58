//! The device layer: adapter choice, the device and queue with the adapter's
//! own limits and optional features, pipelines built once per device, and
//! submit/sync helpers that turn driver complaints into [`Error`]s.
//!
//! Adapter choice ([`AdapterChoice`]): the best adapter (a hardware GPU when there is one,
//! else a software adapter such as lavapipe when [`GpuOptions::allow_software`] says so,
//! else [`Error::NoAdapter`]), the N-th of the candidates (`gpu:N`: a Ray worker that owns
//! GPU 1 of 4 identical cards says `gpu:1`), or the first whose name contains a string.
//! A GL adapter on a software rasteriser is never chosen for compute (minutes of warm-up,
//! then slower than lavapipe).
//!
//! Nothing here reads the environment unless asked: [`GpuOptions::from_env`] reads
//! `WGPU_BACKEND` (which backends to search) and `WGPU_ADAPTER_NAME` (an adapter by a
//! case-insensitive part of its name), and refuses values it does not know.
//!
//! [`timing`] times recorded passes on the device (timestamp queries, else the wall clock).

pub mod timing;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use web_time::Instant;

use crate::error::{Error, Result};
use crate::shaders::Shader;

/// Which adapter [`Gpu::new_async`] opens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AdapterChoice {
    /// The best one: hardware before software, Vulkan / Metal / DX12 before GL.
    #[default]
    Best,
    /// The N-th candidate in the order [`list_adapters`] numbers them: the hardware adapters
    /// of the best backend that has any (GL only when no other backend has one), or, with
    /// none, the software adapters. `gpu:1` on a machine of four identical cards is the second.
    Index(usize),
    /// The first adapter whose name contains this (case-insensitive).
    Name(String),
}

/// What the engine knows about one adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name as the driver reports it.
    pub name: String,
    /// The wgpu backend.
    pub backend: wgpu::Backend,
    /// Discrete, integrated, virtual, CPU (software) or other.
    pub device_type: wgpu::DeviceType,
    /// Driver name.
    pub driver: String,
    /// Driver version details.
    pub driver_info: String,
    /// Subgroup (wave, warp) width range the adapter reports.
    pub subgroup_sizes: (u32, u32),
}

impl AdapterSummary {
    fn of(info: &wgpu::AdapterInfo) -> Self {
        AdapterSummary {
            name: info.name.clone(),
            backend: info.backend,
            device_type: info.device_type,
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
        }
    }

    /// True for software rasterisers such as lavapipe/llvmpipe.
    pub fn is_software(&self) -> bool {
        self.device_type == wgpu::DeviceType::Cpu
    }

    /// One line for reports: `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`.
    pub fn label(&self) -> String {
        format!("{} ({:?}, {:?})", self.name, self.backend, self.device_type)
    }
}

/// How [`Gpu::with_options`] finds and opens its device.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Which adapter.
    pub adapter: AdapterChoice,
    /// The backends searched (all by default; `WGPU_BACKEND` through [`GpuOptions::from_env`]).
    pub backends: wgpu::Backends,
    /// Edits the adapter's limits before the device is requested. Lower
    /// limits are how tests exercise the "too large for this device" paths cheaply.
    pub adjust_limits: Option<fn(&mut wgpu::Limits)>,
    /// Whether a software adapter (lavapipe, SwiftShader, WARP) may be chosen when no
    /// hardware GPU exists. `true` by default: asking for a `Gpu` is asking for one;
    /// [`crate::Engine`]'s automatic choice sets it only when software was asked for.
    pub allow_software: bool,
    /// Whether to ask for wgpu's experimental cooperative matrices where the adapter has them
    /// (`false`: the feature stays out of the device; the kernel policy's `coop: Off`).
    pub cooperative_matrix: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            adapter: AdapterChoice::Best,
            backends: wgpu::Backends::all(),
            adjust_limits: None,
            allow_software: true,
            cooperative_matrix: true,
        }
    }
}

/// `WGPU_BACKEND`'s names and the backends they mean.
const BACKEND_NAMES: [(&str, wgpu::Backends); 4] = [
    ("vulkan", wgpu::Backends::VULKAN),
    ("metal", wgpu::Backends::METAL),
    ("dx12", wgpu::Backends::DX12),
    ("gl", wgpu::Backends::GL),
];

/// Parses a comma-separated list of backend names (`vulkan`, `metal`, `dx12`, `gl`).
pub fn parse_backends(list: &str) -> Option<wgpu::Backends> {
    let mut b = wgpu::Backends::empty();
    for name in list.split(',').map(|n| n.trim().to_lowercase()) {
        b |= BACKEND_NAMES.iter().find(|(n, _)| *n == name)?.1;
    }
    Some(b)
}

impl GpuOptions {
    /// The defaults, with `WGPU_BACKEND` (a comma-separated list of `vulkan`, `metal`, `dx12`,
    /// `gl`) and `WGPU_ADAPTER_NAME` (part of an adapter's name) applied. An unknown backend
    /// name is an error naming the variable and the accepted values.
    pub fn from_env() -> Result<GpuOptions> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut o = GpuOptions::default();
        if let Some(v) = var("WGPU_BACKEND") {
            o.backends = parse_backends(&v).ok_or_else(|| Error::BadSetting {
                name: "WGPU_BACKEND",
                value: v.clone(),
                expected: "a comma-separated list of vulkan, metal, dx12, gl".into(),
            })?;
        }
        if let Some(v) = var("WGPU_ADAPTER_NAME") {
            o.adapter = AdapterChoice::Name(v);
        }
        Ok(o)
    }
}

/// Rank for adapter choice: hardware first, software after, then by backend.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    };
    (ty, backend)
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    // wgpu's own debugging variables still apply; the backends are ours to choose
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// What [`list_adapters`] found.
#[derive(Debug)]
pub struct AdapterList {
    /// Every adapter of the searched backends, in the instance's order.
    pub adapters: Vec<AdapterSummary>,
    /// Positions in `adapters` of the candidates `gpu:N` numbers (N is the position here).
    pub numbered: Vec<usize>,
    /// The adapter `options` choose, or why none.
    pub chosen: Result<usize>,
}

/// Every adapter of `options.backends`, the candidates `gpu:N` numbers, and the one
/// [`Gpu::with_options`] would open.
pub fn list_adapters(options: &GpuOptions) -> AdapterList {
    let adapters = pollster::block_on(instance(options.backends).enumerate_adapters(options.backends));
    let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
    let chosen = choose(&infos, options);
    AdapterList { adapters: infos.iter().map(AdapterSummary::of).collect(), numbered: numbered(&infos), chosen }
}

/// A GL adapter on a software rasteriser: never used for compute.
fn is_software_gl(info: &wgpu::AdapterInfo) -> bool {
    info.backend == wgpu::Backend::Gl && info.device_type == wgpu::DeviceType::Cpu
}

/// The candidates `gpu:N` numbers, in the instance's order: the hardware adapters of the best
/// backend that has any (Vulkan, Metal, DX12 before GL), else the software ones (never GL).
fn numbered(infos: &[wgpu::AdapterInfo]) -> Vec<usize> {
    let hardware: Vec<usize> = (0..infos.len()).filter(|&i| infos[i].device_type != wgpu::DeviceType::Cpu).collect();
    let pool =
        if hardware.is_empty() { (0..infos.len()).filter(|&i| !is_software_gl(&infos[i])).collect() } else { hardware };
    let Some(best) = pool.iter().map(|&i| rank(&infos[i]).1).min() else { return Vec::new() };
    let mut backends = pool.iter().filter(|&&i| rank(&infos[i]).1 == best).map(|&i| infos[i].backend);
    let backend = backends.next();
    pool.into_iter().filter(|&i| Some(infos[i].backend) == backend).collect()
}

/// Picks the adapter `options` ask for among `infos`; software adapters only when
/// `options.allow_software` (or asked for by index or name).
fn choose(infos: &[wgpu::AdapterInfo], options: &GpuOptions) -> Result<usize> {
    let list = |idx: &mut dyn Iterator<Item = usize>| {
        idx.map(|i| format!("{} ({:?}, {:?})", infos[i].name, infos[i].backend, infos[i].device_type))
            .collect::<Vec<String>>()
    };
    let searched = if options.backends == wgpu::Backends::all() {
        "any backend".to_string()
    } else {
        let names: Vec<&str> =
            BACKEND_NAMES.iter().filter(|(_, b)| options.backends.contains(*b)).map(|(n, _)| *n).collect();
        format!("backend(s) {}", names.join(", "))
    };
    match &options.adapter {
        AdapterChoice::Index(n) => {
            let numbered = numbered(infos);
            numbered.get(*n).copied().ok_or_else(|| Error::AdapterNotFound {
                wanted: format!("gpu:{n} (adapters are numbered from 0)"),
                available: list(&mut numbered.iter().copied())
                    .into_iter()
                    .enumerate()
                    .map(|(n, a): (usize, String)| format!("gpu:{n} {a}"))
                    .collect(),
            })
        }
        AdapterChoice::Name(w) => (0..infos.len())
            .filter(|&i| infos[i].name.to_lowercase().contains(&w.to_lowercase()) && !is_software_gl(&infos[i]))
            .min_by_key(|&i| (rank(&infos[i]), i))
            .ok_or_else(|| Error::AdapterNotFound {
                wanted: format!("adapter name {w:?}"),
                available: list(&mut (0..infos.len())),
            }),
        AdapterChoice::Best => (0..infos.len())
            .filter(|&i| !is_software_gl(&infos[i]))
            .filter(|&i| options.allow_software || infos[i].device_type != wgpu::DeviceType::Cpu)
            .min_by_key(|&i| (rank(&infos[i]), i))
            .ok_or_else(|| Error::NoAdapter {
                detail: match options.allow_software {
                    true => format!("no usable adapter on {searched}"),
                    false => format!("no hardware GPU on {searched}"),
                },
            }),
    }
}

/// Where resformer keeps what it learns about a device between processes (the tuner's
/// choices, pipeline caches): `$RESFORMER_CACHE_DIR`, else `$XDG_CACHE_HOME/resformer`,
/// else `~/.cache/resformer`; `None` without any of them.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("RESFORMER_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("resformer")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("resformer")))
}

/// A temporary file name beside `path`, unique to this write (process and a counter), for
/// writing a cache and renaming it into place: two writers never share one.
pub(crate) fn unique_temp(path: &std::path::Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// What pipeline compilation cost this device so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct PipelineStats {
    /// Pipelines compiled.
    pub compiled: usize,
    /// Time spent compiling them, ms.
    pub ms: f64,
    /// The driver's pipeline cache: `None` when the adapter has none; else whether it was
    /// seeded from a file written by an earlier process.
    pub cache_from_disk: Option<bool>,
}

/// wgpu's pipeline cache and the file it is kept in.
struct DiskPipelineCache {
    cache: wgpu::PipelineCache,
    path: PathBuf,
    from_disk: bool,
}

/// One compiled kernel: the pipeline and the layout of its bind group 0.
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// A device, its queue, and the kernels built on it.
///
/// `Gpu` is `Send + Sync`; pipelines are compiled on first use and then
/// shared for the life of the device.
pub struct Gpu {
    /// The wgpu device (shared with apps that embed the engine).
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    adapter: AdapterSummary,
    limits: wgpu::Limits,
    features: wgpu::Features,
    /// Compiled kernels by (stem, build key).
    kernels: Mutex<HashMap<(&'static str, String), Arc<Kernel>>>,
    /// First error the device reported outside an error scope.
    uncaptured: Arc<Mutex<Option<String>>>,
    /// A small storage buffer bound where an optional input is absent.
    pub(crate) dummy: wgpu::Buffer,
    /// Bytes of device memory held by tensors and plan buffers now.
    allocated: Arc<AtomicU64>,
    pipeline_cache: Option<DiskPipelineCache>,
    stats: Mutex<PipelineStats>,
    /// Values the layers above compute once per device (see [`Gpu::memo`]).
    memos: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// The cooperative-matrix shapes and types the adapter supports (empty without the feature).
    coop: Vec<wgpu::CooperativeMatrixProperties>,
    /// Whether cooperative matrices were asked for ([`GpuOptions::cooperative_matrix`]).
    coop_requested: bool,
}

/// Optional features resformer uses when the adapter has them. Cooperative matrices are
/// experimental in wgpu 30: requested with `ExperimentalFeatures::enabled()`, and a kernel using
/// them must pass a self-test on the device before it may run (`kernels::matmul`).
const WANTED_FEATURES: wgpu::Features = wgpu::Features::SUBGROUP
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::PIPELINE_CACHE)
    .union(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);

impl Gpu {
    /// Chooses an adapter (see the module docs) and opens a device with the
    /// adapter's own limits.
    pub fn new() -> Result<Gpu> {
        Self::with_options(GpuOptions::default())
    }

    /// Like [`Gpu::new`], with options.
    pub fn with_options(options: GpuOptions) -> Result<Gpu> {
        pollster::block_on(Self::new_async(options))
    }

    /// The async form of [`Gpu::with_options`].
    pub async fn new_async(options: GpuOptions) -> Result<Gpu> {
        let instance = instance(options.backends);
        let adapters = instance.enumerate_adapters(options.backends).await;
        let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
        let index = choose(&infos, &options)?;
        let adapter = &adapters[index];
        let summary = AdapterSummary::of(&infos[index]);
        let mut features = adapter.features() & WANTED_FEATURES;
        if !options.cooperative_matrix {
            // not even asked for: the experimental feature stays out of the device
            features.remove(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        }
        let mut limits = adapter.limits();
        if let Some(adjust) = options.adjust_limits {
            adjust(&mut limits);
        }
        let request = |features: wgpu::Features| {
            let experimental = match features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
                // SAFETY: the only experimental feature requested is cooperative matrices, used
                // only by shapes the adapter lists and only after a self-test on this device
                true => unsafe { wgpu::ExperimentalFeatures::enabled() },
                false => wgpu::ExperimentalFeatures::disabled(),
            };
            adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("resformer"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: experimental,
                ..Default::default()
            })
        };
        // an experimental feature must never cost the device: without it, once more
        let coop = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        let (device, queue, features) = match request(features).await {
            Ok((d, q)) => (d, q, features),
            Err(_) if features.contains(coop) => {
                let (d, q) = request(features.difference(coop))
                    .await
                    .map_err(|e| Error::RequestDevice { adapter: summary.name.clone(), reason: e.to_string() })?;
                (d, q, features.difference(coop))
            }
            Err(e) => return Err(Error::RequestDevice { adapter: summary.name.clone(), reason: e.to_string() }),
        };
        let cache = match features.contains(wgpu::Features::PIPELINE_CACHE) {
            true => Self::open_pipeline_cache(&device, &infos[index]),
            false => None,
        };
        let mut gpu = Self::from_parts(device, queue, summary, features);
        gpu.coop_requested = options.cooperative_matrix;
        gpu.coop = match features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            true => adapter.cooperative_matrix_properties(),
            false => Vec::new(),
        };
        gpu.stats.get_mut().unwrap_or_else(|p| p.into_inner()).cache_from_disk = cache.as_ref().map(|c| c.from_disk);
        gpu.pipeline_cache = cache;
        Ok(gpu)
    }

    /// The driver's pipeline cache, seeded from the file an earlier process left for this
    /// adapter and driver (wgpu's `pipeline_cache_key`), so a second process starts warm.
    fn open_pipeline_cache(device: &wgpu::Device, info: &wgpu::AdapterInfo) -> Option<DiskPipelineCache> {
        let path = cache_dir()?.join(wgpu::util::pipeline_cache_key(info)?);
        let data = std::fs::read(&path).ok();
        // SAFETY: the data, if any, is what `PipelineCache::get_data` returned for an adapter
        // with this same cache key (the file name); wgpu checks its header and, with
        // `fallback`, starts empty when the driver rejects it.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("resformer"),
                data: data.as_deref(),
                fallback: true,
            })
        };
        Some(DiskPipelineCache { cache, path, from_disk: data.is_some() })
    }

    /// Writes the pipeline cache to its file (a no-op without one). Done when the `Gpu` drops.
    pub fn save_pipeline_cache(&self) -> Result<()> {
        let Some(c) = &self.pipeline_cache else { return Ok(()) };
        let Some(data) = c.cache.get_data() else { return Ok(()) };
        let io = |source| Error::Io { path: c.path.display().to_string(), source };
        if let Some(dir) = c.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = unique_temp(&c.path);
        std::fs::write(&tmp, data).map_err(io)?;
        std::fs::rename(&tmp, &c.path).map_err(io)
    }

    /// A value of type `T` computed once per device: `init` runs on the first call, every later
    /// call returns the same value. How the kernels keep their variant choice (environment
    /// overrides read once, not at every dispatch) without this layer knowing their types.
    /// `init` runs outside the lock (it may use other memos); if two threads race, the first
    /// value stored wins and both get it.
    pub(crate) fn memo<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        let key = TypeId::of::<T>();
        let lock = || self.memos.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = lock().get(&key) {
            return v.clone().downcast::<T>().expect("memos are keyed by their type");
        }
        let fresh: Arc<dyn Any + Send + Sync> = Arc::new(init());
        let stored = lock().entry(key).or_insert(fresh).clone();
        stored.downcast::<T>().expect("memos are keyed by their type")
    }

    /// Pipelines compiled so far, their cost, and the pipeline cache's state.
    pub fn pipeline_stats(&self) -> PipelineStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wraps a device and queue that the caller already has (an app sharing its
    /// device with the engine). The device's own features and limits apply.
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Gpu {
        let features = device.features();
        let adapter = AdapterSummary::of(&device.adapter_info());
        Self::from_parts(device, queue, adapter, features)
    }

    fn from_parts(device: wgpu::Device, queue: wgpu::Queue, adapter: AdapterSummary, features: wgpu::Features) -> Gpu {
        let uncaptured = Arc::new(Mutex::new(None::<String>));
        let sink = uncaptured.clone();
        // The default handler panics; keep the first error and report it at the next sync.
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        let lost = uncaptured.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if reason != wgpu::DeviceLostReason::Destroyed {
                let mut slot = lost.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| format!("device lost ({reason:?}): {msg}"));
            }
        });
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("resformer.dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let limits = device.limits();
        Gpu {
            device,
            queue,
            adapter,
            limits,
            features,
            kernels: Mutex::new(HashMap::new()),
            uncaptured,
            dummy,
            allocated: Arc::new(AtomicU64::new(0)),
            pipeline_cache: None,
            stats: Mutex::new(PipelineStats::default()),
            memos: Mutex::new(HashMap::new()),
            coop: Vec::new(),
            coop_requested: true,
        }
    }

    /// The adapter this device runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// The limits the device was created with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The cooperative-matrix configurations the adapter lists (using another is undefined
    /// behaviour); empty when the device has no cooperative matrices.
    pub fn cooperative_matrices(&self) -> &[wgpu::CooperativeMatrixProperties] {
        &self.coop
    }

    /// Whether the device was opened asking for cooperative matrices (`false` when the kernel
    /// policy turned them off: the experimental feature was kept out of the device).
    pub fn cooperative_matrix_requested(&self) -> bool {
        self.coop_requested
    }

    /// The optional features enabled on the device.
    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// Bytes of device memory the engine holds now (tensors, plan buffers).
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Creates a buffer whose bytes count in [`Gpu::allocated_bytes`] while it lives.
    /// An out-of-memory from the driver comes back as [`Error::Gpu`].
    pub(crate) fn buffer(&self, desc: &wgpu::BufferDescriptor<'_>) -> Result<TrackedBuffer> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.device.create_buffer(desc);
        if let Some(e) = scope_error(scope, &self.uncaptured) {
            return Err(Error::Gpu(format!("allocating {} bytes: {e}", desc.size)));
        }
        self.allocated.fetch_add(desc.size, Ordering::Relaxed);
        Ok(TrackedBuffer { buffer, bytes: desc.size, counter: self.allocated.clone() })
    }

    /// The compiled kernel for `shader`, built on first use.
    pub(crate) fn kernel(&self, shader: &Shader) -> Result<Arc<Kernel>> {
        let key = (shader.name, shader.key.clone());
        if let Some(k) = self.kernels.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(k.clone());
        }
        // Built outside the lock: two threads may race to build one kernel; one wins.
        let kernel = Arc::new(self.build_kernel(shader)?);
        let mut map = self.kernels.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.entry(key).or_insert(kernel).clone())
    }

    fn build_kernel(&self, shader: &Shader) -> Result<Kernel> {
        let started = Instant::now();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(shader.name),
            source: wgpu::ShaderSource::Wgsl(shader.wgsl().into()),
        };
        // SAFETY: by default only loop bounding is off. Every loop in shaders/ and in the
        // generated kernels runs to a bound fixed before it starts (a constant, a params field
        // or a tile count), as each kernel's header says; bounds checks, integer-division
        // guards and the rest stay on. Loop bounding's counter keeps NVIDIA's register tiles
        // in local memory: ~37x on matmul 4096^3 on an H200 (PERFORMANCE.md). A shader marked
        // `unchecked` (the generated matmul family's second build, a tuner candidate) also
        // drops bounds checks and workgroup zero-init: its every index is guarded by the
        // shapes it is given and its staging writes every slot it later reads, which the
        // ragged parity tests over poisoned outputs check for each configuration.
        let checks = if shader.unchecked { wgpu::ShaderRuntimeChecks::unchecked() } else { shader_runtime_checks() };
        let module = unsafe { self.device.create_shader_module_trusted(desc, checks) };
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(shader.name),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: self.pipeline_cache.as_ref().map(|c| &c.cache),
        });
        if let Some(e) = scope_error(scope, &self.uncaptured) {
            return Err(Error::Shader { kernel: shader.name, reason: e.to_string() });
        }
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.compiled += 1;
        stats.ms += started.elapsed().as_secs_f64() * 1e3;
        let layout = pipeline.get_bind_group_layout(0);
        Ok(Kernel { pipeline, layout })
    }

    /// Submits `encoder` and waits until the device has finished it.
    pub fn submit_and_wait(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        let index = self.queue.submit([encoder.finish()]);
        self.device
            .poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None })
            .map_err(|e| Error::Gpu(e.to_string()))?;
        self.check()
    }

    /// Returns the first error the device reported since the last check.
    pub fn check(&self) -> Result<()> {
        match self.uncaptured.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(Error::Gpu(e)),
            None => Ok(()),
        }
    }

    /// A new command encoder.
    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }
}

/// The error an error scope caught. Natively the scope is waited for. In the browser its answer
/// arrives on the event loop, which cannot run while this waits, so it is not waited for there:
/// such an error is kept when it arrives, as the uncaptured ones are, for [`Gpu::check`].
fn scope_error(scope: wgpu::ErrorScopeGuard, uncaptured: &Arc<Mutex<Option<String>>>) -> Option<wgpu::Error> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = uncaptured;
        pollster::block_on(scope.pop())
    }
    #[cfg(target_arch = "wasm32")]
    {
        let (popped, slot) = (scope.pop(), uncaptured.clone());
        wasm_bindgen_futures::spawn_local(async move {
            if let Some(e) = popped.await {
                slot.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| e.to_string());
            }
        });
        None
    }
}

/// Maps a MAP_READ buffer, copies its bytes out and unmaps it: [`read_mapped_bytes_async`],
/// waited for. Not in the browser, where a map resolves only on the event loop: the async
/// forms of the forwards are the web's.
pub(crate) fn read_mapped_bytes(gpu: &Gpu, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
    blocking(read_mapped_bytes_async(gpu, staging))
}

/// Waits for `f` natively: how each blocking GPU call wraps its async form. In the browser
/// nothing may block the event loop, so there it refuses, naming the async forms.
pub(crate) fn blocking<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    #[cfg(not(target_arch = "wasm32"))]
    return pollster::block_on(f);
    #[cfg(target_arch = "wasm32")]
    {
        drop(f);
        Err(Error::Gpu(
            "a blocking GPU call cannot finish in the browser: use the async forms (forward_async, encode_async, logits_async)"
                .into(),
        ))
    }
}

/// Maps a MAP_READ buffer, copies its bytes out and unmaps it. Natively the device is polled
/// until the map is done; in the browser the map resolves on the event loop, and this waits
/// for it without blocking.
pub(crate) async fn read_mapped_bytes_async(gpu: &Gpu, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
    let slot = Arc::new(Mutex::new(MapSlot::default()));
    let filled = slot.clone();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let mut s = filled.lock().unwrap_or_else(|p| p.into_inner());
        s.result = Some(r.map_err(|e| e.to_string()));
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    });
    #[cfg(not(target_arch = "wasm32"))]
    gpu.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()))?;
    MapDone(slot).await.map_err(|e| Error::Gpu(format!("buffer mapping failed: {e}")))?;
    let out = {
        let view = staging.get_mapped_range(..).map_err(|e| Error::Gpu(format!("mapped range: {e}")))?;
        view.to_vec()
    };
    staging.unmap();
    gpu.check()?;
    Ok(out)
}

/// Where a `map_async` callback leaves its result for [`MapDone`].
#[derive(Default)]
struct MapSlot {
    result: Option<std::result::Result<(), String>>,
    waker: Option<std::task::Waker>,
}

/// A future that resolves when the map callback has filled its slot.
struct MapDone(Arc<Mutex<MapSlot>>);

impl std::future::Future for MapDone {
    type Output = std::result::Result<(), String>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match s.result.take() {
            Some(r) => std::task::Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}

/// The runtime checks every resformer module is built with: wgpu's defaults less
/// `force_loop_bounding` (see [`Gpu`]'s kernel builder for why that is sound here).
pub fn shader_runtime_checks() -> wgpu::ShaderRuntimeChecks {
    wgpu::ShaderRuntimeChecks { force_loop_bounding: false, ..wgpu::ShaderRuntimeChecks::checked() }
}

/// A device buffer counted in [`Gpu::allocated_bytes`] until it is dropped.
#[derive(Debug)]
pub struct TrackedBuffer {
    buffer: wgpu::Buffer,
    bytes: u64,
    counter: Arc<AtomicU64>,
}

impl std::ops::Deref for TrackedBuffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for TrackedBuffer {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        // only a cache that learnt something is worth the write; a failed write costs a warm start
        if self.pipeline_stats().compiled > 0 {
            let _ = self.save_pipeline_cache();
        }
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("adapter", &self.adapter.label()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{choose, AdapterChoice, GpuOptions};
    use wgpu::{AdapterInfo, Backend, DeviceType};

    fn info(name: &str, ty: DeviceType, backend: Backend) -> AdapterInfo {
        AdapterInfo { name: name.into(), ..AdapterInfo::new(ty, backend) }
    }

    fn opts(allow_software: bool, adapter: AdapterChoice) -> GpuOptions {
        GpuOptions { allow_software, adapter, ..Default::default() }
    }

    #[test]
    fn adapter_choice_prefers_hardware_and_never_takes_software_gl() {
        let best = |soft| opts(soft, AdapterChoice::Best);
        let gl = info("llvmpipe", DeviceType::Cpu, Backend::Gl);
        let lavapipe = info("llvmpipe", DeviceType::Cpu, Backend::Vulkan);
        let gpu = info("NVIDIA H100", DeviceType::DiscreteGpu, Backend::Vulkan);
        let gpu_gl = info("NVIDIA H100", DeviceType::DiscreteGpu, Backend::Gl);
        assert_eq!(choose(&[gl.clone(), lavapipe.clone(), gpu.clone()], &best(true)).unwrap(), 2);
        assert_eq!(choose(&[gpu_gl.clone(), gpu.clone()], &best(false)).unwrap(), 1, "Vulkan before GL on one GPU");
        assert_eq!(
            choose(&[gl.clone(), lavapipe.clone()], &best(true)).unwrap(),
            1,
            "lavapipe when software is allowed"
        );
        assert!(choose(&[gl.clone(), lavapipe], &best(false)).is_err(), "no software adapter unless allowed");
        assert!(choose(std::slice::from_ref(&gl), &best(true)).is_err(), "a GL rasteriser is never used for compute");
        assert_eq!(choose(&[gl, gpu_gl], &best(false)).unwrap(), 1, "a hardware GL adapter is fine");
    }

    #[test]
    fn gpu_n_counts_the_hardware_adapters_of_the_best_backend() {
        let cards: Vec<AdapterInfo> = [
            info("llvmpipe", DeviceType::Cpu, Backend::Vulkan),
            info("NVIDIA H100", DeviceType::DiscreteGpu, Backend::Gl),
            info("NVIDIA H100", DeviceType::DiscreteGpu, Backend::Vulkan),
            info("NVIDIA H100", DeviceType::DiscreteGpu, Backend::Gl),
            info("NVIDIA H100", DeviceType::DiscreteGpu, Backend::Vulkan),
        ]
        .into();
        let at = |n| choose(&cards, &opts(false, AdapterChoice::Index(n)));
        assert_eq!((at(0).unwrap(), at(1).unwrap()), (2, 4), "the two Vulkan cards, in order");
        let e = at(2).unwrap_err().to_string();
        assert!(e.contains("gpu:2") && e.matches("Vulkan").count() == 2, "{e}");
        // only software adapters: they are numbered instead (never the GL rasteriser)
        let soft = [info("llvmpipe", DeviceType::Cpu, Backend::Gl), info("llvmpipe", DeviceType::Cpu, Backend::Vulkan)];
        assert_eq!(choose(&soft, &opts(false, AdapterChoice::Index(0))).unwrap(), 1);
    }

    #[test]
    fn an_adapter_by_name_is_found_or_the_error_lists_them() {
        let a = [
            info("AMD Radeon", DeviceType::DiscreteGpu, Backend::Vulkan),
            info("Intel Arc", DeviceType::DiscreteGpu, Backend::Vulkan),
        ];
        assert_eq!(choose(&a, &opts(false, AdapterChoice::Name("arc".into()))).unwrap(), 1);
        let e = choose(&a, &opts(false, AdapterChoice::Name("a100".into()))).unwrap_err().to_string();
        assert!(e.contains("\"a100\"") && e.contains("AMD Radeon") && e.contains("Intel Arc"), "{e}");
    }

    #[test]
    fn backend_names_parse_and_unknown_ones_are_refused() {
        assert_eq!(super::parse_backends("vulkan"), Some(wgpu::Backends::VULKAN));
        assert_eq!(super::parse_backends("Vulkan, gl"), Some(wgpu::Backends::VULKAN | wgpu::Backends::GL));
        assert_eq!(super::parse_backends("bogus"), None);
        assert_eq!(super::parse_backends("vulkan,bogus"), None);
    }
}

#[cfg(test)]
mod memo_tests {
    #[test]
    fn a_memo_is_computed_once_per_device_and_type() {
        // a device of its own: the test helpers sit above this layer
        let gpu = match super::GpuOptions::from_env().and_then(super::Gpu::with_options) {
            Ok(g) => g,
            Err(e) if std::env::var("RESFORMER_REQUIRE_GPU").is_ok_and(|v| v == "1") => panic!("no adapter: {e}"),
            Err(e) => return eprintln!("skipping GPU test: {e}"),
        };
        struct A(u32);
        struct B(u32);
        let first = gpu.memo(|| A(1));
        let again = gpu.memo(|| A(2));
        assert!(std::sync::Arc::ptr_eq(&first, &again) && again.0 == 1, "init runs once");
        assert_eq!(gpu.memo(|| B(3)).0, 3, "another type has its own slot");
    }
}

#[cfg(test)]
mod temp_tests {
    #[test]
    fn temporary_names_never_repeat_and_stay_beside_the_file() {
        let p = std::path::Path::new("/x/cache/tune.json");
        let (a, b) = (super::unique_temp(p), super::unique_temp(p));
        assert_ne!(a, b);
        assert_eq!(a.parent(), p.parent());
    }
}
