"""resformer: Transformer encoders on any GPU through wgpu, or on a fast CPU backend.

    import resformer
    enc = resformer.SentenceEncoder("models/all-MiniLM-L6-v2", device="auto")
    vectors = enc.encode(["A man is eating food.", "Hello"])      # (2, 384) float32

numpy in and out, torch only when you ask for tensors. Every forward releases the GIL, so
threads overlap and the objects are safe to share between them. Devices: "auto" (a hardware
GPU, else the CPU backend), "cpu", "reference" (plain loops, the definition of correctness),
"gpu" or "gpu:N" (see ``devices()``).
"""

from __future__ import annotations

import errno
import os
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from . import _resformer as _native
from .errors import DeviceError, ModelLoadError, ResformerError, ShapeError

__version__: str = _native.__version__

__all__ = [
    "__version__",
    "devices",
    "SentenceEncoder",
    "TransformerStack",
    "ViTClassifier",
    "ResformerError",
    "ShapeError",
    "ModelLoadError",
    "DeviceError",
]


def devices() -> list[dict[str, Any]]:
    """Every adapter wgpu sees: dicts with name, backend, device_type, is_software, chosen
    (the one device="gpu" opens), index (the N of "gpu:N", or None) and driver."""
    return _native.devices()


def _path(p: Union[str, "os.PathLike[str]"], what: str) -> str:
    path = os.fspath(p)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"{what} not found", path)
    return path


def _device(device: str) -> str:
    if not isinstance(device, str):
        raise TypeError(f"device must be a str such as 'auto', 'cpu' or 'gpu:0', not {type(device).__name__}")
    return device


