//! The `resformer` binary as a user runs it: bad files and arguments end in one `error:` line
//! with exit status 1 or 2 (never a panic or an abort), a closed pipe ends it quietly, flags
//! that would do nothing are refused, and `embed` reads sentences the way people pass them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use resformer::model::io::{write_f32, TensorFile};
use resformer::model::StackWeights;

/// The repository root: the commands' default paths (assets/, tests/fixtures/) start there.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("resformer-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_resformer"));
    c.args(args).current_dir(repo()).env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn cli(args: &[&str]) -> (i32, String, String) {
    text(&command(args).output().expect("run resformer"))
}

fn cli_env(args: &[&str], var: &str, value: &str) -> (i32, String, String) {
    text(&command(args).env(var, value).output().expect("run resformer"))
}

/// Exits with `code` and one line on stderr that contains `needle`; no panic, no abort.
fn assert_error(args: &[&str], code: i32, needle: &str) {
    let (got, _, err) = cli(args);
    assert_one_line_error(args, (got, err), code, needle);
}

fn assert_one_line_error(what: impl std::fmt::Debug, (got, err): (i32, String), code: i32, needle: &str) {
    assert_eq!(got, code, "{what:?}: exit status {got}, stderr: {err}");
    assert!(!err.contains("panicked") && !err.contains("memory allocation"), "{what:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what:?}: one line on stderr: {err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{what:?}: {err}");
}

fn minilm() -> Option<PathBuf> {
    let dir = repo().join("models/all-MiniLM-L6-v2");
    let files = [dir.join("model.safetensors"), dir.join("tokenizer.json")];
    resformer::testing::require_data("MiniLM", &files, "bash scripts/fetch-minilm.sh").then_some(dir)
}

