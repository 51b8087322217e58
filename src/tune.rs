//! Autotuning: which matmul runs a given shape on this adapter: a [`MatmulTile`] of the
//! register-tiled family, or the split-f16 cooperative-matrix kernel where it passed its
//! self-test ([`crate::kernels::matmul::coop_status`]).
//!
//! No single tile wins every size (on an H200, 128x64x16/8x4 led at 1024³ and
//! 128x128x8/8x8 at 4096³), and a GPU nobody here has measured must still end
//! up on its best configuration. So, on a hardware adapter, the first matmul of
//! each *shape class* (M rounded up to a power of two, since it moves with the batch; N and
//! K exact, as a model's weights fix them; K's vec4 alignment and f16 weights) times every
//! candidate on that very shape with timestamp queries, keeps the fastest whose output
//! matches a host check, and writes the choice to a cache file keyed by adapter, driver,
//! resformer version and a hash of every candidate's kernel source; later processes read it
//! and time nothing. A cached choice the device no longer offers (the cooperative kernel
//! with `RESFORMER_COOP=off` or after a failed self-test, a tile dropped from the family)
//! is never run: that class falls back to being tuned or to the default tile.
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

/// The shape class of an (M, N, K) product with weights of `w_dtype`: M rounded up to a power
/// of two, N and K exact, and whether K takes vec4 loads and the weights are f16.
pub fn matmul_class(m: usize, n: usize, k: usize, w_dtype: DType) -> String {
    let vec4 = if k.is_multiple_of(4) { "" } else { " scalar-k" };
    let f16 = if w_dtype == DType::F16 { " w16" } else { "" };
    format!("matmul m{} n{n} k{k}{vec4}{f16}", m.next_power_of_two())
}

/// What identifies an adapter's choices: name, driver, driver version, resformer version and
/// the hash of the candidates' kernel sources ([`kernels_hash`]), so a changed kernel is
/// measured again instead of inheriting a stale choice.
pub fn device_key(gpu: &Gpu) -> String {
    let a = gpu.adapter();
    format!(
        "{} | {:?} | {} | {} | resformer {} | kernels {:016x}",
        a.name,
        a.backend,
        a.driver,
        a.driver_info,
        env!("CARGO_PKG_VERSION"),
        kernels_hash()
    )
}

