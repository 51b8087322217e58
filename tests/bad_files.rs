//! Malformed weight and input files, and bad arguments: each ends in an error
//! that names the tensor or argument and what was expected; never a panic.

use std::path::PathBuf;
use std::process::Command;

use resformer::model::io::{write_f32, TensorFile};
use resformer::model::{BlockConfig, StackWeights};
use resformer::Error;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("resformer-bad-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A valid 2-block file (E 8, F 16) as bytes.
fn good_weights() -> Vec<u8> {
    let p = tmp("good.safetensors");
    StackWeights::random(1, 2, 8, 16).save(&p, "").unwrap();
    std::fs::read(p).unwrap()
}

fn load_err(name: &str, bytes: Vec<u8>) -> String {
    match TensorFile::from_bytes(name, bytes).and_then(|f| StackWeights::from_file(&f, "")) {
        Ok(_) => panic!("{name}: loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_good_file_round_trips() {
    let p = tmp("roundtrip.safetensors");
    let w = StackWeights::random(2, 3, 8, 12);
    w.save(&p, "blocks.").unwrap();
    assert_eq!(StackWeights::load(&p, "blocks.").unwrap(), w);
    let e = StackWeights::load(&p, "").unwrap_err().to_string();
    assert!(e.contains("missing tensor `0.attn.out_proj.weight`") && e.contains("is the prefix right?"), "{e}");
}

#[test]
fn missing_tensor_is_named() {
    let p = tmp("missing.safetensors");
    let w = StackWeights::random(1, 1, 4, 8);
    let b = &w.blocks[0];
    // everything but norm2.bias
    let names = resformer::model::weights::block_tensor_names(4, 8);
    let t: Vec<(String, Vec<usize>, &Vec<f32>)> =
        names.iter().zip(b.tensors()).take(11).map(|((n, s), d)| (format!("0.{n}"), s.clone(), d)).collect();
    let refs: Vec<(&str, &[usize], &[f32])> =
        t.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice())).collect();
    write_f32(&p, &refs).unwrap();
    let e = StackWeights::load(&p, "").unwrap_err().to_string();
    assert!(e.contains("missing tensor `0.norm2.bias`"), "{e}");
}

#[test]
fn wrong_shape_names_expected_and_found() {
    let p = tmp("shape.safetensors");
    let w = StackWeights::random(1, 1, 4, 8);
    let names = resformer::model::weights::block_tensor_names(4, 8);
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> =
        names.iter().zip(w.blocks[0].tensors()).map(|((n, s), d)| (format!("0.{n}"), s.clone(), d.clone())).collect();
    t[1] = ("0.attn.in_proj_bias".into(), vec![11], vec![0.0; 11]);
    let refs: Vec<(&str, &[usize], &[f32])> =
        t.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice())).collect();
    write_f32(&p, &refs).unwrap();
    let e = StackWeights::load(&p, "").unwrap_err().to_string();
    assert!(e.contains("`0.attn.in_proj_bias` expected shape [12], found [11]"), "{e}");
}

#[test]
fn unsupported_dtype_is_an_error() {
    // rewrite the header's first F32 to I32: same byte size, not a float
    let bytes = good_weights();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let patched = header.replacen("\"F32\"", "\"I32\"", 1);
    let mut out = bytes[..8].to_vec();
    out.extend(patched.as_bytes());
    out.extend(&bytes[8 + n..]);
    let e = load_err("i32.safetensors", out);
    assert!(e.contains("dtype I32") && e.contains("expected a float"), "{e}");
}

#[test]
fn truncated_file_is_an_error() {
    let bytes = good_weights();
    for keep in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let e = load_err("truncated.safetensors", bytes[..keep].to_vec());
        assert!(e.contains("truncated.safetensors") && e.contains("not a valid safetensors file"), "{keep}: {e}");
    }
}

