use super::rows_per_task;

/// out (rows, c) = layernorm of x (+ residual) over each row, biased variance:
/// [`crate::reference::layernorm::layernorm`]'s contract. Statistics are f32 sums over eight
/// partial lanes (vectorised), then combined in f64.
#[allow(clippy::too_many_arguments)]
pub fn layernorm(
    out: &mut [f32],
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    rows: usize,
    c: usize,
    eps: f32,
) {
    let (out, x) = (&mut out[..rows * c], &x[..rows * c]);
    let per_task = rows_per_task(rows);
    super::par::for_each_chunk(out, per_task * c, |chunk, o| {
        let mut v = vec![0.0f32; c];
        let rows = chunk * per_task..chunk * per_task + o.len() / c;
        let residual = residual.map(|res| &res[rows.start * c..rows.end * c]);
        super::math::widest(|| rows_body(o, &x[rows.start * c..rows.end * c], residual, gamma, beta, &mut v, eps));
    });
}

/// Layernorm of each row of x (+ residual) into o, `v` a row of scratch: inlined where
/// [`super::math::widest`] compiles it for the CPU's widest vectors.
#[inline(always)]
fn rows_body(o: &mut [f32], x: &[f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], v: &mut [f32], eps: f32) {
    let c = v.len();
    for (r, (orow, xr)) in o.chunks_exact_mut(c).zip(x.chunks_exact(c)).enumerate() {
        match residual {
            Some(res) => v.iter_mut().zip(xr).zip(&res[r * c..(r + 1) * c]).for_each(|((v, a), b)| *v = a + b),
            None => v.copy_from_slice(xr),
        }
        // 1. mean, 2. variance around it (two passes), 3. normalise, scale, shift
        let mean = (lane_sum(v, |a| a) / c as f64) as f32;
        let var = lane_sum(v, |a| (a - mean) * (a - mean)) / c as f64;
        let rstd = (1.0 / (var + eps as f64).sqrt()) as f32;
        for (((o, &a), &g), &b) in orow.iter_mut().zip(v.iter()).zip(gamma).zip(beta) {
            *o = (a - mean) * rstd * g + b;
        }
    }
}

/// Σ f(v) in eight f32 lanes (the compiler vectorises them), combined in f64.
#[inline(always)]
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&a| f(a) as f64).sum();
    for c in chunks {
        for (l, &a) in lanes.iter_mut().zip(c) {
            *l += f(a);
        }
    }
    lanes.iter().map(|&l| l as f64).sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use crate::ops::{assert_close, Tol};
    use crate::rng::Rng;

    /// f32 normalise-scale-shift after f64 statistics; x + residual rounded to f32 first.
    const LAYERNORM_TOL: Tol = Tol { atol: 2e-5, rtol: 2e-5 };

    #[test]
    fn cpu_layernorm_matches_reference() {
        let mut rng = Rng::new(23);
        for (rows, c, fused) in [(1, 1, false), (7, 63, true), (65, 257, false), (33, 1024, true), (3, 2053, true)] {
            let x: Vec<f32> = rng.vec(rows * c, -1.0, 1.0).iter().map(|v| v + 20.0).collect();
            let res = rng.vec(rows * c, -1.0, 1.0);
            let (g, b) = (rng.vec(c, 0.5, 1.5), rng.vec(c, -0.5, 0.5));
            let r = fused.then_some(&res[..]);
            let (mut got, mut want) = (vec![f32::NAN; rows * c], vec![0.0; rows * c]);
            super::layernorm(&mut got, &x, r, &g, &b, rows, c, 1e-5);
            crate::reference::layernorm::layernorm(&mut want, &x, r, &g, &b, rows, c, 1e-5);
            assert_close(&format!("cpu layernorm {rows}x{c} fused={fused}"), &got, &want, LAYERNORM_TOL);
        }
    }
}
