//! The Vision Transformer on the engine against PyTorch on the whole test split of the
//! handwritten digits: logits within 1e-4 of the float64 reference that
//! scripts/train_vit_digits.py wrote, identical predictions on the GPU path, the CPU backend
//! and the reference, and the project's metrics equal to scikit-learn's classification_report.
//! Needs data/digits/digits.csv (bash scripts/fetch-digits.sh): without it the tests skip, or
//! fail under RESFORMER_REQUIRE_MODEL=1 (set by scripts/test.sh).

mod common;

use std::path::{Path, PathBuf};

use resformer::metrics::Report;
use resformer::model::io::TensorFile;
use resformer::model::vit::{test_split, Digits};
use resformer::testing::{assert_close, shared_gpu, Tol};
use resformer::Device;
use resformer::{Engine, EngineOptions};

/// PyTorch computed the logits in f64; f32 kernels through 4 blocks stay well within this.
const LOGITS_TOL: Tol = Tol { atol: 1e-4, rtol: 0.0 };

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn digits() -> Option<Digits> {
    let path: PathBuf = root().join("data/digits/digits.csv");
    let present = resformer::testing::require_data("ViT", std::slice::from_ref(&path), "bash scripts/fetch-digits.sh");
    present.then(|| Digits::load(&path).unwrap())
}

struct Expected {
    indices: Vec<usize>,
    labels: Vec<usize>,
    logits: Vec<f32>,
    predictions: Vec<usize>,
    file: TensorFile,
}

fn expected() -> Expected {
    let file = TensorFile::open(&root().join("tests/fixtures/vit_digits/expected.safetensors")).unwrap();
    let ints = |name: &str| file.get(name).unwrap().data.iter().map(|&v| v as usize).collect::<Vec<_>>();
    Expected {
        indices: ints("test_indices"),
        labels: ints("labels"),
        logits: file.get("logits").unwrap().data,
        predictions: ints("predictions"),
        file,
    }
}

#[test]
fn vit_logits_and_predictions_match_pytorch_on_the_whole_test_split() {
    let Some(digits) = digits() else { return };
    let dir = root().join("assets/vit-digits");
    let want = expected();
    let split = test_split(&dir).unwrap();
    assert_eq!(split, want.indices, "split.json and the fixture name the same test images");
    let images: Vec<&[f32]> = split.iter().map(|&i| &digits.images[i][..]).collect();
    let labels: Vec<usize> = split.iter().map(|&i| digits.labels[i]).collect();
    assert_eq!(labels, want.labels, "the data set's labels are the ones the model was scored on");
    for engine in common::every_path() {
        let model = engine.load_vit(&dir).unwrap();
        let logits = model.logits(&images).unwrap();
        assert_close(&format!("vit logits on {}", engine.choice()), &logits, &want.logits, LOGITS_TOL);
        let predicted = model.predict(&images).unwrap();
        assert_eq!(predicted, want.predictions, "predictions on {}", engine.choice());
    }
}

#[test]
fn the_metrics_agree_with_scikit_learns_classification_report() {
    let want = expected();
    // the fixture's own predictions: the report is a function of them, whatever the model
    let r = Report::new(&want.labels, &want.predictions, 10);
    let get = |name: &str| want.file.get(name).unwrap().data;
    let close = |what: &str, got: &[f64], exp: &[f32]| {
        assert_eq!(got.len(), exp.len(), "{what}");
        for (g, e) in got.iter().zip(exp) {
            assert!((g - *e as f64).abs() < 1e-6, "{what}: {got:?} vs scikit-learn {exp:?}");
        }
    };
    close("precision", &r.precision, &get("precision"));
    close("recall", &r.recall, &get("recall"));
    close("f1", &r.f1, &get("f1"));
    close("support", &r.support.iter().map(|&s| s as f64).collect::<Vec<_>>(), &get("support"));
    close("macro avg", &r.macro_avg, &get("macro"));
    close("weighted avg", &r.weighted_avg, &get("weighted"));
    close("accuracy", &[r.accuracy], &get("accuracy"));
    let confusion: Vec<f64> = r.confusion.iter().flatten().map(|&v| v as f64).collect();
    close("confusion matrix", &confusion, &get("confusion"));
}

