use super::math::bias_act;
use super::packed::{linear, Isa, PackedLinear, PACK_PER_CALL_ROWS};
use super::rows_per_task;
use crate::ops::{Activation, MatmulShape};

/// Values of the largest per-call packing a thread keeps for its next call (16 MB: every
/// medium bench case; a 4096² weight is packed afresh each time).
const KEEP_PACKING: usize = 4 << 20;

thread_local! {
    /// The panels of this thread's last per-call packing. Packing 1024 x 256 into a fresh
    /// buffer took 0.14-0.20 ms of a 1.6 ms matmul, zeroing included (PERFORMANCE.md entry 19).
    static PACKING: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// out (batch, m, n) = act(x (batch, m, k) · wᵀ + bias), w (n, k) shared or (batch, n, k) when
/// `w_batched`: [`crate::reference::matmul::matmul`]'s contract.
pub fn matmul(out: &mut [f32], x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation, shape: MatmulShape) {
    let MatmulShape { batch, m, n, k, w_batched } = shape;
    assert!(x.len() >= batch * m * k && out.len() >= batch * m * n, "matmul: operands shorter than their shapes");
    assert!(w.len() >= if w_batched { batch * n * k } else { n * k } && bias.is_none_or(|b| b.len() >= n));
    // enough rows to pay for packing w at this call: the packed micro-kernel, bias and
    // activation in its store
    if let Some(isa) = Isa::detect().filter(|_| m >= PACK_PER_CALL_ROWS && n * k > 0) {
        // packed into the calling thread's buffer of the last call: no allocation, no zeroing
        let mut packed: Option<PackedLinear> = None;
        for b in 0..batch {
            if packed.is_none() || w_batched {
                let panels = packed.take().map_or_else(|| PACKING.take(), PackedLinear::into_panels);
                let wb = &w[if w_batched { b * n * k } else { 0 }..];
                packed = Some(PackedLinear::rows_into(panels, n, k, isa, |c| &wb[c * k..(c + 1) * k]));
            }
            let p = packed.as_ref().expect("packed just above");
            linear(&mut out[b * m * n..(b + 1) * m * n], &x[b * m * k..(b + 1) * m * k], p, bias, act, m);
        }
        let panels = packed.map(PackedLinear::into_panels).unwrap_or_default();
        if panels.len() <= KEEP_PACKING {
            PACKING.set(panels);
        }
        return;
    }
    for b in 0..batch {
        let o = &mut out[b * m * n..(b + 1) * m * n];
        let xw = &x[b * m * k..];
        let ww = if w_batched { &w[b * n * k..] } else { w };
        // 1. C (m, n) = x (m, k) · wᵀ: wᵀ is w read with row stride 1 and column stride k
        // SAFETY: the asserts above keep every index (i < m, j < n, kk < k) inside x, w and out.
        unsafe {
            super::sgemm(
                (m, k, n),
                1.0,
                (xw.as_ptr(), k as isize, 1),
                (ww.as_ptr(), 1, k as isize),
                (o.as_mut_ptr(), n as isize, 1),
                true,
            );
        }
        // 2. bias and activation in one vectorised pass over rows in parallel
        if n > 0 && (bias.is_some() || act != Activation::None) {
            super::par::for_each_chunk(o, rows_per_task(m) * n, |_, r| bias_act(r, n, bias, act));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{assert_close, Tol};
    use crate::rng::Rng;

    /// f32 sums in sgemm's blocked order against f64 sums.
    const MATMUL_TOL: Tol = Tol { atol: 2e-5, rtol: 1e-4 };

    #[test]
    fn cpu_matmul_matches_reference_ragged_batched_and_activated() {
        let mut rng = Rng::new(21);
        for (batch, m, n, k, wb) in
            // the last two on the packed kernel, packing w at the call (where the CPU has one)
            [
                (1, 1, 1, 1, false),
                (1, 7, 63, 65, false),
                (3, 65, 7, 257, false),
                (2, 33, 17, 9, true),
                (2, 257, 33, 19, false),
                (2, 300, 40, 7, true),
            ]
        {
            for act in Activation::ALL {
                let x = rng.vec(batch * m * k, -1.0, 1.0);
                let w = rng.vec(if wb { batch } else { 1 } * n * k, -1.0, 1.0);
                let bias = rng.vec(n, -1.0, 1.0);
                for with_bias in [false, true] {
                    let b = with_bias.then_some(&bias[..]);
                    let mut got = vec![f32::NAN; batch * m * n];
                    let mut want = vec![0.0; batch * m * n];
                    let shape = MatmulShape { batch, m, n, k, w_batched: wb };
                    matmul(&mut got, &x, &w, b, act, shape);
                    crate::reference::matmul::matmul(&mut want, &x, &w, b, act, shape);
                    let tol = Tol { atol: MATMUL_TOL.atol * (k as f32).sqrt(), ..MATMUL_TOL };
                    assert_close(
                        &format!("cpu matmul b{batch} {m}x{n}x{k} {act:?} bias={with_bias}"),
                        &got,
                        &want,
                        tol,
                    );
                }
            }
        }
    }
}
