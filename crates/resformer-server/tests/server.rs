//! The server as users run it: the real binary on an ephemeral loopback port, driven by a
//! real HTTP client. Every answer is checked against the library's own vectors.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use resformer::{Device, Engine, EngineOptions};
use serde_json::{json, Value};

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bert/h64_mean_norm")
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Server {
    start_with(extra, Stdio::null())
}

fn start_with(extra: &[&str], stderr: Stdio) -> Server {
    let dir = model_dir();
    let mut args = vec!["--model", dir.to_str().unwrap(), "--port", "0", "--device", "cpu"];
    args.extend_from_slice(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_resformer-server"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("startup line: {line:?}")).to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    Server { child, url }
}

fn direct(texts: &[&str]) -> Vec<Vec<f32>> {
    let engine = Engine::new_blocking(EngineOptions::on(Device::Cpu)).unwrap();
    engine.load_bert(&model_dir()).unwrap().embed(texts).unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

async fn post(c: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let r = c.post(url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn routes_answer_in_both_wire_formats_with_the_library_s_vectors() {
    let s = start(&[]);
    let c = reqwest::Client::new();
    let texts = ["A man is eating food.", "Hello", "The quick brown fox jumps over the lazy dog."];
    let want = direct(&texts);
    let (st, v) = post(&c, &format!("{}/v1/embeddings", s.url), json!({"input": texts, "model": "m"})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "list");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 3);
    for (i, d) in v["data"].as_array().unwrap().iter().enumerate() {
        assert_eq!(d["index"], i);
        let got: Vec<f32> = d["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert!(close(&got, &want[i], 1e-6), "float {i}");
    }
    // base64: little-endian float32, the openai client's default
    let (st, v) =
        post(&c, &format!("{}/v1/embeddings", s.url), json!({"input": texts, "encoding_format": "base64"})).await;
    assert_eq!(st, 200);
    for (i, d) in v["data"].as_array().unwrap().iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD.decode(d["embedding"].as_str().unwrap()).unwrap();
        let got: Vec<f32> = bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert!(close(&got, &want[i], 0.0), "base64 {i}");
    }
    // dimensions: truncated and re-normalised
    let (_, v) = post(&c, &format!("{}/v1/embeddings", s.url), json!({"input": "Hello", "dimensions": 8})).await;
    let got: Vec<f32> =
        v["data"][0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(got.len(), 8);
    assert!((got.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    // TEI
    let (st, v) = post(&c, &format!("{}/embed", s.url), json!({"inputs": texts})).await;
    assert_eq!(st, 200);
    for (i, row) in v.as_array().unwrap().iter().enumerate() {
        let got: Vec<f32> = row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert!(close(&got, &want[i], 1e-6), "tei {i}"); // the model normalises already
    }
    let (st, v) = post(&c, &format!("{}/tokenize", s.url), json!({"inputs": ["Hello"]})).await;
    let engine = Engine::new_blocking(EngineOptions::on(Device::Cpu)).unwrap();
    let lib_ids = engine.load_bert(&model_dir()).unwrap().tokenize("Hello").unwrap();
    let got: Vec<u32> = v[0].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    assert!(st == 200 && got == lib_ids, "{v}");
    // token ids as input give the same vector as the text
    let ids = v[0].clone();
    let (_, v) = post(&c, &format!("{}/v1/embeddings", s.url), json!({"input": [ids]})).await;
    let got: Vec<f32> =
        v["data"][0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert!(close(&got, &want[1], 1e-6));
    for (route, key) in [("/v1/models", "data"), ("/info", "dimension")] {
        let v: Value = c.get(format!("{}{route}", s.url)).send().await.unwrap().json().await.unwrap();
        assert!(!v[key].is_null(), "{route}: {v}");
    }
    assert_eq!(c.get(format!("{}/health", s.url)).send().await.unwrap().status().as_u16(), 200);
    // /metrics: what just happened, in Prometheus text
    let m = c.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| -> f64 {
        let line = m.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} missing:\n{m}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("resformer_requests_total{route=\"/v1/embeddings\",status=\"200\"}"), 4.0, "{m}");
    assert_eq!(value("resformer_requests_total{route=\"/embed\",status=\"200\"}"), 1.0);
    // 5 requests ran forwards (4 on /v1, 1 on /embed); 3 texts of different lengths would pad,
    // but the CPU backend runs a batch packed, so nothing is wasted on padding
    assert!(value("resformer_batch_size_count") >= 5.0 && value("resformer_inference_seconds_count") >= 5.0);
    assert_eq!(value("resformer_padding_waste_tokens_total"), 0.0, "{m}");
    assert_eq!(value("resformer_queue_inputs"), 0.0);
    assert!(m.contains("resformer_queue_seconds_bucket{le=\"+Inf\"}") && m.contains("resformer_tokenize_seconds_sum"));
}

#[tokio::test]
async fn errors_have_their_status_and_their_wire_format() {
    let s = start(&["--max-client-batch-size", "4", "--payload-limit", "2000", "--api-key", "sekrit"]);
    let c = reqwest::Client::new();
    let auth = |r: reqwest::RequestBuilder| r.header("authorization", "Bearer sekrit");
    let send = |path: &str, body: String, key: bool| {
        let r = c.post(format!("{}{path}", s.url)).header("content-type", "application/json").body(body);
        if key { auth(r) } else { r }.send()
    };
    // 401 without the key; /health stays open
    let r = send("/v1/embeddings", json!({"input": "x"}).to_string(), false).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(c.get(format!("{}/health", s.url)).send().await.unwrap().status().as_u16(), 200);
    let m = c.get(format!("{}/metrics", s.url)).send().await.unwrap();
    assert_eq!(m.status().as_u16(), 200, "/metrics stays open");
    assert!(m.text().await.unwrap().contains("status=\"401\"} 1"));
    let cases = [
        ("/v1/embeddings", "{not json".to_string(), 400, "malformed JSON"),
        ("/v1/embeddings", json!({"input": []}).to_string(), 400, "empty"),
        ("/v1/embeddings", json!({"input": [1.5]}).to_string(), 400, "must be a string"),
        ("/v1/embeddings", json!({"input": "x", "encoding_format": "hex"}).to_string(), 400, "encoding_format"),
        ("/v1/embeddings", json!({"input": ["a", "b", "c", "d", "e"]}).to_string(), 400, "5 inputs"),
        ("/embed", json!({"inputs": []}).to_string(), 400, "empty"),
    ];
    for (path, body, status, needle) in cases {
        let r = send(path, body.clone(), true).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        let v: Value = r.json().await.unwrap();
        let msg = if path.starts_with("/v1") {
            assert_eq!(v["error"]["type"], "invalid_request_error");
            v["error"]["message"].as_str().unwrap().to_string()
        } else {
            assert!(v["error_type"].is_string());
            v["error"].as_str().unwrap().to_string()
        };
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let big = json!({"input": "word ".repeat(1000)}).to_string();
    assert_eq!(send("/v1/embeddings", big, true).await.unwrap().status().as_u16(), 413);
}

#[tokio::test]
async fn over_the_token_limit_is_refused_without_auto_truncate_and_cut_with_it() {
    let s = start(&["--auto-truncate", "false", "--max-input-tokens", "8"]);
    let c = reqwest::Client::new();
    let long = "one two three four five six seven eight nine ten";
    let engine = Engine::new_blocking(EngineOptions::on(Device::Cpu)).unwrap();
    let n = engine.load_bert(&model_dir()).unwrap().count_tokens(long).unwrap();
    assert!(n > 8);
    let (st, v) = post(&c, &format!("{}/v1/embeddings", s.url), json!({"input": long})).await;
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(st == 400 && msg.contains(&format!("{n} tokens")) && msg.contains("limit of 8"), "{st} {v}");
    let (st, _) = post(&c, &format!("{}/embed", s.url), json!({"inputs": long, "truncate": true})).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn a_text_alone_and_inside_a_request_of_32_gets_the_same_vector() {
    let s = start(&["--max-batch-tokens", "64"]); // forces many forwards: the request is split
    let c = reqwest::Client::new();
    let texts: Vec<String> = (0..32).map(|i| format!("sentence {i} {}", "word ".repeat(i % 9))).collect();
    let (_, v) = post(&c, &format!("{}/v1/embeddings", s.url), json!({"input": texts})).await;
    let all = v["data"].as_array().unwrap();
    assert_eq!(all.len(), 32);
    for i in [0, 7, 31] {
        let (_, one) = post(&c, &format!("{}/v1/embeddings", s.url), json!({"input": texts[i]})).await;
        let a: Vec<f64> = all[i]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let b: Vec<f64> = one["data"][0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-6), "input {i}");
    }
}

#[tokio::test]
async fn a_burst_over_max_concurrent_requests_gets_429_with_retry_after_and_nothing_else() {
    let s = start(&["--max-concurrent-requests", "2"]);
    let c = reqwest::Client::new();
    let text = "a sentence long enough to keep the batcher busy for a moment ".repeat(4);
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (c, url, text) = (c.clone(), format!("{}/v1/embeddings", s.url), text.clone());
            tokio::spawn(async move {
                let r = c.post(url).json(&json!({"input": [text.clone(), text]})).send().await.unwrap();
                (r.status().as_u16(), r.headers().get("retry-after").is_some())
            })
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        let (status, retry) = tokio::time::timeout(Duration::from_secs(60), t).await.unwrap().unwrap();
        assert!(status == 200 || (status == 429 && retry), "status {status}, retry-after {retry}");
        *counts.entry(status).or_insert(0) += 1;
    }
    assert!(counts.get(&429).copied().unwrap_or(0) > 0 && counts.get(&200).copied().unwrap_or(0) > 0, "{counts:?}");
}

#[tokio::test]
async fn sigterm_finishes_the_requests_in_flight_and_exits_0() {
    // the reference kernels: slow enough that the requests are still running at the signal
    let mut s = start(&["--device", "reference"]);
    let c = reqwest::Client::new();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (c, url) = (c.clone(), format!("{}/v1/embeddings", s.url));
            tokio::spawn(async move {
                let input: Vec<String> =
                    (0..16).map(|j| format!("request {i} input {j} {}", "w ".repeat(40))).collect();
                let status = c.post(url).json(&json!({"input": input})).send().await.map(|r| r.status().as_u16());
                (status, std::time::Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = s.child.id().to_string();
    let signalled = std::time::Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut after = 0;
    for t in tasks {
        let (status, done) = t.await.unwrap();
        assert_eq!(status.unwrap(), 200);
        after += (done > signalled) as usize;
    }
    assert!(after > 0, "every request had finished before the signal: the test proved nothing");
    let status = tokio::task::spawn_blocking(move || {
        let st = s.child.wait().unwrap();
        std::mem::forget(s);
        st
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
}

fn metric(text: &str, name: &str) -> f64 {
    let line = text.lines().find(|l| l.split(' ').next() == Some(name)).unwrap_or_else(|| panic!("no {name}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_client_that_disconnects_has_its_queued_inputs_dropped_unrun() {
    // the reference kernels and small batches: the first request runs for a while in many
    // forwards, and the second (longer inputs, so none fits beside the first's) queues behind it
    let s = start(&["--device", "reference", "--max-batch-tokens", "128"]);
    let c = reqwest::Client::new();
    let first: Vec<String> = (0..400).map(|j| format!("input {j} {}", "w ".repeat(30))).collect();
    let url = format!("{}/v1/embeddings", s.url);
    let (c1, u1) = (c.clone(), url.clone());
    let running = tokio::spawn(async move {
        let st = c1.post(u1).json(&json!({"input": first})).send().await.unwrap().status().as_u16();
        (st, std::time::Instant::now())
    });
    // the second request comes once the first is running
    let metrics = format!("{}/metrics", s.url);
    for _ in 0..600 {
        let text = c.get(&metrics).send().await.unwrap().text().await.unwrap();
        if metric(&text, "resformer_batch_size_count") > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let quitter = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let second: Vec<String> = (0..8).map(|j| format!("left {j} {}", "x ".repeat(60))).collect();
    let gone = quitter.post(&url).json(&json!({"input": second})).send().await;
    assert!(gone.is_err_and(|e| e.is_timeout()), "the second request should have timed out on the client");
    let left = std::time::Instant::now();
    let (status, finished) = tokio::time::timeout(Duration::from_secs(120), running).await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert!(finished > left, "the first request ended before the second left: the test proved nothing");
    // the batcher notices at its next batch; give it a moment once the queue is idle
    let mut text = String::new();
    for _ in 0..50 {
        text = c.get(&metrics).send().await.unwrap().text().await.unwrap();
        if metric(&text, "resformer_cancelled_inputs_total") > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&text, "resformer_cancelled_inputs_total"), 8.0, "{text}");
    assert_eq!(metric(&text, "resformer_batch_size_sum"), 400.0, "only the first request's inputs ran:\n{text}");
}

#[tokio::test]
async fn a_request_that_waits_past_request_timeout_gets_503_with_the_error_body() {
    let s = start(&["--device", "reference", "--request-timeout", "50ms", "--max-batch-tokens", "128"]);
    let c = reqwest::Client::new();
    let input: Vec<String> = (0..400).map(|j| format!("input {j} {}", "w ".repeat(30))).collect();
    let t = std::time::Instant::now();
    let (st, v) = post(&c, &format!("{}/v1/embeddings", s.url), json!({"input": input})).await;
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["error"]["type"], "timeout", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("50ms"), "{v}");
    assert!(t.elapsed() < Duration::from_secs(5), "answered at the timeout, not after the work");
    let (st, v) = post(&c, &format!("{}/embed", s.url), json!({"inputs": "short"})).await;
    assert_eq!(st, 200, "a short request still fits the timeout: {v}");
}

#[tokio::test]
async fn max_batch_requests_caps_the_inputs_of_every_forward() {
    let s = start(&["--max-batch-requests", "3"]);
    let c = reqwest::Client::new();
    let texts: Vec<String> = (0..10).map(|i| format!("text number {i}")).collect();
    let (st, v) = post(&c, &format!("{}/v1/embeddings", s.url), json!({"input": texts})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 10);
    let text = c.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&text, "resformer_batch_size_sum"), 10.0, "{text}");
    assert_eq!(metric(&text, "resformer_batch_size_count"), 4.0, "3 + 3 + 3 + 1:\n{text}");
}

#[tokio::test]
async fn every_request_logs_one_line_with_its_id_inputs_tokens_and_time() {
    let mut s = start_with(&[], Stdio::piped());
    let c = reqwest::Client::new();
    let r = c.post(format!("{}/v1/embeddings", s.url)).json(&json!({"input": ["a b c", "d e", "f"]})).send().await;
    let ok_id = r.unwrap().headers()["x-request-id"].to_str().unwrap().to_string();
    let r = c.post(format!("{}/embed", s.url)).json(&json!({"inputs": []})).send().await.unwrap();
    let bad_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(r.status().as_u16(), 400);
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut log = String::new();
    std::io::Read::read_to_string(&mut s.child.stderr.take().unwrap(), &mut log).unwrap();
    let line = |id: &str| {
        log.lines().find(|l| l.starts_with(&format!("request {id}: "))).unwrap_or_else(|| panic!("{id}: {log}"))
    };
    // 3 inputs of [CLS] w.. [SEP]: 5 + 4 + 3 tokens
    let ok = line(&ok_id);
    assert!(ok.contains("/v1/embeddings 200, 3 inputs, 12 tokens, ") && ok.contains("ms in the batcher"), "{ok}");
    let bad = line(&bad_id);
    assert!(bad.contains("/embed 400 in ") && bad.contains("input is empty"), "{bad}");
}
