//! PyTorch parity fixtures (scripts/make_fixtures.py for the engine's block,
//! scripts/make_encoder_fixtures.py for `nn.TransformerEncoder` itself): a directory of
//! safetensors files, each holding a stack's weights, an `input`, PyTorch's
//! `output` (computed in f64) and maybe a `key_padding_mask`, described by
//! `manifest.txt`. The parity tests and `resformer parity` (which runs them on
//! any adapter, e.g. from scripts/gpu-check.sh) both read them through here.

use std::path::Path;

use super::io::TensorFile;
use super::{BlockConfig, InputShape, StackWeights};
use crate::error::{Error, Result};
use crate::ops::Activation;

/// PyTorch computed the fixtures in f64; f32 kernels over up to 3 blocks stay within this
/// absolute error.
pub const PYTORCH_ATOL: f32 = 1e-4;

/// One fixture: the stack, its input and PyTorch's output.
pub struct Fixture {
    /// The file's stem.
    pub name: String,
    /// Block configuration from the manifest.
    pub cfg: BlockConfig,
    /// (seq, batch) of the input.
    pub shape: InputShape,
    /// The stack's weights (block `i` under `{i}.`, or `nn.TransformerEncoder`'s names with
    /// its final norm).
    pub weights: StackWeights,
    /// Input, in the row order of `cfg.batch_first`.
    pub input: Vec<f32>,
    /// PyTorch's output, same layout.
    pub output: Vec<f32>,
    /// Key padding mask (batch, seq), nonzero = hidden.
    pub key_pad: Option<Vec<u32>>,
}

/// Reads every fixture that `dir/manifest.txt` lists
/// (`name seq batch embed heads ff layers pre_norm gelu causal padded batch_first eps`).
pub fn load_dir(dir: &Path) -> Result<Vec<Fixture>> {
    let manifest_path = dir.join("manifest.txt");
    let manifest = std::fs::read_to_string(&manifest_path)
        .map_err(|source| Error::Io { path: manifest_path.display().to_string(), source })?;
    let bad = |line: &str, why: String| Error::File {
        path: manifest_path.display().to_string(),
        reason: format!("line {line:?}: {why}"),
    };
    let mut out = Vec::new();
    for line in manifest.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 13 {
            return Err(bad(line, format!("expected 13 fields, got {}", f.len())));
        }
        let n = |i: usize| f[i].parse::<usize>().map_err(|_| bad(line, format!("field {i} is not a count")));
        let flag = |i: usize| f[i] == "1";
        let mut cfg = BlockConfig::new(n(3)?, n(4)?, n(5)?);
        cfg.pre_norm = flag(7);
        cfg.activation = if flag(8) { Activation::Gelu } else { Activation::Relu };
        cfg.causal = flag(9);
        cfg.batch_first = flag(11);
        cfg.eps = f[12].parse().map_err(|_| bad(line, "eps is not a number".into()))?;
        let file = TensorFile::open(&dir.join(format!("{}.safetensors", f[0])))?;
        let input = file.get("input")?;
        let shape = InputShape::from_shape(&input.shape, cfg.batch_first)?;
        if (shape.seq, shape.batch.max(1)) != (n(1)?, n(2)?.max(1)) {
            return Err(bad(line, format!("input shape {:?} disagrees with the manifest", input.shape)));
        }
        let key_pad = match flag(10) {
            true => Some(file.get_mask("key_padding_mask", &[shape.batch.max(1), shape.seq])?),
            false => None,
        };
        let weights = StackWeights::from_file(&file, "")?;
        if (weights.layers(), weights.embed, weights.ff) != (n(6)?, cfg.embed, cfg.ff) {
            return Err(bad(line, "the weights disagree with the manifest's layers, embed or ff".into()));
        }
        let output = file.get("output")?.data;
        out.push(Fixture { name: f[0].to_string(), cfg, shape, weights, input: input.data, output, key_pad });
    }
    Ok(out)
}
