//! How WGSL reaches the device: a [`Shader`] is one build of one kernel (its stem, a key that
//! names the build, and its full source), made by the kernel module that owns it
//! (`kernels/<stem>.rs` chooses the file, the variant's constants and the dispatch size). This
//! module holds what every kernel shares: the [`Prelude`] of constants Rust prepends so WGSL
//! and Rust read one definition, the constants several kernels read ([`consts`]), and the
//! generated register-tiled matmul family ([`MatmulTile`]).

mod matmul_tile;

pub use matmul_tile::MatmulTile;

/// The numbers several kernels share with the host. A kernel's own numbers (tile sizes,
/// workgroup sizes) live in its `kernels/<stem>.rs`; either way they reach the WGSL through
/// the [`Prelude`], so a shader that declared one itself would fail to compile.
pub mod consts {
    /// Activation codes of the matmul epilogue (`activate()` in shaders/matmul_io.wgsl).
    pub const ACT_NONE: u32 = 0;
    /// max(0, v).
    pub const ACT_RELU: u32 = 1;
    /// GELU, erf form.
    pub const ACT_GELU: u32 = 2;
    /// GELU, tanh approximation (`gelu_new`).
    pub const ACT_GELU_TANH: u32 = 3;
    /// Lanes of the `*_subgroup8.wgsl` kernels' subgroups (SG there).
    pub const SUBGROUP8: u32 = 8;
    /// The largest head dim the attention kernels hold (DMAX of the tiled and subgroup kernels,
    /// the flash kernel's largest build): [`crate::ops::MAX_HEAD_DIM`].
    pub const MAX_HEAD_DIM: u32 = crate::ops::MAX_HEAD_DIM as u32;
    /// A masked attention score: exp(NEG_BIG - m) == 0 (NEG_BIG).
    pub const NEG_BIG: f32 = -3.0e38;
}

/// The `enable` directives, `const`s and element `alias` put before a kernel's WGSL.
#[derive(Clone, Debug, Default)]
pub struct Prelude {
    directives: Vec<&'static str>,
    consts: Vec<(&'static str, String)>,
    elem: Option<&'static str>,
}

impl Prelude {
    /// An empty prelude.
    pub fn new() -> Prelude {
        Prelude::default()
    }

    /// `const NAME: u32 = value;`
    pub fn u32(mut self, name: &'static str, value: u32) -> Prelude {
        self.consts.push((name, format!("{value}u")));
        self
    }

    /// `const NAME: f32 = value;`
    pub fn f32(mut self, name: &'static str, value: f32) -> Prelude {
        self.consts.push((name, format!("{value:e}")));
        self
    }

    /// `alias ELEM = ty;` (the element type a kernel reads: `f32` or `vec4<f32>`).
    pub fn elem(mut self, ty: &'static str) -> Prelude {
        self.elem = Some(ty);
        self
    }

    /// `enable feature;` before every declaration.
    pub fn enable(mut self, feature: &'static str) -> Prelude {
        self.directives.push(feature);
        self
    }

    /// The matmul epilogue's activation codes (ACT_NONE, ACT_RELU, ACT_GELU, ACT_GELU_TANH).
    pub fn activations(self) -> Prelude {
        use consts::{ACT_GELU, ACT_GELU_TANH, ACT_NONE, ACT_RELU};
        self.u32("ACT_NONE", ACT_NONE)
            .u32("ACT_RELU", ACT_RELU)
            .u32("ACT_GELU", ACT_GELU)
            .u32("ACT_GELU_TANH", ACT_GELU_TANH)
    }

    /// The masked-score constant of the attention kernels (NEG_BIG).
    pub fn neg_big(self) -> Prelude {
        self.f32("NEG_BIG", consts::NEG_BIG)
    }

    fn render(&self, what: &str) -> String {
        let mut out: String = self.directives.iter().map(|d| format!("enable {d};\n")).collect();
        out += &format!("// prepended by the host (shaders::Prelude) for {what}\n");
        for (name, value) in &self.consts {
            let ty = if value.ends_with('u') { "u32" } else { "f32" };
            out += &format!("const {name}: {ty} = {value};\n");
        }
        if let Some(e) = self.elem {
            out += &format!("alias ELEM = {e};\n");
        }
        out
    }
}

/// One build of one compute shader (entry point `main`): what the device compiles once and
/// keeps, keyed by `(name, key)`. The source is made only when the device has not built this
/// key yet, so binding a plan's hundreds of dispatches generates no WGSL.
#[derive(Clone)]
pub struct Shader {
    /// The kernel stem and variant (`attention_flash`): labels, errors, profiles.
    pub name: &'static str,
    /// What tells this build from the stem's others (`dmax64`); empty when there is one.
    pub key: String,
    /// Built without wgpu's runtime checks (no bounds checks, no workgroup zero-init):
    /// only for a generated family whose indexing the ragged parity tests prove.
    pub unchecked: bool,
    source: std::sync::Arc<dyn Fn() -> String + Send + Sync>,
}

impl Shader {
    /// The prelude, then `body` (a kernel file, then its family's shared params and bindings:
    /// WGSL has no includes).
    pub fn new(name: &'static str, key: impl Into<String>, prelude: Prelude, body: &[&'static str]) -> Shader {
        let body = body.to_vec();
        Self::generated(name, key, prelude, move || body.concat())
    }

    /// The prelude, then the body `generate` writes (a generated family's kernel).
    pub fn generated(
        name: &'static str,
        key: impl Into<String>,
        prelude: Prelude,
        generate: impl Fn() -> String + Send + Sync + 'static,
    ) -> Shader {
        let key = key.into();
        let what = format!("{name} {key}");
        let source = std::sync::Arc::new(move || prelude.render(&what) + &generate());
        Shader { name, key, unchecked: false, source }
    }

    /// This shader built without bounds checks and without workgroup zero-init
    /// (`wgpu::ShaderRuntimeChecks::unchecked()`); its key says so, so the device keeps the
    /// two builds apart.
    pub fn unchecked(self) -> Shader {
        Shader { key: format!("{} unchecked", self.key), unchecked: true, ..self }
    }

    /// The whole WGSL source, made now.
    pub fn wgsl(&self) -> String {
        (self.source)()
    }
}

impl std::fmt::Debug for Shader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shader({} {})", self.name, self.key)
    }
}
