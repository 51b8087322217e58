//! Autotuning: which matmul runs a given shape on this adapter: a [`MatmulTile`] of the
//! register-tiled family, or the split-f16 cooperative-matrix kernel where it passed its
//! self-test ([`crate::kernels::matmul::coop_status`]).
//!
//! No single tile wins every size (on an H200, 128x64x16/8x4 led at 1024³ and
//! 128x128x8/8x8 at 4096³), and a GPU nobody here has measured must still end
//! up on its best configuration. So, on a hardware adapter, the first matmul of
//! each *shape class* (M, N, K each rounded up to a power of two) times every
//! candidate on that very shape with timestamp queries, keeps the fastest, and
//! writes the choice to a cache file keyed by adapter, driver and resformer
//! version; later processes read it and time nothing.
//!
//! The kernel policy's `tune` ([`KernelPolicy::tune`]): `Off` uses [`MatmulTile::DEFAULT`]
//! everywhere, `On` tunes even on software adapters, `Auto` tunes on hardware adapters only.
//! The cache is `$RESFORMER_CACHE_DIR/tune.json`, else
//! `$XDG_CACHE_HOME/resformer/tune.json`, else `~/.cache/resformer/tune.json`.
//!
//! This layer sits above the kernels (as burn's autotuner sits above its launchers): the
//! model's plans ask [`matmul_variant`] which variant runs, then bind it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::kernels::matmul::{prepare_matmul_variant, problem_shape, Activation, MatmulVariant};
use crate::kernels::{time_dispatches, Dispatch, KernelPolicy};
use crate::ops::{median, Switch};
use crate::rng::Rng;
use crate::shaders::MatmulTile;
use crate::tensor::{DType, Tensor};

/// Whether `tune` measures candidates on `gpu`.
pub fn tunes(tune: Switch, gpu: &Gpu) -> bool {
    match tune {
        Switch::Off => false,
        Switch::On => true,
        Switch::Auto => !gpu.adapter().is_software(),
    }
}

/// The shape class of an (M, N, K) product: each dimension rounded up to a power of two.
pub fn matmul_class(m: usize, n: usize, k: usize) -> String {
    format!("matmul m{}n{}k{}", m.next_power_of_two(), n.next_power_of_two(), k.next_power_of_two())
}

/// What identifies an adapter's choices: name, driver, driver version, resformer version.
pub fn device_key(gpu: &Gpu) -> String {
    let a = gpu.adapter();
    format!("{} | {:?} | {} | {} | resformer {}", a.name, a.backend, a.driver, a.driver_info, env!("CARGO_PKG_VERSION"))
}

/// Where the choices are kept between processes: `tune.json` in [`crate::device::cache_dir`].
pub fn cache_path() -> Option<PathBuf> {
    Some(crate::device::cache_dir()?.join("tune.json"))
}

/// The cache file: device key -> shape class -> tile name.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TuneCache {
    /// Choices per device key.
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
}

