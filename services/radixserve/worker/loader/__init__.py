"""``load_model(source, dtype, device)``: build the model on the device and fill its weights."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from radixserve.common.model_source import ModelSource
from radixserve.worker.layers.ops import Ops
from radixserve.worker.loader import dummy, hf
from radixserve.worker.model_config import ModelConfig
from radixserve.worker.models import CausalLM, get_model_class
from radixserve.worker.parallel.shapes import check_tp

if TYPE_CHECKING:
    from radixserve.worker.parallel.group import TPGroup

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _gguf():  # noqa: ANN202 - the gguf package is only needed for .gguf files
    from radixserve.worker.loader import gguf

    return gguf


def read_config(source: ModelSource) -> ModelConfig:
    if source.kind == "gguf":
        return _gguf().open_gguf(source.path)[1]
    if source.kind == "hf":
        return hf.read_config(source.path)
    if source.kind == "dummy":
        return dummy.read_config(source.path)
    raise ValueError(f"unknown model source kind {source.kind!r}; known: gguf, hf, dummy")


def load_model(
    source: ModelSource,
    dtype: torch.dtype,
    device: torch.device | str,
    max_position: int | None = None,
    seed: int = 0,
    tp: TPGroup | None = None,
    ops: Ops | None = None,
) -> tuple[CausalLM, ModelConfig]:
    """Build ``source``'s model directly on ``device`` in ``dtype`` and load its weights.

    ``max_position`` sizes the rotary cache (default: the model's context length); ``ops`` are
    the elementwise ops its layers call (default: the torch references). With a tensor-parallel
    group ``tp`` every parameter holds this rank's shard only: the weight loaders cut each full
    checkpoint tensor as it streams by.
    """
    start = time.monotonic()
    reader = None
    if source.kind == "gguf":
        reader, config = _gguf().open_gguf(source.path)
    else:
        config = read_config(source)
    model_cls = get_model_class(config.architecture)
    check_tp(config, tp.size if tp is not None else 1)
    with _default_dtype(dtype), torch.device(device):
        model = model_cls(config, max_position, tp=tp, ops=ops)
    if source.kind == "dummy":
        dummy.init_random(model, seed)
    else:
        weights = _gguf().iter_weights(reader, config) if reader else hf.iter_weights(source.path)
        loaded = model.load_weights(weights)
        missing = sorted(set(dict(model.named_parameters())) - loaded)
        if missing:
            raise ValueError(f"checkpoint {source.path!r} lacks weights: {', '.join(missing[:8])}")
    model.eval()
    logger.info(
        "loaded %s (%s, %s) on %s in %.1fs",
        source.name, source.kind, str(dtype).removeprefix("torch."), device,
        time.monotonic() - start,
    )  # fmt: skip
    return model, config


__all__ = ["load_model", "read_config"]
