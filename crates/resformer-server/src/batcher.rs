//! The dynamic batcher: two threads between the handlers and the model.
//!
//! - The **scheduler** holds every queued request. It packs the inputs of many requests into
//!   batches of at most `max_tokens` padded tokens (the oldest request's inputs first, then the
//!   others longest first, so padding stays small), builds each batch's host-side inputs
//!   ([`SentenceEmbedder::prepare_ids`]) and hands it to the worker. It keeps one prepared batch
//!   waiting while the worker runs the current one, so the device never waits for the host.
//! - The **worker** runs one prepared batch at a time ([`SentenceEmbedder::run_prepared`]) and
//!   posts the vectors back; the scheduler reassembles them per request, in order, and answers a
//!   request once all its inputs are done. A request larger than a batch is thereby split.
//!
//! A request whose client went away before its inputs were prepared is dropped from the queue;
//! its inputs never run.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Instant;

use resformer::model::bert::{Prepared, SentenceEmbedder};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// What a request gets back: a vector per input, or the forward's error.
pub type Answer = Result<Vec<Vec<f32>>, String>;

/// One request's inputs on their way to the model.
pub struct Job {
    pub ids: Vec<Vec<u32>>,
    pub queued: Instant,
    pub reply: oneshot::Sender<Answer>,
}

/// Batches handed to the worker and not yet answered: one running, one prepared and waiting.
const DEPTH: usize = 2;

/// What the handlers, the scheduler and the worker post to the scheduler.
#[derive(Default)]
struct Inbox {
    jobs: Vec<Job>,
    done: Vec<Done>,
    closed: bool,
}

/// A batch the worker ran: which inputs it held and their vectors, or why it failed.
struct Done {
    items: Vec<(u64, usize)>,
    result: Result<Vec<Vec<f32>>, String>,
}

/// The scheduler's mailbox.
struct Mailbox {
    inbox: Mutex<Inbox>,
    wake: Condvar,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn post(&self, f: impl FnOnce(&mut Inbox)) {
        f(&mut self.lock());
        self.wake.notify_one();
    }
}

/// The handlers' end of the batcher. Dropping it stops both threads once the queue is empty.
pub struct Batcher {
    mailbox: Arc<Mailbox>,
}

impl Batcher {
    /// Starts the scheduler and the worker on `model`, for batches of at most `max_tokens` padded
    /// tokens and `max_inputs` inputs. `on_forward` hears whether each forward succeeded.
    pub fn start(
        model: Arc<SentenceEmbedder>,
        max_tokens: usize,
        max_inputs: usize,
        metrics: Arc<Metrics>,
        on_forward: impl Fn(bool) + Send + 'static,
    ) -> Batcher {
        let mailbox = Arc::new(Mailbox { inbox: Mutex::new(Inbox::default()), wake: Condvar::new() });
        let (work_tx, work_rx) = mpsc::channel::<(Vec<(u64, usize)>, Prepared)>();
        let back = Arc::downgrade(&mailbox);
        let worker_model = model.clone();
        let worker_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("resformer-worker".into())
            .spawn(move || worker(worker_model, work_rx, back, worker_metrics, on_forward))
            .expect("spawn the worker thread");
        let sched =
            Scheduler { model, max_tokens, max_inputs, metrics, jobs: BTreeMap::new(), next_id: 0, in_flight: 0 };
        let mb = mailbox.clone();
        std::thread::Builder::new()
            .name("resformer-batcher".into())
            .spawn(move || sched.run(&mb, work_tx))
            .expect("spawn the batcher thread");
        Batcher { mailbox }
    }

    /// Queues a request's inputs.
    pub fn submit(&self, job: Job) {
        self.mailbox.post(|i| i.jobs.push(job));
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.mailbox.post(|i| i.closed = true);
    }
}

/// A request in the scheduler's hands.
struct Pending {
    ids: Vec<Vec<u32>>,
    /// Per input: not yet handed to the worker.
    waiting: Vec<bool>,
    results: Vec<Option<Vec<f32>>>,
    unanswered: usize,
    queued: Instant,
    reply: oneshot::Sender<Answer>,
}

struct Scheduler {
    model: Arc<SentenceEmbedder>,
    max_tokens: usize,
    max_inputs: usize,
    metrics: Arc<Metrics>,
    /// By arrival: the first key is the oldest request.
    jobs: BTreeMap<u64, Pending>,
    next_id: u64,
    in_flight: usize,
}

