//! An embedding server on the engine: OpenAI's `/v1/embeddings` and TEI's `/embed` wire
//! formats over one batcher that packs the queued inputs of many requests into forwards of at
//! most `max_batch_tokens` padded tokens, grouped by length. Admission is all-or-nothing per
//! request and a refusal is an immediate 429 with `Retry-After`.
//!
//! The model runs on its own threads ([`batcher`]), and tokenisation on tokio's blocking pool,
//! never on the async runtime's workers. A request whose client went away before its inputs
//! ran is dropped from the queue.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use resformer::model::bert::SentenceEmbedder;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub mod batcher;
pub mod metrics;

use batcher::{Batcher, Job};

/// The server's limits and switches (the command line's flags).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Padded tokens per forward.
    pub max_batch_tokens: usize,
    /// Inputs per forward.
    pub max_batch_requests: usize,
    /// Inputs admitted at once, over all requests.
    pub max_concurrent_requests: usize,
    /// Inputs in one request.
    pub max_client_batch_size: usize,
    /// Tokens per input (at most the model's max_seq_length).
    pub max_input_tokens: usize,
    /// Truncate long inputs instead of refusing them.
    pub auto_truncate: bool,
    /// How long a request may wait for its vectors.
    pub request_timeout: Duration,
    /// Request body bytes.
    pub payload_limit: usize,
    /// `Authorization: Bearer KEY` required on every route but /health and /metrics.
    pub api_key: Option<String>,
}

impl Limits {
    /// The defaults of the command line for a model of `max_tokens` tokens per input.
    pub fn defaults(max_tokens: usize) -> Limits {
        Limits {
            max_batch_tokens: 16384,
            max_batch_requests: usize::MAX,
            max_concurrent_requests: 512,
            max_client_batch_size: 2048,
            max_input_tokens: max_tokens,
            auto_truncate: true,
            request_timeout: Duration::from_secs(30),
            payload_limit: 2 << 20,
            api_key: None,
        }
    }
}

/// What every handler shares.
pub struct AppState {
    model: Arc<SentenceEmbedder>,
    limits: Limits,
    queue: Batcher,
    admitted: AtomicUsize,
    healthy: Arc<AtomicBool>,
    model_name: String,
    device: String,
    requests: AtomicUsize,
    metrics: Arc<metrics::Metrics>,
}

impl AppState {
    /// Loads nothing: wraps a loaded model, starts its batcher threads and warms it up.
    pub fn new(model: SentenceEmbedder, limits: Limits, model_name: String) -> Arc<AppState> {
        let model = Arc::new(model);
        let device = model.describe();
        let metrics = Arc::new(metrics::Metrics::default());
        let healthy = Arc::new(AtomicBool::new(false));
        let flag = healthy.clone();
        let queue = Batcher::start(
            model.clone(),
            limits.max_batch_tokens,
            limits.max_batch_requests,
            metrics.clone(),
            move |ok| flag.store(ok, Ordering::SeqCst),
        );
        let state = Arc::new(AppState {
            model,
            limits,
            queue,
            admitted: AtomicUsize::new(0),
            healthy,
            model_name,
            device,
            requests: AtomicUsize::new(0),
            metrics,
        });
        // warm-up: pipelines and the first plan before the first request
        let ok = state.model.embed(&["warm up"]).is_ok();
        state.healthy.store(ok, Ordering::SeqCst);
        state
    }

    /// What runs the model, for reports.
    pub fn device(&self) -> &str {
        &self.device
    }
}

/// What an embedding request did, for its log line: inputs, tokens and the time its inputs
/// spent in the batcher (queue and forwards).
#[derive(Clone, Copy)]
struct Usage {
    inputs: usize,
    tokens: usize,
    batcher_ms: f64,
}

/// An error's message, for its log line.
#[derive(Clone)]
struct Failure(String);

/// Which wire format an error is written in.
#[derive(Clone, Copy)]
enum Wire {
    OpenAi,
    Tei,
}

struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    wire: Wire,
    retry_after: bool,
}

impl ApiError {
    fn new(wire: Wire, status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), kind, wire, retry_after: false }
    }

    fn bad(wire: Wire, message: impl Into<String>) -> ApiError {
        ApiError::new(wire, StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.wire {
            Wire::OpenAi => json!({"error": {"message": self.message, "type": self.kind, "param": null, "code": null}}),
            Wire::Tei => json!({"error": self.message, "error_type": self.kind}),
        };
        let mut r = (self.status, Json(body)).into_response();
        r.extensions_mut().insert(Failure(self.message));
        if self.retry_after {
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        }
        r
    }
}

