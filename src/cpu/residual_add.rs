use rayon::prelude::*;

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

/// out = a + b elementwise: [`crate::reference::residual_add::residual_add`]'s contract.
pub fn residual_add(out: &mut [f32], a: &[f32], b: &[f32]) {
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).zip(b.par_chunks(CHUNK)).for_each(|((o, a), b)| {
        for ((o, x), y) in o.iter_mut().zip(a).zip(b) {
            *o = x + y;
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_residual_add_matches_reference_exactly() {
        let mut rng = crate::testing::Rng::new(22);
        for len in [1usize, 7, (1 << 14) + 3, 100_001] {
            let (a, b) = (rng.vec(len, -10.0, 10.0), rng.vec(len, -10.0, 10.0));
            let (mut got, mut want) = (vec![f32::NAN; len], vec![0.0; len]);
            super::residual_add(&mut got, &a, &b);
            crate::reference::residual_add::residual_add(&mut want, &a, &b);
            assert_eq!(got, want, "len {len}");
        }
    }
}