impl Scheduler {
    fn run(mut self, mailbox: &Mailbox, work: mpsc::Sender<(Vec<(u64, usize)>, Prepared)>) {
        loop {
            {
                let mut inbox = mailbox.lock();
                loop {
                    let taken = std::mem::take(&mut *inbox);
                    inbox.closed = taken.closed;
                    self.absorb(taken.jobs, taken.done);
                    if self.in_flight < DEPTH && self.jobs.values().any(|p| p.waiting.iter().any(|&w| w)) {
                        break;
                    }
                    if inbox.closed && self.jobs.is_empty() && self.in_flight == 0 {
                        return;
                    }
                    inbox = mailbox.wake.wait(inbox).unwrap_or_else(|p| p.into_inner());
                }
            }
            self.drop_abandoned();
            let items = self.next_batch();
            if items.is_empty() {
                continue;
            }
            let ids: Vec<Vec<u32>> = items.iter().map(|&(j, i)| self.jobs[&j].ids[i].clone()).collect();
            match self.model.prepare_ids(ids) {
                Ok(prepared) => {
                    if work.send((items, prepared)).is_err() {
                        return;
                    }
                    self.in_flight += 1;
                }
                // ids are checked at admission, so this is a bug, not a client's error
                Err(e) => self.fail(&items, &e.to_string()),
            }
        }
    }

    /// New requests join the queue; finished batches fill their requests, and complete
    /// requests are answered.
    fn absorb(&mut self, jobs: Vec<Job>, done: Vec<Done>) {
        for job in jobs {
            let n = job.ids.len();
            let p = Pending {
                ids: job.ids,
                waiting: vec![true; n],
                results: vec![None; n],
                unanswered: n,
                queued: job.queued,
                reply: job.reply,
            };
            if n == 0 {
                let _ = p.reply.send(Ok(Vec::new()));
                continue;
            }
            self.jobs.insert(self.next_id, p);
            self.next_id += 1;
        }
        for d in done {
            self.in_flight -= 1;
            match d.result {
                Ok(vectors) => {
                    for (&(j, i), v) in d.items.iter().zip(vectors) {
                        // a request whose client left is gone: its vectors are dropped
                        let Some(p) = self.jobs.get_mut(&j) else { continue };
                        p.results[i] = Some(v);
                        p.unanswered -= 1;
                        if p.unanswered == 0 {
                            let p = self.jobs.remove(&j).expect("present");
                            let _ = p.reply.send(Ok(p.results.into_iter().map(Option::unwrap_or_default).collect()));
                        }
                    }
                }
                Err(e) => self.fail(&d.items, &e),
            }
        }
    }

    /// Answers every request with an input in `items` with `error`.
    fn fail(&mut self, items: &[(u64, usize)], error: &str) {
        for &(j, _) in items {
            if let Some(p) = self.jobs.remove(&j) {
                let _ = p.reply.send(Err(error.to_string()));
            }
        }
    }

    /// Requests whose client has gone (disconnected, or timed out) leave the queue.
    fn drop_abandoned(&mut self) {
        let gone: Vec<u64> = self.jobs.iter().filter(|(_, p)| p.reply.is_closed()).map(|(&j, _)| j).collect();
        for j in gone {
            let p = self.jobs.remove(&j).expect("present");
            self.metrics.cancelled(p.waiting.iter().filter(|&&w| w).count());
        }
    }

    /// The inputs of the next forward ([`pick`]), marked as handed over.
    fn next_batch(&mut self) -> Vec<(u64, usize)> {
        let items = pick(&self.jobs, self.max_tokens, self.max_inputs);
        for &(j, i) in &items {
            let p = self.jobs.get_mut(&j).expect("present");
            if p.waiting.iter().all(|&w| w) {
                self.metrics.queued(p.queued.elapsed().as_secs_f64());
            }
            p.waiting[i] = false;
        }
        items
    }
}

