//! The host kernels' one parallel loop, [`for_each`]: parts 0..n shared out over rayon's pool.
//!
//! On a pool thread (a forward, run through [`crate::model::HostPool::run`]) it is rayon's
//! own loop. Called from any other thread (an app calling a kernel, the bench), rayon would
//! park that thread until the pool is done, and its threads sleep once idle: on this
//! project's VM a parked thread took 10-90 us to wake, up to a whole 1M-element add, at every
//! call (PERFORMANCE.md entry 20). Here the calling thread is one of the workers instead:
//!
//! - each worker has a contiguous range of the parts, and takes the others' from their backs
//!   once its own is done, so a helper that starts late costs its share of the parts, not a
//!   wait, and the caller only ever waits for parts under way, spinning, never parked;
//! - a helper stays on for [`HOT_FOR`] after its call, spinning, and takes the next call's
//!   range at once, as OpenMP's threads (PyTorch's) do between parallel regions.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// Spins on the finished count before each `yield_now`, so that a caller whose helper was
/// descheduled gives its core back instead of spinning through the helper's time slice.
const SPINS_PER_YIELD: u32 = 1 << 10;

/// Runs `f(part)` for every part in 0..parts, in parallel on rayon's pool (the calling thread
/// among the workers when it is outside the pool), and returns when all have run. Each part
/// runs exactly once; their order and threads are unspecified.
pub(crate) fn for_each(parts: usize, f: impl Fn(usize) + Sync) {
    let threads = rayon::current_num_threads();
    if parts <= 1 || threads == 1 {
        return (0..parts).for_each(f);
    }
    if rayon::current_thread_index().is_some() {
        return (0..parts).into_par_iter().for_each(&f);
    }
    outside(parts, threads.min(parts) - 1, &f);
}

/// Runs `f(i, chunk)` for each `chunk`-element chunk of `out` (the last may be shorter), the
/// i-th from its start, in parallel as [`for_each`]: each call has its chunk to itself.
pub(crate) fn for_each_chunk<T: Send>(out: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    assert!(chunk > 0, "for_each_chunk: chunks of 0 elements");
    let (len, base) = (out.len(), Base(out.as_mut_ptr()));
    for_each(len.div_ceil(chunk), |i| {
        let start = i * chunk;
        // SAFETY: every part runs once, so the chunks are disjoint, and each lies inside out,
        // which this call borrows until every part has run.
        f(i, unsafe { std::slice::from_raw_parts_mut(base.at(start), chunk.min(len - start)) })
    });
}

/// The start of [`for_each_chunk`]'s buffer, shared by the parts that each take their chunk.
struct Base<T>(*mut T);
// SAFETY: the parts sharing a `Base` take disjoint chunks of the buffer, whose elements are Send.
unsafe impl<T: Send> Send for Base<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Base<T> {}

impl<T> Base<T> {
    /// The pointer, through a method so a closure captures the whole `Base`, not its field.
    fn at(&self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }
}

