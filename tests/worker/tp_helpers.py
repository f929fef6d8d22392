"""Run a function on ``size`` gloo ranks (spawned processes on loopback, a free port)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import torch
import torch.multiprocessing as mp

from radixserve.worker.parallel.group import TPGroup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(
    rank: int, fn: Callable, size: int, port: int, device: str, timeout_s: float, args: tuple
) -> None:
    torch.set_num_threads(1)  # NOTE: several ranks share two cores; spinning threads starve them
    if device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
    dev = f"cuda:{rank}" if device == "cuda" else device
    group = TPGroup.init(rank, size, dev, f"tcp://127.0.0.1:{port}", timeout_s)
    try:
        fn(group, *args)
    finally:
        group.destroy()


def run_ranks(
    fn: Callable, size: int, *args: object, device: str = "cpu", timeout_s: float = 60
) -> None:
    """``fn(group, *args)`` on every rank (gloo on CPU; NCCL, rank r on ``cuda:r``, for
    ``device="cuda"``); an exception on any rank fails the call."""
    mp.start_processes(
        _entry,
        args=(fn, size, free_port(), device, timeout_s, args),
        nprocs=size,
        join=True,
        start_method="spawn",
    )


def greedy(runner: object, prompts: list[list[int]], max_new: int) -> list[list[int]]:
    """Prefill every prompt in one step, then decode them together (slots from a counter).

    Kept here, not in helpers.py, so spawned ranks do not import transformers.
    """
    from radixserve.common.types import ForwardMode, ReqInput, SamplingParams, StepInput

    slots = iter(range(1, 1 << 30))
    greedy_params = SamplingParams(temperature=0.0)
    reqs = [
        ReqInput(row, [next(slots) for _ in p], p, None, greedy_params)
        for row, p in enumerate(prompts)
    ]
    out = runner.step(StepInput(0, ForwardMode.EXTEND, reqs))  # type: ignore[attr-defined]
    gen = [[t] for t in out.token_ids]
    for step_id in range(1, max_new):
        reqs = [ReqInput(row, [next(slots)]) for row in range(len(prompts))]
        out = runner.step(StepInput(step_id, ForwardMode.DECODE, reqs))  # type: ignore[attr-defined]
        for row, t in enumerate(out.token_ids):
            gen[row].append(t)
    runner.step(StepInput(max_new, ForwardMode.DECODE, [], list(range(len(prompts)))))  # type: ignore[attr-defined]
    return gen


def rank_generate(group: TPGroup, specs: dict, prompts: list, max_new: int, out_path: str) -> None:
    """Every rank builds each model on ``group``; rank 0 generates through a LeaderRunner (each
    step broadcast, then run everywhere), the others run ``follower_loop`` as a served worker's
    followers do. Rank 0 writes ``{name: tokens}`` as JSON to ``out_path``."""
    import json

    from radixserve.worker.engine import ModelRunner, RunnerConfig
    from radixserve.worker.metrics_tp import TPMetrics
    from radixserve.worker.parallel.worker_group import LeaderRunner, follower_loop

    results = {}
    for name, kw in specs.items():
        runner = ModelRunner(RunnerConfig(**{**kw, "device": str(group.device)}), group)
        if group.rank == 0:
            leader = LeaderRunner(runner, lambda reason: None, TPMetrics(0))
            results[name] = greedy(leader, prompts, max_new)
            _rejected_steps_keep_ranks_in_step(leader)
            if greedy(leader, prompts, max_new) != results[name]:
                raise AssertionError("generation changed after rejected steps")
            leader.stop()
        elif follower_loop(runner, TPMetrics(group.rank)) != 0:
            raise RuntimeError(f"rank {group.rank}: follower loop failed")
    if group.rank == 0:
        with open(out_path, "w") as f:
            json.dump(results, f)


_GGUF_LAYER = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}  # fmt: skip
_GGUF_GLOBAL = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
}


def _permute_qk(w, n_head: int):  # noqa: ANN001, ANN202 - numpy in, numpy out
    """llama.cpp's converter layout for q/k rows (the inverse of the loader's un-permute)."""
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def save_tiny_gguf(hf_model: torch.nn.Module, path: str) -> None:
    """``hf_model`` (a transformers Llama) as an F32 GGUF file, laid out as llama.cpp writes it."""
    import gguf

    c = hf_model.config
    w = gguf.GGUFWriter(path, "llama")
    w.add_vocab_size(c.vocab_size)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(c.rope_theta if hasattr(c, "rope_theta") else 10000.0)
    tied = c.tie_word_embeddings
    for name, t in hf_model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue
        base, kind = name.rsplit(".", 1)
        if base.startswith("model.layers."):
            _, _, layer, part = base.split(".", 3)
            out = f"blk.{layer}.{_GGUF_LAYER[part]}.{kind}"
        else:
            out = f"{_GGUF_GLOBAL[base]}.{kind}"
        arr = t.float().numpy()
        if _is_part(name, "q_proj"):
            arr = _permute_qk(arr, c.num_attention_heads)
        elif _is_part(name, "k_proj"):
            arr = _permute_qk(arr, c.num_key_value_heads)
        w.add_tensor(out, arr.copy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _is_part(name: str, part: str) -> bool:
    return f".{part}." in name


def _rejected_steps_keep_ranks_in_step(leader: object) -> None:
    """Steps rank 0 rejects are rejected by every rank (no collective runs, nobody hangs)."""
    from radixserve.common.types import ForwardMode, ReqInput, StepInput

    step = leader.step  # type: ignore[attr-defined]
    bad = [
        StepInput(0, ForwardMode.DECODE, [ReqInput(3, [1])]),  # a row that never started
        StepInput(1, ForwardMode.EXTEND, [ReqInput(0, [1, 2], [5, 6], sample=False)]),
        StepInput(2, ForwardMode.DECODE, [ReqInput(0, [3])]),  # nothing sampled on row 0 yet
    ]
    for i, batch in enumerate(bad):
        try:
            step(batch)
        except ValueError:
            continue
        if i != 1:  # the middle one is valid: it sets up the third
            raise AssertionError(f"step {i} was accepted")
    step(StepInput(3, ForwardMode.DECODE, [], [0]))
