//! A real pretrained model on the engine: sentence-transformers'
//! all-MiniLM-L6-v2 (Apache-2.0), a 6-layer post-LN BERT encoder (hidden 384,
//! 12 heads, ff 1536, GELU with erf, LayerNorm eps 1e-12), mean-pooled and
//! L2-normalised into 384-dim sentence embeddings.
//!
//! It reuses the block and stack: BERT's separate q, k, v projections are
//! concatenated into the packed in-projection, its layers are post-norm blocks
//! with GELU, the embedding LayerNorm is the stack's input norm, and padded
//! sentences in a batch are hidden by the key-padding mask.
//!
//! ```no_run
//! use resformer::{Engine, EngineOptions};
//! let engine = Engine::new_blocking(EngineOptions::default())?;
//! let model = engine.load_minilm("models/all-MiniLM-L6-v2".as_ref())?;
//! let e = model.embed(&["A man is eating food.", "A man is eating a piece of bread."])?;
//! let cos: f32 = e[0].iter().zip(&e[1]).map(|(a, b)| a * b).sum(); // unit vectors
//! println!("similarity {cos:.4} on {}", model.describe());
//! # Ok::<(), resformer::Error>(())
//! ```

use std::path::Path;
use std::time::Instant;

use tokenizers::{Tokenizer, TruncationParams};

use super::io::TensorFile;
use super::{BlockConfig, BlockWeights, Placement, Stack, StackWeights};
use crate::error::{Error, Result};
use crate::ops::Activation;

/// Hidden size, heads, feed-forward size and layers of all-MiniLM-L6-v2.
pub const HIDDEN: usize = 384;
/// Attention heads.
pub const HEADS: usize = 12;
/// Feed-forward size.
pub const FF: usize = 1536;
/// Encoder layers.
pub const LAYERS: usize = 6;
/// sentence-transformers' max_seq_length for this model (special tokens included).
pub const MAX_TOKENS: usize = 256;
const POSITIONS: usize = 512;
const EPS: f32 = 1e-12;

/// The block configuration of a BERT layer of this model.
pub fn block_config() -> BlockConfig {
    BlockConfig {
        embed: HIDDEN,
        heads: HEADS,
        ff: FF,
        pre_norm: false,
        activation: Activation::Gelu,
        eps: EPS,
        causal: false,
        batch_first: true,
        precision: super::Precision::F32,
    }
}

/// Token, position and token-type embedding tables.
pub struct Embeddings {
    /// (vocab, 384)
    pub word: Vec<f32>,
    /// (512, 384)
    pub position: Vec<f32>,
    /// token type 0, (384): sentence-transformers encodes single sentences
    pub token_type: Vec<f32>,
    /// Vocabulary size (rows of `word`).
    pub vocab: usize,
}

impl Embeddings {
    /// word[id] + position[p] + token_type[0] of one token, appended to `out`.
    pub fn push(&self, out: &mut Vec<f32>, id: u32, pos: usize) {
        let w = &self.word[id as usize * HIDDEN..(id as usize + 1) * HIDDEN];
        let p = &self.position[pos * HIDDEN..(pos + 1) * HIDDEN];
        out.extend(w.iter().zip(p).zip(&self.token_type).map(|((a, b), c)| a + b + c));
    }
}