impl TuneCache {
    /// Reads `path`; a missing or unreadable file is an empty cache (it is only a cache).
    pub fn load(path: &std::path::Path) -> TuneCache {
        std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Writes `path` (through a temporary file, so a reader never sees half of it).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let io = |e: std::io::Error| Error::Io { path: path.display().to_string(), source: e };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = crate::device::unique_temp(path);
        let text = serde_json::to_string_pretty(self).expect("maps of strings serialise");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// An (M, N, K) matmul shape.
pub type Shape = (usize, usize, usize);

/// One candidate's measurement.
#[derive(Clone, Debug)]
pub struct TuneRow {
    /// The candidate.
    pub variant: MatmulVariant,
    /// Median GPU time of one matmul, ms.
    pub ms: f64,
    /// 2·M·N·K / time.
    pub gflops: f64,
}

/// What the tuner may choose on `gpu`: every family tile it can run, and the cooperative
/// kernel where it passed its self-test.
pub fn candidates(gpu: &Gpu) -> Vec<MatmulVariant> {
    MatmulVariant::available(gpu).into_iter().filter(|v| !matches!(v, MatmulVariant::Subgroup8)).collect()
}

/// Times every one of `variants` that `gpu` can run on one seeded (M, N, K) product with
/// bias; fastest first. `runs` timed repetitions each, after a warm-up.
pub fn measure_matmul(
    gpu: &Gpu,
    (m, n, k): (usize, usize, usize),
    variants: &[MatmulVariant],
    runs: usize,
) -> Result<Vec<TuneRow>> {
    let mut rng = Rng::new(0x7e57);
    let x = Tensor::from_f32(gpu, &[m, k], &rng.vec(m * k, -1.0, 1.0))?;
    let w = Tensor::from_f32(gpu, &[n, k], &rng.vec(n * k, -1.0, 1.0))?;
    let b = Tensor::from_f32(gpu, &[n], &rng.vec(n, -1.0, 1.0))?;
    let out = Tensor::empty(gpu, &[m, n], DType::F32)?;
    let available = MatmulVariant::available(gpu);
    let mut rows = Vec::new();
    for &variant in variants {
        if !available.contains(&variant) {
            continue;
        }
        let d = prepare_matmul_variant(gpu, variant, &x, &w, Some(&b), Activation::None, &out)?;
        let (times, _) = time_dispatches(gpu, std::slice::from_ref(&d), runs.max(1))?;
        let ms = median(&times);
        rows.push(TuneRow { variant, ms, gflops: 2.0 * (m * n * k) as f64 / (ms.max(1e-9) * 1e6) });
    }
    rows.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    Ok(rows)
}

/// Choices made or read in this process, per device key and class.
static CHOICES: Mutex<Option<HashMap<String, HashMap<String, MatmulVariant>>>> = Mutex::new(None);

/// The variant that runs an (M, N, K) product with weights of `w_dtype` on `gpu` under
/// `policy`: the policy's matmul when it names one; else the cooperative kernel for every shape
/// under `coop: On` where it passed its self-test; else the device's fixed choice (the
/// subgroup-8 kernel on lavapipe); else the cached choice of its class; else, when this
/// adapter tunes ([`tunes`]), the fastest candidate measured now (and cached); else
/// [`MatmulTile::DEFAULT`]. A failed measurement falls back to the default. Only the tiled
/// family reads f16 weights: another choice becomes the default tile there.
pub fn matmul_variant(gpu: &Gpu, policy: &KernelPolicy, (m, n, k): Shape, w_dtype: DType) -> MatmulVariant {
    let chosen = if let Some(v) = policy.matmul {
        v
    } else if policy.coop == Switch::On && MatmulVariant::available(gpu).contains(&MatmulVariant::Coop) {
        MatmulVariant::Coop
    } else if let Some(v) = MatmulVariant::fixed_for_device(gpu) {
        v
    } else {
        tuned(gpu, policy, m, n, k)
    };
    chosen.for_weights(w_dtype)
}

/// Binds out = act(x · wᵀ + bias) on the variant [`matmul_variant`] picks under `policy`.
pub fn prepare_matmul(
    gpu: &Gpu,
    policy: &KernelPolicy,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    out: &Tensor,
) -> Result<Dispatch> {
    // operands of a wrong rank are refused by the op; nothing is tuned for them
    let variant = match problem_shape(x, w) {
        Some(shape) => matmul_variant(gpu, policy, shape, w.dtype()),
        None => MatmulVariant::untuned(gpu),
    };
    prepare_matmul_variant(gpu, variant, x, w, bias, act, out)
}

/// The tuner's choice for the class of (M, N, K): cached, measured now, or the default tile.
fn tuned(gpu: &Gpu, policy: &KernelPolicy, m: usize, n: usize, k: usize) -> MatmulVariant {
    let default = MatmulVariant::Tiled(MatmulTile::DEFAULT);
    if policy.tune == Switch::Off {
        return default;
    }
    let (key, class) = (device_key(gpu), matmul_class(m, n, k));
    let mut guard = CHOICES.lock().unwrap_or_else(|p| p.into_inner());
    let choices = guard.get_or_insert_with(|| load_choices(cache_path()));
    if let Some(t) = choices.get(&key).and_then(|c| c.get(&class)) {
        return *t;
    }
    if !tunes(policy.tune, gpu) {
        return default;
    }
    let started = web_time::Instant::now();
    let tile = match measure_matmul(gpu, (m, n, k), &candidates(gpu), 5) {
        Ok(rows) if !rows.is_empty() => rows[0].variant,
        _ => default,
    };
    eprintln!(
        "resformer: tuned {class} on {}: {} ({:.0} ms; cached; the kernel policy's tune=off, RESFORMER_TUNE=off, skips)",
        gpu.adapter().name,
        tile.name(),
        started.elapsed().as_secs_f64() * 1e3
    );
    choices.entry(key.clone()).or_default().insert(class.clone(), tile);
    if let Some(path) = cache_path() {
        let mut file = TuneCache::load(&path);
        file.devices.entry(key).or_default().insert(class, tile.name());
        if let Err(e) = file.save(&path) {
            eprintln!("resformer: could not write the tuning cache: {e}");
        }
    }
    tile
}

/// Reads every valid choice of the cache file at `path`.
fn load_choices(path: Option<PathBuf>) -> HashMap<String, HashMap<String, MatmulVariant>> {
    let Some(path) = path else { return HashMap::new() };
    TuneCache::load(&path)
        .devices
        .into_iter()
        .map(|(dev, classes)| {
            let tiles = classes
                .into_iter()
                .filter_map(|(c, t)| {
                    MatmulVariant::parse(&t).filter(|v| *v != MatmulVariant::Subgroup8).map(|v| (c, v))
                })
                .collect();
            (dev, tiles)
        })
        .collect()
}

/// The shapes `resformer tune` measures: the stack's own matmuls at the large bench size
/// (L12 e768 f3072, 4096 tokens) and the square cubes of the kernel bench.
pub const TUNE_SHAPES: [(usize, usize, usize); 6] =
    [(4096, 2304, 768), (4096, 768, 768), (4096, 3072, 768), (4096, 768, 3072), (1024, 1024, 1024), (4096, 4096, 4096)];

/// Measures every candidate on each of `shapes`, stores each class's winner in the cache
/// file and in this process, and returns the tables (`resformer tune`).
pub fn tune(gpu: &Gpu, shapes: &[(usize, usize, usize)], runs: usize) -> Result<Vec<(Shape, Vec<TuneRow>)>> {
    let key = device_key(gpu);
    let path = cache_path();
    let mut file = path.as_deref().map(TuneCache::load).unwrap_or_default();
    let mut out = Vec::new();
    for &shape in shapes {
        let rows = measure_matmul(gpu, shape, &candidates(gpu), runs)?;
        if let Some(best) = rows.first() {
            let class = matmul_class(shape.0, shape.1, shape.2);
            file.devices.entry(key.clone()).or_default().insert(class.clone(), best.variant.name());
            let mut guard = CHOICES.lock().unwrap_or_else(|p| p.into_inner());
            let choices = guard.get_or_insert_with(|| load_choices(path.clone()));
            choices.entry(key.clone()).or_default().insert(class, best.variant);
        }
        out.push((shape, rows));
    }
    if let Some(p) = &path {
        file.save(p)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shared_gpu;

    #[test]
    fn classes_round_each_dimension_up_to_a_power_of_two() {
        assert_eq!(matmul_class(4096, 2304, 768), "matmul m4096n4096k1024");
        assert_eq!(matmul_class(1, 7, 64), "matmul m1n8k64");
        assert_ne!(matmul_class(512, 512, 512), matmul_class(513, 512, 512));
    }

    #[test]
    fn cache_round_trips_and_a_broken_file_is_empty() {
        let dir = std::env::temp_dir().join(format!("resformer-tune-test-{}", std::process::id()));
        let path = dir.join("tune.json");
        let mut c = TuneCache::default();
        c.devices.entry("dev".into()).or_default().insert("matmul m8n8k8".into(), "64x64x16/4x4".into());
        c.save(&path).unwrap();
        assert_eq!(TuneCache::load(&path), c);
        let read = load_choices(Some(path.clone()));
        assert_eq!(read["dev"]["matmul m8n8k8"], MatmulVariant::Tiled(MatmulTile::FAMILY[0]));
        std::fs::write(&path, "{ not json").unwrap();
        assert_eq!(TuneCache::load(&path), TuneCache::default());
        // an unknown tile name in the file is ignored, never run
        std::fs::write(&path, r#"{"devices":{"dev":{"matmul m8n8k8":"9x9x9/3x3"}}}"#).unwrap();
        assert!(load_choices(Some(path)).get("dev").is_none_or(|c| c.is_empty()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_policy_decides_before_the_tuner_and_coop_is_a_candidate_only_where_it_passed() {
        let Some(gpu) = shared_gpu() else { return };
        let coop_passed = MatmulVariant::available(gpu).contains(&MatmulVariant::Coop);
        assert_eq!(candidates(gpu).contains(&MatmulVariant::Coop), coop_passed);
        let shape = (65, 70, 33);
        // a named variant wins, for f32 weights; f16 weights get the tiled family
        let tile = MatmulVariant::Tiled(MatmulTile::FAMILY[1]);
        let named = KernelPolicy { matmul: Some(tile), ..Default::default() };
        assert_eq!(matmul_variant(gpu, &named, shape, DType::F32), tile);
        let sg8 = KernelPolicy { matmul: Some(MatmulVariant::Subgroup8), ..Default::default() };
        assert_eq!(matmul_variant(gpu, &sg8, shape, DType::F16), MatmulVariant::Tiled(MatmulTile::DEFAULT));
        // tune off, nothing named: the device's fixed choice, else the default tile
        let off = KernelPolicy { tune: Switch::Off, ..Default::default() };
        let want = MatmulVariant::fixed_for_device(gpu).unwrap_or(MatmulVariant::Tiled(MatmulTile::DEFAULT));
        assert_eq!(matmul_variant(gpu, &off, shape, DType::F32), want);
        // coop on where it did not pass: not used
        if !coop_passed {
            let on = KernelPolicy { coop: Switch::On, tune: Switch::Off, ..Default::default() };
            assert_ne!(matmul_variant(gpu, &on, shape, DType::F32), MatmulVariant::Coop);
        }
    }

    #[test]
    fn measuring_ranks_every_available_candidate_fastest_first() {
        // the tuner's timing path, on whatever adapter the tests have (lavapipe in CI)
        let Some(gpu) = shared_gpu() else { return };
        let rows = measure_matmul(gpu, (33, 40, 20), &candidates(gpu), 1).unwrap();
        let expected = candidates(gpu).len();
        assert_eq!(rows.len(), expected);
        assert!(rows.windows(2).all(|w| w[0].ms <= w[1].ms));
        assert!(rows.iter().all(|r| r.ms > 0.0 && r.gflops.is_finite()));
    }
}
