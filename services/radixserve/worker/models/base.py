"""The interface every model architecture implements."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable

import torch
from torch import nn

from radixserve.worker.forward_context import ForwardContext
from radixserve.worker.model_config import ModelConfig

logger = logging.getLogger(__name__)


class CausalLM(nn.Module, ABC):
    """A decoder-only LM.

    The loader builds it as ``cls(config, max_position, ops=ops)``: ``ops`` (``layers.ops.Ops``)
    are the elementwise ops its layers call. ``stacked_params_mapping`` is the one table of
    checkpoint-name fusion:
    ``(fused_param_name, checkpoint_name, shard_id)``; :meth:`load_weights` applies it. The
    shard id ``"full"`` marks a tensor the checkpoint already holds fused (Phi-3's ``qkv_proj``):
    the parameter's ``full_loader`` splits it and keeps this rank's shard of each part.
    """

    stacked_params_mapping: tuple[tuple[str, str, str | int], ...] = ()

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    @abstractmethod
    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: ForwardContext
    ) -> torch.Tensor:
        """Logits ``[len(ctx.logits_indices), vocab]`` of the tokens that need sampling.

        Under tensor parallelism only rank 0 is sure to get them (None on gloo followers).
        """

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Copy HF-named tensors into the parameters via their weight loaders.

        Returns the names of the parameters that were loaded; unknown checkpoint names are
        skipped with a debug log (e.g. ``rotary_emb.inv_freq``).
        """
        params = dict(self.named_parameters())
        loaded: set[str] = set()
        for name, tensor in weights:
            target, shard_id = self._map_name(name)
            param = params.get(target)
            if param is None:
                logger.debug("skipping checkpoint tensor %s", name)
                continue
            loader = getattr(param, "weight_loader", None)
            if shard_id == "full":
                full_loader = getattr(param, "full_loader", None)
                if full_loader is None:
                    raise ValueError(f"{target} cannot take the fused checkpoint tensor {name}")
                full_loader(param, tensor)
            elif loader is None:
                param.data.copy_(tensor)
            else:
                loader(param, tensor, shard_id) if shard_id is not None else loader(param, tensor)
            loaded.add(target)
        return loaded

    def _map_name(self, name: str) -> tuple[str, str | int | None]:
        for fused, original, shard_id in self.stacked_params_mapping:
            if f".{original}." in name:
                return name.replace(f".{original}.", f".{fused}."), shard_id
        return name, None
