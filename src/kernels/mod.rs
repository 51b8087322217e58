//! Host side of the kernels: one op per shader. Each op checks its operands'
//! shapes and the device's limits, fills its params struct, binds, and records
//! a dispatch into the caller's command encoder.
//!
//! Every op comes in two forms: `prepare_<stem>` returns a [`Dispatch`] (bind
//! group and params made once, recorded any number of times: what a forward
//! plan stores), and `<stem>` prepares and records in one call. Both run the variant
//! the device picks by itself; `prepare_<stem>_variant` runs a named one.
//!
//! Each `<stem>.rs` owns its variants (an enum with `available`, `auto`, `choose`, `name`,
//! `parse`), its constants, which WGSL file each variant builds, and its dispatch size:
//! adding a variant touches that file and its shader. [`KernelPolicy`] is what an engine asks
//! of them (a variant per op, or automatic; the cooperative matmul and the tuner on, off or
//! automatic); the layers above pass it down, and nothing here reads the environment.

pub mod attention;
pub mod layernorm;
pub mod matmul;
pub mod residual_add;

use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::device::{Gpu, Kernel};
use crate::error::{Error, Result};
use crate::ops::Switch;
use crate::shaders::Shader;
use crate::tensor::{DType, Tensor};

use attention::AttentionVariant;
use layernorm::LayernormVariant;
use matmul::MatmulVariant;

/// Which kernels an engine runs: a variant per op (`None`: the device's automatic choice),
/// and whether the split-f16 cooperative matmul and the matmul tuner run. Two engines in one
/// process may hold different policies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelPolicy {
    /// Every matmul on this variant (`RESFORMER_MATMUL`), else tuned or automatic.
    pub matmul: Option<MatmulVariant>,
    /// Every attention on this variant (`RESFORMER_ATTENTION`).
    pub attention: Option<AttentionVariant>,
    /// Every layernorm on this variant (`RESFORMER_LAYERNORM`; rows of C % 4 != 0 get the
    /// automatic choice when it is `rows`).
    pub layernorm: Option<LayernormVariant>,
    /// The split-f16 cooperative-matrix matmul (`RESFORMER_COOP`): `Off` keeps the experimental
    /// feature out of the device, `On` runs it for every shape once it passed its self-test,
    /// `Auto` lets the tuner choose it where it measured faster.
    pub coop: Switch,
    /// The matmul tuner (`RESFORMER_TUNE`): `Off` runs the default tile, `On` tunes on every
    /// adapter, `Auto` on hardware adapters only.
    pub tune: Switch,
}

impl KernelPolicy {
    /// The environment variables of the policy, for help texts.
    pub const VARIABLES: [&'static str; 5] =
        ["RESFORMER_MATMUL", "RESFORMER_ATTENTION", "RESFORMER_LAYERNORM", "RESFORMER_COOP", "RESFORMER_TUNE"];

    /// The policy `RESFORMER_MATMUL`, `RESFORMER_ATTENTION`, `RESFORMER_LAYERNORM`,
    /// `RESFORMER_COOP` and `RESFORMER_TUNE` describe (unset or empty: automatic). Read once,
    /// at the edge: by the command line, or by an app that wants them. An unknown value is an
    /// error naming the variable and the accepted values.
    pub fn from_env() -> Result<KernelPolicy> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`KernelPolicy::from_env`] over any source of `NAME -> value`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<KernelPolicy> {
        fn read<T>(
            get: &dyn Fn(&str) -> Option<String>,
            name: &'static str,
            expected: &str,
            parse: impl Fn(&str) -> Option<T>,
        ) -> Result<Option<T>> {
            let Some(value) = get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) else {
                return Ok(None);
            };
            parse(&value).map(Some).ok_or_else(|| Error::BadSetting { name, value, expected: expected.to_string() })
        }
        let names = |all: &[&str]| all.join(", ");
        let attention: Vec<&str> = AttentionVariant::ALL.iter().map(|v| v.name()).collect();
        let layernorm: Vec<&str> = LayernormVariant::ALL.iter().map(|v| v.name()).collect();
        let switch = "auto, on or off";
        Ok(KernelPolicy {
            matmul: read(&get, "RESFORMER_MATMUL", MatmulVariant::SPELLINGS, MatmulVariant::parse)?,
            attention: read(&get, "RESFORMER_ATTENTION", &names(&attention), AttentionVariant::parse)?,
            layernorm: read(&get, "RESFORMER_LAYERNORM", &names(&layernorm), LayernormVariant::parse)?,
            coop: read(&get, "RESFORMER_COOP", switch, Switch::parse)?.unwrap_or_default(),
            tune: read(&get, "RESFORMER_TUNE", switch, Switch::parse)?.unwrap_or_default(),
        })
    }

    /// Checks that every variant the policy names runs on `gpu`: an engine refuses a policy it
    /// cannot honour when it opens, not at the first forward.
    pub fn check(&self, gpu: &Gpu) -> Result<()> {
        if let Some(v) = self.matmul {
            require_available(gpu, "kernel policy (matmul)", v, &MatmulVariant::available(gpu), |v| v.name())?;
        }
        if let Some(v) = self.attention {
            AttentionVariant::choose(gpu, Some(v))?;
        }
        if let Some(v) = self.layernorm {
            // any width: C % 4 == 0 is what the rows variant needs
            LayernormVariant::choose(gpu, Some(v), 4)?;
        }
        Ok(())
    }

    /// One line for reports: what is fixed (`matmul=subgroup8 coop=off`), or `automatic`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = self.matmul {
            parts.push(format!("matmul={}", v.name()));
        }
        if let Some(v) = self.attention {
            parts.push(format!("attention={}", v.name()));
        }
        if let Some(v) = self.layernorm {
            parts.push(format!("layernorm={}", v.name()));
        }
        for (name, s) in [("coop", self.coop), ("tune", self.tune)] {
            if s != Switch::Auto {
                parts.push(format!("{name}={}", if s == Switch::On { "on" } else { "off" }));
            }
        }
        if parts.is_empty() {
            "automatic".into()
        } else {
            parts.join(" ")
        }
    }
}

