//! `resformer._resformer`: the native half of the Python package. A thin layer over the
//! library: numpy arrays in, new C-contiguous float32 numpy arrays out, the GIL released
//! around every load and forward (`Python::detach`), the library's errors raised as the
//! package's exception classes (`resformer.errors`) with its one-line message. The Python
//! half (`python/resformer/`) holds the sentence-transformers-style API on top.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use numpy::ndarray::{Array2, ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArray2, PyArrayDyn, PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyFileNotFoundError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use resformer::model::bert::SentenceEmbedder;
use resformer::model::io::TensorFile;
use resformer::model::vit::VitClassifier;
use resformer::model::{BlockConfig, InputShape, Precision, Stack, StackWeights};
use resformer::ops::Activation;
use resformer::{Device, Engine, EngineOptions, Error};

/// The package's exception for a library error: `resformer.errors.<class>(message)`.
fn raise(py: Python<'_>, class: &str, message: String) -> PyErr {
    let made = py.import("resformer.errors").and_then(|m| m.getattr(class)).and_then(|c| c.call1((message.clone(),)));
    match made {
        Ok(e) => PyErr::from_value(e),
        // the Python half is missing (the module imported on its own): still say what happened
        Err(_) => pyo3::exceptions::PyRuntimeError::new_err(message),
    }
}

/// Which of the package's exceptions a library error is.
fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let message = e.to_string();
    let class = match &e {
        Error::ShapeMismatch { .. }
        | Error::ZeroSized { .. }
        | Error::DataLength { .. }
        | Error::InvalidArgument { .. }
        | Error::BadSetting { .. } => "ShapeError",
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            return PyFileNotFoundError::new_err(message)
        }
        Error::File { .. } | Error::Io { .. } => "ModelLoadError",
        Error::NoAdapter { .. }
        | Error::AdapterNotFound { .. }
        | Error::RequestDevice { .. }
        | Error::LimitExceeded { .. }
        | Error::TooLarge { .. }
        | Error::Shader { .. }
        | Error::Gpu(_) => "DeviceError",
    };
    raise(py, class, message)
}

trait OrRaise<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> OrRaise<T> for resformer::Result<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}

fn shape_error(py: Python<'_>, message: String) -> PyErr {
    raise(py, "ShapeError", message)
}

/// The process that opened the first engine: a forked child inherits the parent's devices and
/// thread pools in a state it cannot use, so it is refused instead of left to hang.
static OPENED_IN: AtomicU32 = AtomicU32::new(0);

fn check_process(py: Python<'_>, opened_in: u32, what: &str) -> PyResult<()> {
    let me = std::process::id();
    if opened_in != 0 && opened_in != me {
        return Err(raise(
            py,
            "DeviceError",
            format!(
                "{what} was opened in process {opened_in}, and this is process {me}, forked from it: a device \
                 (and the CPU backend's thread pool) cannot cross a fork. Create it in this process, before any \
                 in the parent, or start workers with multiprocessing's 'spawn' or 'forkserver' method"
            ),
        ));
    }
    Ok(())
}

/// One engine per device spelling (and CPU thread count), shared by every object on it (one
/// device, one set of pipelines and tuner choices per process).
fn engine_for(py: Python<'_>, device: &str) -> PyResult<Arc<Engine>> {
    engine_with(py, device, None)
}

/// [`engine_for`] with the CPU backend on `threads` threads of its own when given.
fn engine_with(py: Python<'_>, device: &str, threads: Option<usize>) -> PyResult<Arc<Engine>> {
    check_process(py, OPENED_IN.load(Ordering::SeqCst), "the engine")?;
    let spec: Device = device.parse().or_raise(py)?;
    static ENGINES: OnceLock<Mutex<HashMap<String, Arc<Engine>>>> = OnceLock::new();
    let engines = ENGINES.get_or_init(Default::default);
    let key = match threads {
        Some(n) => format!("{spec} threads={n}"),
        None => spec.to_string(),
    };
    if let Some(e) = engines.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(e.clone());
    }
    let opened = py.detach(|| {
        EngineOptions::from_env().and_then(|o| {
            let o = o.with_device(spec);
            Engine::new_blocking(match threads {
                Some(n) => o.with_threads(n),
                None => o,
            })
        })
    });
    let engine = Arc::new(opened.or_raise(py)?);
    let _ = OPENED_IN.compare_exchange(0, std::process::id(), Ordering::SeqCst, Ordering::SeqCst);
    engines.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_insert(engine.clone());
    Ok(engine)
}

fn existing(path: &std::path::Path) -> PyResult<()> {
    if !path.exists() {
        return Err(PyFileNotFoundError::new_err((2, "No such file or directory", path.display().to_string())));
    }
    Ok(())
}

