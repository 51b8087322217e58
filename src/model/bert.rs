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

//! BERT sentence encoders as sentence-transformers saves them, configured by their files:
//! all-MiniLM-L6-v2 (Apache-2.0: hidden 384, 12 heads, ff 1536, 6 layers, GELU, LayerNorm eps
//! 1e-12, mean pooling, L2-normalised) is one directory among the family (bge-small,
//! e5-small, gte-small, MiniLM-L12, ...) that differ only in those files.
//!
//! From the directory: `config.json` (`model_type` bert, `hidden_size`,
//! `num_attention_heads`, `intermediate_size`, `num_hidden_layers`, `hidden_act`,
//! `layer_norm_eps`, `max_position_embeddings`, `type_vocab_size`); `modules.json` (a
//! `Normalize` module or not) and the Pooling module's `config.json` (mean, cls or max
//! tokens, in either sentence-transformers format); `sentence_bert_config.json`
//! (`max_seq_length`, `do_lower_case`) or, as sentence-transformers 6 saves it, the
//! tokenizer's `model_max_length`;
//! `model.safetensors` (names with or without a `bert.` prefix); `tokenizer.json`. What it
//! cannot run is an error naming the file and the field.
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
use web_time::Instant;

use tokenizers::{Tokenizer, TruncationParams};

use super::io::TensorFile;
use super::steps::Edge;
use super::{BlockConfig, BlockWeights, ModelFiles, Placement, Stack, StackWeights};
use crate::error::{Error, Result};
use crate::ops::Activation;

/// How token vectors become one sentence vector (sentence-transformers' Pooling module).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the real tokens (`pooling_mode_mean_tokens`).
    Mean,
    /// The first token, `[CLS]` (`pooling_mode_cls_token`).
    Cls,
    /// The elementwise maximum over the real tokens (`pooling_mode_max_tokens`).
    Max,
}

/// Everything of a BERT sentence encoder that its files configure.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    /// `hidden_size`: E.
    pub hidden: usize,
    /// `num_attention_heads`.
    pub heads: usize,
    /// `intermediate_size`: F.
    pub ff: usize,
    /// `num_hidden_layers`.
    pub layers: usize,
    /// `hidden_act`: `gelu` (erf), `gelu_new` / `gelu_pytorch_tanh` / `gelu_fast` (tanh) or `relu`.
    pub activation: Activation,
    /// `layer_norm_eps`.
    pub eps: f32,
    /// `max_position_embeddings`.
    pub positions: usize,
    /// `type_vocab_size`.
    pub type_vocab: usize,
    /// The Pooling module's mode.
    pub pooling: Pooling,
    /// A `Normalize` module follows the pooling: unit vectors.
    pub normalize: bool,
    /// sentence-transformers' `max_seq_length` (special tokens included; longer inputs are
    /// truncated), at most `positions`.
    pub max_tokens: usize,
    /// `do_lower_case`: inputs are lower-cased before tokenising.
    pub lower_case: bool,
}

impl BertConfig {
    /// all-MiniLM-L6-v2's configuration, as its files say.
    pub fn minilm() -> BertConfig {
        BertConfig {
            hidden: 384,
            heads: 12,
            ff: 1536,
            layers: 6,
            activation: Activation::Gelu,
            eps: 1e-12,
            positions: 512,
            type_vocab: 2,
            pooling: Pooling::Mean,
            normalize: true,
            max_tokens: 256,
            lower_case: false,
        }
    }

    /// Reads the configuration of the sentence-transformers directory `dir`.
    pub fn from_dir(dir: &Path) -> Result<BertConfig> {
        BertConfig::from_files(&ModelFiles::Dir(dir))
    }