class SentenceEncoder:
    """A BERT sentence encoder from a sentence-transformers directory (all-MiniLM-L6-v2,
    bge-small, e5-small, gte-small, ...), with ``SentenceTransformer.encode``'s contract.
    ``threads`` gives the CPU backend a pool of that many threads of its own (default: every
    core, or ``RAYON_NUM_THREADS``), for processes that share a machine."""

    def __init__(self, model_name_or_path: Union[str, "os.PathLike[str]"], device: str = "auto",
                 threads: Optional[int] = None) -> None:
        self._path = _path(model_name_or_path, "model directory")
        self._device_arg = _device(device)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive int (the CPU backend's thread count) or None, not {threads!r}")
        self._threads = threads
        self._native = _native.Encoder(self._path, self._device_arg, threads)

    def __reduce__(self):
        # a pickle reloads from the path with the same device and thread choice (Ray ships actors so)
        return (SentenceEncoder, (self._path, self._device_arg, self._threads))

    def __repr__(self) -> str:
        return f"SentenceEncoder({self._path!r}, dim={self._native.dim}, device={self.device!r})"

    @property
    def device(self) -> str:
        """What runs it: the adapter, or the CPU backend."""
        return self._native.device

    @property
    def max_seq_length(self) -> int:
        """Tokens per input, special tokens included; longer inputs are truncated."""
        return self._native.max_seq_length

    def get_sentence_embedding_dimension(self) -> int:
        return self._native.dim

    def tokenize(self, sentence: str) -> list[int]:
        """The token ids `sentence` runs as (after truncation)."""
        return self._native.tokenize(sentence)

    def count_tokens(self, sentence: str) -> int:
        """Tokens of `sentence` before truncation."""
        return self._native.count_tokens(sentence)

    def encode(
        self,
        sentences: Union[str, Sequence[str]],
        batch_size: int = 32,
        show_progress_bar: Optional[bool] = None,
        output_value: Optional[str] = "sentence_embedding",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        normalize_embeddings: bool = False,
        *,
        prompt: Optional[str] = None,
        precision: str = "float32",
        truncate_dim: Optional[int] = None,
        device: Optional[str] = None,
    ):
        """Embeddings of `sentences`, as ``SentenceTransformer.encode``: a str gives a (dim,)
        float32 array, a list (N, dim); inputs run in batches of similar length and come
        back in their order. ``output_value="token_embeddings"`` gives a list of (tokens, dim)
        arrays; ``convert_to_tensor=True`` torch tensors (torch is imported only then)."""
        if device is not None:
            raise ValueError("the device is chosen when the encoder is created: SentenceEncoder(path, device=...)")
        if precision != "float32":
            raise ValueError(f"precision {precision!r}: the engine returns float32 embeddings")
        if output_value not in ("sentence_embedding", "token_embeddings", None):
            raise ValueError(f"output_value {output_value!r}: expected 'sentence_embedding', 'token_embeddings' or None")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        single = isinstance(sentences, str)
        items = [sentences] if single else list(sentences)
        for i, s in enumerate(items):
            if not isinstance(s, str):
                raise TypeError(f"sentences[{i}] is {type(s).__name__}, not str")
        if prompt is not None:
            items = [prompt + s for s in items]
        # longest first, as sentence-transformers: batches of similar length pad little
        order = sorted(range(len(items)), key=lambda i: -len(items[i]))
        starts = range(0, len(items), batch_size)
        if show_progress_bar:
            try:
                from tqdm.auto import tqdm

                starts = tqdm(starts, desc="Batches", total=len(starts))
            except ImportError:
                pass
        dim = self._native.dim
        want_tokens = output_value != "sentence_embedding"
        want_sentences = output_value != "token_embeddings"
        pooled = np.empty((len(items), dim), dtype=np.float32)
        tokens: list = [None] * len(items)
        for start in starts:
            idx = order[start : start + batch_size]
            batch = [items[i] for i in idx]
            if want_sentences:
                pooled[idx] = self._native.embed(batch)
            if want_tokens:
                for i, t in zip(idx, self._native.token_embeddings(batch)):
                    tokens[i] = t
        if truncate_dim is not None:
            pooled = np.ascontiguousarray(pooled[:, :truncate_dim])
        if normalize_embeddings:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        if output_value is None:
            out = [{"sentence_embedding": pooled[i], "token_embeddings": tokens[i]} for i in range(len(items))]
            return out[0] if single else out
        if output_value == "token_embeddings":
            if convert_to_tensor:
                import torch

                tokens = [torch.from_numpy(t) for t in tokens]
            return tokens[0] if single else tokens
        if convert_to_tensor:
            import torch

            t = torch.from_numpy(pooled)
            return t[0] if single else t
        if not convert_to_numpy:
            rows = list(pooled)
            return rows[0] if single else rows
        return pooled[0] if single else pooled


def _as_f32(name: str, value: Any) -> np.ndarray:
    """A float32 C-contiguous numpy array of a torch tensor or array-like: the same memory when
    it already is one, else converted once."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        t = value.detach()
        if getattr(t, "device", None) is not None and str(t.device) != "cpu":
            t = t.cpu()
        if str(getattr(t, "dtype", "")) in ("torch.bfloat16", "torch.float16", "torch.bool"):
            t = t.float()
        value = t.numpy()
    a = np.asarray(value)
    if a.dtype.kind not in "fiub":
        raise ShapeError(f"{name} has dtype {a.dtype}: expected real numbers")
    if a.dtype == np.float32 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=np.float32)


def _as_mask(value: Any, batch: int, seq: int, unbatched: bool) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    m = np.asarray(value)
    if m.dtype.kind not in "fiub":
        raise ShapeError(f"key_padding_mask has dtype {m.dtype}: expected bool or numbers (nonzero = padded)")
    if unbatched and m.ndim == 1:
        m = m.reshape(1, -1)
    if m.shape != (batch, seq):
        raise ShapeError(f"key_padding_mask has shape {tuple(m.shape)}, expected (batch, seq) = ({batch}, {seq})")
    return np.ascontiguousarray(m != 0, dtype=np.uint8)


def _activation(activation: Any) -> str:
    # a string, or torch.nn.functional.relu / gelu as nn.TransformerEncoderLayer takes them
    name = activation if isinstance(activation, str) else getattr(activation, "__name__", repr(activation))
    if name not in ("relu", "gelu", "gelu_tanh"):
        raise ShapeError(f"activation {name!r}: expected 'relu', 'gelu' or 'gelu_tanh'")
    return name


class TransformerStack:
    """Residual Transformer blocks with PyTorch's semantics (``nn.TransformerEncoder``, or the
    engine's own block stack), from a state_dict or a safetensors file. Call it on (S, B, E),
    (B, S, E) with ``batch_first``, or unbatched (S, E) input."""

    def __init__(self, *args, **kwargs) -> None:
        raise TypeError(
            "use TransformerStack.from_state_dict(...), .from_safetensors(...) or .from_module(...)"
        )

    @classmethod
    def _made(cls, native, reduce, batch_first: bool) -> "TransformerStack":
        self = object.__new__(cls)
        self._native = native
        self._reduce = reduce
        self._batch_first = batch_first
        return self

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, Any],
        num_heads: int,
        *,
        prefix: str = "",
        norm_first: bool = False,
        activation: Any = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        device: str = "auto",
        precision: str = "f32",
    ) -> "TransformerStack":
        """From ``module.state_dict()`` (torch tensors or numpy arrays): an
        ``nn.TransformerEncoder``'s names (``layers.{i}.self_attn.*``, the final ``norm.*``
        applied when present) or the engine's block names (``{i}.attn.*``), detected."""
        names = list(state_dict.keys())
        tensors = [_as_f32(f"state_dict[{k!r}]", state_dict[k]) for k in names]
        act = _activation(activation)
        native = _native.TransformerStack.from_tensors(
            names, tensors, num_heads, prefix, norm_first, act, float(layer_norm_eps), batch_first, _device(device), precision
        )
        weights = dict(zip(names, tensors))
        options = _stack_options(prefix, norm_first, act, layer_norm_eps, batch_first, device, precision)
        return cls._made(native, (_stack_from_state_dict, (weights, num_heads, options)), batch_first)

    @classmethod
    def from_safetensors(
        cls,
        path: Union[str, "os.PathLike[str]"],
        num_heads: int,
        *,
        prefix: str = "",
        norm_first: bool = False,
        activation: Any = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        device: str = "auto",
        precision: str = "f32",
    ) -> "TransformerStack":
        """From a safetensors file of either naming (see ``from_state_dict``)."""
        p = _path(path, "weights file")
        act = _activation(activation)
        native = _native.TransformerStack.from_safetensors(
            p, num_heads, prefix, norm_first, act, float(layer_norm_eps), batch_first, _device(device), precision
        )
        options = _stack_options(prefix, norm_first, act, layer_norm_eps, batch_first, device, precision)
        return cls._made(native, (_stack_from_safetensors, (p, num_heads, options)), batch_first)

    @classmethod
    def from_module(cls, module: Any, *, device: str = "auto", precision: str = "f32") -> "TransformerStack":
        """From a live ``nn.TransformerEncoder``: its state_dict, and its heads, norm_first,
        activation, eps and batch_first read off its first layer."""
        layer = module.layers[0]
        act = getattr(layer, "activation_relu_or_gelu", 0)
        activation = {1: "relu", 2: "gelu"}.get(act) or getattr(layer.activation, "__name__", "relu")
        return cls.from_state_dict(
            module.state_dict(),
            layer.self_attn.num_heads,
            norm_first=bool(layer.norm_first),
            activation=activation,
            layer_norm_eps=float(layer.norm1.eps),
            batch_first=bool(layer.self_attn.batch_first),
            device=device,
            precision=precision,
        )

    def __reduce__(self):
        return self._reduce

    def __repr__(self) -> str:
        n = self._native
        norm = ", final norm" if n.has_final_norm else ""
        return f"TransformerStack({n.num_layers} layers, embed {n.embed_dim}{norm}, device={n.device!r})"

    @property
    def device(self) -> str:
        return self._native.device

    def __call__(self, x: Any, key_padding_mask: Any = None, is_causal: bool = False) -> np.ndarray:
        """The stack on `x`; a new C-contiguous float32 array of x's shape (torch.from_numpy
        shares it). `key_padding_mask` (B, S): True / nonzero = a padded key, as PyTorch."""
        a = _as_f32("x", x)
        if a.ndim not in (2, 3):
            raise ShapeError(f"x has shape {tuple(a.shape)}: expected (S, B, E), (B, S, E) with batch_first, or (S, E)")
        unbatched = a.ndim == 2
        if unbatched:
            seq, batch = a.shape[0], 1
        elif self._batch_first:
            batch, seq = a.shape[0], a.shape[1]
        else:
            seq, batch = a.shape[0], a.shape[1]
        mask = None if key_padding_mask is None else _as_mask(key_padding_mask, batch, seq, unbatched)
        return self._native.forward(a, mask, bool(is_causal))

    forward = __call__