/// Reads the BERT weights of `file` into the stack's form and the embedding tables.
pub fn load_weights(file: &TensorFile) -> Result<(StackWeights, Embeddings)> {
    let e = HIDDEN;
    let get = |name: &str, shape: &[usize]| file.get_shaped(name, shape).map(|t| t.data);
    let word = file.get("embeddings.word_embeddings.weight")?;
    let vocab = match word.shape[..] {
        [v, h] if h == e && v > 0 => v,
        _ => {
            return Err(Error::File {
                path: file.path().into(),
                reason: format!(
                    "tensor `embeddings.word_embeddings.weight` expected shape [vocab, {e}], found {:?}",
                    word.shape
                ),
            })
        }
    };
    let emb = Embeddings {
        word: word.data,
        position: get("embeddings.position_embeddings.weight", &[POSITIONS, e])?,
        token_type: get("embeddings.token_type_embeddings.weight", &[2, e])?[..e].to_vec(),
        vocab,
    };
    let input_norm = Some((get("embeddings.LayerNorm.weight", &[e])?, get("embeddings.LayerNorm.bias", &[e])?));
    let blocks = (0..LAYERS)
        .map(|i| {
            let l = |s: &str| format!("encoder.layer.{i}.{s}");
            // q, k, v stacked: PyTorch's packed in_proj layout
            let qkv = |suffix: &str, shape: &[usize]| -> Result<Vec<f32>> {
                let mut v = Vec::new();
                for part in ["query", "key", "value"] {
                    v.extend(get(&l(&format!("attention.self.{part}.{suffix}")), shape)?);
                }
                Ok(v)
            };
            Ok(BlockWeights::from_tensors(vec![
                qkv("weight", &[e, e])?,
                qkv("bias", &[e])?,
                get(&l("attention.output.dense.weight"), &[e, e])?,
                get(&l("attention.output.dense.bias"), &[e])?,
                get(&l("intermediate.dense.weight"), &[FF, e])?,
                get(&l("intermediate.dense.bias"), &[FF])?,
                get(&l("output.dense.weight"), &[e, FF])?,
                get(&l("output.dense.bias"), &[e])?,
                get(&l("attention.output.LayerNorm.weight"), &[e])?,
                get(&l("attention.output.LayerNorm.bias"), &[e])?,
                get(&l("output.LayerNorm.weight"), &[e])?,
                get(&l("output.LayerNorm.bias"), &[e])?,
            ]))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((StackWeights { embed: e, ff: FF, blocks, input_norm, output_norm: None }, emb))
}

/// Loads the model's tokenizer.json as sentence-transformers uses it: no fixed
/// padding, truncation at 256 tokens.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let err = |reason: String| Error::File { path: path.display().to_string(), reason };
    let mut tok = Tokenizer::from_file(path).map_err(|e| err(format!("cannot load tokenizer: {e}")))?;
    tok.with_padding(None);
    tok.with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
        .map_err(|e| err(format!("truncation: {e}")))?;
    Ok(tok)
}

/// Sentence embeddings from all-MiniLM-L6-v2 on the engine.
pub struct SentenceEmbedder {
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation: how long an input really is.
    untruncated: Tokenizer,
    embeddings: Embeddings,
    stack: Stack,
    name: String,
}

impl SentenceEmbedder {
    /// Loads `dir/model.safetensors` and `dir/tokenizer.json` (see scripts/fetch-minilm.sh)
    /// onto `place` (`Engine::load_minilm` does this on the engine's device).
    pub fn load(dir: &Path, place: &Placement) -> Result<SentenceEmbedder> {
        let file = TensorFile::open(&dir.join("model.safetensors"))?;
        let (weights, embeddings) = load_weights(&file)?;
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"))?;
        let stack = place.load_stack(weights, block_config())?;
        let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        Ok(SentenceEmbedder::new(tokenizer, embeddings, stack, name))
    }

    /// The model's shapes with seeded random weights and `dir/tokenizer.json` (no
    /// model.safetensors needed): for speed measurements where the weights cannot travel,
    /// e.g. scripts/gpu-check.sh on a host without the model. Its embeddings mean nothing.
    pub fn random(dir: &Path, seed: u64, place: &Placement) -> Result<SentenceEmbedder> {
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"))?;
        let vocab = tokenizer.get_vocab_size(true);
        let mut rng = crate::rng::Rng::new(seed);
        let embeddings = Embeddings {
            word: rng.vec(vocab * HIDDEN, -0.1, 0.1),
            position: rng.vec(POSITIONS * HIDDEN, -0.1, 0.1),
            token_type: rng.vec(HIDDEN, -0.1, 0.1),
            vocab,
        };
        let mut weights = StackWeights::random(seed, LAYERS, HIDDEN, FF);
        weights.input_norm = Some((rng.vec(HIDDEN, 0.8, 1.2), rng.vec(HIDDEN, -0.2, 0.2)));
        let stack = place.load_stack(weights, block_config())?;
        Ok(SentenceEmbedder::new(tokenizer, embeddings, stack, "all-MiniLM-L6-v2 shape, random weights".into()))
    }

    fn new(tokenizer: Tokenizer, embeddings: Embeddings, stack: Stack, name: String) -> SentenceEmbedder {
        let mut untruncated = tokenizer.clone();
        untruncated.with_truncation(None).expect("removing truncation cannot fail");
        SentenceEmbedder { tokenizer, untruncated, embeddings, stack, name }
    }

    /// The longest input in tokens, special tokens included (256); longer ones are truncated.
    pub fn max_tokens(&self) -> usize {
        MAX_TOKENS
    }

    /// Tokens of `sentence` before truncation, `[CLS]` and `[SEP]` included: over
    /// [`SentenceEmbedder::max_tokens`] means its embedding covers only the first 256.
    pub fn count_tokens(&self, sentence: &str) -> Result<usize> {
        let enc = self
            .untruncated
            .encode(sentence, true)
            .map_err(|e| Error::InvalidArgument { op: "tokenize", what: format!("{sentence:?}: {e}") })?;
        Ok(enc.get_ids().len())
    }

    /// The model's name (its directory).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which path runs (adapter or CPU), for reports.
    pub fn describe(&self) -> String {
        self.stack.describe()
    }

    /// Embedding dimension (384).
    pub fn dim(&self) -> usize {
        HIDDEN
    }

    /// Token ids of `sentence`: `[CLS] ... [SEP]`, at most 256.
    pub fn tokenize(&self, sentence: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(sentence, true)
            .map_err(|e| Error::InvalidArgument { op: "tokenize", what: format!("{sentence:?}: {e}") })?;
        let ids = enc.get_ids().to_vec();
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.embeddings.vocab) {
            return Err(Error::InvalidArgument {
                op: "tokenize",
                what: format!("token id {bad} is outside the vocabulary"),
            });
        }
        Ok(ids)
    }

    /// The embedding LayerNorm's input for token ids (one sentence): (len, 384).
    pub fn token_embeddings(&self, ids: &[u32]) -> Vec<f32> {
        let mut x = Vec::with_capacity(ids.len() * HIDDEN);
        for (p, &id) in ids.iter().enumerate() {
            self.embeddings.push(&mut x, id, p);
        }
        x
    }

    /// L2-normalised mean-pooled embeddings, one per sentence, computed as one batch.
    pub fn embed(&self, sentences: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(self.embed_timed(sentences)?.0)
    }

    /// [`SentenceEmbedder::embed`], and where its time went.
    pub fn embed_timed(&self, sentences: &[&str]) -> Result<(Vec<Vec<f32>>, EmbedTiming)> {
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let ids = sentences.iter().map(|s| self.tokenize(s)).collect::<Result<Vec<_>>>()?;
        let tokenize_ms = ms(t);
        let (batch, seq) = (ids.len(), ids.iter().map(Vec::len).max().unwrap_or(0));
        let mut timing = EmbedTiming { batch, seq, tokenize_ms, ..Default::default() };
        if batch == 0 {
            return Ok((Vec::new(), timing));
        }
        // batch-first (batch, seq, 384); padded rows are [PAD] embeddings, hidden as keys
        let t = Instant::now();
        let mut x = Vec::with_capacity(batch * seq * HIDDEN);
        let mut pad = Vec::with_capacity(batch * seq);
        for s in &ids {
            let mut padded = s.clone();
            padded.resize(seq, 0);
            x.extend(self.token_embeddings(&padded));
            pad.extend((0..seq).map(|p| (p >= s.len()) as u32));
        }
        timing.inputs_ms = ms(t);
        let t = Instant::now();
        let y = self.stack.forward(&x, seq, batch, Some(&pad))?;
        timing.forward_ms = ms(t);
        let t = Instant::now();
        let out = ids
            .iter()
            .enumerate()
            .map(|(b, s)| mean_pool_normalise(&y[b * seq * HIDDEN..(b * seq + s.len()) * HIDDEN]))
            .collect();
        timing.pool_ms = ms(t);
        Ok((out, timing))
    }

    /// GPU time of the encoder alone for a padded (seq, batch) forward: the median of `runs`
    /// replays of its dispatches, timed on the device (no upload or readback). `None` on the
    /// CPU path.
    pub fn gpu_ms(&self, seq: usize, batch: usize, runs: usize) -> Option<Result<f64>> {
        let stack = self.stack.gpu()?;
        let timed = stack.with_plan(seq, batch, true, |d| crate::kernels::time_dispatches(stack.gpu(), d, runs));
        Some(timed.and_then(|r| r).map(|(times, _)| crate::ops::median(&times)))
    }
}

