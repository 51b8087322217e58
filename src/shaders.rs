//! The WGSL sources, one per kernel stem, compiled into the binary; the tiled
//! matmul family is generated from [`MatmulTile`] values.

mod matmul_tile;

use std::borrow::Cow;

pub use matmul_tile::MatmulTile;

/// The numbers the kernels share with the host. Each shader gets the ones it uses prepended as
/// `const`s under its own short names ([`Shader::prelude`]), so WGSL and Rust read one
/// definition and a shader that declared one itself would fail to compile.
pub mod consts {
    /// Activation codes of the matmul epilogue (`activate()` in shaders/matmul_io.wgsl).
    pub const ACT_NONE: u32 = 0;
    /// max(0, v).
    pub const ACT_RELU: u32 = 1;
    /// GELU, erf form.
    pub const ACT_GELU: u32 = 2;
    /// Lanes of the `*_subgroup8.wgsl` kernels' subgroups (SG there).
    pub const SUBGROUP8: u32 = 8;
    /// shaders/matmul_subgroup8.wgsl: rows of out per subgroup (RM).
    pub const MATMUL_SG8_ROWS: u32 = 8;
    /// shaders/matmul_subgroup8.wgsl: columns of out per lane (RN).
    pub const MATMUL_SG8_COLS_PER_LANE: u32 = 2;
    /// The largest head dim the attention kernels hold (DMAX of the tiled and subgroup kernels,
    /// the flash kernel's largest build).
    pub const MAX_HEAD_DIM: u32 = 128;
    /// A masked attention score: exp(NEG_BIG - m) == 0 (NEG_BIG).
    pub const NEG_BIG: f32 = -3.0e38;
    /// shaders/attention_tiled.wgsl: queries per workgroup (BQ).
    pub const ATTENTION_QUERIES: u32 = 64;
    /// shaders/attention_tiled.wgsl: keys per staged tile (BK).
    pub const ATTENTION_KEYS: u32 = 16;
    /// shaders/attention_flash.wgsl: queries per workgroup, four lanes each (BQ).
    pub const FLASH_QUERIES: u32 = 64;
    /// shaders/layernorm_tiled.wgsl and layernorm_rows.wgsl: invocations per workgroup (WG).
    pub const LAYERNORM_WG: u32 = 256;
    /// shaders/layernorm_subgroup8.wgsl: row values per lane kept in registers (CACHE).
    pub const LAYERNORM_SG8_CACHE: u32 = 128;
    /// shaders/layernorm_rows.wgsl: vec4s per lane kept in registers (CACHE4).
    pub const LAYERNORM_ROWS_CACHE4: u32 = 8;
    /// shaders/residual_add.wgsl: invocations per workgroup (WG).
    pub const RESIDUAL_ADD_WG: u32 = 256;
}

/// One compute shader (`shaders/<stem>.wgsl`, entry point `main`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    /// The register-tiled matmul of one [`MatmulTile`] (generated), x and w read as vec4
    /// (K % 4 == 0) or as scalars.
    Matmul {
        /// The tile configuration.
        tile: MatmulTile,
        /// x and w bound as arrays of vec4.
        vec4: bool,
        /// w is f16 (the f16 mode's weights).
        w_f16: bool,
    },
    /// The matmul for 8-wide subgroups without workgroup memory (lavapipe).
    MatmulSubgroup8,
    /// shaders/matmul_coop.wgsl: the split-f16 matmul on cooperative matrices, for subgroups of
    /// exactly `sg` lanes.
    MatmulCoop {
        /// The adapter's subgroup width.
        sg: u32,
    },
    /// shaders/attention_tiled.wgsl.
    AttentionTiled,
    /// The attention for 8-wide subgroups without workgroup memory (lavapipe).
    AttentionSubgroup8,
    /// shaders/attention_flash.wgsl, for head dims up to `dmax` (32, 64 or 128).
    AttentionFlash {
        /// The largest head dim this build holds (a multiple of 16).
        dmax: u32,
    },
    /// shaders/layernorm_tiled.wgsl.
    LayernormTiled,
    /// The layernorm for 8-wide subgroups without workgroup memory (lavapipe).
    LayernormSubgroup8,
    /// shaders/layernorm_rows.wgsl: a subgroup per row, vec4 (GPUs with subgroups).
    LayernormRows,
    /// shaders/residual_add.wgsl, over f32 or (len % 4 == 0) vec4 elements.
    ResidualAdd {
        /// a, b and out bound as `array<vec4<f32>>`.
        vec4: bool,
    },
}

impl Shader {
    /// Every shader, each matmul configuration in both load widths: for validation tests.
    pub fn all() -> Vec<Shader> {
        let tiles = MatmulTile::FAMILY.iter().flat_map(|&tile| {
            [(false, false), (true, false), (false, true), (true, true)].map(|(vec4, w_f16)| Shader::Matmul {
                tile,
                vec4,
                w_f16,
            })
        });
        let flash = [32, 64, 128].map(|dmax| Shader::AttentionFlash { dmax });
        let coop = [32, 64].map(|sg| Shader::MatmulCoop { sg });
        tiles.chain(flash).chain(coop).chain(Self::FIXED).collect()
    }

