"""Test-wide settings, applied before any test module imports torch."""

from __future__ import annotations

import os

# Spinning OpenMP threads starve the in-process gRPC servers on a 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