/// FNV-1a over the WGSL of every candidate the tuner may choose: each family tile in both
/// load forms and weight types, the cooperative kernel and their shared I/O.
pub fn kernels_hash() -> u64 {
    static HASH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HASH.get_or_init(|| {
        let mut text = String::new();
        for t in MatmulTile::FAMILY {
            for (vec4, f16) in [(true, false), (false, false), (true, true), (false, true)] {
                text.push_str(&t.wgsl(vec4, f16));
            }
        }
        text.push_str(include_str!("../shaders/matmul_coop.wgsl"));
        text.push_str(include_str!("../shaders/matmul_io.wgsl"));
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
    })
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

/// [`candidates`] under `policy`: without the cooperative kernel when its `coop` is off.
pub fn candidates_for(gpu: &Gpu, policy: &KernelPolicy) -> Vec<MatmulVariant> {
    candidates(gpu).into_iter().filter(|v| !(*v == MatmulVariant::Coop && policy.coop == Switch::Off)).collect()
}

/// Times every one of `variants` that `gpu` can run on one seeded (M, N, K) product with
/// bias; fastest first. `runs` timed repetitions each, after a warm-up. A candidate counts
/// only when its output (written over a NaN-poisoned buffer) matches f64 sums on the host at
/// sampled rows and columns, the last row and column among them, and its median time is a
/// positive number; one that fails is left out and reported on stderr, never chosen.
pub fn measure_matmul(
    gpu: &Gpu,
    (m, n, k): (usize, usize, usize),
    variants: &[MatmulVariant],
    runs: usize,
) -> Result<Vec<TuneRow>> {
    let mut rng = Rng::new(0x7e57);
    let (xh, wh, bh) = (rng.vec(m * k, -1.0, 1.0), rng.vec(n * k, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
    let x = Tensor::from_f32(gpu, &[m, k], &xh)?;
    let w = Tensor::from_f32(gpu, &[n, k], &wh)?;
    let b = Tensor::from_f32(gpu, &[n], &bh)?;
    let available = MatmulVariant::available(gpu);
    let mut rows = Vec::new();
    for &variant in variants {
        if !available.contains(&variant) {
            continue;
        }
        let measured = (|| -> Result<f64> {
            let out = Tensor::from_f32(gpu, &[m, n], &vec![f32::NAN; m * n])?;
            let d = prepare_matmul_variant(gpu, variant, &x, &w, Some(&b), Activation::None, &out)?;
            let (times, _) = time_dispatches(gpu, std::slice::from_ref(&d), runs.max(1))?;
            check_sampled(&out.read(gpu)?, (&xh, &wh, &bh), (m, n, k)).map_err(Error::Gpu)?;
            let ms = median(&times);
            if !(ms > 0.0 && ms.is_finite()) {
                return Err(Error::Gpu(format!("its median time read {ms} ms: not a time")));
            }
            Ok(ms)
        })();
        match measured {
            Ok(ms) => rows.push(TuneRow { variant, ms, gflops: 2.0 * (m * n * k) as f64 / (ms * 1e6) }),
            Err(e) => eprintln!("resformer: the tuner left out {} on {m}x{n}x{k}: {e}", variant.name()),
        }
    }
    rows.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    Ok(rows)
}

/// Output rows and columns a tuning candidate is checked at: the first, the last and evenly
/// spaced ones between.
const CHECKED: usize = 12;

/// Whether `out` (m, n) = x · wᵀ + b at [`CHECKED`]² sampled places, within the split-f16 and
/// f32 kernels' error: 1e-3 of Σ|x·w| plus 1e-4.
fn check_sampled(
    out: &[f32],
    (x, w, b): (&[f32], &[f32], &[f32]),
    (m, n, k): Shape,
) -> std::result::Result<(), String> {
    let pick = |len: usize| -> Vec<usize> {
        let mut v: Vec<usize> = (0..CHECKED).map(|i| i * len.saturating_sub(1) / (CHECKED - 1)).collect();
        v.dedup();
        v
    };
    for &i in &pick(m) {
        for &j in &pick(n) {
            let (mut sum, mut mag) = (b[j] as f64, b[j].abs() as f64);
            for kk in 0..k {
                let p = x[i * k + kk] as f64 * w[j * k + kk] as f64;
                sum += p;
                mag += p.abs();
            }
            let got = out[i * n + j] as f64;
            // NaN (an element never written) fails too
            let within = (got - sum).abs() <= 1e-3 * mag + 1e-4;
            if !within {
                return Err(format!("its output at ({i}, {j}) is {got}, the host's {sum:.6}"));
            }
        }
    }
    Ok(())
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
        tuned(gpu, policy, (m, n, k), w_dtype)
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

/// The tuner's choice for the class of (M, N, K): cached (if the device still offers it under
/// `policy`), measured now, or the default tile.
fn tuned(gpu: &Gpu, policy: &KernelPolicy, (m, n, k): Shape, w_dtype: DType) -> MatmulVariant {
    let default = MatmulVariant::Tiled(MatmulTile::DEFAULT);
    if policy.tune == Switch::Off {
        return default;
    }
    let (key, class) = (device_key(gpu), matmul_class(m, n, k, w_dtype));
    let offered = candidates_for(gpu, policy);
    let mut guard = CHOICES.lock().unwrap_or_else(|p| p.into_inner());
    let choices = guard.get_or_insert_with(|| load_choices(cache_path()));
    if let Some(t) = choices.get(&key).and_then(|c| c.get(&class)).copied() {
        if offered.contains(&t) {
            return t;
        }
        eprintln!("resformer: the cached choice {} for {class} is not offered now; not using it", t.name());
        if let Some(c) = choices.get_mut(&key) {
            c.remove(&class);
        }
    }
    if !tunes(policy.tune, gpu) {
        return default;
    }
    let started = web_time::Instant::now();
    let tile = match measure_matmul(gpu, (m, n, k), &offered, 5) {
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
            let class = matmul_class(shape.0, shape.1, shape.2, DType::F32);
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
    fn classes_round_m_keep_n_and_k_and_the_load_and_weight_flags() {
        assert_eq!(matmul_class(4000, 2304, 768, DType::F32), "matmul m4096 n2304 k768");
        // BERT-base's QKV and FFN1 are two classes, not one
        assert_ne!(matmul_class(4096, 2304, 768, DType::F32), matmul_class(4096, 3072, 768, DType::F32));
        assert_eq!(matmul_class(1, 7, 65, DType::F16), "matmul m1 n7 k65 scalar-k w16");
        assert_ne!(matmul_class(512, 512, 512, DType::F32), matmul_class(513, 512, 512, DType::F32));
        assert_eq!(matmul_class(300, 384, 384, DType::F32), matmul_class(512, 384, 384, DType::F32));
    }

    #[test]
    fn the_sampled_check_catches_a_wrong_or_unwritten_element() {
        let (m, n, k) = (13, 9, 5);
        let mut rng = Rng::new(3);
        let (x, w, b) = (rng.vec(m * k, -1.0, 1.0), rng.vec(n * k, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
        let mut out = vec![0.0f32; m * n];
        crate::reference::matmul::matmul(
            &mut out,
            &x,
            &w,
            Some(&b),
            Activation::None,
            crate::ops::MatmulShape::linear(m, n, k),
        );
        assert_eq!(check_sampled(&out, (&x, &w, &b), (m, n, k)), Ok(()));
        for (i, j) in [(m - 1, n - 1), (0, 0), (m - 1, 0)] {
            let mut bad = out.clone();
            bad[i * n + j] += 0.05;
            assert!(check_sampled(&bad, (&x, &w, &b), (m, n, k)).is_err(), "({i}, {j}) off by 0.05");
            bad[i * n + j] = f32::NAN;
            assert!(check_sampled(&bad, (&x, &w, &b), (m, n, k)).is_err(), "({i}, {j}) NaN");
        }
    }

    #[test]
    fn a_stale_cached_choice_is_not_run_and_the_key_names_the_kernels() {
        let Some(gpu) = shared_gpu() else { return };
        let key = device_key(gpu);
        assert!(key.ends_with(&format!("kernels {:016x}", kernels_hash())), "{key}");
        // a cached coop (or a tile this device cannot run) with coop off: the default runs
        let off = KernelPolicy { coop: Switch::Off, tune: Switch::Auto, ..Default::default() };
        assert!(!candidates_for(gpu, &off).contains(&MatmulVariant::Coop));
        let shape = (96, 72, 40);
        let class = matmul_class(shape.0, shape.1, shape.2, DType::F32);
        {
            let mut guard = CHOICES.lock().unwrap_or_else(|p| p.into_inner());
            let choices = guard.get_or_insert_with(|| load_choices(cache_path()));
            choices.entry(key.clone()).or_default().insert(class.clone(), MatmulVariant::Coop);
        }
        let got = tuned(gpu, &off, shape, DType::F32);
        assert_ne!(got, MatmulVariant::Coop);
        if !tunes(off.tune, gpu) {
            assert_eq!(got, MatmulVariant::Tiled(MatmulTile::DEFAULT));
        }
        let guard = CHOICES.lock().unwrap_or_else(|p| p.into_inner());
        assert_ne!(guard.as_ref().and_then(|c| c.get(&key)).and_then(|c| c.get(&class)), Some(&MatmulVariant::Coop));
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