/// `Ok(variant)` when it is among `available`; else an error naming the op, the variant, the
/// device and what it offers.
pub(crate) fn require_available<V: PartialEq + Copy, S: AsRef<str>>(
    gpu: &Gpu,
    op: &'static str,
    variant: V,
    available: &[V],
    name: impl Fn(V) -> S,
) -> Result<V> {
    if available.contains(&variant) {
        return Ok(variant);
    }
    let offered: Vec<String> = available.iter().map(|&v| name(v).as_ref().to_string()).collect();
    Err(Error::InvalidArgument {
        op,
        what: format!(
            "variant {} is not available on {}; available: {}",
            name(variant).as_ref(),
            gpu.adapter().label(),
            offered.join(", ")
        ),
    })
}

/// Every build of every kernel: what the naga tests validate and translate.
pub fn all_shaders() -> Vec<Shader> {
    let mut v = matmul::shaders();
    v.extend(attention::shaders());
    v.extend(layernorm::shaders());
    v.extend(residual_add::shaders());
    v
}

/// Times `dispatches` recorded in one pass, `runs` times after a warm-up (see
/// [`crate::device::timing::time_pass`]); milliseconds each and the clock used.
pub fn time_dispatches(gpu: &Gpu, dispatches: &[Dispatch], runs: usize) -> Result<(Vec<f64>, &'static str)> {
    crate::device::timing::time_pass(gpu, runs, &|enc, writes| record_all_timed(enc, dispatches, writes))
}

/// Whether the device can run the `*_subgroup8.wgsl` kernels: subgroups exactly 8 wide (lavapipe).
/// They use no workgroup memory and share operands by subgroup broadcasts, which is much faster
/// where memory accesses are costly. Each op's variant enum offers them as `Subgroup8`.
pub fn has_subgroup8(gpu: &Gpu) -> bool {
    gpu.features().contains(wgpu::Features::SUBGROUP) && gpu.adapter().subgroup_sizes == (8, 8)
}

/// One bound kernel invocation, ready to record.
pub struct Dispatch {
    kernel: Arc<Kernel>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    name: &'static str,
}

impl Dispatch {
    /// Records this dispatch in a compute pass of its own.
    pub fn record(&self, enc: &mut wgpu::CommandEncoder) {
        record_all(enc, std::slice::from_ref(self));
    }

    /// Records this dispatch into an open compute pass.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.kernel.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }

    /// The kernel stem, for labels and profiles.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Workgroups launched in (x, y, z).
    pub fn workgroups(&self) -> [u32; 3] {
        self.workgroups
    }
}

/// Records `dispatches` in order, in one compute pass (wgpu orders their
/// storage accesses, so each sees the writes of the ones before it).
pub fn record_all(enc: &mut wgpu::CommandEncoder, dispatches: &[Dispatch]) {
    record_all_timed(enc, dispatches, None);
}