    /// Reads the configuration from a sentence-transformers model's files (config.json,
    /// modules.json, the Pooling module's config, sentence_bert_config.json,
    /// tokenizer_config.json), on disk or in memory.
    pub fn from_files(files: &ModelFiles<'_>) -> Result<BertConfig> {
        let read = |name: &str| files.json(name);
        let bad = |file: &str, reason: String| Error::File { path: files.path(file), reason };
        let config =
            read("config.json")?.ok_or_else(|| bad("config.json", "missing: a BERT directory has one".into()))?;
        let model_type = config["model_type"].as_str().unwrap_or("");
        if model_type != "bert" {
            return Err(bad("config.json", format!("model_type {model_type:?}: only \"bert\" models run here")));
        }
        let count = |field: &str| -> Result<usize> {
            config[field]
                .as_u64()
                .filter(|&v| v > 0)
                .map(|v| v as usize)
                .ok_or_else(|| bad("config.json", format!("field `{field}` missing or not a positive integer")))
        };
        let activation = match config["hidden_act"].as_str() {
            Some("gelu") => Activation::Gelu,
            // transformers' names for GELU's tanh approximation
            Some("gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") => Activation::GeluTanh,
            Some("relu") => Activation::Relu,
            other => {
                return Err(bad(
                    "config.json",
                    format!(
                        "field `hidden_act` {other:?}: the engine runs gelu (erf), gelu_new (tanh; also gelu_pytorch_tanh, gelu_fast) and relu"
                    ),
                ))
            }
        };
        let eps = config["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32;
        let positions = count("max_position_embeddings")?;
        let type_vocab = config["type_vocab_size"].as_u64().unwrap_or(2).max(1) as usize;
        // modules.json: the Pooling module's folder, and whether a Normalize module follows
        let modules = read("modules.json")?;
        let module_list = modules.as_ref().and_then(|m| m.as_array()).cloned().unwrap_or_default();
        let ty = |m: &serde_json::Value| m["type"].as_str().unwrap_or("").to_string();
        let normalize = module_list.iter().any(|m| ty(m).ends_with("Normalize"));
        let pooling_dir = module_list
            .iter()
            .find(|m| ty(m).ends_with("Pooling"))
            .and_then(|m| m["path"].as_str().map(String::from))
            .unwrap_or_else(|| "1_Pooling".into());
        let pooling_file = format!("{pooling_dir}/config.json");
        let pooling = match read(&pooling_file)? {
            None => Pooling::Mean,
            // sentence-transformers 6 writes one `pooling_mode`; earlier versions one flag each
            Some(p) if p["pooling_mode"].is_string() => match p["pooling_mode"].as_str().unwrap_or("") {
                "mean" | "mean_tokens" => Pooling::Mean,
                "cls" | "cls_token" => Pooling::Cls,
                "max" | "max_tokens" => Pooling::Max,
                other => {
                    return Err(bad(
                        &pooling_file,
                        format!("`pooling_mode` {other:?}: the engine pools by mean, cls or max tokens"),
                    ))
                }
            },
            Some(p) => {
                let on = |k: &str| p[k].as_bool().unwrap_or(false);
                let unsupported =
                    ["pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"];
                if let Some(k) = unsupported.iter().find(|k| on(k)) {
                    return Err(bad(
                        &pooling_file,
                        format!("`{k}` is set: the engine pools by mean, cls or max tokens"),
                    ));
                }
                match (on("pooling_mode_mean_tokens"), on("pooling_mode_cls_token"), on("pooling_mode_max_tokens")) {
                    (true, false, false) => Pooling::Mean,
                    (false, true, false) => Pooling::Cls,
                    (false, false, true) => Pooling::Max,
                    _ => {
                        return Err(bad(
                            &pooling_file,
                            "exactly one of pooling_mode_mean_tokens, pooling_mode_cls_token, pooling_mode_max_tokens must be true".into(),
                        ))
                    }
                }
            }
        };
        // max_seq_length: sentence_bert_config.json (sentence-transformers before 6), else the
        // tokenizer's model_max_length (6 keeps it there; transformers writes a huge number
        // for "unset"), else the position table
        let st = read("sentence_bert_config.json")?;
        let tok_cfg = read("tokenizer_config.json")?;
        let (max_tokens, max_file) = match st.as_ref().and_then(|c| c["max_seq_length"].as_u64()) {
            Some(v) => (v as usize, "sentence_bert_config.json"),
            None => match tok_cfg.as_ref().and_then(|c| c["model_max_length"].as_f64()) {
                Some(v) if v >= 1.0 && v <= positions as f64 => (v as usize, "tokenizer_config.json"),
                _ => (positions, "config.json"),
            },
        };
        if max_tokens == 0 || max_tokens > positions {
            return Err(bad(
                max_file,
                format!("max_seq_length {max_tokens}: must be 1..={positions} (max_position_embeddings)"),
            ));
        }
        let lower_case = st.as_ref().and_then(|c| c["do_lower_case"].as_bool()).unwrap_or(false);
        let cfg = BertConfig {
            hidden: count("hidden_size")?,
            heads: count("num_attention_heads")?,
            ff: count("intermediate_size")?,
            layers: count("num_hidden_layers")?,
            activation,
            eps,
            positions,
            type_vocab,
            pooling,
            normalize,
            max_tokens,
            lower_case,
        };
        cfg.block().validate().map_err(|e| bad("config.json", e.to_string()))?;
        Ok(cfg)
    }

    /// The block configuration of one of its layers.
    pub fn block(&self) -> BlockConfig {
        BlockConfig {
            embed: self.hidden,
            heads: self.heads,
            ff: self.ff,
            pre_norm: false,
            activation: self.activation,
            eps: self.eps,
            causal: false,
            batch_first: true,
            precision: super::Precision::F32,
        }
    }
}

/// Token, position and token-type embedding tables.
pub struct Embeddings {
    /// (vocab, E)
    pub word: Vec<f32>,
    /// (positions, E)
    pub position: Vec<f32>,
    /// token type 0, (E): sentence-transformers encodes single sentences
    pub token_type: Vec<f32>,
    /// Vocabulary size (rows of `word`).
    pub vocab: usize,
    /// E.
    pub dim: usize,
}

impl Embeddings {
    /// word[id] + position[p] + token_type[0] of one token, appended to `out`.
    pub fn push(&self, out: &mut Vec<f32>, id: u32, pos: usize) {
        let e = self.dim;
        let w = &self.word[id as usize * e..(id as usize + 1) * e];
        let p = &self.position[pos * e..(pos + 1) * e];
        out.extend(w.iter().zip(p).zip(&self.token_type).map(|((a, b), c)| a + b + c));
    }
}

/// Reads the BERT weights of `file` for `cfg` into the stack's form and the embedding tables;
/// names with or without a `bert.` prefix.
pub fn load_weights(file: &TensorFile, cfg: &BertConfig) -> Result<(StackWeights, Embeddings)> {
    let (e, ff) = (cfg.hidden, cfg.ff);
    let prefix = if file.contains("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
    let get = |name: &str, shape: &[usize]| file.get_shaped(&format!("{prefix}{name}"), shape).map(|t| t.data);
    let word = file.get(&format!("{prefix}embeddings.word_embeddings.weight"))?;
    let vocab = match word.shape[..] {
        [v, h] if h == e && v > 0 => v,
        _ => {
            return Err(Error::File {
                path: file.path().into(),
                reason: format!(
                    "tensor `{prefix}embeddings.word_embeddings.weight` expected shape [vocab, {e}] (config.json hidden_size), found {:?}",
                    word.shape
                ),
            })
        }
    };
    let emb = Embeddings {
        word: word.data,
        position: get("embeddings.position_embeddings.weight", &[cfg.positions, e])?,
        token_type: get("embeddings.token_type_embeddings.weight", &[cfg.type_vocab, e])?[..e].to_vec(),
        vocab,
        dim: e,
    };
    let input_norm = Edge::layernorm(
        "embeddings.LayerNorm",
        get("embeddings.LayerNorm.weight", &[e])?,
        get("embeddings.LayerNorm.bias", &[e])?,
    );
    let blocks = (0..cfg.layers)
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
                get(&l("intermediate.dense.weight"), &[ff, e])?,
                get(&l("intermediate.dense.bias"), &[ff])?,
                get(&l("output.dense.weight"), &[e, ff])?,
                get(&l("output.dense.bias"), &[e])?,
                get(&l("attention.output.LayerNorm.weight"), &[e])?,
                get(&l("attention.output.LayerNorm.bias"), &[e])?,
                get(&l("output.LayerNorm.weight"), &[e])?,
                get(&l("output.LayerNorm.bias"), &[e])?,
            ]))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((StackWeights { embed: e, ff, blocks, before: vec![input_norm], after: Vec::new() }, emb))
}

