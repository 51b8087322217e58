//! The attention walk-through: how one head of attention weighs the tokens
//! of a short sentence, computed by the engine's own kernels.
//!
//! 1. Each token gets an embedding and one head its q, k, v weights: seeded
//!    random ones ([`Walkthrough::random`]) or a real model's
//!    ([`minilm`]).
//! 2. The `matmul` kernel computes [q | k | v] = x · w_qkvᵀ + b.
//! 3. The fused `attention` kernel never writes its probabilities, so they are
//!    read out by running it with v = the identity: row s of softmax(q·kᵀ/√d)·I
//!    is the weight row itself. (Its head dim is widened to fit the identity,
//!    with q zero-padded and pre-scaled so the scale stays 1/√d.)
//!
//! ```
//! let w = resformer_cli::walkthrough::Walkthrough::random("I love deep learning", 16, 0)?;
//! let p = match resformer::Gpu::new() {
//!     Ok(gpu) => w.weights_gpu(&gpu, &Default::default())?, // the engine's kernels
//!     Err(_) => w.weights_cpu(),       // the CPU reference
//! };
//! assert_eq!(p.len(), 16); // (4, 4), each row sums to 1
//! println!("{}", w.table(&p, w.find("love").unwrap()));
//! # Ok::<(), resformer::Error>(())
//! ```

use std::path::Path;

use resformer::kernels::attention::{prepare_attention_variant, AttentionConfig, AttentionVariant, MAX_HEAD_DIM};
use resformer::kernels::matmul::Activation;
use resformer::kernels::KernelPolicy;

use resformer::model::bert::{load_tokenizer, load_weights, weights_file, BertConfig};
use resformer::rng::Rng;
use resformer::tensor::{DType, Tensor};
use resformer::{reference, Error, Gpu, Result};

use crate::heatmap::Heatmap;
use crate::raster::Canvas;

/// One head's view of a sentence.
pub struct Walkthrough {
    /// The tokens, in order.
    pub tokens: Vec<String>,
    /// E: the embedding width.
    pub embed: usize,
    /// d: the head dim.
    pub dim: usize,
    /// (T, E) token embeddings.
    pub x: Vec<f32>,
    /// (3d, E) and (3d): the head's rows of the in-projection, PyTorch's in_proj layout.
    pub w_qkv: Vec<f32>,
    /// The bias of those rows (3d).
    pub b_qkv: Vec<f32>,
}

