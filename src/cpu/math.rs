//! Branch-free f32 math for the CPU backend's elementwise passes: exp, erf, tanh and the two
//! GELUs, written so that a loop over a slice vectorises (no libm calls, selects instead of
//! branches), and that loop compiled for AVX-512 or AVX2+FMA when the CPU has them.

use crate::ops::Activation;

/// e^x for x <= 0 (softmax's x - max, erf's exponent), within 2 ulp of `f32::exp`; exactly 0 below -87 and for
/// -inf; NaN for NaN. Branch-free (Cephes' expf: x = n·ln2 + r, a degree-6 polynomial for e^r, 2^n from the
/// exponent bits), so a loop over a row vectorises; the rounding uses the 1.5·2^23 trick
/// because `f32::round` is a libm call on baseline x86-64.
#[inline(always)]
pub(crate) fn fast_exp<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23
    let xc = x.max(-87.0);
    let shifted = madd::<FMA>(xc, LOG2E, ROUND);
    let n = shifted - ROUND;
    let r = madd::<FMA>(n, -LN2_LO, madd::<FMA>(n, -LN2_HI, xc));
    let p = horner::<FMA>(r, &[1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5]);
    // Cephes' last coefficient is 5.0000001201e-1, which f32 rounds to 0.5
    let er = madd::<FMA>(p * r, r, r + 1.0);
    // 2^n from n's integer, read from the low mantissa bits of `shifted` (1.5·2^23 + n), so no
    // float-to-int conversion (a saturating `as i32` is scalarised lane by lane)
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let scale = f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
    // selects, not branches: NaN stays NaN (as in PyTorch), far below is exactly 0
    if x.is_nan() {
        x
    } else if x < -87.0 {
        0.0
    } else {
        er * scale
    }
}

/// The polynomial with coefficients `c` (highest degree first) at x, by Horner's rule.
#[inline(always)]
fn horner<const FMA: bool>(x: f32, c: &[f32]) -> f32 {
    c[1..].iter().fold(c[0], |p, &ci| madd::<FMA>(p, x, ci))
}

/// a · b + c, fused when `FMA` (only in code compiled for a CPU that has FMA: elsewhere
/// `mul_add` is a libm call).
#[inline(always)]
pub(crate) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// erf(x) as 1 - erfc(|x|) with the sign of x, erfc(z) = t·e^(-z² + P(t)), t = 1 / (1 + z/2)
/// and P Numerical Recipes' degree-9 Chebyshev fit (erfc's relative error below 1.2e-7), the
/// exponential [`fast_exp`]: erf within 4e-7 of the exact value everywhere (tested), ±1 far
/// out, NaN for NaN.
#[inline(always)]
pub(crate) fn erf<const FMA: bool>(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / madd::<FMA>(0.5, z, 1.0);
    let p = horner::<FMA>(
        t,
        &[
            0.170_872_77,
            -0.822_152_23,
            1.488_515_9,
            -1.135_204,
            0.278_868_07,
            -0.186_288_06,
            0.096_784_18,
            0.374_091_96,
            1.000_023_7,
            -1.265_512_2,
        ],
    );
    let erfc = t * fast_exp::<FMA>(madd::<FMA>(z, -z, p));
    (1.0 - erfc).copysign(x)
}

/// tanh(u) = sign(u)·(1 - e)/(1 + e), e = e^(-2|u|) <= 1, so nothing overflows.
#[inline(always)]
fn tanh<const FMA: bool>(u: f32) -> f32 {
    let e = fast_exp::<FMA>(-2.0 * u.abs());
    ((1.0 - e) / (1.0 + e)).copysign(u)
}