    /// The shaders written by hand in shaders/.
    const FIXED: [Shader; 8] = [
        Shader::MatmulSubgroup8,
        Shader::AttentionTiled,
        Shader::AttentionSubgroup8,
        Shader::LayernormTiled,
        Shader::LayernormSubgroup8,
        Shader::LayernormRows,
        Shader::ResidualAdd { vec4: false },
        Shader::ResidualAdd { vec4: true },
    ];

    /// The kernel stem: file name, op name, bench group.
    pub fn name(self) -> &'static str {
        match self {
            Shader::Matmul { .. } => "matmul",
            Shader::MatmulSubgroup8 => "matmul_subgroup8",
            Shader::MatmulCoop { .. } => "matmul_coop",
            Shader::AttentionTiled => "attention_tiled",
            Shader::AttentionSubgroup8 => "attention_subgroup8",
            Shader::AttentionFlash { .. } => "attention_flash",
            Shader::LayernormTiled => "layernorm_tiled",
            Shader::LayernormSubgroup8 => "layernorm_subgroup8",
            Shader::LayernormRows => "layernorm_rows",
            Shader::ResidualAdd { .. } => "residual_add",
        }
    }

    /// The `const`s (and the element `alias`) this shader reads, from [`consts`] and its
    /// variant: what [`Shader::source`] puts before the file.
    pub fn prelude(self) -> String {
        use consts::*;
        let u = |v: u32| format!("{v}u");
        let act = [("ACT_NONE", u(ACT_NONE)), ("ACT_RELU", u(ACT_RELU)), ("ACT_GELU", u(ACT_GELU))];
        let neg_big = ("NEG_BIG", format!("{NEG_BIG:e}"));
        let (consts, elem): (Vec<(&str, String)>, &str) = match self {
            Shader::Matmul { .. } => (act.to_vec(), ""),
            Shader::MatmulSubgroup8 => {
                let mut c = vec![("SG", u(SUBGROUP8)), ("RM", u(MATMUL_SG8_ROWS)), ("RN", u(MATMUL_SG8_COLS_PER_LANE))];
                c.extend(act);
                (c, "")
            }
            Shader::MatmulCoop { sg } => {
                let mut c = vec![("SG", u(sg))];
                c.extend(act);
                (c, "")
            }
            Shader::AttentionTiled => {
                let c =
                    vec![("BQ", u(ATTENTION_QUERIES)), ("BK", u(ATTENTION_KEYS)), ("DMAX", u(MAX_HEAD_DIM)), neg_big];
                (c, "")
            }
            Shader::AttentionSubgroup8 => (vec![("SG", u(SUBGROUP8)), ("DMAX", u(MAX_HEAD_DIM)), neg_big], ""),
            Shader::AttentionFlash { dmax } => {
                let c =
                    vec![("DMAX", u(dmax)), ("BKV", u(flash_keys_per_tile(dmax))), ("BQ", u(FLASH_QUERIES)), neg_big];
                (c, "")
            }
            Shader::LayernormTiled => (vec![("WG", u(LAYERNORM_WG))], "f32"),
            Shader::LayernormSubgroup8 => (vec![("SG", u(SUBGROUP8)), ("CACHE", u(LAYERNORM_SG8_CACHE))], "f32"),
            Shader::LayernormRows => (vec![("WG", u(LAYERNORM_WG)), ("CACHE4", u(LAYERNORM_ROWS_CACHE4))], "vec4<f32>"),
            Shader::ResidualAdd { vec4 } => (vec![("WG", u(RESIDUAL_ADD_WG))], if vec4 { "vec4<f32>" } else { "f32" }),
        };
        // directives come before every declaration
        let directives = match self {
            Shader::MatmulCoop { .. } => "enable f16;\nenable wgpu_cooperative_matrix;\n",
            Shader::Matmul { w_f16: true, .. } => "enable f16;\n",
            _ => "",
        };
        let mut out = format!("{directives}// prepended by src/shaders.rs (Shader::prelude) for {self:?}\n");
        for (name, value) in consts {
            let ty = if value.ends_with('u') { "u32" } else { "f32" };
            out += &format!("const {name}: {ty} = {value};\n");
        }
        if !elem.is_empty() {
            out += &format!("alias ELEM = {elem};\n");
        }
        out
    }

    /// The WGSL source: the prelude, the kernel, and its family's shared params and bindings
    /// (WGSL has no includes).
    pub fn source(self) -> Cow<'static, str> {
        let body: Cow<'static, str> = match self {
            Shader::Matmul { tile, vec4, w_f16 } => {
                (tile.wgsl(vec4, w_f16) + include_str!("../shaders/matmul_io.wgsl")).into()
            }
            Shader::MatmulSubgroup8 => {
                concat!(include_str!("../shaders/matmul_subgroup8.wgsl"), include_str!("../shaders/matmul_io.wgsl"))
                    .into()
            }
            Shader::MatmulCoop { .. } => {
                concat!(include_str!("../shaders/matmul_coop.wgsl"), include_str!("../shaders/matmul_io.wgsl")).into()
            }
            Shader::AttentionFlash { .. } => {
                concat!(include_str!("../shaders/attention_flash.wgsl"), include_str!("../shaders/attention_io.wgsl"))
                    .into()
            }
            Shader::AttentionTiled => {
                concat!(include_str!("../shaders/attention_tiled.wgsl"), include_str!("../shaders/attention_io.wgsl"))
                    .into()
            }
            Shader::AttentionSubgroup8 => concat!(
                include_str!("../shaders/attention_subgroup8.wgsl"),
                include_str!("../shaders/attention_io.wgsl")
            )
            .into(),
            Shader::LayernormTiled => {
                concat!(include_str!("../shaders/layernorm_tiled.wgsl"), include_str!("../shaders/layernorm_io.wgsl"))
                    .into()
            }
            Shader::LayernormSubgroup8 => concat!(
                include_str!("../shaders/layernorm_subgroup8.wgsl"),
                include_str!("../shaders/layernorm_io.wgsl")
            )
            .into(),
            Shader::LayernormRows => {
                concat!(include_str!("../shaders/layernorm_rows.wgsl"), include_str!("../shaders/layernorm_io.wgsl"))
                    .into()
            }
            Shader::ResidualAdd { .. } => include_str!("../shaders/residual_add.wgsl").into(),
        };
        (self.prelude() + &body).into()
    }
}

