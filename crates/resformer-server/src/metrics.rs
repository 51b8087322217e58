//! `/metrics`: Prometheus text exposition of what the server did. Counters and histograms
//! behind one mutex; the batcher and the handlers record, the route renders.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// A histogram with fixed upper bounds (Prometheus `le`), cumulative when rendered.
#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, n: 0 }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.n += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut acc = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            acc += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {acc}");
        }
        let _ =
            writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}", self.n, self.sum, self.n);
    }
}

const SECONDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
const TOKENS: &[f64] = &[16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0];

struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    batch_size: Histogram,
    batch_tokens: Histogram,
    queue_seconds: Histogram,
    tokenize_seconds: Histogram,
    inference_seconds: Histogram,
    padding_waste: u64,
    cancelled: u64,
}

/// Everything `/metrics` reports.
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            inner: Mutex::new(Inner {
                requests: BTreeMap::new(),
                batch_size: Histogram::new(SIZES),
                batch_tokens: Histogram::new(TOKENS),
                queue_seconds: Histogram::new(SECONDS),
                tokenize_seconds: Histogram::new(SECONDS),
                inference_seconds: Histogram::new(SECONDS),
                padding_waste: 0,
                cancelled: 0,
            }),
        }
    }
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// One answered request.
    pub fn request(&self, route: &str, status: u16) {
        self.with(|m| *m.requests.entry((route.to_string(), status)).or_default() += 1);
    }

    /// One forward: its inputs, its padded tokens, the real tokens and its time.
    pub fn batch(&self, inputs: usize, padded: usize, real: usize, seconds: f64) {
        self.with(|m| {
            m.batch_size.observe(inputs as f64);
            m.batch_tokens.observe(padded as f64);
            m.padding_waste += (padded - real.min(padded)) as u64;
            m.inference_seconds.observe(seconds);
        });
    }

    /// Inputs dropped before they ran because their client went away.
    pub fn cancelled(&self, inputs: usize) {
        self.with(|m| m.cancelled += inputs as u64);
    }

    /// Time a request's inputs waited in the queue.
    pub fn queued(&self, seconds: f64) {
        self.with(|m| m.queue_seconds.observe(seconds));
    }

    /// Time a request's tokenisation took.
    pub fn tokenized(&self, seconds: f64) {
        self.with(|m| m.tokenize_seconds.observe(seconds));
    }

    /// The exposition text, with the queue length (inputs admitted and not yet answered).
    pub fn render(&self, queue: usize) -> String {
        self.with(|m| {
            let mut out = String::new();
            let _ = writeln!(out, "# HELP resformer_requests_total Requests answered, by route and status\n# TYPE resformer_requests_total counter");
            for ((route, status), n) in &m.requests {
                let _ = writeln!(out, "resformer_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
            let _ = writeln!(out, "# HELP resformer_queue_inputs Inputs admitted and not yet answered\n# TYPE resformer_queue_inputs gauge\nresformer_queue_inputs {queue}");
            m.batch_size.render(&mut out, "resformer_batch_size", "Inputs per forward");
            m.batch_tokens.render(&mut out, "resformer_batch_tokens", "Padded tokens per forward");
            m.queue_seconds.render(&mut out, "resformer_queue_seconds", "Time a request waited for its forward");
            m.tokenize_seconds.render(&mut out, "resformer_tokenize_seconds", "Tokenisation time per request");
            m.inference_seconds.render(&mut out, "resformer_inference_seconds", "Time per forward");
            let _ = writeln!(out, "# HELP resformer_padding_waste_tokens_total Padded minus real tokens over all forwards\n# TYPE resformer_padding_waste_tokens_total counter\nresformer_padding_waste_tokens_total {}", m.padding_waste);
            let _ = writeln!(out, "# HELP resformer_cancelled_inputs_total Inputs dropped unrun because their client went away\n# TYPE resformer_cancelled_inputs_total counter\nresformer_cancelled_inputs_total {}", m.cancelled);
            out
        })
    }
}
