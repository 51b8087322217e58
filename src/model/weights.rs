//! Block weights on the host, loaded from safetensors with PyTorch's
//! state_dict names or drawn at random from a seed.

use std::path::Path;

use super::config::BlockConfig;
use super::io::TensorFile;
use super::steps::{Edge, Layout};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// One block's parameters, row-major, in PyTorch's layouts.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockWeights {
    /// (3E, E): rows 0..E project q, E..2E k, 2E..3E v.
    pub in_proj_weight: Vec<f32>,
    /// (3E)
    pub in_proj_bias: Vec<f32>,
    /// (E, E)
    pub out_proj_weight: Vec<f32>,
    /// (E)
    pub out_proj_bias: Vec<f32>,
    /// ffn.0: (F, E) and (F)
    pub ff1_weight: Vec<f32>,
    /// ffn.0 bias (F).
    pub ff1_bias: Vec<f32>,
    /// ffn.2: (E, F) and (E)
    pub ff2_weight: Vec<f32>,
    /// ffn.2 bias (E).
    pub ff2_bias: Vec<f32>,
    /// norm1, norm2: (E) each
    pub norm1_weight: Vec<f32>,
    /// norm1 β (E).
    pub norm1_bias: Vec<f32>,
    /// norm2 γ (E).
    pub norm2_weight: Vec<f32>,
    /// norm2 β (E).
    pub norm2_bias: Vec<f32>,
}

/// L blocks with their own weights; E and F are common to all.
#[derive(Clone, Debug, PartialEq)]
pub struct StackWeights {
    /// E.
    pub embed: usize,
    /// F.
    pub ff: usize,
    /// The blocks, in order.
    pub blocks: Vec<BlockWeights>,
    /// Steps from the input into the blocks' stream (BERT's embedding LayerNorm; the ViT's
    /// patch embedding and position add); see [`super::steps`].
    pub before: Vec<Edge>,
    /// Steps after the last block (`nn.TransformerEncoder(norm=...)`'s final norm; the ViT's
    /// norm and head).
    pub after: Vec<Edge>,
}

/// How a state_dict names the blocks of a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// An `nn.Sequential` of the engine's blocks: `{prefix}{i}.attn.in_proj_weight`,
    /// `{prefix}{i}.ffn.0.weight`, ...
    Blocks,
    /// PyTorch's `nn.TransformerEncoder`: `{prefix}layers.{i}.self_attn.in_proj_weight`,
    /// `{prefix}layers.{i}.linear1.weight`, ..., and an optional final `{prefix}norm.*`.
    TransformerEncoder,
}

impl Naming {
    /// The name of block `i`'s parameter `suffix` (a [`block_tensor_names`] suffix).
    pub fn name(self, prefix: &str, i: usize, suffix: &str) -> String {
        match self {
            Naming::Blocks => format!("{prefix}{i}.{suffix}"),
            Naming::TransformerEncoder => {
                let torch = match suffix {
                    "ffn.0.weight" => "linear1.weight".to_string(),
                    "ffn.0.bias" => "linear1.bias".to_string(),
                    "ffn.2.weight" => "linear2.weight".to_string(),
                    "ffn.2.bias" => "linear2.bias".to_string(),
                    s => s.strip_prefix("attn.").map_or(s.to_string(), |rest| format!("self_attn.{rest}")),
                };
                format!("{prefix}layers.{i}.{torch}")
            }
        }
    }
}