/// Keys per staged tile of the flash attention for head dims up to `dmax`: 64, or fewer so
/// that the K and V tiles (2 · BKV · DMAX f32) fit 32 KiB.
pub fn flash_keys_per_tile(dmax: u32) -> u32 {
    (4096 / dmax).min(64)
}

#[cfg(test)]
mod tests {
    //! Offline checks with naga: no GPU needed.
    use super::Shader;
    use naga::back::{hlsl, msl, spv};
    use naga::valid::{Capabilities, ValidationFlags, Validator};

    fn validated(shader: Shader) -> (naga::Module, naga::valid::ModuleInfo) {
        let src = shader.source();
        let module =
            naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{shader:?}: {}", e.emit_to_string(&src)));
        let caps = Capabilities::SUBGROUP | Capabilities::COOPERATIVE_MATRIX | Capabilities::SHADER_FLOAT16;
        let info = Validator::new(ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{shader:?}: {}", e.emit_to_string(&src)));
        (module, info)
    }

    #[test]
    fn every_shader_parses_and_validates() {
        for s in Shader::all() {
            let (module, _) = validated(s);
            assert!(module.entry_points.iter().any(|e| e.name == "main"), "{} has no `main`", s.name());
        }
    }

    #[test]
    fn every_shader_translates_to_spirv() {
        for s in Shader::all() {
            let (module, info) = validated(s);
            let words = spv::write_vec(&module, &info, &spv::Options::default(), None)
                .unwrap_or_else(|e| panic!("{} -> SPIR-V: {e}", s.name()));
            assert_eq!(words[0], 0x0723_0203, "{}: not a SPIR-V module", s.name());
            if let Shader::MatmulCoop { .. } = s {
                // OpCooperativeMatrixMulAddKHR (4459): the tensor-core product is really there
                assert!(words.iter().any(|w| w & 0xffff == 4459), "{s:?}: no cooperative multiply-add in SPIR-V");
            }
        }
    }

    #[test]
    fn every_shader_translates_to_msl() {
        for s in Shader::all() {
            let (module, info) = validated(s);
            // cooperative matrices need MSL 2.3 (simdgroup matrices)
            let options = match s {
                Shader::MatmulCoop { .. } => msl::Options { lang_version: (2, 3), ..Default::default() },
                _ => msl::Options::default(),
            };
            let (src, _) = msl::write_string(&module, &info, &options, &msl::PipelineOptions::default())
                .unwrap_or_else(|e| panic!("{} -> MSL: {e}", s.name()));
            assert!(src.contains("kernel void"), "{}: no kernel in MSL", s.name());
        }
    }

    #[test]
    fn every_shader_translates_to_hlsl() {
        // naga 30 writes no HLSL for cooperative matrices (and wgpu's DX12 offers none): the
        // split-f16 kernel is for Vulkan and Metal only
        for s in Shader::all().into_iter().filter(|s| !matches!(s, Shader::MatmulCoop { .. })) {
            let (module, info) = validated(s);
            let mut src = String::new();
            let options = hlsl::Options::default();
            let pipeline = hlsl::PipelineOptions::default();
            hlsl::Writer::new(&mut src, &options, &pipeline)
                .write(&module, &info, None)
                .unwrap_or_else(|e| panic!("{} -> HLSL: {e}", s.name()));
            assert!(src.contains("[numthreads("), "{}: no compute entry in HLSL", s.name());
        }
    }
}
