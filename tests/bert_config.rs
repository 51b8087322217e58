//! BERT sentence encoders configured by their sentence-transformers files: MiniLM reads as
//! one configuration; a BERT of other sizes, CLS or max pooling, no Normalize module, a
//! `bert.` prefix and a shorter max_seq_length loads and runs the same on the reference, the
//! CPU backend and the GPU path; what the engine cannot run is an error naming the file and
//! the field.

mod common;

use std::path::{Path, PathBuf};

use resformer::model::bert::{BertConfig, Pooling};
use resformer::model::io::write_f32;
use resformer::rng::Rng;
use resformer::testing::{assert_close, Tol};
use resformer::{Device, Engine, EngineOptions};

fn minilm() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    let files = [dir.join("model.safetensors"), dir.join("tokenizer.json")];
    resformer::testing::require_data("MiniLM", &files, "bash scripts/fetch-minilm.sh").then_some(dir)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("resformer-bert-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    dir
}

/// A sentence-transformers directory of a BERT with these sizes and modules, seeded random
/// weights (names under `prefix`), MiniLM's tokenizer.
fn tiny_bert(name: &str, src: &Path, pooling: &str, normalize: bool, max_seq: usize, prefix: &str) -> PathBuf {
    let (e, heads, ff, layers, positions) = (32usize, 4usize, 48usize, 2usize, 80usize);
    let dir = tmp(name);
    std::fs::copy(src.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let config = format!(
        r#"{{"model_type": "bert", "hidden_size": {e}, "num_attention_heads": {heads}, "intermediate_size": {ff},
            "num_hidden_layers": {layers}, "hidden_act": "relu", "layer_norm_eps": 1e-6,
            "max_position_embeddings": {positions}, "type_vocab_size": 2, "vocab_size": 30522}}"#
    );
    std::fs::write(dir.join("config.json"), config).unwrap();
    let mut modules = vec![
        r#"{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}"#.to_string(),
        r#"{"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}"#.into(),
    ];
    if normalize {
        modules.push(
            r#"{"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}"#
                .into(),
        );
    }
    std::fs::write(dir.join("modules.json"), format!("[{}]", modules.join(","))).unwrap();
    let on = |m: &str| (m == pooling).to_string();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        format!(
            r#"{{"word_embedding_dimension": {e}, "pooling_mode_cls_token": {}, "pooling_mode_mean_tokens": {},
                "pooling_mode_max_tokens": {}, "pooling_mode_mean_sqrt_len_tokens": false}}"#,
            on("cls"),
            on("mean"),
            on("max")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        format!(r#"{{"max_seq_length": {max_seq}, "do_lower_case": false}}"#),
    )
    .unwrap();
    let mut rng = Rng::new(41);
    let mut owned: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |n: &str, shape: Vec<usize>, lo: f32, hi: f32| {
        let len = shape.iter().product();
        owned.push((format!("{prefix}{n}"), shape, rng.vec(len, lo, hi)));
    };
    add("embeddings.word_embeddings.weight", vec![30522, e], -0.5, 0.5);
    add("embeddings.position_embeddings.weight", vec![positions, e], -0.5, 0.5);
    add("embeddings.token_type_embeddings.weight", vec![2, e], -0.5, 0.5);
    add("embeddings.LayerNorm.weight", vec![e], 0.8, 1.2);
    add("embeddings.LayerNorm.bias", vec![e], -0.2, 0.2);
    for i in 0..layers {
        let l = |s: &str| format!("encoder.layer.{i}.{s}");
        let b = 1.0 / (e as f32).sqrt();
        for part in ["query", "key", "value"] {
            add(&l(&format!("attention.self.{part}.weight")), vec![e, e], -b, b);
            add(&l(&format!("attention.self.{part}.bias")), vec![e], -b, b);
        }
        add(&l("attention.output.dense.weight"), vec![e, e], -b, b);
        add(&l("attention.output.dense.bias"), vec![e], -b, b);
        add(&l("attention.output.LayerNorm.weight"), vec![e], 0.8, 1.2);
        add(&l("attention.output.LayerNorm.bias"), vec![e], -0.2, 0.2);
        add(&l("intermediate.dense.weight"), vec![ff, e], -b, b);
        add(&l("intermediate.dense.bias"), vec![ff], -b, b);
        let b2 = 1.0 / (ff as f32).sqrt();
        add(&l("output.dense.weight"), vec![e, ff], -b2, b2);
        add(&l("output.dense.bias"), vec![e], -b2, b2);
        add(&l("output.LayerNorm.weight"), vec![e], 0.8, 1.2);
        add(&l("output.LayerNorm.bias"), vec![e], -0.2, 0.2);
    }
    let views: Vec<(&str, &[usize], &[f32])> = owned.iter().map(|(n, s, d)| (n.as_str(), &s[..], &d[..])).collect();
    write_f32(&dir.join("model.safetensors"), &views).unwrap();
    dir
}

#[test]
fn minilm_is_one_configuration_of_the_bert_loader() {
    let Some(dir) = minilm() else { return };
    assert_eq!(BertConfig::from_dir(&dir).unwrap(), BertConfig::minilm());
}

