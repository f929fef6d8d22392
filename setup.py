"""Packaging: the top-level folders install under the one ``radixserve`` namespace.

``pyproject.toml`` holds the metadata; only the folder mapping needs code, because setuptools'
declarative ``packages.find`` cannot rename ``services`` to ``radixserve.services``.
"""

from __future__ import annotations

import os

from setuptools import find_packages, setup

MAPPED = ("services", "kernels")


def _packages() -> list[str]:
    # NOTE: the stubs exist only after `make protos`, which needs this package installed first
    # (grpcio-tools comes with it); an editable install finds them later through radixserve/.
    pkgs = ["radixserve"] + (["radixserve.v1"] if os.path.isdir("radixserve/v1") else [])
    for top in MAPPED:
        pkgs += [f"radixserve.{p}" for p in find_packages(include=[top, f"{top}.*"])]
    return pkgs


setup(
    packages=_packages(),
    package_dir={f"radixserve.{top}": top for top in MAPPED},
)
