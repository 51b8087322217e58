//! The attention walk-through on all-MiniLM-L6-v2's real tokens and head weights: the engine's
//! kernels against the reference. Needs the model (bash scripts/fetch-minilm.sh).

use std::path::{Path, PathBuf};

use resformer::testing::shared_gpu;
use resformer_cli::walkthrough;

fn model_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    let files = [dir.join("model.safetensors"), dir.join("tokenizer.json")];
    resformer::testing::require_data("MiniLM", &files, "bash scripts/fetch-minilm.sh").then_some(dir)
}

#[test]
fn minilm_walkthrough_uses_real_tokens_and_head_weights() {
    let Some(dir) = model_dir() else { return };
    let w = walkthrough::minilm(&dir, "I love deep learning", 3).unwrap();
    assert_eq!(w.tokens, ["[CLS]", "i", "love", "deep", "learning", "[SEP]"]);
    assert_eq!((w.embed, w.dim), (384, 32));
    let want = w.weights_cpu();
    if let Some(gpu) = shared_gpu() {
        let got = w.weights_gpu(gpu, &Default::default()).unwrap();
        resformer::testing::assert_close(
            "minilm walkthrough",
            &got,
            &want,
            resformer::testing::Tol { atol: 1e-5, rtol: 1e-4 },
        );
    }
    for row in want.chunks(6) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    assert!(walkthrough::minilm(&dir, "x", 12).is_err(), "head 12 of 12 must be refused");
}