fn word_seed(word: &str, seed: u64) -> u64 {
    // FNV-1a: the same word gets the same embedding in every sentence
    word.bytes().fold(0xcbf2_9ce4_8422_2325u64 ^ seed, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

impl Walkthrough {
    /// Seeded random embeddings (one per whitespace-separated word, E = d) and head weights.
    pub fn random(sentence: &str, dim: usize, seed: u64) -> Result<Walkthrough> {
        let tokens: Vec<String> = sentence.split_whitespace().map(String::from).collect();
        if dim == 0 || dim > MAX_HEAD_DIM {
            // refused before the (3d, d) weights are drawn
            return Err(Error::InvalidArgument {
                op: "attention walk-through",
                what: format!("head dim {dim}: the attention kernels hold 1..={MAX_HEAD_DIM}"),
            });
        }
        let x: Vec<f32> = tokens.iter().flat_map(|w| Rng::new(word_seed(w, seed)).vec(dim, -1.0, 1.0)).collect();
        let mut rng = Rng::new(seed ^ 0x5eed);
        let bound = 2.0 / (dim.max(1) as f32).sqrt();
        let w_qkv = rng.vec(3 * dim * dim, -bound, bound);
        let b_qkv = rng.vec(3 * dim, -0.1, 0.1);
        Self::new(tokens, x, dim, w_qkv, b_qkv)
    }

    /// Given tokens, their embeddings x (T, E) and one head's in-projection rows
    /// w_qkv (3d, E) and bias (3d), with E = x.len() / T.
    pub fn new(tokens: Vec<String>, x: Vec<f32>, dim: usize, w_qkv: Vec<f32>, b_qkv: Vec<f32>) -> Result<Walkthrough> {
        let bad = |what: String| Err(Error::InvalidArgument { op: "attention walk-through", what });
        if tokens.is_empty() {
            return bad("the sentence has no words".into());
        }
        if dim == 0 || dim > MAX_HEAD_DIM || tokens.len() > MAX_HEAD_DIM {
            return bad(format!("need 1..={MAX_HEAD_DIM} tokens and head dim, got {} tokens, dim {dim}", tokens.len()));
        }
        let embed = x.len() / tokens.len();
        if embed == 0 || x.len() != tokens.len() * embed || w_qkv.len() != 3 * dim * embed || b_qkv.len() != 3 * dim {
            return bad(format!(
                "x has {} values for {} tokens; w_qkv {} (want 3 x {dim} x E); b_qkv {} (want {})",
                x.len(),
                tokens.len(),
                w_qkv.len(),
                b_qkv.len(),
                3 * dim
            ));
        }
        Ok(Walkthrough { tokens, embed, dim, x, w_qkv, b_qkv })
    }

    /// Index of `word` among the tokens (case-insensitive).
    pub fn find(&self, word: &str) -> Option<usize> {
        self.tokens.iter().position(|t| t.eq_ignore_ascii_case(word))
    }

    fn attention_config(&self, head_dim: usize) -> AttentionConfig {
        AttentionConfig { batch: 1, seq: self.tokens.len(), heads: 1, head_dim, batch_first: false, causal: false }
    }

    /// The (T, T) attention weights from the CPU reference.
    pub fn weights_cpu(&self) -> Vec<f32> {
        let (t, d) = (self.tokens.len(), self.dim);
        let mut qkv = vec![0.0; t * 3 * d];
        // (T, 3D) = (T, E) · (3D, E)ᵀ
        let shape = resformer::ops::MatmulShape::linear(t, 3 * d, self.embed);
        reference::matmul::matmul(&mut qkv, &self.x, &self.w_qkv, Some(&self.b_qkv), Activation::None, shape);
        let p = reference::attention::attention_weights(&qkv, None, &self.attention_config(d), 0, 0);
        p.iter().map(|&v| v as f32).collect()
    }

    /// The (T, T) attention weights from the engine's matmul and attention kernels, the
    /// variants `policy` picks.
    pub fn weights_gpu(&self, gpu: &Gpu, policy: &KernelPolicy) -> Result<Vec<f32>> {
        let (t, d) = (self.tokens.len(), self.dim);
        // 1. [q | k | v] on the GPU
        let x = Tensor::from_f32(gpu, &[t, self.embed], &self.x)?;
        let w = Tensor::from_f32(gpu, &[3 * d, self.embed], &self.w_qkv)?;
        let b = Tensor::from_f32(gpu, &[3 * d], &self.b_qkv)?;
        let qkv = Tensor::empty(gpu, &[t, 3 * d], DType::F32)?;
        let mut enc = gpu.encoder("walkthrough.qkv");
        resformer::tune::prepare_matmul(gpu, policy, &x, &w, Some(&b), Activation::None, &qkv)?.record(&mut enc);
        gpu.submit_and_wait(enc)?;
        let qkv = qkv.read(gpu)?;
        // 2. widen to head dim w >= T: q · √(w/d) and zero-padded, k zero-padded, v = identity
        let wd = d.max(t);
        let widen = (wd as f32 / d as f32).sqrt();
        let mut probe = vec![0.0f32; t * 3 * wd];
        for s in 0..t {
            for i in 0..d {
                probe[s * 3 * wd + i] = qkv[s * 3 * d + i] * widen;
                probe[s * 3 * wd + wd + i] = qkv[s * 3 * d + d + i];
            }
            probe[s * 3 * wd + 2 * wd + s] = 1.0;
        }
        let probe = Tensor::from_f32(gpu, &[t, 3 * wd], &probe)?;
        let out = Tensor::empty(gpu, &[t, wd], DType::F32)?;
        let mut enc = gpu.encoder("walkthrough.attention");
        let variant = AttentionVariant::choose(gpu, policy.attention)?;
        prepare_attention_variant(gpu, variant, &probe, None, &self.attention_config(wd), &out)?.record(&mut enc);
        gpu.submit_and_wait(enc)?;
        let out = out.read(gpu)?;
        Ok((0..t).flat_map(|s| out[s * wd..s * wd + t].to_vec()).collect())
    }

    /// The weights of token `focus` over every token, as a table.
    pub fn table(&self, p: &[f32], focus: usize) -> String {
        let t = self.tokens.len();
        let width = self.tokens.iter().map(|s| s.chars().count()).max().unwrap_or(5).max(5);
        let mut s = format!("attention of {:?} over the sentence (one head, d = {}):\n", self.tokens[focus], self.dim);
        s += &format!("  {:<width$}  weight\n", "token");
        for j in 0..t {
            let w = p[focus * t + j];
            let bar = "#".repeat((w * 40.0).round() as usize);
            s += &format!("  {:<width$}  {w:.4}  {bar}\n", self.tokens[j]);
        }
        let sum: f32 = p[focus * t..(focus + 1) * t].iter().sum();
        s += &format!("  {:<width$}  {sum:.4}\n", "sum");
        s
    }

    /// The (T, T) matrix as a [`Heatmap`]: rows are queries, columns keys, `focus` highlighted.
    pub fn heatmap<'a>(&'a self, p: &'a [f32], focus: Option<usize>) -> Heatmap<'a> {
        Heatmap {
            title: format!("attention weights, one head, d = {}; rows sum to 1", self.dim),
            x_label: "key (attended to)",
            y_label: "query",
            rows: &self.tokens,
            cols: &self.tokens,
            values: p,
            scale: 1.0,
            labels: p.iter().map(|v| format!("{v:.2}")).collect(),
            highlight_row: focus,
        }
    }

    /// The whole (T, T) matrix as a PNG heatmap, lettered with a built-in pixel font (tokens
    /// upper-cased).
    pub fn png(&self, p: &[f32], focus: Option<usize>) -> Canvas {
        self.heatmap(p, focus).png()
    }

    /// Writes the heatmap to `path`: PNG for `.png`, SVG for `.svg`.
    pub fn save_heatmap(&self, p: &[f32], focus: Option<usize>, path: &Path) -> Result<()> {
        self.heatmap(p, focus).save(path, "attention walk-through")
    }

    /// The whole (T, T) matrix as an SVG heatmap: rows are queries, columns keys.
    pub fn svg(&self, p: &[f32], focus: Option<usize>) -> String {
        self.heatmap(p, focus).svg()
    }
}

/// The attention walk-through on real weights: a BERT sentence encoder's tokens for
/// `sentence` (with `[CLS]` and `[SEP]`; MiniLM's, say), their embeddings as layer 0 sees them
/// (after the embedding LayerNorm), and the q, k, v weights of layer 0's `head`.
pub fn minilm(dir: &Path, sentence: &str, head: usize) -> Result<Walkthrough> {
    let cfg = BertConfig::from_dir(dir)?;
    let (e, heads) = (cfg.hidden, cfg.heads);
    if head >= heads {
        return Err(Error::InvalidArgument {
            op: "attention walk-through",
            what: format!("head {head}: the model has {heads} (0..={})", heads - 1),
        });
    }
    let (weights, emb) = load_weights(&weights_file(dir)?, &cfg)?;
    let tokenizer = load_tokenizer(&dir.join("tokenizer.json"), cfg.max_tokens)?;
    let enc = tokenizer
        .encode(sentence, true)
        .map_err(|e| Error::InvalidArgument { op: "tokenize", what: format!("{sentence:?}: {e}") })?;
    let mut raw = Vec::new();
    for (p, &id) in enc.get_ids().iter().enumerate() {
        if id as usize >= emb.vocab {
            return Err(Error::InvalidArgument {
                op: "tokenize",
                what: format!("token id {id} is outside the vocabulary"),
            });
        }
        emb.push(&mut raw, id, p);
    }
    let t = enc.get_ids().len();
    let (g, b) = weights.input_norm().expect("a BERT has an embedding LayerNorm");
    let mut x = vec![0.0; raw.len()];
    reference::layernorm::layernorm(&mut x, &raw, None, g, b, t, e, cfg.eps);
    // rows h*D..(h+1)*D of each of q, k, v in the packed in-projection
    let (d, block) = (e / heads, &weights.blocks[0]);
    let mut w = Vec::with_capacity(3 * d * e);
    let mut bias = Vec::with_capacity(3 * d);
    for part in 0..3 {
        let r0 = part * e + head * d;
        w.extend_from_slice(&block.in_proj_weight[r0 * e..(r0 + d) * e]);
        bias.extend_from_slice(&block.in_proj_bias[r0..r0 + d]);
    }
    Walkthrough::new(enc.get_tokens().to_vec(), x, d, w, bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use resformer::testing::{assert_close, shared_gpu, Tol};

    /// Softmax probabilities from f32 kernels against the f64 reference.
    const WALKTHROUGH_TOL: Tol = Tol { atol: 1e-5, rtol: 1e-4 };

    #[test]
    fn walkthrough_weights_from_the_kernels_match_the_reference() {
        let Some(gpu) = shared_gpu() else { return };
        for (sentence, dim) in [("I love deep learning", 16), ("a", 8), ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen", 8)] {
            let w = Walkthrough::random(sentence, dim, 3).unwrap();
            let got = w.weights_gpu(gpu, &KernelPolicy::default()).unwrap();
            let want = w.weights_cpu();
            assert_close(&format!("walkthrough {sentence:?} d{dim}"), &got, &want, WALKTHROUGH_TOL);
            let t = w.tokens.len();
            for r in 0..t {
                let sum: f32 = got[r * t..(r + 1) * t].iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "row {r} sums to {sum}");
            }
            // a flat softmax would hide a broken scale or widening: rows must differ
            assert!(t == 1 || got.iter().any(|&v| (v - 1.0 / t as f32).abs() > 1e-3));
        }
    }

    #[test]
    fn walkthrough_table_and_svg_name_every_token() {
        let w = Walkthrough::random("I love deep learning", 16, 0).unwrap();
        let p = w.weights_cpu();
        let focus = w.find("LOVE").unwrap();
        let table = w.table(&p, focus);
        let sum_line = table.lines().find(|l| l.trim_start().starts_with("sum")).unwrap();
        assert!(table.contains("\"love\"") && sum_line.ends_with("1.0000"), "{table}");
        let svg = w.svg(&p, Some(focus));
        for tok in ["I", "love", "deep", "learning", "query", "key"] {
            assert!(svg.contains(&format!(">{tok}")), "svg lacks {tok}");
        }
        assert_eq!(svg.matches("<rect x=").count(), 16);
        // the PNG: every cell is filled with its weight's colour
        let img = w.png(&p, Some(focus));
        let (width, height) = img.size();
        let colours: std::collections::HashSet<[u8; 3]> =
            (0..height).flat_map(|y| (0..width).map(move |x| (x, y))).map(|(x, y)| img.pixel(x, y)).collect();
        for &v in &p {
            assert!(colours.contains(&crate::heatmap::cell_color(v).0), "no cell of weight {v}");
        }
        let png_path = std::env::temp_dir().join(format!("resformer-walk-{}.png", std::process::id()));
        w.save_heatmap(&p, Some(focus), &png_path).unwrap();
        assert_eq!(&std::fs::read(&png_path).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
        assert!(w.save_heatmap(&p, None, "x.jpg".as_ref()).is_err());
    }
}