/// The state_dict suffixes of one block and their shapes for (E, F).
pub fn block_tensor_names(e: usize, f: usize) -> [(&'static str, Vec<usize>); 12] {
    [
        ("attn.in_proj_weight", vec![3 * e, e]),
        ("attn.in_proj_bias", vec![3 * e]),
        ("attn.out_proj.weight", vec![e, e]),
        ("attn.out_proj.bias", vec![e]),
        ("ffn.0.weight", vec![f, e]),
        ("ffn.0.bias", vec![f]),
        ("ffn.2.weight", vec![e, f]),
        ("ffn.2.bias", vec![e]),
        ("norm1.weight", vec![e]),
        ("norm1.bias", vec![e]),
        ("norm2.weight", vec![e]),
        ("norm2.bias", vec![e]),
    ]
}

impl BlockWeights {
    /// The tensors in the order of [`block_tensor_names`].
    pub fn tensors(&self) -> [&Vec<f32>; 12] {
        [
            &self.in_proj_weight,
            &self.in_proj_bias,
            &self.out_proj_weight,
            &self.out_proj_bias,
            &self.ff1_weight,
            &self.ff1_bias,
            &self.ff2_weight,
            &self.ff2_bias,
            &self.norm1_weight,
            &self.norm1_bias,
            &self.norm2_weight,
            &self.norm2_bias,
        ]
    }

    /// Builds a block from its 12 tensors in [`block_tensor_names`] order.
    pub fn from_tensors(mut t: Vec<Vec<f32>>) -> BlockWeights {
        let mut next = || t.remove(0);
        BlockWeights {
            in_proj_weight: next(),
            in_proj_bias: next(),
            out_proj_weight: next(),
            out_proj_bias: next(),
            ff1_weight: next(),
            ff1_bias: next(),
            ff2_weight: next(),
            ff2_bias: next(),
            norm1_weight: next(),
            norm1_bias: next(),
            norm2_weight: next(),
            norm2_bias: next(),
        }
    }
}

/// Whether parameter `i` of a block (in [`block_tensor_names`] order) is a matmul weight.
pub fn is_matmul_weight(i: usize) -> bool {
    use super::block::Param;
    [Param::InProjW, Param::OutProjW, Param::Ff1W, Param::Ff2W].iter().any(|&p| p as usize == i)
}

impl StackWeights {
    /// The weights the f16 mode computes with: every matmul weight (in-projection, out
    /// projection, both FFN layers) rounded to f16, biases and LayerNorm parameters as they are.
    pub fn rounded_to_f16(&self) -> StackWeights {
        let round = |v: &Vec<f32>| v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect::<Vec<f32>>();
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                let t = b.tensors().into_iter().enumerate();
                BlockWeights::from_tensors(
                    t.map(|(i, v)| if is_matmul_weight(i) { round(v) } else { v.to_vec() }).collect(),
                )
            })
            .collect();
        StackWeights { blocks, ..self.clone() }
    }

    /// Number of blocks, L.
    pub fn layers(&self) -> usize {
        self.blocks.len()
    }

    /// The steps around the blocks, `before` then `after`: what [`super::steps::ModelStep::Edge`]
    /// indexes.
    pub fn edges(&self) -> Vec<&Edge> {
        self.before.iter().chain(&self.after).collect()
    }

    /// The model's step list for blocks of `cfg`.
    pub fn layout(&self, cfg: &BlockConfig) -> Layout {
        Layout::new(cfg, &self.before, &self.after, self.layers())
    }

    /// (γ, β) of the final LayerNorm, when the only step after the blocks is one
    /// (`nn.TransformerEncoder(norm=...)`).
    pub fn output_norm(&self) -> Option<(&[f32], &[f32])> {
        match &self.after[..] {
            [Edge::Layernorm { gamma, beta, .. }] => Some((gamma, beta)),
            _ => None,
        }
    }

    /// (γ, β) of the input LayerNorm, when the only step before the blocks is one (BERT's
    /// embedding LayerNorm).
    pub fn input_norm(&self) -> Option<(&[f32], &[f32])> {
        match &self.before[..] {
            [Edge::Layernorm { gamma, beta, .. }] => Some((gamma, beta)),
            _ => None,
        }
    }

    /// Seeded random weights: Linear layers U(±1/√fan_in) as PyTorch's default
    /// init, LayerNorm γ near 1 and β near 0 (but not equal, so tests see them).
    pub fn random(seed: u64, layers: usize, embed: usize, ff: usize) -> StackWeights {
        let mut rng = Rng::new(seed);
        let blocks = (0..layers)
            .map(|_| {
                let t = block_tensor_names(embed, ff)
                    .iter()
                    .map(|(name, shape)| {
                        let n: usize = shape.iter().product();
                        if name.starts_with("norm") && name.ends_with("weight") {
                            rng.vec(n, 0.8, 1.2)
                        } else if name.starts_with("norm") {
                            rng.vec(n, -0.2, 0.2)
                        } else {
                            let fan_in = if name.contains("ffn.2") { ff } else { embed };
                            let bound = 1.0 / (fan_in as f32).sqrt();
                            rng.vec(n, -bound, bound)
                        }
                    })
                    .collect();
                BlockWeights::from_tensors(t)
            })
            .collect();
        StackWeights { embed, ff, blocks, before: Vec::new(), after: Vec::new() }
    }

    /// Loads a stack from a safetensors file, with either naming ([`Naming`], detected): the
    /// engine's blocks `{prefix}0.attn.*`, `{prefix}0.ffn.0.*`, ..., or an `nn.TransformerEncoder`
    /// state_dict, `{prefix}layers.0.self_attn.*`, `{prefix}layers.0.linear1.*`, ..., whose final
    /// `{prefix}norm.*`, when present, becomes the one step of [`StackWeights::after`]. E and F come from
    /// block 0's out-projection and first FFN layer; L is the number of consecutive blocks.
    pub fn load(path: &Path, prefix: &str) -> Result<StackWeights> {
        Self::from_file(&TensorFile::open(path)?, prefix)
    }

    /// Like [`StackWeights::load`], from an open file.
    pub fn from_file(file: &TensorFile, prefix: &str) -> Result<StackWeights> {
        let err = |reason: String| Error::File { path: file.path().into(), reason };
        let probe = |n: Naming| n.name(prefix, 0, "attn.out_proj.weight");
        let found: Vec<Naming> =
            [Naming::Blocks, Naming::TransformerEncoder].into_iter().filter(|&n| file.contains(&probe(n))).collect();
        let naming = match found[..] {
            [n] => n,
            [] => {
                let names = file.names();
                let shown: Vec<&String> = names.iter().take(6).collect();
                return Err(err(format!(
                    "missing tensor `{}` or `{}` (prefix {prefix:?}); the file holds {} tensors, e.g. {shown:?}; is the prefix right?",
                    probe(Naming::Blocks),
                    probe(Naming::TransformerEncoder),
                    names.len()
                )));
            }
            _ => {
                return Err(err(format!(
                    "the file mixes two namings: `{}` (the engine's blocks) and `{}` (nn.TransformerEncoder); keep one",
                    probe(Naming::Blocks),
                    probe(Naming::TransformerEncoder)
                )))
            }
        };
        let name = |i: usize, suffix: &str| naming.name(prefix, i, suffix);
        let first = name(0, "attn.out_proj.weight");
        let out = file.get(&first)?;
        let [e, e2] = out.shape[..] else {
            return Err(err(format!("tensor `{first}` expected shape [E, E], found {:?}", out.shape)));
        };
        let ff1 = file.get(&name(0, "ffn.0.weight"))?;
        let f = ff1.shape.first().copied().unwrap_or(0);
        if e != e2 || e == 0 || f == 0 {
            return Err(err(format!(
                "block 0: out_proj.weight {:?} and the first FFN weight {:?} give no valid E, F",
                out.shape, ff1.shape
            )));
        }
        let mut blocks = Vec::new();
        while file.contains(&name(blocks.len(), "attn.out_proj.weight")) {
            let i = blocks.len();
            let t = block_tensor_names(e, f)
                .iter()
                .map(|(suffix, shape)| file.get_shaped(&name(i, suffix), shape).map(|t| t.data))
                .collect::<Result<Vec<_>>>()?;
            blocks.push(BlockWeights::from_tensors(t));
        }
        let after = match naming {
            Naming::TransformerEncoder if file.contains(&format!("{prefix}norm.weight")) => vec![Edge::layernorm(
                "norm",
                file.get_shaped(&format!("{prefix}norm.weight"), &[e])?.data,
                file.get_shaped(&format!("{prefix}norm.bias"), &[e])?.data,
            )],
            _ => Vec::new(),
        };
        Ok(StackWeights { embed: e, ff: f, blocks, before: Vec::new(), after })
    }

    /// Which naming [`StackWeights::from_file`] found, for reports: the file holds the
    /// engine's blocks or an `nn.TransformerEncoder` under `prefix`.
    pub fn naming_of(file: &TensorFile, prefix: &str) -> Option<Naming> {
        [Naming::Blocks, Naming::TransformerEncoder]
            .into_iter()
            .find(|&n| file.contains(&n.name(prefix, 0, "attn.out_proj.weight")))
    }

    /// Writes the weights with the engine's block names under `prefix`.
    pub fn save(&self, path: &Path, prefix: &str) -> Result<()> {
        self.save_as(path, prefix, Naming::Blocks)
    }

    /// Writes the weights under `prefix` with `naming` (an `nn.TransformerEncoder` state_dict
    /// with [`Naming::TransformerEncoder`], the output norm as its final `norm`).
    pub fn save_as(&self, path: &Path, prefix: &str, naming: Naming) -> Result<()> {
        let names = block_tensor_names(self.embed, self.ff);
        let mut owned: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            for ((suffix, shape), data) in names.iter().zip(b.tensors()) {
                owned.push((naming.name(prefix, i, suffix), shape.clone(), data));
            }
        }
        if let (Some((g, b)), Naming::TransformerEncoder) = (self.output_norm(), naming) {
            owned.push((format!("{prefix}norm.weight"), vec![self.embed], g));
            owned.push((format!("{prefix}norm.bias"), vec![self.embed], b));
        }
        let refs: Vec<(&str, &[usize], &[f32])> =
            owned.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), *d)).collect();
        super::io::write_f32(path, &refs)
    }
}
