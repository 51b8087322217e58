import os
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from .errors import DeviceError as DeviceError
from .errors import ModelLoadError as ModelLoadError
from .errors import ResformerError as ResformerError
from .errors import ShapeError as ShapeError

__version__: str

_Path = Union[str, os.PathLike[str]]

def devices() -> list[dict[str, Any]]: ...

class SentenceEncoder:
    def __init__(self, model_name_or_path: _Path, device: str = "auto", threads: Optional[int] = None) -> None: ...
    @property
    def device(self) -> str: ...
    @property
    def max_seq_length(self) -> int: ...
    def get_sentence_embedding_dimension(self) -> int: ...
    def tokenize(self, sentence: str) -> list[int]: ...
    def count_tokens(self, sentence: str) -> int: ...
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
    ) -> Any: ...

class TransformerStack:
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
    ) -> TransformerStack: ...
    @classmethod
    def from_safetensors(
        cls,
        path: _Path,
        num_heads: int,
        *,
        prefix: str = "",
        norm_first: bool = False,
        activation: Any = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        device: str = "auto",
        precision: str = "f32",
    ) -> TransformerStack: ...
    @classmethod
    def from_module(cls, module: Any, *, device: str = "auto", precision: str = "f32") -> TransformerStack: ...
    @property
    def device(self) -> str: ...
    def __call__(self, x: Any, key_padding_mask: Any = None, is_causal: bool = False) -> npt.NDArray[np.float32]: ...
    def forward(self, x: Any, key_padding_mask: Any = None, is_causal: bool = False) -> npt.NDArray[np.float32]: ...

class ViTClassifier:
    def __init__(self, model_path: _Path, device: str = "auto") -> None: ...
    @property
    def device(self) -> str: ...
    @property
    def num_classes(self) -> int: ...
    def predict(self, images: Any) -> npt.NDArray[np.float32]: ...
    def predict_proba(self, images: Any) -> npt.NDArray[np.float32]: ...
    def classify(self, images: Any) -> npt.NDArray[np.int64]: ...