/// Loads a tokenizer.json as sentence-transformers uses it: no fixed padding, truncation at
/// `max_tokens` tokens.
pub fn load_tokenizer(path: &Path, max_tokens: usize) -> Result<Tokenizer> {
    let dir = path.parent().unwrap_or(Path::new(""));
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    tokenizer_from(&ModelFiles::Dir(dir), &file, max_tokens)
}

/// [`load_tokenizer`] of the model's `file`, on disk or in memory.
pub fn tokenizer_from(files: &ModelFiles<'_>, file: &str, max_tokens: usize) -> Result<Tokenizer> {
    let err = |reason: String| Error::File { path: files.path(file), reason };
    let bytes = files.read(file)?.ok_or_else(|| err("missing: the encoder needs the model's tokenizer.json".into()))?;
    let mut tok = Tokenizer::from_bytes(&bytes).map_err(|e| err(format!("cannot load tokenizer: {e}")))?;
    tok.with_padding(None);
    tok.with_truncation(Some(TruncationParams { max_length: max_tokens, ..Default::default() }))
        .map_err(|e| err(format!("truncation: {e}")))?;
    Ok(tok)
}

/// The weights file of `dir`: `model.safetensors`, or an error that says what to do when there
/// is only `pytorch_model.bin`.
pub fn weights_file(dir: &Path) -> Result<TensorFile> {
    weights_from(&ModelFiles::Dir(dir))
}

