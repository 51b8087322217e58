//! `resformer bench` end to end: every kernel at the small sizes, JSON rows
//! with the fields the issue names, and --compare against a baseline file.

use std::process::Command;

#[test]
fn bench_small_writes_a_row_per_case_with_gpu_cpu_and_adapter() {
    if resformer::testing::shared_gpu().is_none() {
        return; // printed by shared_gpu; a failure under RESFORMER_REQUIRE_GPU=1
    }
    let dir = std::env::temp_dir().join(format!("resformer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let out = Command::new(env!("CARGO_BIN_EXE_resformer"))
        .args(["bench", "--kernel", "all", "--sizes", "small", "--runs", "2", "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("adapter: "), "{stdout}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
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
    let baseline: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({"kernel": r["kernel"], "shape": r["shape"], "adapter": "x", "backend": "x",
            "gpu_ms": r["gpu_ms"].as_f64().unwrap() * 2.0, "cpu_ref_ms": null, "peak_pct": null})
        })
        .collect();
    let base = dir.join("base.json");
    std::fs::write(&base, serde_json::to_string(&baseline).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_resformer"))
        .args(["bench", "--kernel", "residual_add", "--runs", "1", "--compare", base.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("ours/torch"), "{stdout}");
}
