//! `resformer bench` end to end: every kernel at the small sizes, JSON rows
//! with the fields the issue names, and --compare against a baseline file.

use std::path::PathBuf;
use std::process::Command;

/// A directory of this test's own, for `--json` files.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("resformer-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A baseline file in `dir`: each row's (kernel, shape) at `factor` times its `field` time.
fn baseline(dir: &std::path::Path, rows: &[serde_json::Value], field: &str, factor: f64) -> PathBuf {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({"kernel": r["kernel"], "shape": r["shape"], "adapter": "x", "backend": "x",
            "gpu_ms": r[field].as_f64().unwrap() * factor, "cpu_ref_ms": null, "peak_pct": null})
        })
        .collect();
    let base = dir.join("base.json");
    std::fs::write(&base, serde_json::to_string(&rows).unwrap()).unwrap();
    base
}

/// `resformer bench ARGS --json FILE`, which must succeed: its stdout and the rows it wrote.
fn bench_rows(args: &[&str], json: &std::path::Path) -> (String, Vec<serde_json::Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_resformer"))
        .arg("bench")
        .args(args)
        .args(["--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    (stdout, serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap())
}

#[test]
fn bench_small_writes_a_row_per_case_with_gpu_cpu_and_adapter() {
    if resformer::testing::shared_gpu().is_none() {
        return; // printed by shared_gpu; a failure under RESFORMER_REQUIRE_GPU=1
    }
    let dir = scratch_dir("bench");
    let (stdout, rows) = bench_rows(&["--kernel", "all", "--sizes", "small", "--runs", "2"], &dir.join("out.json"));
    assert!(stdout.contains("adapter: "), "{stdout}");
    let kernels: Vec<&str> = rows.iter().map(|r| r["kernel"].as_str().unwrap()).collect();
    for k in ["matmul", "attention", "layernorm", "residual_add", "block", "stack"] {
        assert!(kernels.contains(&k), "no {k} row: {kernels:?}");
    }
    for r in &rows {
        assert!(r["gpu_ms"].as_f64().is_some_and(|v| v > 0.0), "{r}");
        assert!(r["cpu_ref_ms"].as_f64().is_some_and(|v| v > 0.0), "{r}");
        assert!(r["cpu_ms"].as_f64().is_some_and(|v| v > 0.0), "the CPU backend's column: {r}");
        assert!(!r["adapter"].as_str().unwrap().is_empty(), "{r}");
        assert!(r["gflops"].as_f64().or(r["gbps"].as_f64()).is_some(), "{r}");
        assert!(r["peak_pct"].as_f64().is_some(), "{r}");
        if r["kernel"] == "matmul" {
            assert!(r["m"].is_u64() && r["n"].is_u64() && r["k"].is_u64() && r["cpu_fast_ms"].is_f64(), "{r}");
        }
    }

    // --compare: a baseline at twice our time gives ours/torch = 0.5
    let base = baseline(&dir, &rows, "gpu_ms", 2.0);
    let out = Command::new(env!("CARGO_BIN_EXE_resformer"))
        .args(["bench", "--kernel", "residual_add", "--runs", "1", "--compare", base.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("ours/torch"), "{stdout}");
}

/// `--device cpu` opens no GPU: every row times the CPU backend (named as the adapter), the
/// reference beside it, no GPU column or % of peak, and `--compare` divides the CPU backend's
/// time by the baseline's.
#[test]
fn bench_on_the_cpu_backend_alone_times_it_and_compares_it() {
    let dir = scratch_dir("bench-cpu");
    let (stdout, rows) = bench_rows(&["--device", "cpu", "--sizes", "small", "--runs", "3"], &dir.join("out.json"));
    assert!(stdout.contains("adapter: CPU backend (") && stdout.contains("no GPU"), "{stdout}");
    assert_eq!(rows.len(), 7, "a row per small case: {rows:?}");
    for r in &rows {
        assert!(r["gpu_ms"].is_null() && r["peak_pct"].is_null(), "no GPU was timed: {r}");
        assert!(r["cpu_ms"].as_f64().is_some_and(|v| v > 0.0), "{r}");
        assert!(r["cpu_ref_ms"].as_f64().is_some_and(|v| v > 0.0), "{r}");
        assert!(r["adapter"].as_str().unwrap().starts_with("CPU backend (") && r["backend"] == "cpu", "{r}");
        let ms = r["cpu_ms"].as_f64().unwrap();
        match (r["gflops"].as_f64(), r["gbps"].as_f64()) {
            (Some(g), None) => assert!(g > 0.0 && g.is_finite(), "{r}"),
            (None, Some(b)) => assert!(b > 0.0 && b.is_finite() && ms > 0.0, "{r}"),
            _ => panic!("one rate per row: {r}"),
        }
    }

    // a baseline at four times the CPU backend's time: ours over it is 0.25
    let base = baseline(&dir, &rows, "cpu_ms", 4.0);
    let compare = ["--device", "cpu", "--kernel", "matmul", "--runs", "1", "--compare", base.to_str().unwrap()];
    let (stdout, rows) = bench_rows(&compare, &dir.join("again.json"));
    assert!(stdout.contains("ours/torch"), "{stdout}");
    for r in &rows {
        let (ours, torch, ratio) =
            (r["cpu_ms"].as_f64().unwrap(), r["torch_ms"].as_f64().unwrap(), r["ours_over_torch"].as_f64().unwrap());
        assert!((ratio - ours / torch).abs() < 1e-9 && ratio > 0.0, "{r}");
    }

    // the reference is not a device to time: said in one line, exit 2
    let out = Command::new(env!("CARGO_BIN_EXE_resformer")).args(["bench", "--device", "reference"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(2) && stderr.contains("gpu, gpu:N or cpu"), "{stderr}");
}