#[test]
fn a_bert_of_other_sizes_and_modules_runs_alike_on_every_path() {
    let Some(src) = minilm() else { return };
    let sentences = ["A man is eating food.", &"a long sentence with many words ".repeat(20), "x"];
    for (pooling, normalize, prefix) in [("cls", false, "bert."), ("max", false, ""), ("mean", true, "bert.")] {
        let dir = tiny_bert(pooling, &src, pooling, normalize, 24, prefix);
        let cfg = BertConfig::from_dir(&dir).unwrap();
        let mode = match pooling {
            "cls" => Pooling::Cls,
            "max" => Pooling::Max,
            _ => Pooling::Mean,
        };
        assert_eq!((cfg.hidden, cfg.heads, cfg.ff, cfg.layers, cfg.max_tokens), (32, 4, 48, 2, 24));
        assert_eq!((cfg.pooling, cfg.normalize), (mode, normalize));
        let mut outputs = Vec::new();
        for engine in common::every_path() {
            let model = engine.load_bert(&dir).unwrap();
            let out = model.encode(&sentences).unwrap();
            // max_seq_length 24 truncates the long one; token counts say so
            assert_eq!(out.token_counts[1], 24, "{pooling}");
            assert!(out.token_counts[0] < 24 && out.token_counts[2] == 3, "{:?}", out.token_counts);
            for (s, (v, t)) in out.sentences.iter().zip(&out.tokens).enumerate() {
                assert_eq!(v.len(), 32);
                assert_eq!(t.len(), out.token_counts[s] * 32, "token vectors: (tokens, E)");
                let want = resformer::model::bert::pool(t, 32, mode, normalize);
                assert_eq!(v, &want, "{pooling}: the sentence vector is its tokens pooled");
            }
            if normalize {
                let n: f32 = out.sentences[0].iter().map(|v| v * v).sum();
                assert!((n - 1.0).abs() < 1e-5, "{n}");
            }
            // token ids in give the same as text in
            let ids: Vec<Vec<u32>> = sentences.iter().map(|s| model.tokenize(s).unwrap()).collect();
            assert_eq!(model.encode_ids(&ids).unwrap().sentences, out.sentences);
            outputs.push((engine.describe(), out));
        }
        // every path against the reference, with the MiniLM parity tolerance
        let (_, reference) = &outputs[0];
        for (name, out) in &outputs[1..] {
            for s in 0..sentences.len() {
                let what = format!("{pooling} [{s}] on {name}");
                assert_close(&what, &out.tokens[s], &reference.tokens[s], Tol { atol: 1e-4, rtol: 0.0 });
            }
        }
    }
}

#[test]
fn what_the_engine_cannot_run_is_an_error_naming_the_file_and_field() {
    let Some(src) = minilm() else { return };
    let base = || tiny_bert("errors", &src, "mean", true, 24, "");
    let load = |dir: &Path| {
        Engine::new_blocking(EngineOptions::on(Device::Cpu)).unwrap().load_bert(dir).err().unwrap().to_string()
    };
    let edit = |dir: &Path, file: &str, from: &str, to: &str| {
        let p = dir.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{file} lacks {from}");
        std::fs::write(&p, text.replace(from, to)).unwrap();
    };
    let dir = base();
    edit(&dir, "config.json", r#""model_type": "bert""#, r#""model_type": "roberta""#);
    let e = load(&dir);
    assert!(e.contains("config.json") && e.contains("model_type \"roberta\""), "{e}");
    let dir = base();
    edit(&dir, "config.json", r#""hidden_act": "relu""#, r#""hidden_act": "silu""#);
    let e = load(&dir);
    assert!(e.contains("config.json") && e.contains("`hidden_act` Some(\"silu\")"), "{e}");
    let dir = base();
    edit(
        &dir,
        "1_Pooling/config.json",
        r#""pooling_mode_mean_sqrt_len_tokens": false"#,
        r#""pooling_mode_mean_sqrt_len_tokens": true"#,
    );
    let e = load(&dir);
    assert!(e.contains("1_Pooling/config.json") && e.contains("pooling_mode_mean_sqrt_len_tokens"), "{e}");
    let dir = base();
    edit(&dir, "sentence_bert_config.json", r#""max_seq_length": 24"#, r#""max_seq_length": 512"#);
    let e = load(&dir);
    assert!(e.contains("sentence_bert_config.json") && e.contains("max_seq_length 512: must be 1..=80"), "{e}");
    let dir = base();
    std::fs::rename(dir.join("model.safetensors"), dir.join("pytorch_model.bin")).unwrap();
    let e = load(&dir);
    assert!(e.contains("pytorch_model.bin") && e.contains("model.safetensors"), "{e}");
    let dir = base();
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = load(&dir);
    assert!(e.contains("tokenizer.json") && e.contains("missing"), "{e}");
    let dir = base();
    edit(&dir, "config.json", r#""hidden_size": 32"#, r#""hidden_size": 64"#);
    let e = load(&dir);
    assert!(e.contains("model.safetensors") && e.contains("[vocab, 64]") && e.contains("hidden_size"), "{e}");
}
