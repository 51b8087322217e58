//! BERT sentence encoders of other shapes than MiniLM's against sentence-transformers 6.2:
//! seeded random models saved by `SentenceTransformer.save` (scripts/make_bert_fixtures.py:
//! hidden 64 / 48 / 32 / 40, 4 / 3 / 2 / 5 heads, 2 / 3 / 1 / 2 layers, GELU, ReLU and
//! gelu_new (tanh), mean, CLS and max pooling, with and without Normalize, max_seq_length
//! 128 / 64 / 96 / 128 with truncation), loaded
//! from their directories alone. Token ids must be equal; sentence and token embeddings
//! within MiniLM's tolerances (cosine >= 0.9999, max abs <= 1e-4), on the reference, the CPU
//! backend and the GPU path.

mod common;

use std::path::{Path, PathBuf};

use resformer::model::io::TensorFile;

const MAX_ABS: f32 = 1e-4;
const MIN_COSINE: f32 = 0.9999;

fn dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert");
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    v.sort();
    assert_eq!(v.len(), 4, "four fixture models in {}", root.display());
    v
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let max_abs = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let dot: f32 = got.iter().zip(want).map(|(a, b)| a * b).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cos = dot / (norm(got) * norm(want)).max(1e-30);
    assert!(max_abs <= MAX_ABS && cos >= MIN_COSINE, "{what}: max abs {max_abs:.2e}, cosine {cos:.6}");
}

#[test]
fn bert_models_of_other_shapes_match_sentence_transformers_on_every_path() {
    let engines = common::every_path();
    for dir in dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let sentences: Vec<String> =
            std::fs::read_to_string(dir.join("sentences.txt")).unwrap().lines().map(String::from).collect();
        let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
        let exp = TensorFile::open(&dir.join("expected.safetensors")).unwrap();
        let emb = exp.get("embeddings").unwrap();
        let e = emb.shape[1];
        for engine in &engines {
            let model = engine.load_bert(&dir).unwrap();
            assert_eq!(model.dim(), e, "{name}");
            let out = model.encode(&refs).unwrap();
            for (i, s) in refs.iter().enumerate() {
                let ids: Vec<u32> = exp.get(&format!("ids_{i}")).unwrap().data.iter().map(|&v| v as u32).collect();
                assert_eq!(model.tokenize(s).unwrap(), ids, "{name} {s:?}: token ids");
                let what = format!("{name} [{i}] on {}", engine.describe());
                close(&format!("{what}: sentence"), &out.sentences[i], &emb.data[i * e..(i + 1) * e]);
                close(&format!("{what}: tokens"), &out.tokens[i], &exp.get(&format!("tokens_{i}")).unwrap().data);
            }
        }
    }
}
