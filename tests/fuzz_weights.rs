//! 10,000 mutated weight files through the loader: no panic, no allocation
//! larger than the file justifies, and every error names the file.
//! The mutations are seeded (SplitMix64), so a failure replays exactly.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use resformer::model::io::TensorFile;
use resformer::model::{BlockConfig, StackWeights};
use resformer::testing::Rng;
use resformer::{Device, Engine, EngineOptions};

/// Records the largest single allocation, to catch a header that makes the loader reserve gigabytes.
struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const CASES: usize = 10_000;

fn mutate(rng: &mut Rng, good: &[u8]) -> Vec<u8> {
    let mut b = good.to_vec();
    let header_end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let pick = |rng: &mut Rng, n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    match rng.next_u64() % 8 {
        // flip bytes anywhere
        0 => {
            for _ in 0..1 + pick(rng, 8) {
                let i = pick(rng, b.len());
                b[i] ^= 1 << pick(rng, 8);
            }
        }
        // flip bytes in the JSON header: names, dtypes, shapes, offsets
        1 => {
            for _ in 0..1 + pick(rng, 4) {
                let i = 8 + pick(rng, header_end - 8);
                b[i] = b" 0123456789[],:\"{}FIUB"[pick(rng, 22)];
            }
        }
        // truncate
        2 => b.truncate(pick(rng, b.len())),
        // absurd or off-by-some header length
        3 => {
            let n = [u64::MAX, 1 << 40, 0, header_end as u64 - 8 + 1, header_end as u64 - 9][pick(rng, 5)];
            b[..8].copy_from_slice(&n.to_le_bytes());
        }
        // rewrite a number in the header (shape or data offset)
        4 => {
            let h = String::from_utf8_lossy(&b[8..header_end]).into_owned();
            let digits: Vec<usize> = h.char_indices().filter(|(_, c)| c.is_ascii_digit()).map(|(i, _)| i).collect();
            if !digits.is_empty() {
                let i = 8 + digits[pick(rng, digits.len())];
                b[i] = b'0' + pick(rng, 10) as u8;
            }
        }
        // duplicate or drop a chunk
        5 => {
            let (i, n) = (pick(rng, b.len()), pick(rng, 64));
            let chunk: Vec<u8> = b[i..(i + n).min(b.len())].to_vec();
            b.splice(i..i, chunk);
        }
        6 => {
            let (i, n) = (pick(rng, b.len()), pick(rng, 64));
            b.drain(i..(i + n).min(b.len()));
        }
        // dtype swap
        _ => {
            let h = String::from_utf8_lossy(&b[8..header_end]).into_owned();
            let swapped = h.replacen("F32", ["F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3"][pick(rng, 7)], 1);
            let mut out = (swapped.len() as u64).to_le_bytes().to_vec();
            out.extend(swapped.as_bytes());
            out.extend(&b[header_end..]);
            b = out;
        }
    }
    b
}

#[test]
fn ten_thousand_mutated_weight_files_never_panic() {
    let dir = std::env::temp_dir().join(format!("resformer-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("good.safetensors");
    StackWeights::random(1, 2, 8, 12).save(&path, "").unwrap();
    let good = std::fs::read(&path).unwrap();
    let mut rng = Rng::new(2026);
    let (mut ok, mut errors) = (0, 0);
    let engine = Engine::new_blocking(EngineOptions::on(Device::Cpu)).unwrap();
    for case in 0..CASES {
        let bytes = mutate(&mut rng, &good);
        let len = bytes.len();
        LARGEST.store(0, Ordering::Relaxed);
        let r = std::panic::catch_unwind(|| {
            TensorFile::from_bytes("fuzz.safetensors", bytes).and_then(|f| StackWeights::from_file(&f, ""))
        });
        // the loader's allocations only: f16 -> f32 doubles the data at most; allow the copy of the
        // file and a little slack
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(largest <= 4 * len + 4096, "case {case}: allocated {largest} bytes for a {len}-byte file");
        match r {
            Err(_) => panic!("case {case}: the loader panicked"),
            Ok(Ok(w)) => {
                ok += 1;
                // what loads must also run on the CPU backend: a value or an error, never a panic
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let (e, cfg) = (w.embed, BlockConfig::new(w.embed, 2, w.ff));
                    engine.load_stack(w, cfg).and_then(|s| s.forward(&vec![0.5; 3 * e], 3, 1, None))
                }));
                assert!(ran.is_ok(), "case {case}: the CPU backend panicked on a file that loaded");
            }
            Ok(Err(e)) => {
                errors += 1;
                let m = e.to_string();
                assert!(m.starts_with("fuzz.safetensors: ") && m.len() > 20, "case {case}: unhelpful error {m:?}");
            }
        }
    }
    eprintln!(
        "{CASES} mutated files: {ok} loaded (and ran on the CPU backend), {errors} rejected with an error, 0 panics"
    );
    assert!(errors > CASES / 2, "too few mutations were caught: {errors}");
}