/// Released when a request's inputs leave the server, however it ends.
struct Admitted<'a> {
    state: &'a AppState,
    n: usize,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.state.admitted.fetch_sub(self.n, Ordering::SeqCst);
    }
}

fn admit(state: &AppState, n: usize, wire: Wire) -> Result<Admitted<'_>, ApiError> {
    let max = state.limits.max_concurrent_requests;
    let mut current = state.admitted.load(Ordering::SeqCst);
    loop {
        if current + n > max {
            let mut e = ApiError::new(
                wire,
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                format!("{n} inputs would exceed the {max} admitted at once ({current} are in flight); retry later"),
            );
            e.retry_after = true;
            return Err(e);
        }
        match state.admitted.compare_exchange(current, current + n, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return Ok(Admitted { state, n }),
            Err(now) => current = now,
        }
    }
}

/// [`to_ids`] on tokio's blocking pool for text, so tokenising a large request never holds an
/// async worker.
async fn tokenized(
    state: &Arc<AppState>,
    inputs: Inputs,
    truncate: bool,
    wire: Wire,
) -> Result<Vec<Vec<u32>>, ApiError> {
    if matches!(inputs, Inputs::Ids(_)) {
        return to_ids(state, inputs, truncate, wire);
    }
    let s = state.clone();
    tokio::task::spawn_blocking(move || to_ids(&s, inputs, truncate, wire)).await.unwrap_or_else(|e| {
        Err(ApiError::new(wire, StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("tokeniser: {e}")))
    })
}

/// Texts (or token ids) to token ids, within the limits.
fn to_ids(state: &AppState, inputs: Inputs, truncate: bool, wire: Wire) -> Result<Vec<Vec<u32>>, ApiError> {
    let n = inputs.len();
    if n == 0 {
        return Err(ApiError::bad(wire, "input is empty: give at least one string or token list"));
    }
    if n > state.limits.max_client_batch_size {
        return Err(ApiError::bad(
            wire,
            format!("{n} inputs is more than the {} one request may hold", state.limits.max_client_batch_size),
        ));
    }
    let max = state.limits.max_input_tokens;
    let started = Instant::now();
    let mut out = Vec::with_capacity(n);
    match inputs {
        Inputs::Texts(texts) => {
            for (i, t) in texts.iter().enumerate() {
                let full = state.model.count_tokens(t).map_err(|e| ApiError::bad(wire, e.to_string()))?;
                if full > max && !truncate {
                    return Err(ApiError::bad(
                        wire,
                        format!(
                            "input {i} has {full} tokens, more than the limit of {max}; truncate it or set truncate"
                        ),
                    ));
                }
                let mut ids = state.model.tokenize(t).map_err(|e| ApiError::bad(wire, e.to_string()))?;
                if ids.len() > max {
                    // keep [SEP] last, as the tokenizer's own truncation does
                    let last = *ids.last().expect("nonempty");
                    ids.truncate(max);
                    *ids.last_mut().expect("nonempty") = last;
                }
                out.push(ids);
            }
        }
        Inputs::Ids(lists) => {
            for (i, ids) in lists.into_iter().enumerate() {
                if ids.is_empty() || ids.len() > max {
                    return Err(ApiError::bad(
                        wire,
                        format!("input {i} has {} tokens; 1 to {max} are allowed", ids.len()),
                    ));
                }
                out.push(ids);
            }
        }
    }
    state.metrics.tokenized(started.elapsed().as_secs_f64());
    Ok(out)
}

enum Inputs {
    Texts(Vec<String>),
    Ids(Vec<Vec<u32>>),
}

impl Inputs {
    fn len(&self) -> usize {
        match self {
            Inputs::Texts(t) => t.len(),
            Inputs::Ids(i) => i.len(),
        }
    }

