//! The device layer: adapter choice, the device and queue with the adapter's
//! own limits and optional features, pipelines built once per device, and
//! submit/sync helpers that turn driver complaints into [`Error`]s.
//!
//! Adapter choice: a hardware GPU when there is one, else a software adapter
//! (lavapipe/llvmpipe) when [`GpuOptions::allow_software`] says so, else
//! [`Error::NoAdapter`]. A GL adapter on a software rasteriser is never chosen
//! for compute (minutes of warm-up, then slower than lavapipe). `WGPU_BACKEND`
//! (e.g. `vulkan`) limits the backends searched and `WGPU_ADAPTER_NAME` picks
//! an adapter by a case-insensitive substring of its name.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::shaders::Shader;

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

/// Optional knobs for [`Gpu::with_options`].
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Edits the adapter's limits before the device is requested. Lower
    /// limits are how tests exercise the "too large for this device" paths cheaply.
    pub adjust_limits: Option<fn(&mut wgpu::Limits)>,
    /// Whether a software adapter (lavapipe, SwiftShader, WARP) may be chosen when no
    /// hardware GPU exists. `true` by default: asking for a `Gpu` is asking for one;
    /// [`crate::Engine`]'s automatic choice sets it only when software was asked for.
    pub allow_software: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions { adjust_limits: None, allow_software: true }
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

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter the instance sees (respecting `WGPU_BACKEND`), and the index
/// of the one [`Gpu::new`] would choose (respecting `WGPU_ADAPTER_NAME`).
pub fn list_adapters() -> (Vec<AdapterSummary>, Result<usize>) {
    let adapters = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
    let chosen = choose(&infos, true);
    (infos.iter().map(AdapterSummary::of).collect(), chosen)
}

/// A GL adapter on a software rasteriser: never used for compute.
fn is_software_gl(info: &wgpu::AdapterInfo) -> bool {
    info.backend == wgpu::Backend::Gl && info.device_type == wgpu::DeviceType::Cpu
}

/// Picks the best adapter among `infos`, honouring `WGPU_ADAPTER_NAME`; software adapters
/// only when `allow_software`.
fn choose(infos: &[wgpu::AdapterInfo], allow_software: bool) -> Result<usize> {
    let wanted = std::env::var("WGPU_ADAPTER_NAME").ok().filter(|s| !s.is_empty());
    let candidates: Vec<usize> = (0..infos.len())
        .filter(|&i| match &wanted {
            Some(w) => infos[i].name.to_lowercase().contains(&w.to_lowercase()),
            None => true,
        })
        .filter(|&i| !is_software_gl(&infos[i]))
        .filter(|&i| allow_software || infos[i].device_type != wgpu::DeviceType::Cpu)
        .collect();
    if let Some(w) = wanted {
        if candidates.is_empty() {
            return Err(Error::AdapterNotFound {
                wanted: w,
                available: infos.iter().map(|i| format!("{} ({:?})", i.name, i.backend)).collect(),
            });
        }
    }
    candidates.into_iter().min_by_key(|&i| (rank(&infos[i]), i)).ok_or_else(|| Error::NoAdapter {
        detail: match (std::env::var("WGPU_BACKEND"), allow_software) {
            (Ok(b), true) => format!("no usable adapter on backend(s) WGPU_BACKEND={b}"),
            (Err(_), true) => "no usable adapter on any backend".into(),
            (_, false) => "no hardware GPU".into(),
        },
    })
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
    kernels: Mutex<HashMap<Shader, Arc<Kernel>>>,
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
        let instance = instance();
        let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
        let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
        let index = choose(&infos, options.allow_software)?;
        let adapter = &adapters[index];
        let summary = AdapterSummary::of(&infos[index]);
        let mut features = adapter.features() & WANTED_FEATURES;
        if std::env::var("RESFORMER_COOP").is_ok_and(|v| v == "off") {
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
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("allocating {} bytes: {e}", desc.size)));
        }
        self.allocated.fetch_add(desc.size, Ordering::Relaxed);
        Ok(TrackedBuffer { buffer, bytes: desc.size, counter: self.allocated.clone() })
    }

    /// The compiled kernel for `shader`, built on first use.
    pub(crate) fn kernel(&self, shader: Shader) -> Result<Arc<Kernel>> {
        if let Some(k) = self.kernels.lock().unwrap_or_else(|p| p.into_inner()).get(&shader) {
            return Ok(k.clone());
        }
        // Built outside the lock: two threads may race to build one kernel; one wins.
        let kernel = Arc::new(self.build_kernel(shader)?);
        let mut map = self.kernels.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.entry(shader).or_insert(kernel).clone())
    }

    fn build_kernel(&self, shader: Shader) -> Result<Kernel> {
        let started = Instant::now();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(shader.name()),
            source: wgpu::ShaderSource::Wgsl(shader.source()),
        };
        // SAFETY: only loop bounding is off. Every loop in shaders/ and in the generated
        // kernels runs to a bound fixed before it starts (a constant, a params field or a
        // tile count), as each kernel's header says; bounds checks, integer-division guards
        // and the rest stay on. Loop bounding's counter keeps NVIDIA's register tiles in
        // local memory: ~37x on matmul 4096^3 on an H200 (PERFORMANCE.md).
        let module = unsafe { self.device.create_shader_module_trusted(desc, shader_runtime_checks()) };
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(shader.name()),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: self.pipeline_cache.as_ref().map(|c| &c.cache),
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader { kernel: shader.name(), reason: e.to_string() });
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
    use super::choose;
    use wgpu::{AdapterInfo, Backend, DeviceType};

    fn info(name: &str, ty: DeviceType, backend: Backend) -> AdapterInfo {
        AdapterInfo { name: name.into(), ..AdapterInfo::new(ty, backend) }
    }

    #[test]
    fn adapter_choice_prefers_hardware_and_never_takes_software_gl() {
        // WGPU_ADAPTER_NAME would change these answers; the tests never set it
        assert!(std::env::var("WGPU_ADAPTER_NAME").is_err());
        let gl = info("llvmpipe", DeviceType::Cpu, Backend::Gl);
        let lavapipe = info("llvmpipe", DeviceType::Cpu, Backend::Vulkan);
        let gpu = info("NVIDIA H100", DeviceType::DiscreteGpu, Backend::Vulkan);
        let gpu_gl = info("NVIDIA H100", DeviceType::DiscreteGpu, Backend::Gl);
        assert_eq!(choose(&[gl.clone(), lavapipe.clone(), gpu.clone()], true).unwrap(), 2);
        assert_eq!(choose(&[gpu_gl.clone(), gpu.clone()], false).unwrap(), 1, "Vulkan before GL on one GPU");
        assert_eq!(choose(&[gl.clone(), lavapipe.clone()], true).unwrap(), 1, "lavapipe when software is allowed");
        assert!(choose(&[gl.clone(), lavapipe], false).is_err(), "no software adapter unless allowed");
        assert!(choose(std::slice::from_ref(&gl), true).is_err(), "a GL rasteriser is never used for compute");
        assert_eq!(choose(&[gl, gpu_gl], false).unwrap(), 1, "a hardware GL adapter is fine");
    }
}

#[cfg(test)]
mod memo_tests {
    #[test]
    fn a_memo_is_computed_once_per_device_and_type() {
        let Some(gpu) = crate::testing::shared_gpu() else { return };
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
