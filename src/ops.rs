//! The vocabulary every backend shares: what a matmul's epilogue applies, the shape of a
//! matmul, the shape and masking of an attention call, the largest head dim, on/off/auto
//! switches, and the tolerance comparison every check uses (in tests and in production:
//! `--check`, `check_ops`, self-tests). The GPU kernels, the CPU backend and the reference all
//! take these; none of them owns them.

/// The largest head dim the attention kernels hold (every backend refuses larger ones, so
/// all of them accept the same models).
pub const MAX_HEAD_DIM: usize = 128;

/// An on / off / automatic choice (the tuner, the cooperative-matrix matmul).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Switch {
    /// Let the engine decide (the default).
    #[default]
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

impl Switch {
    /// Parses `auto`, `on` / `1`, `off` / `0`; `None` otherwise.
    pub fn parse(s: &str) -> Option<Switch> {
        match s {
            "auto" => Some(Switch::Auto),
            "on" | "1" => Some(Switch::On),
            "off" | "0" => Some(Switch::Off),
            _ => None,
        }
    }
}

/// An explicit tolerance: an element passes when |got - want| <= atol + rtol · |want|.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    /// Absolute tolerance.
    pub atol: f32,
    /// Tolerance relative to |want|.
    pub rtol: f32,
}

/// What a comparison found.
#[derive(Clone, Debug, Default)]
pub struct Diff {
    /// Elements outside the tolerance (NaN where a number was expected counts).
    pub bad: usize,
    /// Largest |got - want|.
    pub max_abs: f32,
    /// Largest |got - want| / |want| over nonzero want.
    pub max_rel: f32,
    /// Index of the largest absolute error.
    pub worst: usize,
}

/// Compares `got` with `want` elementwise. NaN matches only NaN; a length mismatch counts
/// every missing or extra element as outside the tolerance.
pub fn compare(got: &[f32], want: &[f32], tol: Tol) -> Diff {
    let mut d = Diff { bad: got.len().abs_diff(want.len()), ..Default::default() };
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if g.is_nan() && w.is_nan() {
            continue;
        }
        let err = if g.is_nan() || w.is_nan() { f32::INFINITY } else { (g - w).abs() };
        let within = err <= tol.atol + tol.rtol * w.abs();
        if !within {
            d.bad += 1;
        }
        if err > d.max_abs || (err.is_nan() && d.max_abs.is_finite()) {
            d.max_abs = err;
            d.worst = i;
        }
        if w != 0.0 {
            d.max_rel = d.max_rel.max(err / w.abs());
        }
    }
    d
}

/// Panics with the count, the max error and its index when `got` is not within `tol` of `want`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tol) {
    let d = compare(got, want, tol);
    if d.bad > 0 {
        panic!(
            "{what}: {} of {} elements outside atol {} + rtol {}; max abs error {} at index {} (got {}, want {})",
            d.bad,
            got.len(),
            tol.atol,
            tol.rtol,
            d.max_abs,
            d.worst,
            got[d.worst],
            want[d.worst]
        );
    }
}

/// Median of `v`; NaN for an empty slice (no runs, no number).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

/// Activation fused into the matmul epilogue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    #[default]
    /// No activation.
    None,
    /// max(0, v).
    Relu,
    /// GELU in its exact erf form (PyTorch's default `nn.GELU()`).
    Gelu,
    /// GELU's tanh approximation, 0.5·v·(1 + tanh(√(2/π)·(v + 0.044715·v³))): PyTorch's
    /// `nn.GELU(approximate="tanh")`, transformers' `gelu_new` and `gelu_pytorch_tanh`.
    GeluTanh,
}

impl Activation {
    /// Every activation, for tests and help text.
    pub const ALL: [Activation; 4] = [Activation::None, Activation::Relu, Activation::Gelu, Activation::GeluTanh];
}

/// The shape of one matmul: out (batch, m, n) = x (batch, m, k) · wᵀ, w (n, k) shared by the
/// batch or, when `w_batched`, one (n, k) per batch element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    /// Batch elements.
    pub batch: usize,
    /// Rows of x and out.
    pub m: usize,
    /// Columns of out (rows of w).
    pub n: usize,
    /// Reduction depth.
    pub k: usize,
    /// w is (batch, n, k) instead of (n, k).
    pub w_batched: bool,
}

impl MatmulShape {
    /// One (m, n, k) product with a shared w: what every Linear layer is.
    pub fn linear(m: usize, n: usize, k: usize) -> MatmulShape {
        MatmulShape { batch: 1, m, n, k, w_batched: false }
    }
}

/// Shape and masking of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionConfig {
    /// Batch elements.
    pub batch: usize,
    /// Sequence length (queries = keys).
    pub seq: usize,
    /// Heads.
    pub heads: usize,
    /// Head dim D.
    pub head_dim: usize,
    /// Token rows are batch-major (`b * seq + s`) instead of PyTorch's default seq-major.
    pub batch_first: bool,
    /// Hide keys after the query (a query at s sees keys 0..=s).
    pub causal: bool,
}

impl AttentionConfig {
    /// E = heads · head_dim.
    pub fn embed(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Number of token rows, seq · batch.
    pub fn tokens(&self) -> usize {
        self.seq * self.batch
    }

    /// Row of (batch b, position s) in qkv and out.
    pub fn row(&self, b: usize, s: usize) -> usize {
        if self.batch_first {
            b * self.seq + s
        } else {
            s * self.batch + b
        }
    }

    /// 1/√head_dim, the scale of `nn.MultiheadAttention`.
    pub fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}
