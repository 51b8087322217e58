use rayon::prelude::*;

/// Elements per rayon task: big enough that a task costs more than its scheduling (an add is
/// memory-bound; at 16K elements per task the rayon version ran 2.4x slower than one loop).
const CHUNK: usize = 1 << 18;

/// out = a + b elementwise: [`crate::reference::residual_add::residual_add`]'s contract.
pub fn residual_add(out: &mut [f32], a: &[f32], b: &[f32]) {
    let add = |o: &mut [f32], a: &[f32], b: &[f32]| {
        for ((o, x), y) in o.iter_mut().zip(a).zip(b) {
            *o = x + y;
        }
    };
    let (len, threads) = (out.len(), rayon::current_num_threads());
    if len <= CHUNK || threads == 1 {
        return add(out, &a[..len], &b[..len]);
    }
    if rayon::current_thread_index().is_some() {
        // on a pool thread (a forward): rayon shares the chunks out
        let (a, b) = (&a[..len], &b[..len]);
        return out
            .par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(|((o, a), b)| add(o, a, b));
    }
    // called from a thread outside the pool: rather than wait for the pool and be woken at the
    // end (about 25 us, a quarter of a 1M add here), that thread adds the first part itself, a
    // little over its share as the pool's threads start once woken, while one task per other
    // pool thread adds the rest: 1M elements 0.084-0.101 ms against 0.111-0.123 (PERFORMANCE.md
    // entry 19)
    let mine = len / threads * 9 / 8;
    let per = (len - mine).div_ceil(threads - 1);
    let (o_mine, o_rest) = out.split_at_mut(mine);
    rayon::in_place_scope(|s| {
        for ((o, a), b) in o_rest.chunks_mut(per).zip(a[mine..len].chunks(per)).zip(b[mine..len].chunks(per)) {
            s.spawn(move |_| add(o, a, b));
        }
        add(o_mine, &a[..mine], &b[..mine]);
    });
}

#[cfg(test)]
mod tests {
    /// From this test's thread (outside the pool: it adds a part itself) and from the threads
    /// of pools of 1, 2 and 3 (rayon's chunks), over NaN, lengths at and past a chunk.
    #[test]
    fn cpu_residual_add_matches_reference_exactly() {
        let mut rng = crate::rng::Rng::new(22);
        for len in [1usize, 7, (1 << 18) + 3, 3 << 18, (5 << 18) + 1] {
            let (a, b) = (rng.vec(len, -10.0, 10.0), rng.vec(len, -10.0, 10.0));
            let mut want = vec![0.0; len];
            crate::reference::residual_add::residual_add(&mut want, &a, &b);
            let mut outside = vec![f32::NAN; len];
            super::residual_add(&mut outside, &a, &b);
            assert!(outside == want, "len {len} from outside the pool");
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut inside = vec![f32::NAN; len];
                pool.install(|| super::residual_add(&mut inside, &a, &b));
                assert!(inside == want, "len {len} on a pool of {threads}");
            }
        }
    }
}