#[test]
fn cli_run_reports_bad_files_and_arguments_in_one_line() {
    let w = tmp("cli-w.safetensors");
    StackWeights::random(3, 1, 8, 16).save(&w, "").unwrap();
    let x = tmp("cli-x.safetensors");
    write_f32(&x, &[("input", &[3, 2, 8], &[0.5; 48])]).unwrap();
    let x_wrong = tmp("cli-x-wrong.safetensors");
    write_f32(&x_wrong, &[("input", &[3, 2, 6], &[0.5; 36])]).unwrap();
    let no_input = tmp("cli-no-input.safetensors");
    write_f32(&no_input, &[("x", &[3, 8], &[0.5; 24])]).unwrap();
    let garbage = tmp("cli-garbage.safetensors");
    std::fs::write(&garbage, b"garbage").unwrap();
    let (w, x, x_wrong, no_input, garbage) = (
        w.to_str().unwrap(),
        x.to_str().unwrap(),
        x_wrong.to_str().unwrap(),
        no_input.to_str().unwrap(),
        garbage.to_str().unwrap(),
    );
    let run = |extra: &[&str], code: i32, needle: &str| {
        let args: Vec<&str> = ["run", "--device", "cpu", "--runs", "1"].iter().chain(extra).copied().collect();
        assert_error(&args, code, needle);
    };
    run(&["--weights", w, "--input", x, "--heads", "3"], 1, "heads 3 do not divide embed 8");
    run(&["--weights", w, "--input", x, "--heads", "0"], 2, "'--heads <HEADS>': must be a positive integer");
    run(&["--weights", w, "--input", x_wrong, "--heads", "2"], 1, "`input` has embed 6");
    run(&["--weights", w, "--input", no_input, "--heads", "2"], 1, "no tensor named `input`");
    run(&["--weights", garbage, "--input", x, "--heads", "2"], 1, "not a valid safetensors file");
    run(&["--weights", "/nonexistent/w.safetensors", "--input", x, "--heads", "2"], 1, "/nonexistent/w.safetensors");
    run(&["--weights", w, "--input", x], 2, "--heads is required");
    run(&["--weights", w], 2, "--weights and --input go together");
    run(&["--embed", "abc"], 2, "invalid value 'abc' for '--embed <EMBED>': must be a positive integer");
    run(&["--frobnicate"], 2, "unexpected argument '--frobnicate'");
    run(&["--weights", w, "--input", x, "--heads", "2", "--prefix", "blocks."], 1, "is the prefix right? (--prefix)");
    assert_error(&["run", "--device", "nope"], 2, "invalid value 'nope' for '--device <DEVICE>': expected auto, cpu");

    // and the good case runs on the CPU backend and writes `output`
    let y = tmp("cli-y.safetensors");
    let args = ["run", "--device", "cpu", "--runs", "1", "--weights", w, "--input", x, "--heads", "2"];
    let (code, out, err) = cli(&[&args[..], &["--output", y.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("backend: CPU backend"), "{out}");
    assert_eq!(TensorFile::open(&y).unwrap().get("output").unwrap().shape, vec![3, 2, 8]);
}

#[test]
fn cli_auto_falls_back_to_the_cpu_backend_when_no_adapter_exists() {
    // no Metal adapter exists on Linux (or anywhere off Apple): auto must say it runs on the CPU
    let run = |device: &str| {
        let args =
            ["run", "--layers", "1", "--embed", "16", "--heads", "2", "--ff", "32", "--seq", "5", "--batch", "2"];
        text(
            &command(&args)
                .args(["--runs", "1", "--device", device])
                .env("WGPU_BACKEND", if cfg!(target_os = "macos") { "dx12" } else { "metal" })
                .env_remove("RESFORMER_REQUIRE_GPU")
                .output()
                .unwrap(),
        )
    };
    let (code, out, _) = run("auto");
    assert!(code == 0 && out.contains("backend: CPU backend") && out.contains("no hardware GPU"), "{out}");
    let (code, out, _) = run("reference");
    assert!(code == 0 && out.contains("backend: CPU reference path"), "{out}");
    let (code, _, err) = run("gpu");
    assert!(code == 1 && err.contains("no GPU or software adapter found"), "{err}");
}

#[test]
fn cli_help_version_and_suggestions_come_from_the_definitions() {
    let (code, out, _) = cli(&["--version"]);
    assert_eq!((code, out.trim()), (0, concat!("resformer ", env!("CARGO_PKG_VERSION"))));
    let (code, out, _) = cli(&["--help"]);
    assert_eq!(code, 0);
    for cmd in ["run", "attention", "embed", "classify", "bench", "tune", "parity", "devices"] {
        assert!(out.contains(&format!("  {cmd} ")), "--help lists {cmd}: {out}");
    }
    for var in resformer::KernelPolicy::VARIABLES {
        assert!(out.contains(var), "--help names {var}: {out}");
    }
    let (code, out, _) = cli(&["run", "--help"]);
    assert!(code == 0 && out.contains("--check-ops") && out.contains("--device <DEVICE>"), "{out}");
    assert!(out.contains("[alias: --backend]") && out.contains("gpu:N"), "{out}");
    // --runs says what it does: N timed forwards, stopping early only past 3 and ~10 s
    assert!(!out.contains("at least 3") && out.contains("past 3 of them"), "{out}");
    let (code, _, err) = cli(&[]);
    assert_eq!((code, err.trim()), (2, "error: no command given (try --help)"));
    // clap's "did you mean" suggestions, on the one line
    assert_error(&["embd"], 2, "tip: a similar subcommand exists: 'embed'");
    assert_error(&["run", "--hads", "2"], 2, "tip: a similar argument exists: '--heads'");
    // a negative number is a value that is not positive, not an unknown flag
    assert_error(&["run", "--heads", "-1"], 2, "invalid value '-1' for '--heads <HEADS>': must be a positive integer");
    assert_error(&["embed", "--model", "m", "--speed", "--batch", "-3"], 2, "'--batch <BATCH>': must be a positive");
}

#[test]
fn every_subcommand_takes_the_same_device_spelling() {
    for cmd in ["run", "attention", "embed", "classify", "parity", "bench", "tune"] {
        let (code, out, _) = cli(&[cmd, "--help"]);
        assert!(code == 0 && out.contains("--device <DEVICE>") && out.contains("gpu:N"), "{cmd}: {out}");
    }
    // tune times GPU kernels only and refuses the host devices by saying so; bench also
    // times the CPU backend alone (bench_cli.rs) but not the reference
    assert_error(&["tune", "--device", "cpu"], 2, "--device cpu: this command times GPU kernels; give gpu or gpu:N");
    assert_error(&["bench", "--device", "reference"], 2, "--device reference: bench times gpu, gpu:N or cpu");
    // --backend stays an alias of --device
    let (code, out, err) = cli(&["attention", "I love deep learning", "--backend", "reference"]);
    assert!(code == 0 && out.contains("backend: CPU reference path"), "{out}{err}");
    // gpu:N names one adapter; a number past the list is refused with the list
    let (code, _, err) = cli(&["attention", "hi there", "--device", "gpu:7"]);
    assert_one_line_error("gpu:7", (code, err.clone()), 1, "gpu:7 (adapters are numbered from 0) matches no adapter");
    if resformer::testing::shared_gpu().is_some() {
        let (code, out, err) = cli(&["attention", "I love deep learning", "--device", "gpu:0"]);
        assert!(code == 0 && out.contains("matmul and attention kernels"), "{out}{err}");
    }
}

#[test]
fn bad_environment_values_are_refused_naming_the_variable_and_the_choices() {
    for (var, value, accepted) in [
        ("RESFORMER_MATMUL", "bogus", "subgroup8, coop, tiled"),
        ("RESFORMER_ATTENTION", "fast", "tiled, flash, subgroup8"),
        ("RESFORMER_LAYERNORM", "wide", "tiled, subgroup8, rows"),
        ("RESFORMER_COOP", "yes", "auto, on or off"),
        ("RESFORMER_TUNE", "maybe", "auto, on or off"),
        ("WGPU_BACKEND", "bogus", "a comma-separated list of vulkan, metal, dx12, gl"),
    ] {
        let (code, out, err) = cli_env(&["run", "--device", "cpu", "--runs", "1"], var, value);
        assert!(out.is_empty(), "{var}: nothing runs before the refusal: {out}");
        assert_one_line_error(var, (code, err), 2, &format!("{var}=\"{value}\" is not valid: expected {accepted}"));
    }
    // a variant the device cannot run is refused when the engine opens, with what it offers
    if resformer::testing::shared_gpu().is_some_and(|g| !g.features().contains(wgpu::Features::SUBGROUP)) {
        return;
    }
    let (code, _, err) = cli_env(&["attention", "hi", "--device", "gpu"], "RESFORMER_MATMUL", "coop");
    if resformer::testing::shared_gpu().is_some_and(|g| g.adapter().is_software()) {
        assert_one_line_error("coop on lavapipe", (code, err), 1, "variant coop is not available on llvmpipe");
    }
}

#[test]
fn crashes_of_old_become_one_line_errors() {
    // --runs 0: refused by the parser (it indexed an empty list)
    assert_error(&["bench", "--kernel", "attention", "--runs", "0"], 2, "'--runs <RUNS>': must be a positive integer");
    // sizes that would abort in the allocator: refused before anything is allocated
    assert_error(&["attention", "I love deep learning", "--dim", "100000"], 2, "--dim 100000: the attention kernels");
    let big = resformer::model::budget::available_host_bytes().is_some_and(|b| b < 100_000_000_000);
    if big {
        let args = ["run", "--embed", "100000", "--heads", "1000", "--layers", "1", "--seq", "1", "--batch", "1"];
        assert_error(&args, 1, "GB of host memory but");
        assert_error(&["run", "--seq", "10000000", "--batch", "100"], 1, "lower --layers, --embed or --ff");
    }
}

#[test]
fn a_closed_pipe_ends_the_program_quietly() {
    let mut cases: Vec<Vec<String>> =
        vec![vec!["devices".into()], vec!["parity".into(), "--device".into(), "cpu".into()]];
    if let Some(dir) = minilm() {
        let d = dir.to_str().unwrap().to_string();
        cases.push(["embed", "--device", "cpu", "--model", &d, "one", "two", "three"].map(String::from).to_vec());
    }
    for args in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // `| head -1`: the reader goes away after one line (or before the first)
        let mut child = command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 1];
        let _ = std::io::Read::read(&mut stdout, &mut first);
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            // the default for a Unix filter: done, or ended by SIGPIPE (13) as `head` expects
            assert!(out.status.success() || out.status.signal() == Some(13), "{args:?}: {:?} {err}", out.status);
        }
    }
}

