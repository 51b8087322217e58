/// out (rows, c) = layernorm of v = x (+ residual) over each row; biased variance, as PyTorch.
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
    let mut v = vec![0.0f64; c];
    for r in 0..rows {
        for (i, vi) in v.iter_mut().enumerate() {
            *vi = x[r * c + i] as f64 + residual.map_or(0.0, |res| res[r * c + i] as f64);
        }
        // 1. mean
        let mean = v.iter().sum::<f64>() / c as f64;
        // 2. variance around the mean (two passes: no E[x^2] - E[x]^2 cancellation)
        let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / c as f64;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        // 3. normalise, scale, shift
        for i in 0..c {
            out[r * c + i] = ((v[i] - mean) * rstd * gamma[i] as f64 + beta[i] as f64) as f32;
        }
    }
}