/// Every adapter wgpu sees, as dicts: name, backend, device_type, is_software, chosen (what
/// device "gpu" opens) and index (the N of "gpu:N", or None).
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let options = EngineOptions::from_env().or_raise(py)?;
    let list = py.detach(|| resformer::list_adapters(&options.gpu));
    let out = PyList::empty(py);
    for (i, a) in list.adapters.iter().enumerate() {
        let d = PyDict::new(py);
        d.set_item("name", &a.name)?;
        d.set_item("backend", format!("{:?}", a.backend))?;
        d.set_item("device_type", format!("{:?}", a.device_type))?;
        d.set_item("is_software", a.is_software())?;
        d.set_item("chosen", list.chosen.as_ref().ok() == Some(&i))?;
        d.set_item("index", list.numbered.iter().position(|&n| n == i))?;
        d.set_item("driver", format!("{} {}", a.driver, a.driver_info).trim().to_string())?;
        out.append(d)?;
    }
    Ok(out)
}

/// A BERT sentence encoder (any directory the library's loader reads).
#[pyclass(frozen, module = "resformer._resformer")]
struct Encoder {
    model: SentenceEmbedder,
    device: String,
    opened_in: u32,
}

#[pymethods]
impl Encoder {
    #[new]
    #[pyo3(signature = (path, device, threads=None))]
    fn new(py: Python<'_>, path: PathBuf, device: &str, threads: Option<usize>) -> PyResult<Encoder> {
        existing(&path)?;
        let engine = engine_with(py, device, threads)?;
        let model = py.detach(|| engine.load_bert(&path)).or_raise(py)?;
        Ok(Encoder { device: model.describe(), model, opened_in: std::process::id() })
    }

    /// (N, dim) float32: the pooled (and, with a Normalize module, normalised) vectors.
    fn embed<'py>(&self, py: Python<'py>, sentences: Vec<String>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        check_process(py, self.opened_in, "this encoder")?;
        let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
        let rows = py.detach(|| self.model.embed(&refs)).or_raise(py)?;
        let dim = self.model.dim();
        let flat: Vec<f32> = rows.into_iter().flatten().collect();
        let array = Array2::from_shape_vec((sentences.len(), dim), flat).map_err(|e| shape_error(py, e.to_string()))?;
        Ok(array.into_pyarray(py))
    }

    /// Per sentence its (tokens, dim) float32 token vectors, and the token counts.
    fn token_embeddings<'py>(
        &self,
        py: Python<'py>,
        sentences: Vec<String>,
    ) -> PyResult<Vec<Bound<'py, PyArray2<f32>>>> {
        check_process(py, self.opened_in, "this encoder")?;
        let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
        let out = py.detach(|| self.model.encode(&refs)).or_raise(py)?;
        let dim = self.model.dim();
        out.tokens
            .into_iter()
            .zip(out.token_counts)
            .map(|(t, n)| {
                let a = Array2::from_shape_vec((n, dim), t).map_err(|e| shape_error(py, e.to_string()))?;
                Ok(a.into_pyarray(py))
            })
            .collect()
    }

    /// The token ids a sentence runs as (special tokens included, after truncation).
    fn tokenize(&self, py: Python<'_>, sentence: &str) -> PyResult<Vec<u32>> {
        self.model.tokenize(sentence).or_raise(py)
    }

    /// Tokens of a sentence before truncation.
    fn count_tokens(&self, py: Python<'_>, sentence: &str) -> PyResult<usize> {
        self.model.count_tokens(sentence).or_raise(py)
    }

    #[getter]
    fn dim(&self) -> usize {
        self.model.dim()
    }

    #[getter]
    fn max_seq_length(&self) -> usize {
        self.model.max_tokens()
    }

    #[getter]
    fn device(&self) -> &str {
        &self.device
    }

    #[getter]
    fn name(&self) -> &str {
        self.model.name()
    }
}

/// Residual blocks with PyTorch's semantics, loaded from tensors or a safetensors file.
#[pyclass(frozen, module = "resformer._resformer")]
struct TransformerStack {
    engine: Arc<Engine>,
    weights: StackWeights,
    cfg: BlockConfig,
    stack: Stack,
    /// The same weights with a causal mask, loaded on the first `is_causal=True` call.
    causal: OnceLock<Stack>,
    opened_in: u32,
}

struct StackOptions {
    heads: usize,
    norm_first: bool,
    activation: Activation,
    eps: f32,
    batch_first: bool,
    precision: Precision,
}

