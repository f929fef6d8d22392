"""Worker service configuration (flags and RADIXSERVE_* environment variables)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerConfig:
    """The model worker: owns the weights, the KV pool and the forward."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (0.0.0.0: all)"})
    port: int = field(default=50053, metadata={"help": "gRPC port (0 picks a free one)"})
    metrics_port: int = field(default=9103, metadata={"help": "Prometheus port (0 disables)"})
    model: str = field(
        default="", metadata={"help": "GGUF file or HF directory; empty = embedded SmolLM2"}
    )
    load_format: str = field(default="auto", metadata={"help": "auto, gguf, hf or dummy"})
    dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16, float16"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N"})
    attention_backend: str = field(
        default="", metadata={"help": "torch or triton; empty = triton on GPU, torch on CPU"}
    )
    num_slots: int = field(default=0, metadata={"help": "KV slots; 0 = size from memory"})
    max_rows: int = field(default=256, metadata={"help": "most requests alive at once"})
    max_context_len: int = field(default=0, metadata={"help": "0 = the model's context length"})
    seed: int = field(default=0, metadata={"help": "seed for dummy weights and sampling"})
    step_thread: bool = field(
        default=False,
        metadata={"help": "run steps on a worker thread instead of the event loop thread"},
    )
    cuda_graph_max_bs: int = field(
        default=256, metadata={"help": "decode CUDA graphs up to this batch size; 0 disables"}
    )