/// [`weights_file`] of the model's files, on disk or in memory.
pub fn weights_from(files: &ModelFiles<'_>) -> Result<TensorFile> {
    let has = |f: &str| files.read(f).map(|b| b.is_some());
    if !has("model.safetensors")? && has("pytorch_model.bin")? {
        return Err(Error::File {
            path: files.path("pytorch_model.bin"),
            reason: "only pickled PyTorch weights: save the model as model.safetensors (SentenceTransformer.save with safe_serialization, or safetensors.torch.save_file)".into(),
        });
    }
    files.tensors("model.safetensors")
}

/// A batch of token ids made ready for the stack on the host ([`SentenceEmbedder::prepare_ids`]):
/// its embedding rows, padded to the longest input with a key-padding mask, or (on the CPU
/// backend, [`Stack::runs_packed`]) packed back to back with no padding at all.
#[derive(Clone, Debug)]
pub struct Prepared {
    ids: Vec<Vec<u32>>,
    x: Vec<f32>,
    pad: Vec<u32>,
    seq: usize,
    packed: bool,
}

impl Prepared {
    /// Inputs in the batch.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether it holds no input.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Tokens the forward runs: inputs times the longest input, or the real tokens when packed.
    pub fn padded_tokens(&self) -> usize {
        if self.packed {
            self.real_tokens()
        } else {
            self.ids.len() * self.seq
        }
    }

    /// The first row of each input in the forward's output.
    fn starts(&self) -> Vec<usize> {
        let mut at = 0;
        self.ids
            .iter()
            .map(|s| {
                let start = at;
                at += if self.packed { s.len() } else { self.seq };
                start
            })
            .collect()
    }

    /// Tokens of the inputs themselves.
    pub fn real_tokens(&self) -> usize {
        self.ids.iter().map(Vec::len).sum()
    }
}

/// Sentence embeddings from a BERT sentence encoder on the engine.
pub struct SentenceEmbedder {
    cfg: BertConfig,
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation: how long an input really is.
    untruncated: Tokenizer,
    embeddings: Embeddings,
    stack: Stack,
    name: String,
}

/// What one batch gives: per sentence its pooled vector, its token vectors and its token count.
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    /// The sentence vectors (pooled, and normalised when the model has a Normalize module).
    pub sentences: Vec<Vec<f32>>,
    /// Per sentence, its tokens' last hidden states, (tokens, E) row-major: sentence-
    /// transformers' `output_value="token_embeddings"`.
    pub tokens: Vec<Vec<f32>>,
    /// Per sentence, the tokens it ran as (special tokens included, after truncation).
    pub token_counts: Vec<usize>,
}

impl SentenceEmbedder {
    /// Loads the sentence-transformers directory `dir` (config.json, the module files,
    /// model.safetensors, tokenizer.json; see [`BertConfig::from_dir`]) onto `place`
    /// (`Engine::load_minilm` does this on the engine's device).
    pub fn load(dir: &Path, place: &Placement) -> Result<SentenceEmbedder> {
        SentenceEmbedder::load_files(&ModelFiles::Dir(dir), place)
    }

    /// [`SentenceEmbedder::load`] of a model's files, on disk or in memory (the browser's).
    pub fn load_files(files: &ModelFiles<'_>, place: &Placement) -> Result<SentenceEmbedder> {
        let cfg = BertConfig::from_files(files)?;
        let tokenizer = tokenizer_from(files, "tokenizer.json", cfg.max_tokens)?;
        let file = weights_from(files)?;
        let (weights, embeddings) = load_weights(&file, &cfg)?;
        let stack = place.load_stack(weights, cfg.block())?;
        Ok(SentenceEmbedder::new(cfg, tokenizer, embeddings, stack, files.name()))
    }

