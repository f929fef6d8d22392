"""Test-wide settings, applied before any test module imports torch."""

from __future__ import annotations

import os

from hypothesis import settings

# Spinning OpenMP threads starve the in-process gRPC servers on a 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Property tests draw the same examples on every run (`make test`, CI): a failure is a code change,
# never a lucky draw. HYPOTHESIS_PROFILE=explore draws at random (with a local database) to hunt
# for new failures on purpose.
settings.register_profile("derandomized", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "derandomized"))