#[test]
fn a_bad_image_or_model_directory_is_an_error_not_a_panic() {
    let engine = Engine::new_blocking(EngineOptions::on(Device::Cpu)).unwrap();
    let model = engine.load_vit(&root().join("assets/vit-digits")).unwrap();
    let e = model.logits(&[&[0.0; 63]]).unwrap_err().to_string();
    assert!(e.contains("63 pixels"), "{e}");
    let e = engine.load_vit(Path::new("/nonexistent")).err().unwrap().to_string();
    assert!(e.contains("/nonexistent/config.json"), "{e}");
    assert!(model.class_attention(&[0.0; 64], 99).is_err());
}

#[test]
fn eight_threads_classifying_different_images_of_one_batch_size_each_get_their_own_logits() {
    // one plan per batch size: without its lock held from input write to logits read, a thread
    // could read another's logits
    let Some(gpu) = shared_gpu() else { return };
    let dir = root().join("assets/vit-digits");
    let data = root().join("data/digits/digits.csv");
    if !resformer::testing::require_data("digits", std::slice::from_ref(&data), "bash scripts/fetch-digits.sh") {
        return;
    }
    let digits = Digits::load(&data).unwrap();
    let split = test_split(&dir).unwrap();
    let model = Engine::from_gpu(gpu.clone()).load_vit(&dir).unwrap();
    // thread i classifies batches of 4 images starting at 4i: every thread a different batch
    let batch = |i: usize| -> Vec<&[f32]> { (0..4).map(|j| &digits.images[split[4 * i + j]][..]).collect() };
    let alone: Vec<Vec<f32>> = (0..8).map(|i| model.logits(&batch(i)).unwrap()).collect();
    assert!(alone.windows(2).all(|w| w[0] != w[1]), "the batches must differ for the test to mean anything");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (model, batch, want) = (&model, batch(i), &alone[i]);
                s.spawn(move || {
                    for round in 0..10 {
                        let got = model.logits(&batch).unwrap();
                        assert!(got == *want, "thread {i} round {round} got another thread's logits");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    // the plan cache is bounded like the stack's: batch sizes 1..=12 leave at most 8 plans
    for b in 1..=12 {
        model.logits(&(0..b).map(|j| &digits.images[split[j]][..]).collect::<Vec<_>>()).unwrap();
    }
    assert_eq!(model.plans(), resformer::model::gpu::MAX_PLANS);
}

#[test]
fn check_ops_covers_the_whole_vit_from_patch_embedding_to_head_on_every_path() {
    let Some(digits) = digits() else { return };
    let dir = root().join("assets/vit-digits");
    let split = test_split(&dir).unwrap();
    let images: Vec<&[f32]> = split.iter().take(5).map(|&i| &digits.images[i][..]).collect();
    for engine in common::every_path() {
        let model = engine.load_vit(&dir).unwrap();
        let checks = model.check_ops(&images).unwrap();
        let layers = model.config().layers;
        assert_eq!(checks.len(), 2 + 7 * layers + 2, "{}: patch, pos, blocks, norm, head", engine.describe());
        let outside: Vec<&str> = checks.iter().filter(|c| c.block.is_none()).map(|c| c.step.as_str()).collect();
        assert!(outside[0].starts_with("patch_embed matmul (85, 64) = (85, 5)"), "{outside:?}");
        assert!(outside[1].starts_with("pos_embed add") && outside[2].starts_with("norm layernorm"), "{outside:?}");
        assert!(outside[3].starts_with("head matmul (85, 10)"), "{outside:?}");
        for c in &checks {
            assert!(c.ok(), "{}: {c:?}", engine.describe());
        }
    }
}