/// What the caller and its helper tasks share. Each worker (the caller is worker 0) has a
/// contiguous range of the parts, as rayon's split or OpenMP's static schedule would give it,
/// so that consecutive loops over the same data (a weight packed, then multiplied) find their
/// parts in the core's cache that wrote them; a worker that has run its own range takes parts
/// from the back of the others'. `f` is the caller's closure with its lifetime erased; it is
/// called only for a part taken from a range, and the caller does not return until every part
/// taken has finished (also when a part panics), so no call outlives it.
struct Claims {
    /// Per worker, the parts left in its range: front in the low 32 bits, end in the high.
    ranges: Box<[AtomicU64]>,
    /// Helpers that took a worker's place so far (worker i + 1 is the i-th).
    joined: AtomicUsize,
    finished: AtomicUsize,
    panicked: AtomicBool,
    parts: usize,
    f: *const (dyn Fn(usize) + Sync + 'static),
}

// SAFETY: `f` is Sync and only called while the caller that owns it waits (see `Claims`); the
// rest is atomics.
unsafe impl Send for Claims {}
// SAFETY: as above.
unsafe impl Sync for Claims {}

/// A range's front and end, packed into one atomic word.
fn range(front: usize, end: usize) -> u64 {
    front as u64 | (end as u64) << 32
}

/// A packed range's front and end.
fn unpack(r: u64) -> (usize, usize) {
    ((r & 0xffff_ffff) as usize, (r >> 32) as usize)
}

impl Claims {
    /// The parts 0..parts in `workers` contiguous ranges, worker w's from w · parts / workers.
    fn new(parts: usize, workers: usize, f: *const (dyn Fn(usize) + Sync + 'static)) -> Claims {
        assert!(u32::try_from(parts).is_ok(), "a parallel loop of {parts} parts");
        let ranges = (0..workers).map(|w| AtomicU64::new(range(w * parts / workers, (w + 1) * parts / workers)));
        Claims {
            ranges: ranges.collect(),
            joined: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            parts,
            f,
        }
    }

    /// [`Claims::work`] as the next helper to join: a panic is the caller's to raise (rayon
    /// would abort the process on it), noted by [`Finished`].
    fn help(&self) {
        let worker = self.joined.fetch_add(1, Ordering::Relaxed) + 1;
        drop(std::panic::catch_unwind(AssertUnwindSafe(|| self.work(worker))));
    }

    /// Runs the parts of `worker`'s range from its front (none past the last worker's), then
    /// takes every range's from its back, starting at the next worker's, until all are empty.
    fn work(&self, worker: usize) {
        let workers = self.ranges.len();
        if worker < workers {
            while let Some(part) = self.take(worker, true) {
                self.run(part);
            }
        }
        // all of them: a helper that joined past the last worker has no range of its own
        for other in (1..=workers).map(|d| (worker + d) % workers) {
            while let Some(part) = self.take(other, false) {
                self.run(part);
            }
        }
    }

    /// Takes a part from the front or the back of a worker's range, if any is left.
    fn take(&self, worker: usize, front: bool) -> Option<usize> {
        let slot = &self.ranges[worker];
        let mut r = slot.load(Ordering::Relaxed);
        loop {
            let (f, e) = unpack(r);
            if f >= e {
                return None;
            }
            let (new, part) = if front { (range(f + 1, e), f) } else { (range(f, e - 1), e - 1) };
            match slot.compare_exchange_weak(r, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(part),
                Err(now) => r = now,
            }
        }
    }

    /// Runs one part it has taken.
    fn run(&self, part: usize) {
        // counted finished on the way out, a panic included, so the caller's wait ends
        let _finished = Finished(self);
        // SAFETY: the part was taken from a range, so the caller is still waiting and f is
        // alive (see `Claims`).
        unsafe { (*self.f)(part) }
    }
}

/// Adds one to the finished count when dropped, first noting a panic under way.
struct Finished<'a>(&'a Claims);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.panicked.store(true, Ordering::Relaxed);
        }
        self.0.finished.fetch_add(1, Ordering::Release);
    }
}

/// The caller's wait: empties every range, so no part is taken after it, then spins until
/// every part taken has finished. A drop guard, so that it also waits when the caller's own
/// part panics.
struct Join<'a>(&'a Claims);

impl Drop for Join<'_> {
    fn drop(&mut self) {
        let claims = self.0;
        let left: usize =
            claims.ranges.iter().map(|r| unpack(r.swap(0, Ordering::Relaxed))).map(|(f, e)| e.saturating_sub(f)).sum();
        let taken = claims.parts - left;
        let mut spins = 0u32;
        while claims.finished.load(Ordering::Acquire) < taken {
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(SPINS_PER_YIELD) {
                std::thread::yield_now();
            }
        }
    }
}

/// The call from outside the pool under way, offered to the helpers still spinning after an
/// earlier one, and a count of the offers made so far (what a spinning helper watches).
static OFFER: Mutex<Option<Arc<Claims>>> = Mutex::new(None);
static OFFERS: AtomicUsize = AtomicUsize::new(0);
/// Helpers spinning now, each ready to take the next offer.
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// How long a helper stays on after its call, spinning for the next one before it gives its
/// pool thread back. A parked pool thread took 11-90 us to wake on this project's VM, and a
/// loop of kernel calls from one thread (an app's, the bench's) would pay that at each call,
/// as OpenMP's threads (PyTorch's) do not: they spin between parallel regions too.
const HOT_FOR: Duration = Duration::from_micros(200);

/// [`for_each`] from a thread outside the pool, with `helpers` tasks on the pool beside it:
/// helpers spinning from an earlier call first, new rayon tasks for the rest.
fn outside(parts: usize, helpers: usize, f: &(dyn Fn(usize) + Sync)) {
    // SAFETY: only the lifetime changes; `Join` keeps this frame alive while any claimed call
    // of f runs, and unclaimed tasks never call it (see `Claims`).
    let f: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(f) };
    let claims = Arc::new(Claims::new(parts, helpers + 1, f));
    *lock(&OFFER) = Some(claims.clone());
    OFFERS.fetch_add(1, Ordering::Release);
    // a spinning helper that gives up meanwhile leaves the caller more parts, nothing worse
    for _ in SPINNING.load(Ordering::Acquire).min(helpers)..helpers {
        let claims = claims.clone();
        rayon::spawn(move || helper(claims));
    }
    {
        let _join = Join(&claims);
        claims.work(0);
    }
    let mut offer = lock(&OFFER);
    if offer.as_ref().is_some_and(|o| Arc::ptr_eq(o, &claims)) {
        *offer = None;
    }
    drop(offer);
    if claims.panicked.load(Ordering::Acquire) {
        panic!("a part of a parallel host kernel panicked on a pool thread");
    }
}

