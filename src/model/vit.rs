//! A Vision Transformer on the engine: handwritten digits (8x8, the UCI set scikit-learn
//! ships) classified by the model `scripts/train_vit_digits.py` trains (committed in
//! `assets/vit-digits/`).
//!
//! An image (pixels / 16) is cut into 2x2 patches, 16 tokens of 4 values, and a class token
//! goes first. All of it runs through the existing kernels:
//!
//! ```text
//! tokens (B·17, 5) = [patch pixels | is-class-token]         built on the host (the "tokenizer")
//! x  = tokens · [patch_embed.weight | cls - patch_embed.bias]ᵀ + patch_embed.bias   matmul: the
//!      class token's row gives cls, a patch row its embedding
//! x += pos_embed (repeated per image)                         residual_add
//! x  = blocks(x)                                              the stack, batch-first (B, 17, E)
//! logits = LN(x) · headᵀ + head.bias, read at each class-token row   layernorm, matmul
//! ```
//!
//! Every step but the tokenizer is the stack's step list ([`super::steps`]): on a GPU one plan
//! records it into one encoder, on the host the same list runs on the CPU backend or the
//! reference kernels, and `check_ops` compares it step by step.

use std::path::Path;

use super::host::{forward_with, HostKernels};
use super::steps::Edge;
use super::{BlockConfig, BlockWeights, ModelFiles, Placement, Stack, StackWeights};
use crate::error::{Error, Result};
use crate::ops::{Activation, AttentionConfig, MatmulShape};
use crate::reference;

/// The model's shape, `config.json` of the model directory.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct VitConfig {
    /// Image side in pixels (8).
    pub image: usize,
    /// Patch side in pixels (2).
    pub patch: usize,
    /// Embed dim E.
    pub embed: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward dim F.
    pub ff: usize,
    /// Blocks.
    pub layers: usize,
    /// Classes (10).
    pub classes: usize,
    /// Pixels are divided by this (16: the data set's 0-16 range).
    pub pixel_scale: f32,
    /// Pre-norm blocks (the committed model is post-norm).
    pub pre_norm: bool,
    /// LayerNorm eps.
    pub eps: f32,
}

impl VitConfig {
    /// Values per patch.
    pub fn patch_values(&self) -> usize {
        self.patch * self.patch
    }

    /// Tokens per image: the class token and one per patch.
    pub fn tokens(&self) -> usize {
        let g = self.image / self.patch;
        g * g + 1
    }

    fn block(&self) -> BlockConfig {
        let mut b = BlockConfig::new(self.embed, self.heads, self.ff);
        b.pre_norm = self.pre_norm;
        b.eps = self.eps;
        b.batch_first = true;
        b
    }
}

/// The labelled images: `images[i]` has image² pixel values (0-16), `labels[i]` its class.
#[derive(Clone, Debug)]
pub struct Digits {
    /// Row-major pixels, one Vec per image.
    pub images: Vec<Vec<f32>>,
    /// Class of each image.
    pub labels: Vec<usize>,
}

impl Digits {
    /// Reads `digits.csv` (scripts/fetch-digits.sh): per line 64 pixel values and a label.
    pub fn load(path: &Path) -> Result<Digits> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: p.clone(), source })?;
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = |why: String| Error::File { path: p.clone(), reason: format!("line {}: {why}", i + 1) };
            let v: Vec<f32> = line
                .split(',')
                .map(|s| s.trim().parse::<f32>().map_err(|_| bad(format!("{s:?} is not a number"))))
                .collect::<Result<_>>()?;
            if v.len() != 65 {
                return Err(bad(format!("expected 64 pixels and a label, got {} values", v.len())));
            }
            let label = v[64];
            if !(0.0..10.0).contains(&label) || label.fract() != 0.0 {
                return Err(bad(format!("label {label} is not a digit")));
            }
            images.push(v[..64].to_vec());
            labels.push(label as usize);
        }
        Ok(Digits { images, labels })
    }
}

/// The test split's indices into the data set (`split.json` of the model directory).
pub fn test_split(dir: &Path) -> Result<Vec<usize>> {
    #[derive(serde::Deserialize)]
    struct Split {
        test_indices: Vec<usize>,
    }
    let path = dir.join("split.json");
    let text =
        std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    let split: Split = serde_json::from_str(&text)
        .map_err(|e| Error::File { path: path.display().to_string(), reason: e.to_string() })?;
    Ok(split.test_indices)
}

