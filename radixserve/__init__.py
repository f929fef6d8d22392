"""radixserve: one import namespace for everything this project installs.

The repository keeps the design's layout (``protos/``, ``services/``, ``kernels/`` at the top), but
nothing generic lands in site-packages: installed, they are ``radixserve.services``,
``radixserve.kernels`` and ``radixserve.v1`` (the generated stubs; ``setup.py`` maps the folders).
In a checkout that is not installed (a copy on a GPU machine, a container image), the same names
resolve through the extra ``__path__`` entry below, so ``python bench/x.py`` works from the root.
"""

from __future__ import annotations

import os as _os

_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if all(_os.path.isfile(_os.path.join(_root, d, "__init__.py")) for d in ("services", "kernels")):
    __path__.append(_root)  # NOTE: a checkout (or image) only; a wheel maps the folders itself