/// [`record_all`], with GPU timestamps written at the pass's start and end.
pub fn record_all_timed(
    enc: &mut wgpu::CommandEncoder,
    dispatches: &[Dispatch],
    timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("resformer"), timestamp_writes });
    for d in dispatches {
        d.encode(&mut pass);
    }
}

/// Builds the bind group `(buffers..., params)` for `shader` and wraps it as a [`Dispatch`].
fn dispatch(
    gpu: &Gpu,
    shader: &Shader,
    buffers: &[&wgpu::Buffer],
    params: &[u8],
    workgroups: [u32; 3],
) -> Result<Dispatch> {
    let kernel = gpu.kernel(shader)?;
    let uniform = gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(shader.name),
        contents: params,
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let mut entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
        .collect();
    entries.push(wgpu::BindGroupEntry { binding: buffers.len() as u32, resource: uniform.as_entire_binding() });
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(shader.name),
        layout: &kernel.layout,
        entries: &entries,
    });
    Ok(Dispatch { kernel, bind_group, workgroups, name: shader.name })
}

/// Checks that `t` has exactly `expected` as its shape.
fn expect_shape(op: &'static str, what: &'static str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.shape() != expected {
        return Err(Error::ShapeMismatch { op, what, expected: expected.to_vec(), got: t.shape().to_vec() });
    }
    Ok(())
}

/// Checks rank, non-zero dimensions, dtype and the storage binding limit of one operand.
fn check_operand(
    gpu: &Gpu,
    op: &'static str,
    what: &'static str,
    t: &Tensor,
    ranks: &[usize],
    dtype: DType,
) -> Result<()> {
    if !ranks.contains(&t.shape().len()) {
        return Err(Error::InvalidArgument {
            op,
            what: format!("{what} must have rank {ranks:?}, got shape {:?}", t.shape()),
        });
    }
    if t.shape().contains(&0) {
        return Err(Error::ZeroSized { op, what, shape: t.shape().to_vec() });
    }
    if t.dtype() != dtype {
        return Err(Error::InvalidArgument { op, what: format!("{what} must be {dtype:?}, got {:?}", t.dtype()) });
    }
    let limit = gpu.limits().max_storage_buffer_binding_size;
    if t.bytes() > limit {
        return Err(Error::LimitExceeded {
            op,
            what,
            shape: t.shape().to_vec(),
            needed: t.bytes(),
            limit_name: "max_storage_buffer_binding_size",
            limit,
        });
    }
    Ok(())
}

/// Checks one dispatch dimension against `max_compute_workgroups_per_dimension`.
fn check_groups(gpu: &Gpu, op: &'static str, what: &'static str, shape: &[usize], groups: u64) -> Result<u32> {
    let limit = gpu.limits().max_compute_workgroups_per_dimension as u64;
    if groups > limit {
        return Err(Error::LimitExceeded {
            op,
            what,
            shape: shape.to_vec(),
            needed: groups,
            limit_name: "max_compute_workgroups_per_dimension (workgroups)",
            limit,
        });
    }
    Ok(groups as u32)
}

/// Checks that a kernel's workgroup memory fits `max_compute_workgroup_storage_size`.
fn check_workgroup_memory(gpu: &Gpu, op: &'static str, shape: &[usize], bytes: u64) -> Result<()> {
    let limit = gpu.limits().max_compute_workgroup_storage_size as u64;
    if bytes > limit {
        return Err(Error::LimitExceeded {
            op,
            what: "workgroup memory",
            shape: shape.to_vec(),
            needed: bytes,
            limit_name: "max_compute_workgroup_storage_size",
            limit,
        });
    }
    Ok(())
}

/// Spreads `groups` workgroups over (x, y) so neither exceeds the per-dimension limit.
fn grid_2d(gpu: &Gpu, op: &'static str, shape: &[usize], groups: u64) -> Result<(u32, u32)> {
    let max = gpu.limits().max_compute_workgroups_per_dimension as u64;
    let x = groups.clamp(1, max);
    let y = groups.div_ceil(x);
    Ok((x as u32, check_groups(gpu, op, "grid", shape, y)?))
}

#[cfg(test)]
mod tests {
    //! Offline checks with naga of every kernel's every build: no GPU needed.
    use super::all_shaders as all;
    use crate::shaders::Shader;
    use naga::back::{hlsl, msl, spv};
    use naga::valid::{Capabilities, ValidationFlags, Validator};

