"""TP errors, importable without torch (the gRPC servicer catches them)."""

from __future__ import annotations


class GroupError(RuntimeError):
    """A collective failed (a rank died or timed out): the whole group must restart."""