#[test]
fn garbage_and_absurd_header_lengths_are_errors() {
    let e = load_err("garbage.safetensors", b"this is not a tensor file at all, just text".to_vec());
    assert!(e.contains("not a valid safetensors file"), "{e}");
    let mut absurd = u64::MAX.to_le_bytes().to_vec();
    absurd.extend(b"{}");
    let e = load_err("absurd.safetensors", absurd);
    assert!(e.contains("not a valid safetensors file"), "{e}");
    let mut big = (1u64 << 40).to_le_bytes().to_vec();
    big.extend(b"{\"a\":1}");
    let e = load_err("big.safetensors", big);
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn f16_bf16_and_f64_weights_convert_to_f32() {
    use safetensors::{tensor::TensorView, Dtype};
    let f16_one = 0x3c00u16.to_le_bytes();
    let bf16_two = 0x4000u16.to_le_bytes();
    let f64_half = 0.5f64.to_le_bytes();
    let p = tmp("dtypes.safetensors");
    let views = vec![
        ("a", TensorView::new(Dtype::F16, vec![1], &f16_one).unwrap()),
        ("b", TensorView::new(Dtype::BF16, vec![1], &bf16_two).unwrap()),
        ("c", TensorView::new(Dtype::F64, vec![1], &f64_half).unwrap()),
    ];
    safetensors::serialize_to_file(views, None, &p).unwrap();
    let f = TensorFile::open(&p).unwrap();
    assert_eq!(
        [f.get("a").unwrap().data[0], f.get("b").unwrap().data[0], f.get("c").unwrap().data[0]],
        [1.0, 2.0, 0.5]
    );
    assert_eq!(f.converted_dtypes(), vec!["BF16", "F16", "F64"]);
}

#[test]
fn heads_that_do_not_divide_embed_or_zero_heads_are_errors() {
    let e = BlockConfig::new(30, 4, 8).validate().unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { .. }) && e.to_string().contains("heads 4 do not divide embed 30"),
        "{e}"
    );
    let e = BlockConfig::new(30, 0, 8).validate().unwrap_err();
    assert!(e.to_string().contains("heads must be at least 1"), "{e}");
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_resformer"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run resformer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Exits non-zero with one line on stderr that contains `needle`, and no panic.
fn assert_cli_error(args: &[&str], needle: &str) {
    let (code, _, err) = cli(args);
    assert_ne!(code, 0, "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("error: ") && last.contains(needle), "{args:?}: {err}");
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
    let base = ["run", "--backend", "cpu", "--runs", "1"];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    let run = |extra: &[&str], needle: &str| {
        let a = with(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        assert_cli_error(&a, needle);
    };
    run(&["--weights", w, "--input", x, "--heads", "3"], "heads 3 do not divide embed 8");
    run(&["--weights", w, "--input", x, "--heads", "0"], "heads must be at least 1");
    run(&["--weights", w, "--input", x_wrong, "--heads", "2"], "`input` has embed 6");
    run(&["--weights", w, "--input", no_input, "--heads", "2"], "no tensor named `input`");
    run(&["--weights", garbage, "--input", x, "--heads", "2"], "not a valid safetensors file");
    run(&["--weights", "/nonexistent/w.safetensors", "--input", x, "--heads", "2"], "/nonexistent/w.safetensors");
    run(&["--weights", w, "--input", x], "--heads is required");
    run(&["--weights", w], "--weights and --input go together");
    run(&["--embed", "abc"], "invalid value 'abc' for '--embed <EMBED>'");
    run(&["--frobnicate"], "unexpected argument '--frobnicate'");
    run(&["--weights", w, "--input", x, "--heads", "2", "--prefix", "blocks."], "is the prefix right? (--prefix)");

    assert_cli_error(&["run", "--backend", "nope"], "expected auto, gpu, cpu or reference, got \"nope\"");

    // and the good case runs on the CPU backend and writes `output`
    let y = tmp("cli-y.safetensors");
    let (code, out, err) = cli(&with(&["--weights", w, "--input", x, "--heads", "2", "--output", y.to_str().unwrap()])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("backend: CPU backend"), "{out}");
    assert_eq!(TensorFile::open(&y).unwrap().get("output").unwrap().shape, vec![3, 2, 8]);
}

#[test]
fn cli_auto_falls_back_to_the_cpu_backend_when_no_adapter_exists() {
    // no Metal adapter exists on Linux (or anywhere off Apple): auto must say it runs on the CPU
    let run = |backend: &str| {
        Command::new(env!("CARGO_BIN_EXE_resformer"))
            .args(["run", "--layers", "1", "--embed", "16", "--heads", "2", "--ff", "32", "--seq", "5", "--batch", "2"])
            .args(["--runs", "1", "--backend", backend])
            .env("WGPU_BACKEND", if cfg!(target_os = "macos") { "dx12" } else { "metal" })
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .output()
            .unwrap()
    };
    let auto = run("auto");
    let out = String::from_utf8_lossy(&auto.stdout);
    assert!(auto.status.success() && out.contains("backend: CPU backend") && out.contains("no hardware GPU"), "{out}");
    let reference = run("reference");
    let out = String::from_utf8_lossy(&reference.stdout);
    assert!(reference.status.success() && out.contains("backend: CPU reference path"), "{out}");
    let gpu = run("gpu");
    let err = String::from_utf8_lossy(&gpu.stderr);
    assert!(!gpu.status.success() && err.contains("no GPU or software adapter found"), "{err}");
}

#[test]
fn cli_help_and_version_come_from_the_definitions() {
    let (code, out, _) = cli(&["--version"]);
    assert_eq!((code, out.trim()), (0, concat!("resformer ", env!("CARGO_PKG_VERSION"))));
    let (code, out, _) = cli(&["--help"]);
    assert_eq!(code, 0);
    for cmd in ["run", "attention", "embed", "classify", "bench", "tune", "parity", "devices"] {
        assert!(out.contains(&format!("  {cmd} ")), "--help lists {cmd}: {out}");
    }
    let (code, out, _) = cli(&["run", "--help"]);
    assert!(code == 0 && out.contains("--check-ops") && out.contains("--backend <BACKEND>"), "{out}");
    let (code, _, err) = cli(&[]);
    assert_eq!((code, err.trim()), (2, "error: no command given (try --help)"));
}
