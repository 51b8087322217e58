//! The fast host kernels: the CPU backend for machines without a GPU.
//!
//! Same stems and contracts as [`crate::reference`], built for speed: matmuls through
//! [`sgemm`] (faer's `gemm` natively, threaded on rayon's pool; `matrixmultiply` in wasm32)
//! with the bias and activation in one vectorised pass, attention parallel over (batch, head)
//! or over packed sequences of their own lengths, layernorm and the residual add parallel over
//! rows, every parallel loop through `par` (rayon's on the pool's threads; from any other
//! thread, one with the caller among the workers). Sums accumulate in f32 inside the GEMM;
//! each kernel's tests hold it to the reference within a named tolerance.

/// Attention: per (batch, head) q·kᵀ and p·v through sgemm.
pub mod attention;
/// LayerNorm, optionally of x + residual, rows in parallel.
pub mod layernorm;
/// Branch-free exp, erf and GELU, and the matmul epilogue on the CPU's widest vectors.
pub(crate) mod math;
/// matmul with fused bias and activation through sgemm.
pub mod matmul;
/// Linear layers on weights packed once at load, an AVX-512 / AVX2 micro-kernel of our own.
pub mod packed;
/// The kernels' parallel loop, with the calling thread among the workers.
pub(crate) mod par;
/// Elementwise add in parallel chunks.
pub mod residual_add;

/// Rows handed to one rayon task of a row pass over `rows` rows: two tasks per thread (so a
/// slow core can be helped), and at least 16 rows. Few large tasks rather than many small
/// ones: each batch of tasks may wake parked threads, a futex call apiece.
pub(crate) fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(2 * rayon::current_num_threads()).max(16)
}

/// C (m, n) = alpha · A (m, k) · B (k, n), each operand given by its pointer, row stride and
/// column stride in elements; C is overwritten, never read. `threaded` lets one product use
/// every thread of rayon's pool (set it outside rayon tasks, clear it inside them).
///
/// # Safety
/// Every element the shapes and strides reach must lie inside its operand, and C must not
/// overlap A or B.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    (a, rsa, csa): (*const f32, isize, isize),
    (b, rsb, csb): (*const f32, isize, isize),
    (c, rsc, csc): (*mut f32, isize, isize),
    threaded: bool,
) {
    if k == 0 {
        // an empty sum: C is zero (not every GEMM writes C when there is nothing to add)
        for i in 0..m as isize {
            for j in 0..n as isize {
                // SAFETY: (i, j) is inside C's shape.
                unsafe { *c.offset(i * rsc + j * csc) = 0.0 };
            }
        }
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let par = match threaded {
            true => gemm::Parallelism::Rayon(rayon::current_num_threads()),
            false => gemm::Parallelism::None,
        };
        // SAFETY: the caller's contract; gemm's dst := 0·dst + alpha·lhs·rhs with read_dst off.
        unsafe {
            gemm::gemm(m, n, k, c, csc, rsc, false, a, csa, rsa, b, csb, rsb, 0.0, alpha, false, false, false, par)
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = threaded; // one thread in the browser
                          // SAFETY: the caller's contract; beta 0 means C is not read.
        unsafe { matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc) }
    }
}