/// The inputs of the next forward, as (request, input): the oldest request's waiting inputs
/// first, so none starves, then any others, longest first, while the batch's padded size
/// (inputs times its longest) stays within `max_tokens`, and at most `max_inputs` of them. One
/// input over the budget runs alone.
fn pick(jobs: &BTreeMap<u64, Pending>, max_tokens: usize, max_inputs: usize) -> Vec<(u64, usize)> {
    let mut waiting: Vec<(bool, usize, u64, usize)> = Vec::new();
    let mut oldest = None;
    for (&j, p) in jobs {
        for (i, _) in p.waiting.iter().enumerate().filter(|(_, &w)| w) {
            let first = *oldest.get_or_insert(j) == j;
            waiting.push((!first, p.ids[i].len(), j, i));
        }
    }
    waiting.sort_by_key(|&(later, len, j, i)| (later, std::cmp::Reverse(len), j, i));
    let (mut longest, mut items) = (0, Vec::new());
    for (_, len, j, i) in waiting {
        if items.len() == max_inputs.max(1) {
            break;
        }
        let l = longest.max(len.max(1));
        if !items.is_empty() && l * (items.len() + 1) > max_tokens {
            continue;
        }
        longest = l;
        items.push((j, i));
    }
    items
}

/// Runs prepared batches one at a time and posts each result to the scheduler.
fn worker(
    model: Arc<SentenceEmbedder>,
    work: mpsc::Receiver<(Vec<(u64, usize)>, Prepared)>,
    mailbox: Weak<Mailbox>,
    metrics: Arc<Metrics>,
    on_forward: impl Fn(bool),
) {
    while let Ok((items, prepared)) = work.recv() {
        let t = Instant::now();
        let ran = model.run_prepared(&prepared);
        metrics.batch(prepared.len(), prepared.padded_tokens(), prepared.real_tokens(), t.elapsed().as_secs_f64());
        on_forward(ran.is_ok());
        let result = ran.map(|e| e.sentences).map_err(|e| e.to_string());
        let Some(mb) = mailbox.upgrade() else { return };
        mb.post(|i| i.done.push(Done { items, result }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests of inputs of these token counts, the first one the oldest.
    fn queue(lens: &[&[usize]]) -> BTreeMap<u64, Pending> {
        lens.iter()
            .enumerate()
            .map(|(j, l)| {
                let (reply, _) = oneshot::channel();
                let ids: Vec<Vec<u32>> = l.iter().map(|&n| vec![1; n]).collect();
                let n = ids.len();
                let p = Pending {
                    ids,
                    waiting: vec![true; n],
                    results: vec![None; n],
                    unanswered: n,
                    queued: Instant::now(),
                    reply,
                };
                (j as u64, p)
            })
            .collect()
    }

    #[test]
    fn the_oldest_request_goes_first_then_the_longest_inputs_that_fit() {
        // 10 from the oldest; then 20 (2 x 20 = 40) and 7 (3 x 20 = 60) fit; 3 (4 x 20) does not
        assert_eq!(pick(&queue(&[&[10], &[3, 20, 7]]), 60, 99), vec![(0, 0), (1, 1), (1, 2)]);
        // the oldest's short inputs are never passed over for a newer request's long ones
        assert_eq!(pick(&queue(&[&[5, 5, 5], &[50; 10]]), 100, 99), vec![(0, 0), (0, 1), (0, 2)]);
        // --max-batch-requests caps the inputs whatever the budget
        assert_eq!(pick(&queue(&[&[10], &[3, 20, 7]]), 60, 2), vec![(0, 0), (1, 1)]);
    }

    #[test]
    fn every_batch_fits_the_budget_and_every_input_runs_exactly_once() {
        let mut rng = resformer::rng::Rng::new(7);
        for (budget, cap) in [(1, 9), (17, 2), (64, 5), (300, 1000)] {
            let lens: Vec<Vec<usize>> = (0..9)
                .map(|_| (0..1 + (rng.next_u64() % 6) as usize).map(|_| 1 + (rng.next_u64() % 40) as usize).collect())
                .collect();
            let refs: Vec<&[usize]> = lens.iter().map(Vec::as_slice).collect();
            let mut jobs = queue(&refs);
            let mut seen = std::collections::BTreeSet::new();
            loop {
                let items = pick(&jobs, budget, cap);
                if items.is_empty() {
                    break;
                }
                let longest = items.iter().map(|&(j, i)| jobs[&j].ids[i].len()).max().unwrap();
                assert!(items.len() == 1 || longest * items.len() <= budget, "budget {budget}: {items:?}");
                assert!(items.len() <= cap, "cap {cap}: {items:?}");
                for &(j, i) in &items {
                    assert!(seen.insert((j, i)), "input {i} of request {j} twice");
                    jobs.get_mut(&j).unwrap().waiting[i] = false;
                }
            }
            assert_eq!(seen.len(), lens.iter().map(Vec::len).sum::<usize>(), "budget {budget}");
        }
    }
}