/// A ViT classifier loaded on a [`Placement`] (an engine's device or host): the whole model
/// is one step list ([`super::steps`]) that the stack runs, from the token rows to the logits.
pub struct VitClassifier {
    cfg: VitConfig,
    /// On the host: the blocks and the steps around them (the reference runs these).
    weights: StackWeights,
    stack: Stack,
}

impl VitClassifier {
    /// Loads `dir/config.json` and `dir/model.safetensors` (PyTorch's names: `patch_embed`,
    /// `cls_token`, `pos_embed`, `blocks.{i}.…`, `norm`, `head`) onto `place`
    /// (`Engine::load_vit` does this on the engine's device).
    pub fn load(dir: &Path, place: &Placement) -> Result<VitClassifier> {
        VitClassifier::load_files(&ModelFiles::Dir(dir), place)
    }

    /// [`VitClassifier::load`] of the model's files, on disk or in memory (the browser's).
    pub fn load_files(files: &ModelFiles<'_>, place: &Placement) -> Result<VitClassifier> {
        let missing = || Error::File { path: files.path("config.json"), reason: "missing".into() };
        let cfg: VitConfig = serde_json::from_value(files.json("config.json")?.ok_or_else(missing)?)
            .map_err(|e| Error::File { path: files.path("config.json"), reason: e.to_string() })?;
        let file = files.tensors("model.safetensors")?;
        let (e, p, t, c) = (cfg.embed, cfg.patch_values(), cfg.tokens(), cfg.classes);
        let get = |name: &str, shape: &[usize]| file.get_shaped(name, shape).map(|h| h.data);
        let patch_w = get("patch_embed.weight", &[e, p])?;
        let embed_b = get("patch_embed.bias", &[e])?;
        let cls = get("cls_token", &[1, 1, e])?;
        // [W | cls - b]: a token (pixels, 0) embeds as W·pixels + b, the token (0, 1) as cls
        let mut embed_w = Vec::with_capacity(e * (p + 1));
        for r in 0..e {
            embed_w.extend_from_slice(&patch_w[r * p..(r + 1) * p]);
            embed_w.push(cls[r] - embed_b[r]);
        }
        let pos = get("pos_embed", &[1, t, e])?;
        let norm = (get("norm.weight", &[e])?, get("norm.bias", &[e])?);
        let (head_w, head_b) = (get("head.weight", &[c, e])?, get("head.bias", &[c])?);
        let mut weights = StackWeights::from_file(&file, "blocks.")?;
        if weights.layers() != cfg.layers || weights.embed != e || weights.ff != cfg.ff {
            return Err(Error::File {
                path: file.path().into(),
                reason: format!(
                    "blocks are {} x (E {}, F {}) but config.json says {} x (E {e}, F {})",
                    weights.layers(),
                    weights.embed,
                    weights.ff,
                    cfg.layers,
                    cfg.ff
                ),
            });
        }
        // tokens (T, P+1) -> (T, E) -> + pos_embed -> blocks -> norm -> (T, C)
        let linear = |name: &str, weight: Vec<f32>, bias: Vec<f32>, n: usize, k: usize| Edge::Linear {
            name: name.into(),
            weight,
            bias,
            n,
            k,
        };
        weights.before = vec![
            linear("patch_embed", embed_w, embed_b, e, p + 1),
            Edge::AddPositions { name: "pos_embed".into(), table: pos, width: e },
        ];
        weights.after = vec![Edge::layernorm("norm", norm.0, norm.1), linear("head", head_w, head_b, c, e)];
        let stack = place.load_stack(weights.clone(), cfg.block())?;
        Ok(VitClassifier { cfg, weights, stack })
    }

    /// GPU plans held now (at most [`super::gpu::MAX_PLANS`]); 0 on the host.
    pub fn plans(&self) -> usize {
        self.stack.gpu().map_or(0, |g| g.cached_plans())
    }

    /// The weights on the host: the blocks and the steps around them.
    pub fn weights(&self) -> &StackWeights {
        &self.weights
    }

    /// The model's shape.
    pub fn config(&self) -> &VitConfig {
        &self.cfg
    }

    /// Which path runs, for reports.
    pub fn describe(&self) -> String {
        self.stack.describe()
    }