def _stack_options(prefix, norm_first, activation, layer_norm_eps, batch_first, device, precision):
    """The keywords a pickled stack is rebuilt with."""
    return dict(prefix=prefix, norm_first=norm_first, activation=activation, layer_norm_eps=layer_norm_eps,
                batch_first=batch_first, device=device, precision=precision)


def _stack_from_state_dict(weights, num_heads, options):
    return TransformerStack.from_state_dict(weights, num_heads, **options)


def _stack_from_safetensors(path, num_heads, options):
    return TransformerStack.from_safetensors(path, num_heads, **options)


class ViTClassifier:
    """The digits Vision Transformer (assets/vit-digits), or any directory its loader reads."""

    def __init__(self, model_path: Union[str, "os.PathLike[str]"], device: str = "auto") -> None:
        self._path = _path(model_path, "model directory")
        self._device_arg = _device(device)
        self._native = _native.ViT(self._path, self._device_arg)

    def __reduce__(self):
        return (ViTClassifier, (self._path, self._device_arg))

    def __repr__(self) -> str:
        return f"ViTClassifier({self._path!r}, classes={self._native.num_classes}, device={self.device!r})"

    @property
    def device(self) -> str:
        return self._native.device

    @property
    def num_classes(self) -> int:
        return self._native.num_classes

    def predict(self, images: Any) -> np.ndarray:
        """Logits (N, classes) of images (N, side, side) or (N, side²), pixel values as the
        model was trained on (0-16 for the digits); one image gives (classes,)."""
        a = _as_f32("images", images)
        side = self._native.image_size
        single = a.ndim == 1 or (a.ndim == 2 and a.shape == (side, side))
        if single:
            a = a.reshape(1, -1)
        elif a.ndim == 3:
            a = a.reshape(a.shape[0], -1)
        if a.ndim != 2 or a.shape[1] != side * side:
            raise ShapeError(f"images have shape {tuple(np.shape(images))}: expected (N, {side}, {side}) or (N, {side * side})")
        logits = self._native.logits(np.ascontiguousarray(a))
        return logits[0] if single else logits

    def predict_proba(self, images: Any) -> np.ndarray:
        """softmax of ``predict``."""
        z = self.predict(images)
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)

    def classify(self, images: Any) -> np.ndarray:
        """The predicted class of each image."""
        return np.argmax(self.predict(images), axis=-1)