#[test]
fn flags_that_would_do_nothing_are_refused_or_do_what_they_say() {
    // run: the random stack's sizes with weight files
    let w = tmp("flags-w.safetensors");
    StackWeights::random(3, 1, 8, 16).save(&w, "").unwrap();
    let x = tmp("flags-x.safetensors");
    write_f32(&x, &[("input", &[3, 2, 8], &[0.5; 48])]).unwrap();
    let (w, x) = (w.to_str().unwrap(), x.to_str().unwrap());
    let files = ["run", "--device", "cpu", "--weights", w, "--input", x, "--heads", "2"];
    assert_error(&[&files[..], &["--layers", "3", "--embed", "64"]].concat(), 2, "--layers, --embed set(s)");
    // attention: --head picks a head of a real model only
    assert_error(&["attention", "hi", "--head", "3"], 2, "--head picks a head of a real model");
    // classify: --out with --image draws nothing; --image --json prints JSON
    assert_error(&["classify", "--image", "5", "--out", "img.png"], 2, "--out draws the confusion matrix");
    let digits = repo().join("data/digits/digits.csv");
    if resformer::testing::require_data("digits", &[digits], "bash scripts/fetch-digits.sh") {
        let (code, out, err) = cli(&["classify", "--device", "cpu", "--image", "5", "--json"]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        let p: Vec<f64> = v["probabilities"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert!(p.len() == 10 && (p.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{v}");
        assert!(v["predicted"].as_u64().is_some() && v["class_token_attention"].as_array().unwrap().len() == 17, "{v}");
    }
    // embed: sentences are not timed by --speed; --random-weights only means something there
    assert_error(&["embed", "--model", "m", "--speed", "hello"], 2, "--speed times its own");
    assert_error(&["embed", "--model", "m", "--random-weights", "hello"], 2, "--random-weights is for --speed");
    let Some(dir) = minilm() else { return };
    let d = dir.to_str().unwrap();
    let speed = ["embed", "--model", d, "--speed", "--json", "--device", "cpu", "--batch", "2", "--repeats", "1"];
    let (code, out, err) = cli(&[&speed[..], &["--random-weights"]].concat());
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let row = &v.as_array().unwrap()[0];
    assert!(row["sentences_per_s"].as_f64().is_some_and(|s| s > 0.0) && row["batch"] == 2, "{v}");
    assert!(row["backend"].as_str().unwrap().contains("CPU backend"), "{v}");
    // a mixed-length batch on a thread of its own: lengths spread from --min-tokens to 128, and
    // the CPU backend runs only the real tokens
    let mixed = ["embed", "--model", d, "--speed", "--json", "--device", "cpu", "--batch", "5", "--repeats", "1"];
    let mixed = [&mixed[..], &["--random-weights", "--min-tokens", "9", "--threads", "1"]].concat();
    let (code, out, err) = cli(&mixed);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let row = &v.as_array().unwrap()[0];
    let (min, max) = (row["min_tokens"].as_u64().unwrap(), row["max_tokens"].as_u64().unwrap());
    assert!((7..=9).contains(&min) && (120..=128).contains(&max), "{v}");
    assert!(row["forward_tokens"].as_u64().unwrap() < 5 * max, "padding ran: {v}");
    assert!(row["backend"].as_str().unwrap().contains("1 thread)"), "{v}");
    assert_error(&["embed", "--model", "m", "--speed", "--min-tokens", "2"], 2, "--min-tokens");
}

#[test]
fn embed_reads_stdin_and_files_and_says_what_it_truncated() {
    let Some(dir) = minilm() else { return };
    let d = dir.to_str().unwrap();
    let long = "attention weighs every token against every other token ".repeat(40);
    // standard input, one sentence per line (an empty one skipped)
    let mut child = command(&["embed", "--device", "cpu", "--model", d, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = format!("A man is eating food.\n\n{long}\nA man is eating a piece of bread.\n");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let (code, out, err) = text(&child.wait_with_output().unwrap());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("embedded 3 sentences"), "{out}");
    // the long one: echoed shortened, on one line, and its truncation stated
    let echoed = out.lines().find(|l| l.starts_with("[1] ")).unwrap();
    assert!(echoed.starts_with("[1] 256 tokens") && echoed.contains("... (") && echoed.len() < 200, "{echoed}");
    let note = out.lines().find(|l| l.contains("note: [1]")).unwrap_or_else(|| panic!("{out}"));
    assert!(note.contains("truncated to the model's first 256"), "{note}");
    assert!(!out.contains("note: [0]") && !out.contains("note: [2]"), "{out}");
    assert!(out.contains("cosine similarity:"), "three sentences: the matrix: {out}");

    // a file of more than 8 sentences: the closest pairs, not a 10 x 10 matrix
    let file = tmp("sentences.txt");
    let lines: Vec<String> =
        (0..10).map(|i| format!("sentence number {i} about {}", ["cats", "dogs"][i % 2])).collect();
    std::fs::write(&file, lines.join("\n") + "\n\n").unwrap();
    let (code, out, err) = cli(&["embed", "--device", "cpu", "--model", d, "--file", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("embedded 10 sentences") && out.contains("closest pairs (cosine similarity; 10 of 45)"),
        "{out}"
    );
    assert!(!out.contains("cosine similarity:\n"), "{out}");
    // --json is unchanged: the embeddings of the sentences, in order
    let (code, out, _) = cli(&["embed", "--device", "cpu", "--model", d, "--json", "a", "b"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(code == 0 && v["dim"] == 384 && v["embeddings"].as_array().unwrap().len() == 2, "{v}");
}

#[test]
fn run_takes_pytorch_s_own_transformer_encoder_files_with_bool_masks_as_they_are() {
    use resformer::model::fixture::{load_dir, PYTORCH_ATOL};
    // scripts/make_encoder_fixtures.py: nn.TransformerEncoder's state_dict, its `input` and
    // its bool `key_padding_mask` in one file, as PyTorch saved them; passed as they are
    let dir = repo().join("tests/fixtures/encoder");
    let mut devices = vec!["cpu"];
    if resformer::testing::shared_gpu().is_some() {
        devices.push("gpu");
    }
    for f in load_dir(&dir).unwrap() {
        let file = dir.join(format!("{}.safetensors", f.name));
        let file = file.to_str().unwrap();
        for device in &devices {
            let y = tmp(&format!("encoder-y-{}-{device}.safetensors", f.name));
            let (heads, eps) = (f.cfg.heads.to_string(), f.cfg.eps.to_string());
            let mut args = vec!["run", "--device", device, "--runs", "1", "--heads", &heads, "--eps", &eps];
            args.extend(["--weights", file, "--input", file, "--output", y.to_str().unwrap()]);
            for (on, flag) in [
                (f.cfg.pre_norm, "--pre-norm"),
                (f.cfg.activation == resformer::ops::Activation::Gelu, "--gelu"),
                (f.cfg.causal, "--causal"),
                (f.cfg.batch_first, "--batch-first"),
            ] {
                if on {
                    args.push(flag);
                }
            }
            let (code, out, err) = cli(&args);
            assert_eq!(code, 0, "{} on {device}: {out}{err}", f.name);
            let names = if f.weights.output_norm().is_some() {
                "(nn.TransformerEncoder names, with its final norm)"
            } else {
                "(nn.TransformerEncoder names)"
            };
            assert!(out.contains(names), "{}: {out}", f.name);
            assert_eq!(out.contains("using key_padding_mask"), f.key_pad.is_some(), "{}: {out}", f.name);
            let got = TensorFile::open(&y).unwrap().get("output").unwrap();
            let want = TensorFile::open(Path::new(file)).unwrap().get("output").unwrap();
            assert_eq!(got.shape, want.shape, "{}", f.name);
            let worst = got.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst <= PYTORCH_ATOL, "{} on {device}: {worst:.2e} from PyTorch", f.name);
        }
    }
}

#[test]
fn embed_json_on_every_bert_of_another_shape_matches_sentence_transformers_on_cpu_and_gpu() {
    // directories SentenceTransformer.save wrote (scripts/make_bert_fixtures.py): mean, CLS and
    // max pooling, with and without Normalize, GELU, ReLU and gelu_new, max_seq_length 64 to 128
    let root = repo().join("tests/fixtures/bert");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    assert_eq!(dirs.len(), 4);
    let mut devices = vec!["cpu"];
    if resformer::testing::shared_gpu().is_some() {
        devices.push("gpu");
    }
    for dir in &dirs {
        let sentences: Vec<String> =
            std::fs::read_to_string(dir.join("sentences.txt")).unwrap().lines().map(String::from).collect();
        let want = TensorFile::open(&dir.join("expected.safetensors")).unwrap().get("embeddings").unwrap();
        let e = want.shape[1];
        for device in &devices {
            let mut args = vec!["embed", "--device", device, "--json", "--model", dir.to_str().unwrap()];
            args.extend(sentences.iter().map(String::as_str));
            let (code, out, err) = cli(&args);
            assert_eq!(code, 0, "{err}");
            let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            assert_eq!(v["dim"], e);
            let rows = v["embeddings"].as_array().unwrap();
            assert_eq!(rows.len(), sentences.len());
            for (i, r) in rows.iter().enumerate() {
                let got: Vec<f32> = r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
                let w = &want.data[i * e..(i + 1) * e];
                let worst = got.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                let dot: f32 = got.iter().zip(w).map(|(a, b)| a * b).sum();
                let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
                let cos = dot / (norm(&got) * norm(w));
                assert!(
                    worst <= 1e-4 && cos >= 0.9999,
                    "{} [{i}] on {device}: max abs {worst:.2e}, cosine {cos}",
                    dir.display()
                );
            }
        }
    }
    // --check-ops on one of them: the embedding LayerNorm first, every step within tolerance
    let d = dirs[0].to_str().unwrap();
    let (code, out, err) = cli(&["embed", "--device", "cpu", "--model", d, "--check-ops", "a sentence", "x"]);
    assert_eq!(code, 0, "{out}{err}");
    let steps: Vec<&str> = out.lines().filter(|l| l.ends_with(" ok")).collect();
    assert!(steps[0].contains("embeddings.LayerNorm layernorm"), "{out}");
    assert!(out.contains(&format!("all {} steps within tolerance", steps.len())), "{out}");
}
