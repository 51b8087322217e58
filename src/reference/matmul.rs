use crate::ops::{Activation, MatmulShape};

/// GELU, exact erf form: 0.5 · v · (1 + erf(v / √2)).
pub fn gelu(v: f64) -> f64 {
    0.5 * v * (1.0 + libm::erf(v * std::f64::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh approximation: 0.5 · v · (1 + tanh(√(2/π) · (v + 0.044715 · v³))).
pub fn gelu_tanh(v: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())
}

/// Applies `act` to one pre-activation value.
pub fn activate(v: f64, act: Activation) -> f64 {
    match act {
        Activation::None => v,
        Activation::Relu => v.max(0.0),
        Activation::Gelu => gelu(v),
        Activation::GeluTanh => gelu_tanh(v),
    }
}

/// out (batch, m, n) = act(x (batch, m, k) · wᵀ + bias), w (n, k) shared or (batch, n, k) when `w_batched`.
pub fn matmul(out: &mut [f32], x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation, shape: MatmulShape) {
    let MatmulShape { batch, m, n, k, w_batched } = shape;
    for b in 0..batch {
        let w = if w_batched { &w[b * n * k..(b + 1) * n * k] } else { &w[..n * k] };
        for i in 0..m {
            let xr = &x[(b * m + i) * k..(b * m + i + 1) * k];
            for j in 0..n {
                let wr = &w[j * k..(j + 1) * k];
                let mut s = bias.map_or(0.0, |bb| bb[j] as f64);
                for (a, c) in xr.iter().zip(wr) {
                    s += *a as f64 * *c as f64;
                }
                out[(b * m + i) * n + j] = activate(s, act) as f32;
            }
        }
    }
}

/// v = hi + lo / 2^11 with hi, lo in f16: the split of shaders/matmul_coop.wgsl.
pub fn split_f16(v: f32) -> (half::f16, half::f16) {
    let hi = half::f16::from_f32(v);
    (hi, half::f16::from_f32((v - hi.to_f32()) * 2048.0))
}

/// What shaders/matmul_coop.wgsl computes, emulated on the CPU: x and w split into f16 halves,
/// x · wᵀ = hi·hi + (hi·lo + lo·hi) / 2^11, each f16 product exact in f32 and summed in f32
/// (as a tensor core accumulates), then bias and activation. The definition the split kernel's
/// error is measured against f64 with.
pub fn matmul_split_f16(
    out: &mut [f32],
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    shape: MatmulShape,
) {
    let MatmulShape { batch, m, n, k, w_batched } = shape;
    for b in 0..batch {
        let w = if w_batched { &w[b * n * k..(b + 1) * n * k] } else { &w[..n * k] };
        for i in 0..m {
            let xr = &x[(b * m + i) * k..(b * m + i + 1) * k];
            for j in 0..n {
                let wr = &w[j * k..(j + 1) * k];
                let (mut main, mut corr) = (0.0f32, 0.0f32);
                for (&a, &c) in xr.iter().zip(wr) {
                    let ((ah, al), (ch, cl)) = (split_f16(a), split_f16(c));
                    main += ah.to_f32() * ch.to_f32();
                    corr += ah.to_f32() * cl.to_f32() + al.to_f32() * ch.to_f32();
                }
                let v = main + corr / 2048.0 + bias.map_or(0.0, |bb| bb[j]);
                out[(b * m + i) * n + j] = activate(v as f64, act) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Largest |got - exact| / Σ|x||w| over the outputs of one (m, n, k) product.
    fn worst(got: &[f32], x: &[f32], w: &[f32], (m, n, k): (usize, usize, usize)) -> f64 {
        let mut worst = 0.0f64;
        for i in 0..m {
            for j in 0..n {
                let (mut exact, mut size) = (0.0f64, 0.0f64);
                for kk in 0..k {
                    let (a, c) = (x[i * k + kk] as f64, w[j * k + kk] as f64);
                    exact += a * c;
                    size += (a * c).abs();
                }
                worst = worst.max((got[i * n + j] as f64 - exact).abs() / size);
            }
        }
        worst
    }

    #[test]
    fn the_split_f16_product_keeps_f32_accuracy_over_wide_exponents() {
        // values u · 2^e with e in -6..=6: the split must not lose what f16's range and 11 bits lose
        let (m, n, k) = (24, 20, 300);
        let mut rng = Rng::new(0x5b17);
        let mut wide = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    let e = (rng.uniform(0.0, 13.0) as i32 - 6) as f32;
                    rng.uniform(-1.0, 1.0) * e.exp2()
                })
                .collect()
        };
        let (x, w) = (wide(m * k), wide(n * k));
        let shape = MatmulShape::linear(m, n, k);
        // the SIMT kernels: f32 products summed in f32, in k order
        let simt: Vec<f32> = (0..m * n)
            .map(|o| (0..k).fold(0.0f32, |acc, kk| x[(o / n) * k + kk].mul_add(w[(o % n) * k + kk], acc)))
            .collect();
        let mut split = vec![0.0; m * n];
        matmul_split_f16(&mut split, &x, &w, None, Activation::None, shape);
        // f16 inputs alone, for contrast: what the split recovers
        let f16_only: Vec<f32> = (0..m * n)
            .map(|o| {
                (0..k).fold(0.0f32, |acc, kk| {
                    let (a, c) = (split_f16(x[(o / n) * k + kk]).0, split_f16(w[(o % n) * k + kk]).0);
                    acc + a.to_f32() * c.to_f32()
                })
            })
            .collect();
        let (e_simt, e_split, e_f16) =
            (worst(&simt, &x, &w, (m, n, k)), worst(&split, &x, &w, (m, n, k)), worst(&f16_only, &x, &w, (m, n, k)));
        eprintln!("max error / sum|x||w|: f32 {e_simt:.2e}, split-f16 {e_split:.2e}, f16 inputs {e_f16:.2e}");
        assert!(e_split <= 2.0 * e_simt, "split-f16 {e_split:e} against f32 {e_simt:e}: not f32-accurate");
        assert!(e_f16 > 20.0 * e_split, "f16 alone {e_f16:e} should be far worse than the split {e_split:e}");
    }
}