    /// str | [str] | [int] | [[int]], as OpenAI's `input` and TEI's `inputs`.
    fn parse(v: &Value, wire: Wire, field: &str) -> Result<Inputs, ApiError> {
        let bad = || {
            ApiError::bad(
                wire,
                format!("`{field}` must be a string, a list of strings, a list of token ids or a list of such lists"),
            )
        };
        match v {
            Value::String(s) => Ok(Inputs::Texts(vec![s.clone()])),
            Value::Array(a) if a.is_empty() => Ok(Inputs::Texts(Vec::new())),
            Value::Array(a) if a.iter().all(Value::is_string) => {
                Ok(Inputs::Texts(a.iter().map(|s| s.as_str().unwrap_or_default().to_string()).collect()))
            }
            Value::Array(a) if a.iter().all(Value::is_u64) => Ok(Inputs::Ids(vec![ids_of(a).ok_or_else(bad)?])),
            Value::Array(a) if a.iter().all(Value::is_array) => a
                .iter()
                .map(|x| x.as_array().and_then(|l| ids_of(l)))
                .collect::<Option<Vec<_>>>()
                .map(Inputs::Ids)
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

fn ids_of(a: &[Value]) -> Option<Vec<u32>> {
    a.iter().map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok())).collect()
}

/// Runs `ids` through the batcher, within the request timeout; the vectors and what the
/// request's log line reports of it.
async fn run(state: &AppState, ids: Vec<Vec<u32>>, wire: Wire) -> Result<(Vec<Vec<f32>>, Usage), ApiError> {
    let (inputs, tokens) = (ids.len(), ids.iter().map(Vec::len).sum());
    let (tx, rx) = oneshot::channel();
    let queued = Instant::now();
    state.queue.submit(Job { ids, queued, reply: tx });
    match tokio::time::timeout(state.limits.request_timeout, rx).await {
        Ok(Ok(Ok(v))) => Ok((v, Usage { inputs, tokens, batcher_ms: queued.elapsed().as_secs_f64() * 1e3 })),
        Ok(Ok(Err(e))) => Err(ApiError::new(wire, StatusCode::INTERNAL_SERVER_ERROR, "server_error", e)),
        Ok(Err(_)) => {
            Err(ApiError::new(wire, StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the batcher dropped the request"))
        }
        Err(_) => Err(ApiError::new(
            wire,
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("no answer within the request timeout of {:?}", state.limits.request_timeout),
        )),
    }
}

fn parse_json(body: &[u8], wire: Wire) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(wire, format!("malformed JSON: {e}")))
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
}

async fn openai_embeddings(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let w = Wire::OpenAi;
    let req = parse_json(&body, w)?;
    let input = req.get("input").ok_or_else(|| ApiError::bad(w, "missing field `input`"))?;
    let format = match req.get("encoding_format") {
        None | Some(Value::Null) => "float",
        Some(Value::String(s)) if s == "float" || s == "base64" => s.as_str(),
        Some(other) => {
            return Err(ApiError::bad(w, format!("encoding_format {other}: expected \"float\" or \"base64\"")))
        }
    };
    let dim = state.model.dim();
    let dimensions = match req.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|d| d >= 1 && d as usize <= dim) => {
            n.as_u64().map(|d| d as usize)
        }
        Some(other) => return Err(ApiError::bad(w, format!("dimensions {other}: expected 1 to {dim}"))),
    };
    let inputs = Inputs::parse(input, w, "input")?;
    let _admitted = admit(&state, inputs.len(), w)?;
    let ids = tokenized(&state, inputs, state.limits.auto_truncate, w).await?;
    let (vectors, usage) = run(&state, ids, w).await?;
    let tokens = usage.tokens;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            if let Some(d) = dimensions {
                v.truncate(d);
                normalize(&mut v);
            }
            let embedding = if format == "base64" {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let model = req.get("model").and_then(Value::as_str).unwrap_or(&state.model_name).to_string();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
    .into_response())
    .map(|mut r: Response| {
        r.extensions_mut().insert(usage);
        r
    })
}

#[derive(Deserialize)]
struct TeiRequest {
    inputs: Value,
    #[serde(default)]
    normalize: Option<bool>,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: Option<String>,
}

async fn tei_embed(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let w = Wire::Tei;
    let req: TeiRequest = serde_json::from_value(parse_json(&body, w)?).map_err(|e| ApiError::bad(w, e.to_string()))?;
    if let Some(d) = req.truncation_direction.as_deref().filter(|d| !d.eq_ignore_ascii_case("right")) {
        return Err(ApiError::bad(w, format!("truncation_direction {d:?}: only \"Right\" is supported")));
    }
    let inputs = Inputs::parse(&req.inputs, w, "inputs")?;
    let _admitted = admit(&state, inputs.len(), w)?;
    let ids = tokenized(&state, inputs, req.truncate.unwrap_or(state.limits.auto_truncate), w).await?;
    let (mut vectors, usage) = run(&state, ids, w).await?;
    // TEI normalises unless told not to; a model with a Normalize module is unit-length anyway
    if req.normalize.unwrap_or(true) {
        vectors.iter_mut().for_each(|v| normalize(v));
    }
    let mut r = Json(vectors).into_response();
    r.extensions_mut().insert(usage);
    Ok(r)
}

