"""Scheduler service configuration (flags and RADIXSERVE_* environment variables)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SchedulerConfig:
    """The scheduler: batching, prefix cache and KV-slot bookkeeping for one worker group."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (0.0.0.0: all)"})
    port: int = field(default=50052, metadata={"help": "gRPC port (0 picks a free one)"})
    metrics_port: int = field(default=9102, metadata={"help": "Prometheus port (0 disables)"})
    worker_address: str = field(default="localhost:50053", metadata={"help": "worker rank 0"})
    worker_wait_seconds: float = field(
        default=900.0, metadata={"help": "how long to wait for the worker to load its model"}
    )
    max_running_requests: int = field(default=0, metadata={"help": "0 = the worker's rows"})
    max_prefill_tokens: int = field(default=16384, metadata={"help": "prefill tokens per step"})
    chunked_prefill_size: int = field(
        default=8192, metadata={"help": "longest prefill chunk; 0 disables chunking"}
    )
    schedule_policy: str = field(default="fcfs", metadata={"help": "fcfs, lpm or priority"})
    eviction_policy: str = field(
        default="lru", metadata={"help": "prefix cache eviction: lru, lfu"}
    )
    page_size: int = field(default=0, metadata={"help": "KV slots per page; 0 = the worker's"})
    disable_radix_cache: bool = field(default=False, metadata={"help": "turn the prefix cache off"})
    enable_mixed_chunk: bool = field(
        default=False, metadata={"help": "run a prefill chunk and decodes in one step"}
    )
    init_new_token_ratio: float = field(
        default=0.7, metadata={"help": "admission: reserved share of remaining output tokens"}
    )
    min_new_token_ratio: float = field(default=0.1, metadata={"help": "floor of that share"})
    new_token_ratio_decay_steps: int = field(
        default=600, metadata={"help": "steps to decay the share from init to min"}
    )
