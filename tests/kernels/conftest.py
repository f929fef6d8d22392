"""Kernel tests run under Triton's CPU interpreter unless a CUDA device is present.

NOTE: TRITON_INTERPRET is read when a kernel is decorated, so it must be set here, before any test
module imports `kernels`. With a GPU the interpreter stays off and only the `gpu` tests run.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