impl StackOptions {
    fn new(
        py: Python<'_>,
        heads: usize,
        norm_first: bool,
        activation_name: &str,
        eps: f32,
        batch_first: bool,
        precision_name: &str,
    ) -> PyResult<StackOptions> {
        let (activation, precision) = (activation(py, activation_name)?, precision(py, precision_name)?);
        Ok(StackOptions { heads, norm_first, activation, eps, batch_first, precision })
    }
}

impl TransformerStack {
    fn load(py: Python<'_>, weights: StackWeights, o: StackOptions, device: &str) -> PyResult<TransformerStack> {
        let mut cfg = BlockConfig::new(weights.embed, o.heads, weights.ff);
        cfg.pre_norm = o.norm_first;
        cfg.activation = o.activation;
        cfg.eps = o.eps;
        cfg.batch_first = o.batch_first;
        cfg.precision = o.precision;
        let engine = engine_for(py, device)?;
        let stack = py.detach(|| engine.load_stack(weights.clone(), cfg)).or_raise(py)?;
        Ok(TransformerStack { engine, weights, cfg, stack, causal: OnceLock::new(), opened_in: std::process::id() })
    }
}

fn activation(py: Python<'_>, name: &str) -> PyResult<Activation> {
    match name {
        "relu" => Ok(Activation::Relu),
        "gelu" => Ok(Activation::Gelu),
        "gelu_tanh" => Ok(Activation::GeluTanh),
        other => Err(shape_error(py, format!("activation {other:?}: expected \"relu\", \"gelu\" or \"gelu_tanh\""))),
    }
}

fn precision(py: Python<'_>, name: &str) -> PyResult<Precision> {
    match name {
        "f32" | "float32" => Ok(Precision::F32),
        "f16" | "float16" => Ok(Precision::F16),
        other => Err(shape_error(py, format!("precision {other:?}: expected \"f32\" or \"f16\""))),
    }
}

#[pymethods]
impl TransformerStack {
    /// From named float32 tensors (a state_dict, converted by the Python half).
    #[staticmethod]
    #[pyo3(signature = (names, tensors, num_heads, prefix, norm_first, activation_name, layer_norm_eps, batch_first, device, precision_name))]
    #[allow(clippy::too_many_arguments)]
    fn from_tensors(
        py: Python<'_>,
        names: Vec<String>,
        tensors: Vec<PyReadonlyArrayDyn<'_, f32>>,
        num_heads: usize,
        prefix: &str,
        norm_first: bool,
        activation_name: &str,
        layer_norm_eps: f32,
        batch_first: bool,
        device: &str,
        precision_name: &str,
    ) -> PyResult<TransformerStack> {
        let o =
            StackOptions::new(py, num_heads, norm_first, activation_name, layer_norm_eps, batch_first, precision_name)?;
        // the tensors as one in-memory safetensors file: the library's own loader reads it
        let mut views = Vec::with_capacity(names.len());
        for (name, t) in names.iter().zip(&tensors) {
            let bytes: &[u8] = match t.as_slice() {
                Ok(s) => bytemuck_bytes(s),
                Err(_) => return Err(shape_error(py, format!("state_dict[{name:?}] is not C-contiguous"))),
            };
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape().to_vec(), bytes)
                .map_err(|e| shape_error(py, format!("state_dict[{name:?}]: {e}")))?;
            views.push((name.clone(), view));
        }
        let bytes = safetensors::serialize(views, None).map_err(|e| shape_error(py, e.to_string()))?;
        let file = TensorFile::from_bytes("state_dict", bytes).or_raise(py)?;
        let weights = StackWeights::from_file(&file, prefix).or_raise(py)?;
        TransformerStack::load(py, weights, o, device)
    }

    /// From a safetensors file (either naming, detected).
    #[staticmethod]
    #[pyo3(signature = (path, num_heads, prefix, norm_first, activation_name, layer_norm_eps, batch_first, device, precision_name))]
    #[allow(clippy::too_many_arguments)]
    fn from_safetensors(
        py: Python<'_>,
        path: PathBuf,
        num_heads: usize,
        prefix: &str,
        norm_first: bool,
        activation_name: &str,
        layer_norm_eps: f32,
        batch_first: bool,
        device: &str,
        precision_name: &str,
    ) -> PyResult<TransformerStack> {
        existing(&path)?;
        let o =
            StackOptions::new(py, num_heads, norm_first, activation_name, layer_norm_eps, batch_first, precision_name)?;
        let weights = py.detach(|| StackWeights::load(&path, prefix)).or_raise(py)?;
        TransformerStack::load(py, weights, o, device)
    }

    /// y = the stack on `x` ((S, B, E), (B, S, E) with batch_first, or (S, E)), C-contiguous
    /// float32, read in place; `key_padding_mask` (B, S) u8, nonzero = padded.
    #[pyo3(signature = (x, key_padding_mask=None, is_causal=false))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
        key_padding_mask: Option<PyReadonlyArray2<'py, u8>>,
        is_causal: bool,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        check_process(py, self.opened_in, "this stack")?;
        let dims = x.shape().to_vec();
        let shape = InputShape::from_shape(&dims, self.cfg.batch_first).or_raise(py)?;
        if shape.embed != self.cfg.embed {
            return Err(shape_error(
                py,
                format!("x has shape {dims:?}: its last dimension must be embed {}", self.cfg.embed),
            ));
        }
        let data = x.as_slice().map_err(|_| shape_error(py, "x is not C-contiguous".into()))?;
        let mask: Option<Vec<u32>> = match &key_padding_mask {
            None => None,
            Some(m) => {
                if m.shape() != [shape.batch, shape.seq] {
                    return Err(shape_error(
                        py,
                        format!(
                            "key_padding_mask has shape {:?}, expected (batch, seq) = ({}, {})",
                            m.shape(),
                            shape.batch,
                            shape.seq
                        ),
                    ));
                }
                let s = m.as_slice().map_err(|_| shape_error(py, "key_padding_mask is not C-contiguous".into()))?;
                Some(s.iter().map(|&v| (v != 0) as u32).collect())
            }
        };
        let stack = if is_causal && !self.cfg.causal {
            match self.causal.get() {
                Some(s) => s,
                None => {
                    let mut cfg = self.cfg;
                    cfg.causal = true;
                    let s = py.detach(|| self.engine.load_stack(self.weights.clone(), cfg)).or_raise(py)?;
                    let _ = self.causal.set(s);
                    self.causal.get().expect("just set")
                }
            }
        } else {
            &self.stack
        };
        let y = py.detach(|| stack.forward(data, shape.seq, shape.batch, mask.as_deref())).or_raise(py)?;
        let array = ArrayD::from_shape_vec(IxDyn(&dims), y).map_err(|e| shape_error(py, e.to_string()))?;
        Ok(array.into_pyarray(py))
    }

    #[getter]
    fn device(&self) -> String {
        self.stack.describe()
    }

    #[getter]
    fn embed_dim(&self) -> usize {
        self.cfg.embed
    }

    #[getter]
    fn num_layers(&self) -> usize {
        self.weights.layers()
    }

    #[getter]
    fn has_final_norm(&self) -> bool {
        self.weights.output_norm().is_some()
    }
}

