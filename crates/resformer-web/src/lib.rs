//! resformer in the browser: wasm-bindgen classes over the library.
//!
//! ```js
//! import init, { Engine, SentenceEncoder, ViTClassifier } from "./pkg/resformer_web.js";
//! await init();
//! const engine = await Engine.create();           // the page's WebGPU adapter, else the CPU backend
//! const enc = await SentenceEncoder.load(engine, "/models/all-MiniLM-L6-v2/");
//! const [a, b] = await enc.embed(["A man is eating food.", "Hello"]);   // Float32Array each
//! const vit = await ViTClassifier.load(engine, "/assets/vit-digits/");
//! const { prediction, probabilities } = await vit.classify(pixels);     // 64 values, 0-16
//! ```
//!
//! Every forward awaits its readback (the library's `*_async` forms), so nothing blocks the
//! page. Calls on one engine run one at a time, in the order made. Errors are JS `Error`s with
//! the library's one-line message.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Array, Float32Array, Object, Promise, Reflect, Uint8Array};
use resformer::model::bert::SentenceEmbedder;
use resformer::model::vit::{argmax, softmax, VitClassifier};
use resformer::{Device, EngineOptions, ModelFiles};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// The engine's one-line message as a JS `Error`.
fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// One call at a time per engine, in the order made: a GPU plan stays locked across its awaited
/// readback, so a second call waits for the first. The turns are a chain of promises: each call
/// waits for the one before it, and its guard resolves its own when it ends (a waiting loop of
/// resolved promises would never let the event loop deliver the readback it waits for).
#[derive(Clone, Default)]
struct Turn(Rc<RefCell<Option<Promise>>>);

/// Resolves its turn's promise when dropped: the next call may start.
struct TurnGuard(Option<js_sys::Function>);

impl Drop for TurnGuard {
    fn drop(&mut self) {
        if let Some(resolve) = self.0.take() {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    }
}

impl Turn {
    async fn take(&self) -> Result<TurnGuard, JsError> {
        let mut resolve = None;
        let mine = Promise::new(&mut |ok, _| resolve = Some(ok));
        let guard = TurnGuard(resolve);
        let before = self.0.borrow_mut().replace(mine);
        if let Some(p) = before {
            JsFuture::from(p).await.map_err(|_| JsError::new("the call before this one failed to end"))?;
        }
        Ok(guard)
    }
}

/// The engine: a WebGPU device, or the CPU backend (single-threaded in wasm).
#[wasm_bindgen]
pub struct Engine {
    inner: Rc<resformer::Engine>,
    backend: String,
    fallback: Option<String>,
    /// The browser's words for the adapter (vendor, architecture, description).
    label: String,
    turn: Turn,
}

#[wasm_bindgen]
impl Engine {
    /// `await Engine.create()` takes the browser's WebGPU adapter, or falls back to the CPU
    /// backend when there is none (`fallbackReason` says why). `device` may force "cpu",
    /// "reference" or "gpu".
    pub async fn create(device: Option<String>) -> Result<Engine, JsError> {
        let wanted = device.as_deref().unwrap_or("auto");
        let make = |d: Device| resformer::Engine::new(EngineOptions::on(d));
        let (inner, fallback) = match wanted {
            "auto" => match make(Device::Gpu).await {
                Ok(e) => (e, None),
                Err(why) => (make(Device::Cpu).await.map_err(js)?, Some(why.to_string())),
            },
            other => (make(other.parse::<Device>().map_err(js)?).await.map_err(js)?, None),
        };
        let backend = if inner.gpu().is_some() { "webgpu" } else { "cpu" }.to_string();
        let label = match inner.gpu() {
            Some(_) => web_adapter_label().await.unwrap_or_default(),
            None => String::new(),
        };
        Ok(Engine { inner: Rc::new(inner), backend, fallback, label, turn: Turn::default() })
    }

    /// "webgpu" or "cpu".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// What runs the models: the browser's vendor and architecture of the adapter, then the
    /// engine's own report (backend, device type), or the CPU backend.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        match self.label.is_empty() {
            true => self.inner.describe(),
            false => format!("{} {}", self.label, self.inner.describe().trim_start()),
        }
    }

    /// Why the CPU backend runs instead of WebGPU, when it does.
    #[wasm_bindgen(getter, js_name = fallbackReason)]
    pub fn fallback_reason(&self) -> Option<String> {
        self.fallback.clone()
    }
}

