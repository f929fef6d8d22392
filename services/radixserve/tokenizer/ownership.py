"""Who owns a gRPC request (issue 23): every request runs under a fresh server rid; a client's own
rid is a name inside its caller's namespace (its API key, else the ticket issued to it), so no
caller sees another's live rid (no "already running" oracle) and only the owner can abort it."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import grpc

from radixserve.common.errors import InvalidArgument
from radixserve.common.types import MAX_RID_BYTES
from radixserve.common.wire.tokenizer import OWNER_HEADER, metadata_value


@dataclass(frozen=True)
class Owner:
    """Who started a request: ``identity`` (a digest of the API key it presented; empty when
    anonymous), a ticket issued to it alone, and the rid it chose ("" when none)."""

    identity: str
    ticket: str
    client_rid: str

    @property
    def key(self) -> str:
        """The namespace of the caller's own rids: its key, else (anonymous) its ticket."""
        return self.identity or self.ticket


class Owners:
    """The running gRPC requests by server rid, and by (owner key, client rid)."""

    def __init__(self) -> None:
        self._by_rid: dict[str, Owner] = {}
        self._named: dict[tuple[str, str], str] = {}

    def new(self, context: grpc.aio.ServicerContext, client_rid: str) -> Owner:
        """The caller of ``Generate``; InvalidArgument for a rid too long or one the same key
        runs already (anonymous callers never share a namespace)."""
        if len(client_rid.encode()) > MAX_RID_BYTES:
            raise InvalidArgument(f"rid: longer than {MAX_RID_BYTES} bytes", "rid")
        owner = Owner(identity(context), secrets.token_hex(16), client_rid)
        if client_rid and (owner.key, client_rid) in self._named:
            raise InvalidArgument(f"rid: {client_rid!r} is already running", "rid")
        return owner

    def add(self, rid: str, owner: Owner) -> None:
        self._by_rid[rid] = owner
        if owner.client_rid:
            self._named[(owner.key, owner.client_rid)] = rid

    def remove(self, rid: str) -> None:
        owner = self._by_rid.pop(rid, None)
        if owner is not None and owner.client_rid:
            self._named.pop((owner.key, owner.client_rid), None)

    def find(self, context: grpc.aio.ServicerContext, rid: str) -> str | None:
        """The server rid of ``rid`` when the caller of ``Abort`` owns it: by its API key, by the
        ticket Generate sent it, or, for a rid the server chose, by knowing that rid (128 random
        bits only its caller was told) under the same identity."""
        who = identity(context)
        for key in (who, metadata_value(context.invocation_metadata(), OWNER_HEADER)):
            if key and (key, rid) in self._named:
                return self._named[(key, rid)]
        owner = self._by_rid.get(rid)
        if owner is not None and owner.identity == who and not owner.client_rid:
            return rid
        return None


def identity(context: grpc.aio.ServicerContext) -> str:
    """The caller's identity: a digest of its bearer credential (the API key), or empty."""
    auth = metadata_value(context.invocation_metadata(), "authorization")
    token = auth.strip().partition(" ")[2].strip()
    return hashlib.sha256(token.encode()).hexdigest()[:32] if token else ""
