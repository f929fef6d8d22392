"""Load a Hugging Face directory: ``config.json`` plus ``*.safetensors`` (sharded or not)."""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Iterator

import torch
from safetensors import safe_open

from radixserve.worker.loader.progress import log_progress
from radixserve.worker.model_config import ModelConfig

logger = logging.getLogger(__name__)


def read_config(model_dir: str) -> ModelConfig:
    with open(os.path.join(model_dir, "config.json")) as f:
        d = json.load(f)
    gen_path = os.path.join(model_dir, "generation_config.json")
    if os.path.isfile(gen_path):
        with open(gen_path) as f:
            gen_eos = json.load(f).get("eos_token_id")
        if gen_eos is not None:
            ids = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos)
            old = d.get("eos_token_id")
            old = [] if old is None else [old] if isinstance(old, int) else list(old)
            d["eos_token_id"] = list(dict.fromkeys(old + ids))
    return ModelConfig.from_hf_dict(d)


def safetensors_files(model_dir: str) -> list[str]:
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(model_dir, s) for s in shards]
    files = sorted(glob.glob(os.path.join(model_dir, "*.safetensors")))
    # NOTE: Mistral repos also ship their own-format consolidated.safetensors (other tensor names)
    hf_files = [f for f in files if not os.path.basename(f).startswith("consolidated")]
    files = hf_files or files
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in {model_dir!r}")
    return files


def iter_weights(model_dir: str) -> Iterator[tuple[str, torch.Tensor]]:
    files = safetensors_files(model_dir)
    for path in log_progress(files, len(files), "loading safetensors shards"):
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)
