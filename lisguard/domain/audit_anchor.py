"""Signed anchors of the audit chain: what the chain's head was, kept outside the database.

The keyed chain (lisguard.domain.audit) shows any edited, inserted or forged event, but not
events deleted from the end: the shorter chain is still a valid chain. An anchor is the head's
seq and hash at a time, with the event count, signed with the install key's "audit-anchor"
sub-key (HMAC-SHA256) and appended as one JSON line to a file the database's administrators
cannot write. Verification then requires the chain to still hold that event with that hash (or
to have purged it by retention), which a deletion of the newest events cannot satisfy.

Pure: text in, text out; files are lisguard.store.anchors'.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from lisguard.domain.audit import ChainPin, canonical_time

ANCHOR_VERSION = 1
CHAIN_PURPOSE = "audit-chain"
ANCHOR_PURPOSE = "audit-anchor"
_SIGNED = b"lisguard-audit-anchor/1\n"  # domain separation: this MAC signs nothing else


class AnchorError(Exception):
    """An anchor line cannot be read."""


class KeySource(Protocol):
    """What lisguard.keys.InstallKey offers (the domain does not read key files)."""

    def derive(self, purpose: str) -> bytes: ...

    @property
    def key_id(self) -> str: ...


@dataclass(frozen=True, slots=True, repr=False)
class AuditKeys:
    chain: bytes  # keys the event hashes; the store gets this one
    anchor: bytes  # signs anchors; only the anchoring and verifying side holds it
    key_id: str  # public fingerprint of the install key, named in each anchor

    @classmethod
    def of(cls, key: KeySource) -> AuditKeys:
        return cls(key.derive(CHAIN_PURPOSE), key.derive(ANCHOR_PURPOSE), key.key_id)

    def __repr__(self) -> str:  # never the keys themselves
        return f"AuditKeys(key_id={self.key_id!r})"


@dataclass(frozen=True, slots=True)
class Anchor:
    seq: int  # the head event (0: the chain was empty)
    hash: str | None
    events: int  # events in the chain up to seq, when anchored
    at: str  # when anchored, canonical UTC text
    key_id: str
    signature: str = ""
    v: int = ANCHOR_VERSION

    def pin(self) -> ChainPin:
        return ChainPin(self.seq, self.hash, f"the anchor of {self.at}")

    def _fields(self) -> dict[str, Any]:
        data = asdict(self)
        del data["signature"]
        return data


def _mac(anchor: Anchor, key: bytes) -> str:
    text = json.dumps(anchor._fields(), sort_keys=True, separators=(",", ":"))
    return hmac.new(key, _SIGNED + text.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_anchor(seq: int, digest: str | None, events: int, at: datetime, keys: AuditKeys) -> Anchor:
    unsigned = Anchor(seq, digest, events, canonical_time(at), keys.key_id)
    return Anchor(seq, digest, events, unsigned.at, keys.key_id, _mac(unsigned, keys.anchor))


def anchor_problem(anchor: Anchor, keys: AuditKeys) -> str | None:
    """Why this anchor cannot be trusted, or None when it was signed with these keys."""
    if anchor.v != ANCHOR_VERSION:
        return f"the anchor of {anchor.at} has version {anchor.v}, not {ANCHOR_VERSION}"
    if anchor.key_id != keys.key_id:
        return (
            f"the anchor of {anchor.at} was signed by key {anchor.key_id}; this install's key is"
            f" {keys.key_id}"
        )
    if not hmac.compare_digest(_mac(anchor, keys.anchor).encode(), anchor.signature.encode()):
        return f"the anchor of {anchor.at} has a wrong signature (forged or edited)"
    return None


def anchor_line(anchor: Anchor) -> str:
    """One JSON line, keys sorted: what the anchor file holds."""
    return json.dumps(asdict(anchor), sort_keys=True, separators=(",", ":"))


def parse_anchor(line: str) -> Anchor:
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise AnchorError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AnchorError("not a JSON object")
    try:
        anchor = Anchor(
            seq=data["seq"],
            hash=data["hash"],
            events=data["events"],
            at=data["at"],
            key_id=data["key_id"],
            signature=data["signature"],
            v=data["v"],
        )
    except KeyError as exc:
        raise AnchorError(f"no {exc.args[0]!r} field") from None
    typed = (
        _is_int(anchor.seq)
        and _is_int(anchor.events)
        and _is_int(anchor.v)
        and (anchor.hash is None or isinstance(anchor.hash, str))
        and all(isinstance(v, str) for v in (anchor.at, anchor.key_id, anchor.signature))
    )
    if not typed:
        raise AnchorError("a field has the wrong type")
    return anchor


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