    /// all-MiniLM-L6-v2's shapes with seeded random weights and `dir/tokenizer.json` (no
    /// model.safetensors needed): for speed measurements where the weights cannot travel,
    /// e.g. scripts/gpu-check.sh on a host without the model. Its embeddings mean nothing.
    pub fn random(dir: &Path, seed: u64, place: &Placement) -> Result<SentenceEmbedder> {
        let cfg = BertConfig::minilm();
        let e = cfg.hidden;
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"), cfg.max_tokens)?;
        let vocab = tokenizer.get_vocab_size(true);
        let mut rng = crate::rng::Rng::new(seed);
        let embeddings = Embeddings {
            word: rng.vec(vocab * e, -0.1, 0.1),
            position: rng.vec(cfg.positions * e, -0.1, 0.1),
            token_type: rng.vec(e, -0.1, 0.1),
            vocab,
            dim: e,
        };
        let mut weights = StackWeights::random(seed, cfg.layers, e, cfg.ff);
        weights.before = vec![Edge::layernorm("embeddings.LayerNorm", rng.vec(e, 0.8, 1.2), rng.vec(e, -0.2, 0.2))];
        let stack = place.load_stack(weights, cfg.block())?;
        Ok(SentenceEmbedder::new(cfg, tokenizer, embeddings, stack, "all-MiniLM-L6-v2 shape, random weights".into()))
    }

    fn new(
        cfg: BertConfig,
        tokenizer: Tokenizer,
        embeddings: Embeddings,
        stack: Stack,
        name: String,
    ) -> SentenceEmbedder {
        let mut untruncated = tokenizer.clone();
        untruncated.with_truncation(None).expect("removing truncation cannot fail");
        SentenceEmbedder { cfg, tokenizer, untruncated, embeddings, stack, name }
    }

    /// The configuration its files gave.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// The longest input in tokens, special tokens included (max_seq_length: 256 for
    /// MiniLM); longer ones are truncated.
    pub fn max_tokens(&self) -> usize {
        self.cfg.max_tokens
    }

