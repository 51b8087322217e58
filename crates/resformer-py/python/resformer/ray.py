"""Embedding a corpus on Ray Data: one engine per actor, one actor per device.

    import ray, resformer.ray
    ds = ray.data.read_parquet("corpus/")
    out = resformer.ray.embed_dataset(ds, "models/all-MiniLM-L6-v2", num_actors=4)
    out.write_parquet("vectors/")

Needs ``ray[data]`` (``pip install "ray[data]"``); ``import resformer`` does not.

- Every row keeps its other columns, so ids travel with their vectors; the vectors are a
  fixed-size float32 tensor column.
- A row whose text is None, empty or not a str fails its batch with a ``ShapeError`` that
  names the row's index in the batch and the column: nothing is dropped silently. Ray does
  not retry application errors of actor tasks by default, so the dataset's execution stops
  with that error. ``map_batches(..., max_task_retries=N, retry_exceptions=True)`` would
  re-run the batch and fail the same way; ``DataContext.get_current().max_errored_blocks =
  N`` lets Ray Data skip up to N failing blocks, and then their rows are missing from the
  output: clean the column first (``ds.filter(...)``) if that is not what you want.
- With ``num_gpus > 0`` each actor takes the adapter Ray assigned it, ``gpu:N`` with N
  from ``ray.get_gpu_ids()``: Vulkan ignores ``CUDA_VISIBLE_DEVICES``, so the index is
  passed explicitly. Without GPUs each actor runs the CPU backend with as many threads as
  CPUs Ray gave it, so the actors of a node do not oversubscribe it.
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional, Sequence

import numpy as np

try:
    import ray
    import ray.data
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError('resformer.ray needs Ray Data: pip install "ray[data]"') from e

from . import SentenceEncoder
from .errors import ShapeError

__all__ = ["Embedder", "embed_dataset", "actor_device"]


def actor_device(device: str, gpu_ids: Sequence[Any], cpus: float) -> tuple[str, Optional[int]]:
    """The engine's device for an actor and the CPU backend's thread count: with GPUs
    assigned (``ray.get_gpu_ids()``), ``gpu:N`` of the first; otherwise `device` ("auto":
    the CPU backend) with ``max(1, floor(cpus))`` threads."""
    if device == "auto" and len(gpu_ids) > 0:
        return f"gpu:{int(gpu_ids[0])}", None
    if device == "auto":
        device = "cpu"
    threads = max(1, int(math.floor(cpus))) if device in ("cpu", "reference") else None
    return device, threads


class Embedder:
    """A callable class for ``ds.map_batches(Embedder, fn_constructor_kwargs=...,
    compute=ray.data.ActorPoolStrategy(size=N), batch_size=...)``: the model loads once
    per actor; each batch comes back with `output_column` added, (rows, dim) float32."""

    def __init__(
        self,
        model: str,
        column: str = "text",
        output_column: str = "embedding",
        device: str = "auto",
        batch_size: int = 64,
        normalize_embeddings: bool = False,
    ) -> None:
        gpu_ids: Sequence[Any] = []
        cpus = 1.0
        if ray.is_initialized():
            gpu_ids = ray.get_gpu_ids()
            try:
                cpus = float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))
            except AssertionError:  # in the driver, not an actor: nothing assigned
                cpus = float(os.cpu_count() or 1)
        self.device, threads = actor_device(device, gpu_ids, cpus)
        self.column, self.output_column = column, output_column
        self.batch_size, self.normalize = batch_size, normalize_embeddings
        # the CPU backend on as many threads as CPUs Ray gave this actor, a pool of its own
        self.encoder = SentenceEncoder(model, device=self.device, threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.column not in batch:
            raise ShapeError(f"the batch has no column {self.column!r}; it has {sorted(batch)}")
        texts = list(batch[self.column])
        for i, t in enumerate(texts):
            if not isinstance(t, str) or t == "":
                what = "None" if t is None else ("an empty string" if t == "" else type(t).__name__)
                raise ShapeError(f"row {i} of this batch: column {self.column!r} is {what}, not a non-empty str")
        vectors = self.encoder.encode(texts, batch_size=self.batch_size, normalize_embeddings=self.normalize)
        out = dict(batch)
        out[self.output_column] = vectors
        return out


def embed_dataset(
    ds: "ray.data.Dataset",
    model: str,
    column: str = "text",
    output_column: str = "embedding",
    batch_size: int = 64,
    num_actors: Optional[int] = None,
    num_gpus: float = 0,
    device: str = "auto",
    num_cpus: Optional[float] = None,
    normalize_embeddings: bool = False,
    **ray_remote_args: Any,
) -> "ray.data.Dataset":
    """`ds` with `output_column` added: one actor per GPU (``num_gpus=1``) or per
    `num_cpus` CPUs (default 1), `num_actors` of them (default: as many as the cluster
    holds). Extra keywords (``resources={"vulkan": 1}``, ``max_restarts``) go to Ray."""
    model = os.path.abspath(os.fspath(model))
    if num_actors is None:
        total = ray.cluster_resources() if ray.is_initialized() else {}
        per = num_gpus if num_gpus else (num_cpus or 1)
        have = total.get("GPU" if num_gpus else "CPU", 1)
        num_actors = max(1, int(have // per))
    kwargs = dict(model=model, column=column, output_column=output_column, device=device,
                  batch_size=batch_size, normalize_embeddings=normalize_embeddings)
    return ds.map_batches(
        Embedder,
        fn_constructor_kwargs=kwargs,
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        batch_size=batch_size,
        batch_format="numpy",
        num_gpus=num_gpus or None,
        num_cpus=num_cpus if num_cpus is not None else (None if num_gpus else 1),
        **ray_remote_args,
    )
