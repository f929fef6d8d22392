"""``--load-format dummy``: random weights of any supported config, initialised on the device."""

from __future__ import annotations

import json
import logging
import os
import zlib

import torch
from torch import nn

from radixserve.worker.model_config import ModelConfig

logger = logging.getLogger(__name__)

# The embedded model's shapes (SmolLM2-135M-Instruct), used when no config is given.
EMBEDDED_SHAPES = ModelConfig(
    architecture="LlamaForCausalLM",
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_layers=30,
    num_heads=9,
    num_kv_heads=3,
    head_dim=64,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    max_position_embeddings=8192,
    tie_word_embeddings=True,
    eos_token_ids=(2,),
    bos_token_id=1,
)


def read_config(path: str) -> ModelConfig:
    if not path:
        return EMBEDDED_SHAPES
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    with open(path) as f:
        return ModelConfig.from_hf_dict(json.load(f))


@torch.no_grad()
def init_random(model: nn.Module, seed: int = 0) -> None:
    """Norm weights 1, everything else uniform in +-0.02 (keeps bf16 activations finite).

    NOTE: each weight is drawn at its full (unsharded) shape and cut by its layer's loader, so a
    tensor-parallel rank holds exactly its shard of the same model a single worker would run.
    """
    for name, param in model.named_parameters():
        gen = torch.Generator(device=param.device)
        gen.manual_seed(seed + zlib.crc32(name.encode()))
        if param.dim() == 1 and "norm" in name:
            param.fill_(1.0)
        elif param.dim() == 1:
            param.zero_()
        else:
            full_shape = getattr(param, "full_shape", param.shape)
            full = torch.empty(full_shape, dtype=param.dtype, device=param.device)
            full.uniform_(-0.02, 0.02, generator=gen)
            loader = getattr(param, "full_loader", None)
            loader(param, full) if loader is not None else param.copy_(full)
