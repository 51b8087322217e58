//! all-MiniLM-L6-v2 on the engine against sentence-transformers: token ids,
//! embeddings on the CPU path and the GPU path, and batched against one at a
//! time. Needs the model (bash scripts/fetch-minilm.sh): without it these
//! tests skip, or fail under RESFORMER_REQUIRE_MODEL=1 (set by scripts/test.sh).

use std::path::{Path, PathBuf};

use resformer::model::io::TensorFile;
use resformer::testing::shared_gpu;
use resformer::{Device, Engine, EngineOptions};

const MIN_COSINE: f32 = 0.9999;
const MAX_ABS: f32 = 1e-4;

fn model_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    let files = [dir.join("model.safetensors"), dir.join("tokenizer.json")];
    resformer::testing::require_data("MiniLM", &files, "bash scripts/fetch-minilm.sh").then_some(dir)
}

struct Expected {
    sentences: Vec<String>,
    ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
}

fn expected() -> Expected {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm");
    let sentences: Vec<String> =
        std::fs::read_to_string(dir.join("sentences.txt")).unwrap().lines().map(String::from).collect();
    let f = TensorFile::open(&dir.join("expected.safetensors")).unwrap();
    let ids = (0..sentences.len())
        .map(|i| f.get(&format!("ids_{i}")).unwrap().data.iter().map(|&v| v as u32).collect())
        .collect();
    let e = f.get("embeddings").unwrap();
    assert_eq!(e.shape, vec![sentences.len(), 384]);
    let embeddings = e.data.chunks(384).map(|c| c.to_vec()).collect();
    assert!(sentences.len() >= 10);
    Expected { sentences, ids, embeddings }
}

fn assert_matches(what: &str, got: &[f32], want: &[f32]) {
    let cos: f32 = got.iter().zip(want).map(|(a, b)| a * b).sum();
    let max_abs = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(cos >= MIN_COSINE && max_abs <= MAX_ABS, "{what}: cosine {cos:.6}, max abs diff {max_abs:.2e}");
}

#[test]
fn minilm_token_ids_match_sentence_transformers() {
    let Some(dir) = model_dir() else { return };
    let model = Engine::new_blocking(EngineOptions::on(Device::Cpu)).unwrap().load_minilm(&dir).unwrap();
    let exp = expected();
    for (s, ids) in exp.sentences.iter().zip(&exp.ids) {
        assert_eq!(&model.tokenize(s).unwrap(), ids, "{s:?}");
    }
    assert!(exp.ids.iter().any(|ids| ids.len() == 256), "one sentence must hit the 256-token truncation");
}

#[test]
fn minilm_cpu_path_matches_sentence_transformers() {
    let Some(dir) = model_dir() else { return };
    let model = Engine::new_blocking(EngineOptions::on(Device::Cpu)).unwrap().load_minilm(&dir).unwrap();
    let exp = expected();
    let alone: Vec<Vec<f32>> = exp.sentences.iter().map(|s| model.embed(&[s]).unwrap().remove(0)).collect();
    for ((s, got), want) in exp.sentences.iter().zip(&alone).zip(&exp.embeddings) {
        assert_matches(&format!("cpu {s:?}"), got, want);
    }
    // every sentence in one batch (lengths from a few tokens to the 256-token truncation): the
    // CPU backend packs it without padding, and each vector must be the one it has alone
    let refs: Vec<&str> = exp.sentences.iter().map(String::as_str).collect();
    let batched = model.embed(&refs).unwrap();
    for ((s, got), one) in exp.sentences.iter().zip(&batched).zip(&alone) {
        let diff = got.iter().zip(one).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff <= 1e-5, "cpu batched vs alone {s:?}: {diff:.2e}");
    }
}

#[test]
fn minilm_gpu_path_matches_sentence_transformers_batched_and_alone() {
    let Some(dir) = model_dir() else { return };
    let Some(gpu) = shared_gpu() else { return };
    let model = Engine::from_gpu(gpu.clone()).load_minilm(&dir).unwrap();
    let exp = expected();
    // one at a time: every sentence, the truncated one included
    let alone: Vec<Vec<f32>> = exp.sentences.iter().map(|s| model.embed(&[s]).unwrap().remove(0)).collect();
    for ((s, got), want) in exp.sentences.iter().zip(&alone).zip(&exp.embeddings) {
        assert_matches(&format!("gpu {s:?}"), got, want);
    }
    // one padded, masked batch of the sentences under 64 tokens (lavapipe is slow)
    let short: Vec<usize> = (0..exp.sentences.len()).filter(|&i| exp.ids[i].len() < 64).collect();
    assert!(short.len() >= 8);
    let batch: Vec<&str> = short.iter().map(|&i| exp.sentences[i].as_str()).collect();
    let batched = model.embed(&batch).unwrap();
    for (&i, got) in short.iter().zip(&batched) {
        assert_matches(&format!("gpu batched {:?}", exp.sentences[i]), got, &exp.embeddings[i]);
        let diff = got.iter().zip(&alone[i]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff <= 1e-5, "batched vs alone {:?}: {diff:.2e}", exp.sentences[i]);
    }
}