fn bytemuck_bytes(s: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte pattern is a valid u8; the slice outlives the view
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
}

/// The digits ViT (or any model directory its loader reads).
#[pyclass(frozen, module = "resformer._resformer")]
struct ViT {
    model: VitClassifier,
    opened_in: u32,
}

#[pymethods]
impl ViT {
    #[new]
    fn new(py: Python<'_>, path: PathBuf, device: &str) -> PyResult<ViT> {
        existing(&path)?;
        let engine = engine_for(py, device)?;
        let model = py.detach(|| engine.load_vit(&path)).or_raise(py)?;
        Ok(ViT { model, opened_in: std::process::id() })
    }

    /// (N, classes) logits of (N, pixels) images, C-contiguous float32.
    fn logits<'py>(&self, py: Python<'py>, images: PyReadonlyArray2<'py, f32>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        check_process(py, self.opened_in, "this classifier")?;
        let [n, p] = [images.shape()[0], images.shape()[1]];
        let cfg = *self.model.config();
        if p != cfg.image * cfg.image {
            return Err(shape_error(
                py,
                format!("images have {p} pixels each, the model takes {}", cfg.image * cfg.image),
            ));
        }
        let data = images.as_slice().map_err(|_| shape_error(py, "images are not C-contiguous".into()))?;
        let rows: Vec<&[f32]> = data.chunks(p.max(1)).take(n).collect();
        let logits = py.detach(|| self.model.logits(&rows)).or_raise(py)?;
        let array = Array2::from_shape_vec((n, cfg.classes), logits).map_err(|e| shape_error(py, e.to_string()))?;
        Ok(array.into_pyarray(py))
    }

    #[getter]
    fn image_size(&self) -> usize {
        self.model.config().image
    }

    #[getter]
    fn num_classes(&self) -> usize {
        self.model.config().classes
    }

    #[getter]
    fn device(&self) -> String {
        self.model.describe()
    }
}

#[pymodule]
fn _resformer(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_class::<Encoder>()?;
    m.add_class::<TransformerStack>()?;
    m.add_class::<ViT>()?;
    Ok(())
}

#[allow(dead_code)]
fn _assert_sync() {
    fn sync<T: Send + Sync>() {}
    sync::<Encoder>();
    sync::<TransformerStack>();
    sync::<ViT>();
}