/// `navigator.gpu.requestAdapter()`'s `info` as one label: vendor, architecture and description
/// (a browser may leave any of them empty; wgpu reports only the description).
async fn web_adapter_label() -> Option<String> {
    let get = |o: &JsValue, k: &str| Reflect::get(o, &k.into()).ok().filter(|v| !v.is_undefined() && !v.is_null());
    let gpu = get(&get(&js_sys::global(), "navigator")?, "gpu")?;
    let request: js_sys::Function = get(&gpu, "requestAdapter")?.dyn_into().ok()?;
    let adapter = JsFuture::from(js_sys::Promise::from(request.call0(&gpu).ok()?)).await.ok()?;
    let info = get(&adapter, "info")?;
    let words: Vec<String> = ["vendor", "architecture", "description"]
        .iter()
        .filter_map(|k| get(&info, k).and_then(|v| v.as_string()).filter(|s| !s.is_empty()))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Fetches `url`'s bytes; `None` for a 404 when the file is optional.
async fn fetch(url: &str, optional: bool) -> Result<Option<Vec<u8>>, JsError> {
    let global = js_sys::global();
    let fetch_fn: js_sys::Function = Reflect::get(&global, &"fetch".into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| JsError::new("no fetch() in this context"))?;
    let promise: js_sys::Promise =
        fetch_fn.call1(&global, &url.into()).map_err(|e| JsError::new(&format!("fetch {url}: {e:?}")))?.into();
    let resp = JsFuture::from(promise)
        .await
        .map_err(|e| JsError::new(&format!("fetch {url}: {}", e.as_string().unwrap_or_else(|| format!("{e:?}")))))?;
    let status = Reflect::get(&resp, &"status".into()).ok().and_then(|s| s.as_f64()).unwrap_or(0.0) as u32;
    if status == 404 && optional {
        return Ok(None);
    }
    if !(200..300).contains(&status) {
        return Err(JsError::new(&format!("fetch {url}: HTTP {status}")));
    }
    let buf_fn: js_sys::Function = Reflect::get(&resp, &"arrayBuffer".into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| JsError::new(&format!("fetch {url}: not a Response")))?;
    let buf_promise: js_sys::Promise =
        buf_fn.call0(&resp).map_err(|e| JsError::new(&format!("fetch {url}: {e:?}")))?.into();
    let buf = JsFuture::from(buf_promise).await.map_err(|e| JsError::new(&format!("fetch {url}: {e:?}")))?;
    Ok(Some(Uint8Array::new(&buf).to_vec()))
}

/// The model's files from `base` (a directory URL): `required` must exist, `optional` may 404.
async fn fetch_files(base: &str, required: &[&str], optional: &[&str]) -> Result<BTreeMap<String, Vec<u8>>, JsError> {
    let base = if base.ends_with('/') { base.to_string() } else { format!("{base}/") };
    let mut files = BTreeMap::new();
    for (names, opt) in [(required, false), (optional, true)] {
        for name in names {
            if let Some(b) = fetch(&format!("{base}{name}"), opt).await? {
                files.insert(name.to_string(), b);
            }
        }
    }
    Ok(files)
}

/// The model's name: the last part of its URL.
fn name_of(base: &str) -> String {
    base.trim_end_matches('/').rsplit('/').next().unwrap_or(base).to_string()
}

/// A BERT sentence encoder (all-MiniLM-L6-v2 and its family), as sentence-transformers.
#[wasm_bindgen]
pub struct SentenceEncoder {
    inner: SentenceEmbedder,
    turn: Turn,
}

#[wasm_bindgen]
impl SentenceEncoder {
    /// `await SentenceEncoder.load(engine, "/models/all-MiniLM-L6-v2/")`: fetches the
    /// sentence-transformers directory's files (config.json, model.safetensors,
    /// tokenizer.json, and the module configs when present) and loads them on `engine`.
    pub async fn load(engine: &Engine, base_url: String) -> Result<SentenceEncoder, JsError> {
        let files = fetch_files(
            &base_url,
            &["config.json", "model.safetensors", "tokenizer.json"],
            &["modules.json", "1_Pooling/config.json", "sentence_bert_config.json", "tokenizer_config.json"],
        )
        .await?;
        let name = name_of(&base_url);
        let inner = engine.inner.load_bert_files(&ModelFiles::Bytes { name: &name, files: &files }).map_err(js)?;
        Ok(SentenceEncoder { inner, turn: engine.turn.clone() })
    }

    /// The embedding dimension (384 for MiniLM).
    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// `await encoder.embed(["...", ...])`: one `Float32Array` per sentence, pooled and
    /// normalised as the model's files say, computed as one batch.
    pub async fn embed(&self, sentences: Vec<String>) -> Result<Vec<Float32Array>, JsError> {
        let _turn = self.turn.take().await?;
        let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
        let out = self.inner.encode_async(&refs).await.map_err(js)?;
        Ok(out.sentences.iter().map(|v| Float32Array::from(v.as_slice())).collect())
    }
}

/// The ViT digit classifier (8x8 images, pixel values 0-16).
#[wasm_bindgen]
pub struct ViTClassifier {
    inner: VitClassifier,
    turn: Turn,
}

#[wasm_bindgen]
impl ViTClassifier {
    /// `await ViTClassifier.load(engine, "/assets/vit-digits/")`: config.json and
    /// model.safetensors.
    pub async fn load(engine: &Engine, base_url: String) -> Result<ViTClassifier, JsError> {
        let files = fetch_files(&base_url, &["config.json", "model.safetensors"], &[]).await?;
        let name = name_of(&base_url);
        let inner = engine.inner.load_vit_files(&ModelFiles::Bytes { name: &name, files: &files }).map_err(js)?;
        Ok(ViTClassifier { inner, turn: engine.turn.clone() })
    }

    /// Pixels per image (64).
    #[wasm_bindgen(getter)]
    pub fn pixels(&self) -> usize {
        let i = self.inner.config().image;
        i * i
    }

    /// Classes (10).
    #[wasm_bindgen(getter)]
    pub fn classes(&self) -> usize {
        self.inner.config().classes
    }

    /// `await clf.classify(pixels)` for a batch of images given as one array of B·64 values:
    /// `{ logits, probabilities }` (each a `Float32Array` of B·10, image by image) and
    /// `predictions` (B class indices).
    pub async fn classify(&self, pixels: Vec<f32>) -> Result<JsValue, JsError> {
        let n = self.pixels();
        if pixels.is_empty() || !pixels.len().is_multiple_of(n) {
            return Err(JsError::new(&format!(
                "{} pixel values is not a whole number of {n}-pixel images",
                pixels.len()
            )));
        }
        let images: Vec<&[f32]> = pixels.chunks(n).collect();
        let _turn = self.turn.take().await?;
        let logits = self.inner.logits_async(&images).await.map_err(js)?;
        let c = self.classes();
        let probs: Vec<f32> = logits.chunks(c).flat_map(softmax).collect();
        let predictions: Array = logits.chunks(c).map(|l| JsValue::from(argmax(l) as u32)).collect();
        let out = Object::new();
        let set = |k: &str, v: &JsValue| {
            Reflect::set(&out, &k.into(), v).map(|_| ()).map_err(|_| JsError::new("result object"))
        };
        set("logits", &Float32Array::from(logits.as_slice()).into())?;
        set("probabilities", &Float32Array::from(probs.as_slice()).into())?;
        set("predictions", &predictions.into())?;
        Ok(out.into())
    }

    /// The class token's attention over the patches in block `block` (averaged over heads), for
    /// one image: a `Float32Array` of the grid's patches, row by row (16 for 8x8 images in 2x2
    /// patches). Computed on the host with the reference kernels.
    pub fn attention(&self, pixels: Vec<f32>, block: usize) -> Result<Float32Array, JsError> {
        let w = self.inner.class_attention(&pixels, block).map_err(js)?;
        Ok(Float32Array::from(&w[1..]))
    }

    /// Blocks in the model.
    #[wasm_bindgen(getter)]
    pub fn layers(&self) -> usize {
        self.inner.config().layers
    }
}