    fn prepare<'a>(&self, sentence: &'a str) -> std::borrow::Cow<'a, str> {
        match self.cfg.lower_case {
            true => sentence.to_lowercase().into(),
            false => sentence.into(),
        }
    }

    /// Tokens of `sentence` before truncation, `[CLS]` and `[SEP]` included: over
    /// [`SentenceEmbedder::max_tokens`] means its embedding covers only the first ones.
    pub fn count_tokens(&self, sentence: &str) -> Result<usize> {
        let enc = self
            .untruncated
            .encode(self.prepare(sentence).as_ref(), true)
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

    /// Embedding dimension, E (384 for MiniLM).
    pub fn dim(&self) -> usize {
        self.cfg.hidden
    }

    /// Token ids of `sentence`: `[CLS] ... [SEP]`, at most [`SentenceEmbedder::max_tokens`].
    pub fn tokenize(&self, sentence: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(self.prepare(sentence).as_ref(), true)
            .map_err(|e| Error::InvalidArgument { op: "tokenize", what: format!("{sentence:?}: {e}") })?;
        let ids = enc.get_ids().to_vec();
        self.check_ids(&ids)?;
        Ok(ids)
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument { op: "tokenize", what });
        if ids.is_empty() {
            return bad("an input of no tokens".into());
        }
        if ids.len() > self.cfg.max_tokens {
            return bad(format!("{} tokens, over the model's {}", ids.len(), self.cfg.max_tokens));
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.embeddings.vocab) {
            return bad(format!("token id {id} is outside the vocabulary ({} ids)", self.embeddings.vocab));
        }
        Ok(())
    }

    /// The embedding LayerNorm's input for token ids (one sentence): (len, E).
    pub fn token_embeddings(&self, ids: &[u32]) -> Vec<f32> {
        let mut x = Vec::with_capacity(ids.len() * self.cfg.hidden);
        for (p, &id) in ids.iter().enumerate() {
            self.embeddings.push(&mut x, id, p);
        }
        x
    }

    /// Sentence embeddings (pooled as the model's files say, normalised when it has a
    /// Normalize module), one per sentence, computed as one batch.
    pub fn embed(&self, sentences: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(self.embed_timed(sentences)?.0)
    }

    /// Sentence vectors, token vectors and token counts of `sentences`, as one batch.
    pub fn encode(&self, sentences: &[&str]) -> Result<Encoded> {
        let ids = sentences.iter().map(|s| self.tokenize(s)).collect::<Result<Vec<_>>>()?;
        self.encode_ids(&ids)
    }

    /// [`SentenceEmbedder::encode`] on inputs given as token ids (each `[CLS] ... [SEP]` as the
    /// tokenizer writes them, at most [`SentenceEmbedder::max_tokens`]).
    pub fn encode_ids(&self, ids: &[Vec<u32>]) -> Result<Encoded> {
        self.run_prepared(&self.prepare_ids(ids.to_vec())?)
    }

    /// The host's half of [`SentenceEmbedder::encode_ids`]: checks the ids and builds the
    /// padded embedding rows and mask. A server builds the next batch with it while the
    /// device runs the current one ([`SentenceEmbedder::run_prepared`]).
    pub fn prepare_ids(&self, ids: Vec<Vec<u32>>) -> Result<Prepared> {
        for s in &ids {
            self.check_ids(s)?;
        }
        let seq = ids.iter().map(Vec::len).max().unwrap_or(0);
        if self.stack.runs_packed() {
            let x = ids.iter().flat_map(|s| self.token_embeddings(s)).collect();
            return Ok(Prepared { ids, x, pad: Vec::new(), seq, packed: true });
        }
        let (x, pad) = self.padded_inputs(&ids, seq);
        Ok(Prepared { ids, x, pad, seq, packed: false })
    }

    /// The forward and pooling of a batch from [`SentenceEmbedder::prepare_ids`].
    pub fn run_prepared(&self, p: &Prepared) -> Result<Encoded> {
        if p.ids.is_empty() {
            return Ok(Encoded::default());
        }
        let y = self.forward_prepared(p)?;
        Ok(self.pooled(p, &y))
    }

    /// The stack's forward of a prepared batch: its output rows, packed or padded as `p` is.
    fn forward_prepared(&self, p: &Prepared) -> Result<Vec<f32>> {
        if p.packed {
            let lens: Vec<usize> = p.ids.iter().map(Vec::len).collect();
            return self.stack.forward_packed(&p.x, &lens);
        }
        self.stack.forward(&p.x, p.seq, p.ids.len(), Some(&p.pad))
    }

    /// [`SentenceEmbedder::encode`] without blocking, for the browser: the forward's readback
    /// is awaited ([`Stack::forward_async`]).
    pub async fn encode_async(&self, sentences: &[&str]) -> Result<Encoded> {
        let ids = sentences.iter().map(|s| self.tokenize(s)).collect::<Result<Vec<_>>>()?;
        let p = self.prepare_ids(ids)?;
        if p.ids.is_empty() {
            return Ok(Encoded::default());
        }
        let y = match p.packed {
            true => self.forward_prepared(&p)?,
            false => self.stack.forward_async(&p.x, p.seq, p.ids.len(), Some(&p.pad)).await?,
        };
        Ok(self.pooled(&p, &y))
    }

    /// [`SentenceEmbedder::embed`], and where its time went.
    pub fn embed_timed(&self, sentences: &[&str]) -> Result<(Vec<Vec<f32>>, EmbedTiming)> {
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let ids = sentences.iter().map(|s| self.tokenize(s)).collect::<Result<Vec<_>>>()?;
        let mut timing = EmbedTiming { tokenize_ms: ms(t), ..Default::default() };
        let out = self.run(ids, &mut timing)?;
        Ok((out.sentences, timing))
    }

    /// One batch through the stack (packed or padded), then pooling, timing each part.
    fn run(&self, ids: Vec<Vec<u32>>, timing: &mut EmbedTiming) -> Result<Encoded> {
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        timing.batch = ids.len();
        timing.seq = ids.iter().map(Vec::len).max().unwrap_or(0);
        if ids.is_empty() {
            return Ok(Encoded::default());
        }
        let t = Instant::now();
        let p = self.prepare_ids(ids)?;
        timing.inputs_ms = ms(t);
        timing.tokens = p.padded_tokens();
        let t = Instant::now();
        let y = self.forward_prepared(&p)?;
        timing.forward_ms = ms(t);
        let t = Instant::now();
        let out = self.pooled(&p, &y);
        timing.pool_ms = ms(t);
        Ok(out)
    }

    /// Per input its token rows of the forward's output `y`, and their pool.
    fn pooled(&self, p: &Prepared, y: &[f32]) -> Encoded {
        let e = self.cfg.hidden;
        let tokens: Vec<Vec<f32>> =
            p.ids.iter().zip(p.starts()).map(|(s, at)| y[at * e..(at + s.len()) * e].to_vec()).collect();
        let sentences = tokens.iter().map(|h| pool(h, e, self.cfg.pooling, self.cfg.normalize)).collect();
        let token_counts = p.ids.iter().map(Vec::len).collect();
        Encoded { sentences, tokens, token_counts }
    }

    /// The stack's input for `ids` padded to `seq`: batch-first (batch, seq, E) embedding
    /// rows, padded rows [PAD]'s, and the key-padding mask that hides them.
    fn padded_inputs(&self, ids: &[Vec<u32>], seq: usize) -> (Vec<f32>, Vec<u32>) {
        let mut x = Vec::with_capacity(ids.len() * seq * self.cfg.hidden);
        let mut pad = Vec::with_capacity(ids.len() * seq);
        for s in ids {
            let mut padded = s.clone();
            padded.resize(seq, 0);
            x.extend(self.token_embeddings(&padded));
            pad.extend((0..seq).map(|p| (p >= s.len()) as u32));
        }
        (x, pad)
    }

    /// `--check-ops` on `sentences`: every step of the model's list (the embedding
    /// LayerNorm and every block) on the reference's inputs against the reference with
    /// `weights` (the model's own: [`load_weights`] of its directory).
    pub fn check_ops(&self, weights: &StackWeights, sentences: &[&str]) -> Result<Vec<super::check::OpCheck>> {
        let ids = sentences.iter().map(|s| self.tokenize(s)).collect::<Result<Vec<_>>>()?;
        let seq = ids.iter().map(Vec::len).max().unwrap_or(0);
        let (x, pad) = self.padded_inputs(&ids, seq);
        self.stack.check_ops(weights, &x, seq, ids.len(), Some(&pad))
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
    /// Token rows the forward ran: batch × seq padded, the real tokens packed.
    pub tokens: usize,
    /// Tokenisation.
    pub tokenize_ms: f64,
    /// Embedding lookup into the stack's input (packed, or padded to (batch, seq, E)).
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

/// One sentence vector from its token rows `h` (tokens, `dim`), as sentence-transformers'
/// Pooling (mean over the tokens, the first token, or the elementwise max) and, when
/// `normalize`, its Normalize (divided by the L2 norm; norms below 1e-12 are clamped as torch
/// does). Sums in f64.
pub fn pool(h: &[f32], dim: usize, mode: Pooling, normalize: bool) -> Vec<f32> {
    let n = h.len() / dim;
    let rows = || h.chunks_exact(dim);
    let pooled: Vec<f64> = match mode {
        Pooling::Mean => {
            let mut m = vec![0.0f64; dim];
            for row in rows() {
                for (a, &v) in m.iter_mut().zip(row) {
                    *a += v as f64;
                }
            }
            m.iter().map(|v| v / n.max(1) as f64).collect()
        }
        Pooling::Cls => h[..dim].iter().map(|&v| v as f64).collect(),
        Pooling::Max => {
            let mut m = vec![f64::NEG_INFINITY; dim];
            for row in rows() {
                for (a, &v) in m.iter_mut().zip(row) {
                    *a = a.max(v as f64);
                }
            }
            m
        }
    };
    let norm = if normalize { pooled.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12) } else { 1.0 };
    pooled.iter().map(|v| (v / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_takes_the_mean_the_first_or_the_max_and_normalises_when_asked() {
        // two tokens of dim 2
        let h = [1.0, -2.0, 3.0, 4.0];
        assert_eq!(pool(&h, 2, Pooling::Mean, false), vec![2.0, 1.0]);
        assert_eq!(pool(&h, 2, Pooling::Cls, false), vec![1.0, -2.0]);
        assert_eq!(pool(&h, 2, Pooling::Max, false), vec![3.0, 4.0]);
        let n = pool(&h, 2, Pooling::Max, true);
        assert!((n[0] - 0.6).abs() < 1e-7 && (n[1] - 0.8).abs() < 1e-7, "{n:?}");
    }
}