async fn tokenize(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let w = Wire::Tei;
    let req = parse_json(&body, w)?;
    let inputs = match Inputs::parse(req.get("inputs").unwrap_or(&Value::Null), w, "inputs")? {
        Inputs::Texts(t) => t,
        Inputs::Ids(_) => return Err(ApiError::bad(w, "`inputs` must be text to tokenize")),
    };
    let out = inputs
        .iter()
        .map(|t| state.model.tokenize(t).map_err(|e| ApiError::bad(w, e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(out).into_response())
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": state.model_name, "object": "model", "owned_by": "resformer"}]}))
}

async fn info(State(state): State<Arc<AppState>>) -> Json<Value> {
    let cfg = state.model.config();
    let l = &state.limits;
    Json(json!({
        "model_id": state.model_name,
        "model_type": "embedding",
        "dimension": state.model.dim(),
        "max_input_length": l.max_input_tokens,
        "pooling": format!("{:?}", cfg.pooling).to_lowercase(),
        "normalized": cfg.normalize,
        "device": state.device,
        "version": env!("CARGO_PKG_VERSION"),
        "max_batch_tokens": l.max_batch_tokens,
        "max_batch_requests": (l.max_batch_requests != usize::MAX).then_some(l.max_batch_requests),
        "max_concurrent_requests": l.max_concurrent_requests,
        "max_client_batch_size": l.max_client_batch_size,
        "auto_truncate": l.auto_truncate,
        "request_timeout_ms": l.request_timeout.as_millis() as u64,
        "payload_limit": l.payload_limit,
    }))
}

async fn metrics_route(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(state.admitted.load(Ordering::SeqCst));
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

async fn health(State(state): State<Arc<AppState>>) -> StatusCode {
    if state.healthy.load(Ordering::SeqCst) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// The API key on every route but /health, a request id header, and one log line each.
async fn gate(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let id = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let path = req.uri().path().to_string();
    let wire = if path.starts_with("/v1") { Wire::OpenAi } else { Wire::Tei };
    if let Some(key) = &state.limits.api_key {
        if path != "/health" && path != "/metrics" && !authorized(req.headers(), key) {
            let e = ApiError::new(wire, StatusCode::UNAUTHORIZED, "authentication_error", "missing or wrong API key");
            state.metrics.request(&path, 401);
            let resp = e.into_response();
            eprintln!("{}", log_line(id, &path, &resp, 0.0));
            return with_id(resp, id);
        }
    }
    let t = Instant::now();
    let resp = next.run(req).await;
    eprintln!("{}", log_line(id, &path, &resp, t.elapsed().as_secs_f64() * 1e3));
    if path != "/metrics" {
        state.metrics.request(&path, resp.status().as_u16());
    }
    with_id(resp, id)
}

/// `request 7: /v1/embeddings 200, 3 inputs, 11 tokens, 34.2 ms (33.9 ms in the batcher)`, or
/// for an error `request 8: /embed 400 in 0.2 ms: input is empty: ...`.
fn log_line(id: usize, path: &str, resp: &Response, ms: f64) -> String {
    let status = resp.status().as_u16();
    match (resp.extensions().get::<Usage>(), resp.extensions().get::<Failure>()) {
        (Some(u), _) => format!(
            "request {id}: {path} {status}, {} inputs, {} tokens, {ms:.1} ms ({:.1} ms in the batcher)",
            u.inputs, u.tokens, u.batcher_ms
        ),
        (None, Some(Failure(why))) => format!("request {id}: {path} {status} in {ms:.1} ms: {why}"),
        (None, None) => format!("request {id}: {path} {status} in {ms:.1} ms"),
    }
}

fn authorized(h: &HeaderMap, key: &str) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) == Some(key)
}

fn with_id(mut r: Response, id: usize) -> Response {
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        r.headers_mut().insert("x-request-id", v);
    }
    r
}

/// Every route, over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.limits.payload_limit;
    Router::new()
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/embed", post(tei_embed))
        .route("/tokenize", post(tokenize))
        .route("/v1/models", get(models))
        .route("/info", get(info))
        .route("/health", get(health))
        .route("/metrics", get(metrics_route))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}