    fn validated(shader: &Shader) -> (naga::Module, naga::valid::ModuleInfo) {
        let src = shader.wgsl();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{} {}: {}", shader.name, shader.key, e.emit_to_string(&src)));
        let caps = Capabilities::SUBGROUP | Capabilities::COOPERATIVE_MATRIX | Capabilities::SHADER_FLOAT16;
        let info = Validator::new(ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{} {}: {}", shader.name, shader.key, e.emit_to_string(&src)));
        (module, info)
    }

    #[test]
    fn every_shader_parses_and_validates() {
        for s in all() {
            let (module, _) = validated(&s);
            assert!(module.entry_points.iter().any(|e| e.name == "main"), "{} has no `main`", s.name);
        }
    }

    #[test]
    fn every_shader_translates_to_spirv() {
        for s in all() {
            let (module, info) = validated(&s);
            let words = spv::write_vec(&module, &info, &spv::Options::default(), None)
                .unwrap_or_else(|e| panic!("{} -> SPIR-V: {e}", s.name));
            assert_eq!(words[0], 0x0723_0203, "{}: not a SPIR-V module", s.name);
            if s.name == "matmul_coop" {
                // OpCooperativeMatrixMulAddKHR (4459): the tensor-core product is really there
                assert!(words.iter().any(|w| w & 0xffff == 4459), "{}: no cooperative multiply-add in SPIR-V", s.key);
            }
        }
    }

    #[test]
    fn every_shader_translates_to_msl() {
        for s in all() {
            let (module, info) = validated(&s);
            // cooperative matrices need MSL 2.3 (simdgroup matrices)
            let options = match s.name {
                "matmul_coop" => msl::Options { lang_version: (2, 3), ..Default::default() },
                _ => msl::Options::default(),
            };
            let (src, _) = msl::write_string(&module, &info, &options, &msl::PipelineOptions::default())
                .unwrap_or_else(|e| panic!("{} -> MSL: {e}", s.name));
            assert!(src.contains("kernel void"), "{}: no kernel in MSL", s.name);
        }
    }

    #[test]
    fn every_shader_translates_to_hlsl() {
        // naga 30 writes no HLSL for cooperative matrices (and wgpu's DX12 offers none): the
        // split-f16 kernel is for Vulkan and Metal only
        for s in all().into_iter().filter(|s| s.name != "matmul_coop") {
            let (module, info) = validated(&s);
            let mut src = String::new();
            let options = hlsl::Options::default();
            let pipeline = hlsl::PipelineOptions::default();
            hlsl::Writer::new(&mut src, &options, &pipeline)
                .write(&module, &info, None)
                .unwrap_or_else(|e| panic!("{} -> HLSL: {e}", s.name));
            assert!(src.contains("[numthreads("), "{}: no compute entry in HLSL", s.name);
        }
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;
    use std::collections::HashMap;

    fn policy(vars: &[(&str, &str)]) -> Result<KernelPolicy> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        KernelPolicy::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn the_policy_reads_every_variable_and_refuses_unknown_values_by_name() {
        assert_eq!(policy(&[]).unwrap(), KernelPolicy::default());
        let p = policy(&[
            ("RESFORMER_MATMUL", "128x128x8/8x8"),
            ("RESFORMER_ATTENTION", "flash"),
            ("RESFORMER_LAYERNORM", "rows"),
            ("RESFORMER_COOP", "off"),
            ("RESFORMER_TUNE", "on"),
        ])
        .unwrap();
        assert_eq!(p.matmul, Some(MatmulVariant::Tiled(crate::shaders::MatmulTile::FAMILY[3])));
        assert_eq!((p.attention, p.layernorm), (Some(AttentionVariant::Flash), Some(LayernormVariant::Rows)));
        assert_eq!((p.coop, p.tune), (Switch::Off, Switch::On));
        assert_eq!(p.describe(), "matmul=128x128x8/8x8 attention=flash layernorm=rows coop=off tune=on");
        for (var, bad, accepted) in [
            ("RESFORMER_MATMUL", "bogus", "subgroup8"),
            ("RESFORMER_MATMUL", "96x64x16/8x4", "tiled"),
            ("RESFORMER_ATTENTION", "fast", "flash"),
            ("RESFORMER_LAYERNORM", "x", "rows"),
            ("RESFORMER_COOP", "yes", "auto, on or off"),
            ("RESFORMER_TUNE", "maybe", "auto, on or off"),
        ] {
            let e = policy(&[(var, bad)]).unwrap_err().to_string();
            assert!(e.contains(var) && e.contains(bad) && e.contains(accepted), "{e}");
        }
    }
}