    /// The (B·tokens, P + 1) token matrix of `images`: the class token first, then each patch
    /// (row-major grid, pixels row-major inside), pixels divided by `pixel_scale`.
    pub fn tokens(&self, images: &[&[f32]]) -> Result<Vec<f32>> {
        let VitConfig { image, patch, pixel_scale, .. } = self.cfg;
        let (p, g) = (self.cfg.patch_values(), image / patch);
        let mut out = Vec::with_capacity(images.len() * self.cfg.tokens() * (p + 1));
        for (i, img) in images.iter().enumerate() {
            if img.len() != image * image {
                return Err(Error::InvalidArgument {
                    op: "vit",
                    what: format!("image {i} has {} pixels, expected {}", img.len(), image * image),
                });
            }
            out.extend(std::iter::repeat_n(0.0, p));
            out.push(1.0);
            for (gr, gc) in (0..g).flat_map(|r| (0..g).map(move |c| (r, c))) {
                for (dy, dx) in (0..patch).flat_map(|y| (0..patch).map(move |x| (y, x))) {
                    out.push(img[(gr * patch + dy) * image + gc * patch + dx] / pixel_scale);
                }
                out.push(0.0);
            }
        }
        Ok(out)
    }

    /// Class logits (B, classes) of `images` (each image² pixel values, 0-16).
    pub fn logits(&self, images: &[&[f32]]) -> Result<Vec<f32>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let tokens = self.tokens(images)?;
        // logits of every token row (B·T, C): one forward of the whole step list
        let all = self.stack.forward(&tokens, self.cfg.tokens(), images.len(), None)?;
        Ok(self.class_rows(&all, images.len()))
    }

    /// [`VitClassifier::logits`] without blocking, for the browser ([`Stack::forward_async`]).
    pub async fn logits_async(&self, images: &[&[f32]]) -> Result<Vec<f32>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let tokens = self.tokens(images)?;
        let all = self.stack.forward_async(&tokens, self.cfg.tokens(), images.len(), None).await?;
        Ok(self.class_rows(&all, images.len()))
    }

    /// Each image's class-token row of the logits of every token row (B·T, C).
    fn class_rows(&self, all: &[f32], images: usize) -> Vec<f32> {
        let (t, c) = (self.cfg.tokens(), self.cfg.classes);
        (0..images).flat_map(|b| all[b * t * c..b * t * c + c].to_vec()).collect()
    }

    /// `--check-ops` on `images`: every step of the model's list, patch embedding and head
    /// included, on the reference's inputs against the reference.
    pub fn check_ops(&self, images: &[&[f32]]) -> Result<Vec<super::check::OpCheck>> {
        let tokens = self.tokens(images)?;
        self.stack.check_ops(&self.weights, &tokens, self.cfg.tokens(), images.len(), None)
    }

    /// The predicted class of each image.
    pub fn predict(&self, images: &[&[f32]]) -> Result<Vec<usize>> {
        Ok(self.logits(images)?.chunks(self.cfg.classes).map(argmax).collect())
    }

    /// The class token's attention over the tokens in block `block`, averaged over heads:
    /// (tokens) weights, the class token's own first, then each patch in grid order. Computed
    /// with the reference kernels on the stack's input to that block.
    pub fn class_attention(&self, image: &[f32], block: usize) -> Result<Vec<f32>> {
        if block >= self.cfg.layers {
            return Err(Error::InvalidArgument {
                op: "vit",
                what: format!("block {block} of a {}-block model", self.cfg.layers),
            });
        }
        let (e, t) = (self.cfg.embed, self.cfg.tokens());
        let tokens = self.tokens(&[image])?;
        // the steps before the blocks and blocks 0..block: the stack's input to `block`
        let before =
            StackWeights { blocks: self.weights.blocks[..block].to_vec(), after: Vec::new(), ..self.weights.clone() };
        let x = forward_with(HostKernels::Reference, &before, None, &self.cfg.block(), &tokens, t, 1, None);
        let b: &BlockWeights = &self.weights.blocks[block];
        let [in_w, in_b, ..] = b.tensors();
        let mut qkv = vec![0.0; t * 3 * e];
        // (T, 3E) = (T, E) · (3E, E)ᵀ
        reference::matmul::matmul(&mut qkv, &x, in_w, Some(in_b), Activation::None, MatmulShape::linear(t, 3 * e, e));
        let heads = self.cfg.heads;
        let att = AttentionConfig { batch: 1, seq: t, heads, head_dim: e / heads, batch_first: true, causal: false };
        let mut mean = vec![0.0f32; t];
        for h in 0..heads {
            let w = reference::attention::attention_weights(&qkv, None, &att, 0, h);
            mean.iter_mut().zip(&w[..t]).for_each(|(m, &v)| *m += v as f32 / heads as f32);
        }
        Ok(mean)
    }
}

/// Index of the largest value (the first of equals).
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

/// softmax of one row of logits.
pub fn softmax(v: &[f32]) -> Vec<f32> {
    let max = v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let e: Vec<f32> = v.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|x| x / sum).collect()
}