/// A helper task: works on its call's parts, then spins for [`HOT_FOR`] after each call and
/// takes the next offer it sees. Between spins it runs any rayon job waiting on its pool, so
/// the pool's other work is not held up behind it.
fn helper(first: Arc<Claims>) {
    first.help();
    drop(first);
    SPINNING.fetch_add(1, Ordering::AcqRel);
    let (mut seen, mut since) = (OFFERS.load(Ordering::Acquire), Instant::now());
    let mut spins = 0u32;
    loop {
        std::hint::spin_loop();
        let offers = OFFERS.load(Ordering::Acquire);
        if offers != seen {
            seen = offers;
            let offer = lock(&OFFER).clone();
            if let Some(claims) = offer {
                SPINNING.fetch_sub(1, Ordering::AcqRel);
                claims.help();
                drop(claims);
                SPINNING.fetch_add(1, Ordering::AcqRel);
            }
            since = Instant::now();
        }
        spins += 1;
        if spins.is_multiple_of(64) {
            rayon::yield_now();
            if since.elapsed() > HOT_FOR {
                break;
            }
        }
    }
    SPINNING.fetch_sub(1, Ordering::AcqRel);
}

/// The lock, poisoned or not: what it guards is a pointer that is always whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A loop's body, as the tests hand it over.
    type Part<'a> = dyn Fn(usize) + Sync + 'a;

    /// Every part runs exactly once, from this test's thread (outside the pool: the caller
    /// claims parts too) and from pool threads of pools of 1, 2 and 3.
    #[test]
    fn for_each_runs_every_part_once() {
        for parts in [0usize, 1, 2, 3, 17, 1000] {
            let count = |run: &dyn Fn(&Part)| {
                let seen: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                run(&|p| {
                    seen[p].fetch_add(1, Ordering::Relaxed);
                });
                seen.iter().map(|s| s.load(Ordering::Relaxed)).collect::<Vec<_>>()
            };
            assert_eq!(count(&|f| super::for_each(parts, f)), vec![1; parts], "{parts} parts from outside");
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let got = count(&|f| pool.install(|| super::for_each(parts, f)));
                assert_eq!(got, vec![1; parts], "{parts} parts on a pool of {threads}");
            }
        }
    }

    /// Chunks cover the buffer once, in order of their index, the last one short.
    #[test]
    fn for_each_chunk_hands_out_each_chunk_once() {
        for (len, chunk) in [(0usize, 3usize), (5, 5), (1001, 7), (1 << 16, 1 << 10)] {
            let mut out = vec![usize::MAX; len];
            super::for_each_chunk(&mut out, chunk, |i, o| {
                assert!(o.len() == chunk || (i + 1) * chunk > len, "chunk {i} of {} elements", o.len());
                o.iter_mut().enumerate().for_each(|(j, v)| *v = i * chunk + j);
            });
            assert!(out.iter().enumerate().all(|(j, &v)| v == j), "len {len} in chunks of {chunk}");
        }
    }

    /// With every thread of the global pool held up, a call from outside still finishes: the
    /// caller takes the helpers' ranges too rather than wait for helpers that have not started.
    #[test]
    fn for_each_from_outside_needs_no_free_pool_thread() {
        let threads = rayon::current_num_threads();
        let (held, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        for _ in 0..threads {
            let (held, release) = (held.clone(), release.clone());
            rayon::spawn(move || {
                held.fetch_add(1, Ordering::SeqCst);
                while !release.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
            });
        }
        while held.load(Ordering::SeqCst) < threads {
            std::thread::yield_now();
        }
        let seen: Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
        super::for_each(100, |p| {
            seen[p].fetch_add(1, Ordering::Relaxed);
        });
        release.store(true, Ordering::SeqCst);
        assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1), "every part once, by the caller alone");
    }

    /// A part that panics on the calling thread or on a helper: the panic reaches the caller
    /// only once no other part is still running (the wait does not end early, nor hang).
    #[test]
    fn for_each_waits_for_running_parts_when_one_panics() {
        let running = AtomicUsize::new(0);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::for_each(64, |p| {
                running.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(1));
                running.fetch_sub(1, Ordering::SeqCst);
                if p == 5 {
                    panic!("part 5");
                }
            })
        }));
        assert!(result.is_err(), "the panic reaches the caller");
        assert_eq!(running.load(Ordering::SeqCst), 0, "no part still running after the caller's return");
    }
}
