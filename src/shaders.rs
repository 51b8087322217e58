//! The WGSL sources, one per kernel stem, compiled into the binary; the tiled
//! matmul family is generated from [`MatmulTile`] values.

mod matmul_tile;

use std::borrow::Cow;

pub use matmul_tile::MatmulTile;

/// One compute shader (`shaders/<stem>.wgsl`, entry point `main`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    /// The register-tiled matmul of one [`MatmulTile`] (generated), x and w read as vec4
    /// (K % 4 == 0) or as scalars.
    Matmul {
        /// The tile configuration.
        tile: MatmulTile,
        /// x and w bound as `array<vec4<f32>>`.
        vec4: bool,
    },
    /// The matmul for 8-wide subgroups without workgroup memory (lavapipe).
    MatmulSubgroup,
    /// shaders/attention.wgsl.
    Attention,
    /// The attention for 8-wide subgroups without workgroup memory (lavapipe).
    AttentionSubgroup,
    /// shaders/attention_flash.wgsl, for head dims up to `dmax` (32, 64 or 128).
    AttentionFlash {
        /// The largest head dim this build holds (a multiple of 16).
        dmax: u32,
    },
    /// shaders/layernorm.wgsl.
    Layernorm,
    /// The layernorm for 8-wide subgroups without workgroup memory (lavapipe).
    LayernormSubgroup,
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
        let tiles = MatmulTile::FAMILY.iter().flat_map(|&tile| [false, true].map(|vec4| Shader::Matmul { tile, vec4 }));
        let flash = [32, 64, 128].map(|dmax| Shader::AttentionFlash { dmax });
        tiles.chain(flash).chain(Self::FIXED).collect()
    }

    /// The shaders written by hand in shaders/.
    const FIXED: [Shader; 8] = [
        Shader::MatmulSubgroup,
        Shader::Attention,
        Shader::AttentionSubgroup,
        Shader::Layernorm,
        Shader::LayernormSubgroup,
        Shader::LayernormRows,
        Shader::ResidualAdd { vec4: false },
        Shader::ResidualAdd { vec4: true },
    ];

    /// The kernel stem: file name, op name, bench group.
    pub fn name(self) -> &'static str {
        match self {
            Shader::Matmul { .. } => "matmul",
            Shader::MatmulSubgroup => "matmul_subgroup",
            Shader::Attention => "attention",
            Shader::AttentionSubgroup => "attention_subgroup",
            Shader::AttentionFlash { .. } => "attention_flash",
            Shader::Layernorm => "layernorm",
            Shader::LayernormSubgroup => "layernorm_subgroup",
            Shader::LayernormRows => "layernorm_rows",
            Shader::ResidualAdd { .. } => "residual_add",
        }
    }

    /// The WGSL source.
    pub fn source(self) -> Cow<'static, str> {
        // WGSL has no includes: each family of variants gets its shared params and bindings appended
        Cow::Borrowed(match self {
            Shader::Matmul { tile, vec4 } => {
                return (tile.wgsl(vec4) + include_str!("../shaders/matmul_io.wgsl")).into()
            }
            Shader::MatmulSubgroup => {
                concat!(include_str!("../shaders/matmul_subgroup.wgsl"), include_str!("../shaders/matmul_io.wgsl"))
            }
            Shader::AttentionFlash { dmax } => {
                let consts = format!("const DMAX: u32 = {dmax}u;\nconst BKV: u32 = {}u;\n", flash_keys_per_tile(dmax));
                let body = concat!(
                    include_str!("../shaders/attention_flash.wgsl"),
                    include_str!("../shaders/attention_io.wgsl")
                );
                return (consts + body).into();
            }
            Shader::Attention => {
                concat!(include_str!("../shaders/attention.wgsl"), include_str!("../shaders/attention_io.wgsl"))
            }
            Shader::AttentionSubgroup => {
                concat!(
                    include_str!("../shaders/attention_subgroup.wgsl"),
                    include_str!("../shaders/attention_io.wgsl")
                )
            }
            Shader::Layernorm => concat!(
                "alias ELEM = f32;\n",
                include_str!("../shaders/layernorm.wgsl"),
                include_str!("../shaders/layernorm_io.wgsl")
            ),
            Shader::LayernormSubgroup => concat!(
                "alias ELEM = f32;\n",
                include_str!("../shaders/layernorm_subgroup.wgsl"),
                include_str!("../shaders/layernorm_io.wgsl")
            ),
            Shader::LayernormRows => concat!(
                "alias ELEM = vec4<f32>;\n",
                include_str!("../shaders/layernorm_rows.wgsl"),
                include_str!("../shaders/layernorm_io.wgsl")
            ),
            Shader::ResidualAdd { vec4: false } => {
                concat!("alias ELEM = f32;\n", include_str!("../shaders/residual_add.wgsl"))
            }
            Shader::ResidualAdd { vec4: true } => {
                concat!("alias ELEM = vec4<f32>;\n", include_str!("../shaders/residual_add.wgsl"))
            }
        })
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
        let info = Validator::new(ValidationFlags::all(), Capabilities::SUBGROUP)
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
        }
    }

    #[test]
    fn every_shader_translates_to_msl() {
        for s in Shader::all() {
            let (module, info) = validated(s);
            let (src, _) =
                msl::write_string(&module, &info, &msl::Options::default(), &msl::PipelineOptions::default())
                    .unwrap_or_else(|e| panic!("{} -> MSL: {e}", s.name()));
            assert!(src.contains("kernel void"), "{}: no kernel in MSL", s.name());
        }
    }

    #[test]
    fn every_shader_translates_to_hlsl() {
        for s in Shader::all() {
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