/// GELU, exact erf form.
#[inline(always)]
pub(crate) fn gelu<const FMA: bool>(v: f32) -> f32 {
    0.5 * v * (1.0 + erf::<FMA>(v * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh approximation.
#[inline(always)]
pub(crate) fn gelu_tanh<const FMA: bool>(v: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    0.5 * v * (1.0 + tanh::<FMA>(C * madd::<FMA>(0.044715 * v * v, v, v)))
}

/// rows (r, n) = act(rows + bias) in place, row by row: the matmul's epilogue. `FMA` as in
/// [`madd`]: fused, the GELUs take half the instructions.
#[inline(always)]
pub(crate) fn bias_act_body<const FMA: bool>(rows: &mut [f32], n: usize, bias: Option<&[f32]>, act: Activation) {
    for row in rows.chunks_exact_mut(n) {
        if let Some(bias) = bias {
            row.iter_mut().zip(&bias[..n]).for_each(|(v, b)| *v += b);
        }
        match act {
            Activation::None => {}
            Activation::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Gelu => row.iter_mut().for_each(|v| *v = gelu::<FMA>(*v)),
            Activation::GeluTanh => row.iter_mut().for_each(|v| *v = gelu_tanh::<FMA>(*v)),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn bias_act_avx512(rows: &mut [f32], n: usize, bias: Option<&[f32]>, act: Activation) {
    bias_act_body::<true>(rows, n, bias, act)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn bias_act_avx2(rows: &mut [f32], n: usize, bias: Option<&[f32]>, act: Activation) {
    bias_act_body::<true>(rows, n, bias, act)
}

/// rows (r, n) = act(rows + bias) in place, on the widest vectors the CPU has.
pub(crate) fn bias_act(rows: &mut [f32], n: usize, bias: Option<&[f32]>, act: Activation) {
    if bias.is_none() && act == Activation::None {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { bias_act_avx512(rows, n, bias, act) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { bias_act_avx2(rows, n, bias, act) };
        }
    }
    bias_act_body::<false>(rows, n, bias, act)
}

/// `f()` compiled for the widest vectors this CPU has: called from a copy of this function
/// built with AVX-512F (or AVX2 + FMA), where an `#[inline(always)]` body that `f` calls is
/// inlined and its loops vectorise that wide. For memory-bound passes (the residual add,
/// layernorm), which the baseline x86-64 build runs 16 bytes at a time. Nothing here fuses a
/// multiply and an add (Rust never contracts them): results are the same on every path.
#[inline(always)]
pub(crate) fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both forms of each function: separate products and sums (baseline x86-64, wasm) and
    /// fused (what AVX2 and AVX-512 machines run).
    fn both(check: impl Fn(bool)) {
        check(false);
        check(true);
    }

    #[test]
    fn fast_exp_is_within_two_ulp_of_exp_and_zero_far_below() {
        both(|fma| {
            let exp = if fma { fast_exp::<true> } else { fast_exp::<false> };
            let mut worst = 0.0f32;
            for i in 0..=870_000 {
                let x = -(i as f32) * 1e-4;
                let (got, want) = (exp(x), x.exp());
                worst = worst.max((got - want).abs() / want);
            }
            assert!(worst <= 2.0 * f32::EPSILON, "fma {fma}: max relative error {worst:e}");
            assert_eq!((exp(-87.5), exp(f32::NEG_INFINITY), exp(0.0)), (0.0, 0.0, 1.0), "fma {fma}");
            assert!(exp(f32::NAN).is_nan());
        });
    }

    /// f64 erf against the polynomial on a dense grid; the tail is exactly ±1.
    #[test]
    fn erf_is_within_its_bound_everywhere_and_exact_far_out() {
        both(|fma| {
            let erf = if fma { erf::<true> } else { erf::<false> };
            let mut worst = 0.0f64;
            for i in -80_000..=80_000 {
                let x = i as f32 * 1e-4;
                worst = worst.max((erf(x) as f64 - libm::erf(x as f64)).abs());
            }
            assert!(worst <= 4e-7, "fma {fma}: max abs error {worst:e}");
            assert_eq!((erf(12.0), erf(-12.0), erf(f32::INFINITY), erf(0.0)), (1.0, -1.0, 1.0, 0.0));
            assert!(erf(f32::NAN).is_nan());
        });
    }

    /// Both GELUs against their f64 forms, relative to max(1, |v|), and through the epilogue
    /// (whichever vector width this CPU dispatches to) against the scalar body of the same
    /// fusing.
    #[test]
    fn gelus_match_f64_and_the_dispatched_epilogue_matches_the_scalar_one() {
        let exact = |v: f64| 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2));
        let tanh_form =
            |v: f64| 0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh());
        both(|fma| {
            let gelu: fn(f32) -> f32 = if fma { gelu::<true> } else { gelu::<false> };
            let gelu_tanh: fn(f32) -> f32 = if fma { gelu_tanh::<true> } else { gelu_tanh::<false> };
            let (mut worst, mut worst_tanh) = (0.0f64, 0.0f64);
            for i in -120_000..=120_000 {
                let v = i as f32 * 1e-4;
                let scale = (v.abs() as f64).max(1.0);
                worst = worst.max((gelu(v) as f64 - exact(v as f64)).abs() / scale);
                worst_tanh = worst_tanh.max((gelu_tanh(v) as f64 - tanh_form(v as f64)).abs() / scale);
            }
            assert!(worst <= 3e-7 && worst_tanh <= 3e-7, "fma {fma}: gelu {worst:e}, tanh form {worst_tanh:e}");
        });
        let fused = cfg!(target_arch = "x86_64")
            && (std::arch::is_x86_feature_detected!("avx512f")
                || std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"));
        let mut rng = crate::rng::Rng::new(31);
        let (n, bias) = (37, rng.vec(37, -1.0, 1.0));
        let x = rng.vec(5 * n, -6.0, 6.0);
        for act in Activation::ALL {
            let (mut got, mut want) = (x.clone(), x.clone());
            bias_act(&mut got, n, Some(&bias), act);
            if fused {
                bias_act_body::<true>(&mut want, n, Some(&bias), act);
            } else {
                bias_act_body::<false>(&mut want, n, Some(&bias), act);
            }
            crate::ops::assert_close(
                &format!("epilogue {act:?}"),
                &got,
                &want,
                crate::ops::Tol { atol: 1e-6, rtol: 1e-6 },
            );
        }
    }
}