/// Where the time of one [`SentenceEmbedder::embed_timed`] call went, in ms.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmbedTiming {
    /// Sentences.
    pub batch: usize,
    /// Tokens of the longest sentence (the padded length).
    pub seq: usize,
    /// Tokenisation.
    pub tokenize_ms: f64,
    /// Embedding lookup and padding into the (batch, seq, 384) input.
    pub inputs_ms: f64,
    /// The stack's forward: upload, kernels and readback on a GPU.
    pub forward_ms: f64,
    /// Mean pooling and normalisation.
    pub pool_ms: f64,
}

impl EmbedTiming {
    /// The whole call.
    pub fn total_ms(&self) -> f64 {
        self.tokenize_ms + self.inputs_ms + self.forward_ms + self.pool_ms
    }
}

/// Mean over the real tokens' rows of `h` (len, 384), then divided by its L2 norm
/// (sentence-transformers' Pooling + Normalize; norms below 1e-12 are clamped as torch does).
pub fn mean_pool_normalise(h: &[f32]) -> Vec<f32> {
    let n = h.len() / HIDDEN;
    let mut m = vec![0.0f64; HIDDEN];
    for row in h.chunks_exact(HIDDEN) {
        for (a, &v) in m.iter_mut().zip(row) {
            *a += v as f64;
        }
    }
    let mean: Vec<f64> = m.iter().map(|v| v / n.max(1) as f64).collect();
    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    mean.iter().map(|v| (v / norm) as f32).collect()
}
