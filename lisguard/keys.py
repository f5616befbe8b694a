"""The install key: one secret per installation, kept outside the database.

It keys what a database administrator must not be able to forge or reverse: the audit chain's
HMAC, the signature on audit anchors, and the pseudonyms of patient ids in logs. Each use gets
its own sub-key (HMAC-SHA256 of the purpose under the install key), so a leaked pseudonym key
says nothing about the audit key.

Where it comes from, first match wins:
1. `security.key` (e.g. LISGUARD_SECURITY__KEY from a Kubernetes Secret): 64 hex characters;
2. `security.key_file`: a file holding the hex key. When the file does not exist, the first
   start generates it (mode 0600) and says so in the log; with `security.production: true` a
   missing key is an error instead, so that a production install never runs on a key nobody
   backed up.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from lisguard.settings import SecuritySettings

KEY_BYTES = 32


class InstallKeyError(Exception):
    """The install key cannot be read, or is missing where it must exist."""


@dataclass(frozen=True)
class InstallKey:
    secret: bytes
    source: str  # where it came from, for messages (never the key itself)
    generated: bool = False  # made just now (first start)

    def derive(self, purpose: str) -> bytes:
        return hmac.new(self.secret, b"lisguard/" + purpose.encode(), hashlib.sha256).digest()

    @property
    def key_id(self) -> str:
        """A public fingerprint: names which key signed an anchor without revealing it."""
        return hashlib.sha256(b"lisguard-key-id/" + self.secret).hexdigest()[:16]


def _parse(text: str, source: str) -> bytes:
    value = text.strip()
    try:
        secret = bytes.fromhex(value)
    except ValueError:
        raise InstallKeyError(f"{source}: the install key must be hex (64 characters)") from None
    if len(secret) < KEY_BYTES:
        raise InstallKeyError(
            f"{source}: the install key is {len(secret)} bytes; it needs {KEY_BYTES} or more"
        )
    return secret


def load_install_key(settings: SecuritySettings, *, create: bool = True) -> InstallKey:
    """The install key per `settings`; generates the key file on first use when allowed."""
    if settings.key is not None:
        return InstallKey(_parse(settings.key.get_secret_value(), "security.key"), "security.key")
    path = settings.key_file
    if path.exists():
        return _read(path)
    if settings.production or not create:
        raise InstallKeyError(
            f"no install key: {path} does not exist. Create it with `lisguard key create` "
            "(and back it up), or set security.key"
        )
    try:
        return InstallKey(write_key_file(path), str(path), generated=True)
    except InstallKeyError:
        if path.exists():  # another process (a replica) started at the same moment: its key
            return _read(path)
        raise
    except OSError as exc:
        raise InstallKeyError(f"cannot write the install key {path}: {exc}") from exc


def _read(path: Path) -> InstallKey:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallKeyError(f"cannot read the install key {path}: {exc}") from exc
    return InstallKey(_parse(text, str(path)), str(path))


def write_key_file(path: Path) -> bytes:
    """A new random key in a new file readable by its owner only; never overwrites. The file
    appears whole (written aside, then linked into place), so a replica starting at the same
    moment reads the complete key or finds none."""
    secret = secrets.token_bytes(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(secret.hex() + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(aside, path)  # fails if the name exists: never replaces a key
        except FileExistsError:
            raise InstallKeyError(f"{path} exists: an install key is never overwritten") from None
    finally:
        aside.unlink(missing_ok=True)
    return secret
