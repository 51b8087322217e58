//! `resformer bench`'s printed table, and `--compare`: a baseline's rows set beside ours.

use resformer::bench::Row;

/// Adds the other run's time and ours over it to each row with the same (kernel, shape).
pub fn compare(rows: &mut [Row], other: &[Row]) {
    for r in rows {
        if let Some(o) = other.iter().find(|o| o.kernel == r.kernel && o.shape == r.shape) {
            r.torch_ms = o.gpu_ms;
            // ours is the timed device's: the GPU's, or the CPU backend's when it ran alone
            if let (Some(a), Some(b)) = (r.gpu_ms.or(r.cpu_ms), o.gpu_ms) {
                r.ours_over_torch = Some(a / b);
            }
        }
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| if v >= 100.0 { format!("{v:.1}") } else { format!("{v:.3}") })
}

/// The human-readable table.
pub fn table(rows: &[Row]) -> String {
    let has_torch = rows.iter().any(|r| r.torch_ms.is_some());
    let mut s = format!(
        "{:<13} {:<28} {:>11} {:>11} {:>11} {:>11} {:>9} {:>9} {:>12} {:>7}",
        "kernel", "shape", "gpu ms", "cpu ms", "cpu_ref ms", "cpu_fast ms", "x ref", "x fast", "rate", "% peak"
    );
    if has_torch {
        s += &format!(" {:>10} {:>9}", "torch ms", "ours/torch");
    }
    s.push('\n');
    for r in rows {
        let speedup = |cpu: Option<f64>| match (cpu, r.gpu_ms.or(r.cpu_ms)) {
            (Some(c), Some(g)) => format!("{:.2}", c / g),
            _ => "-".into(),
        };
        let rate = match (r.gflops, r.gbps) {
            (Some(g), _) => format!("{g:.2} GFLOP/s"),
            (_, Some(b)) => format!("{b:.2} GB/s"),
            _ => "-".into(),
        };
        s += &format!(
            "{:<13} {:<28} {:>11} {:>11} {:>11} {:>11} {:>9} {:>9} {:>12} {:>7}",
            r.kernel,
            r.shape,
            ms(r.gpu_ms),
            ms(r.cpu_ms),
            ms(r.cpu_ref_ms),
            ms(r.cpu_fast_ms),
            speedup(r.cpu_ref_ms),
            speedup(r.cpu_fast_ms),
            rate,
            r.peak_pct.map_or("-".into(), |p| format!("{p:.1}"))
        );
        if has_torch {
            s += &format!(" {:>10} {:>9}", ms(r.torch_ms), r.ours_over_torch.map_or("-".into(), |v| format!("{v:.2}")));
        }
        s.push('\n');
    }
    s
}
