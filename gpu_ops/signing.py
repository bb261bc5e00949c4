"""Signed result folders: a submitter signs a folder with an ed25519 key, the platform checks it against a registry
of submitters' public keys before a person looks at it.

The signature covers the folder's content hash (its tables) and the SHA-256 of summary.json (everything else it
claims), so a folder edited after signing, even one whose checksums were rewritten to match, no longer verifies.
Only an administrator writes the registry (`llm-energy-measure submitters ...`); the inbox only reads it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from gpu_ops.errors import UserError, excerpt
from gpu_ops.results import SIGNATURE_FILE, file_sha256, load_json, read_tables, write_file_atomic

SIGNATURE_FORMAT = "lem-signature-v1"
MAX_SIGNATURE_BYTES = 4096
MAX_REGISTRY_BYTES = 1 << 20
SUBMITTER_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_SIGNED_FIELDS = ("format", "submitter", "key_fingerprint", "content_hash", "summary_sha256", "signed_at")
_FIELDS = frozenset((*_SIGNED_FIELDS, "signature"))
_PUBLIC_PREFIX = "ed25519:"


def _crypto():
    """The ed25519 primitives (optional extra `signing`): imported only where keys are used."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise UserError("signing needs the `cryptography` package: pip install 'llm-energy-measure[signing]'") from None
    return ed25519, serialization, InvalidSignature


class SignatureRefused(UserError):
    """A submission the platform does not accept as signed; `kind` says why (the quarantine reason starts with it)."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def validate_submitter(value: object) -> str:
    if not isinstance(value, str) or not SUBMITTER_PATTERN.fullmatch(value):
        raise UserError(
            f"submitter id {excerpt(value)} is not valid: use 1-64 lower-case letters, digits, '.', '_' or '-' "
            "(e.g. alice-lab)"
        )
    return value


def public_key_text(raw: bytes) -> str:
    """How a public key is written (registry, `keygen` output): ed25519:<base64 of its 32 bytes>."""
    return _PUBLIC_PREFIX + base64.b64encode(raw).decode()


def parse_public_key(text: object) -> bytes:
    """The 32 bytes of a public key written as public_key_text does."""
    raw = None
    if isinstance(text, str) and text.startswith(_PUBLIC_PREFIX):
        try:
            raw = base64.b64decode(text[len(_PUBLIC_PREFIX) :], validate=True)
        except binascii.Error:
            raw = None
    if raw is None or len(raw) != 32:
        raise UserError(
            f"public key {excerpt(text)} is not valid: expected ed25519:<base64 of 32 bytes>, as "
            "`llm-energy-measure keygen` prints it"
        )
    return raw


def fingerprint(raw: bytes) -> str:
    """A public key's short name: what signature.json and the registry refer to it by."""
    return "SHA256:" + hashlib.sha256(raw).hexdigest()[:32]


def keygen(out: Path) -> str:
    """Write a new private key to `out` (PEM, readable by its owner only) and return its public key text."""
    ed25519, serialization, _ = _crypto()
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise UserError(f"{out} exists; choose another --out (a key is never overwritten)")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.unlink(missing_ok=True)  # left by an interrupted keygen: a key nobody was given
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.link(tmp, out)  # fails rather than replace a key created meanwhile
    finally:
        tmp.unlink(missing_ok=True)
    return public_key_text(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _load_private_key(path: Path):
    ed25519, serialization, _ = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(
            f"--key {path}: not a readable private key ({excerpt(str(exc), bare=True)}); create one with "
            "`llm-energy-measure keygen --out PATH`"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise UserError(f"--key {path}: not an ed25519 key; create one with `llm-energy-measure keygen --out PATH`")
    return key


def _message(record: dict) -> bytes:
    return json.dumps({k: record[k] for k in _SIGNED_FIELDS}, sort_keys=True, separators=(",", ":")).encode()


def sign_folder(folder: Path, key_path: Path, submitter: str, now: datetime.datetime | None = None) -> dict:
    """Write signature.json into a result folder (checked first, like the platform checks it); returns the record."""
    _, serialization, _ = _crypto()
    folder = Path(folder)
    submitter = validate_submitter(submitter)
    key = _load_private_key(key_path)
    tables = read_tables(folder)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    record = {
        "format": SIGNATURE_FORMAT,
        "submitter": submitter,
        "key_fingerprint": fingerprint(raw),
        "content_hash": tables.summary["content_hash"],
        "summary_sha256": file_sha256(folder / "summary.json"),
        "signed_at": (now or datetime.datetime.now(datetime.UTC)).isoformat(timespec="seconds"),
    }
    record["signature"] = base64.b64encode(key.sign(_message(record))).decode()
    write_file_atomic(folder / SIGNATURE_FILE, json.dumps(record, indent=1, sort_keys=True).encode())
    return record


@dataclass(frozen=True)
class RegisteredKey:
    submitter: str
    public_key: str
    added_at: str
    revoked_at: str | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(parse_public_key(self.public_key))


class KeyRegistry:
    """The submitters' public keys (a YAML the administrator keeps; the platform only reads it):

    keys:
      - {submitter: alice-lab, public_key: "ed25519:...", added_at: "...", revoked_at: null}
    """

    def __init__(self, keys: list[RegisteredKey]):
        self.keys = keys

    @classmethod
    def load(cls, path: Path) -> KeyRegistry:
        """The registry at `path`; a missing file is an empty registry (every signed upload is then unknown)."""
        path = Path(path)
        if not path.exists():
            return cls([])
        if not path.is_file() or path.stat().st_size > MAX_REGISTRY_BYTES:
            raise UserError(f"{path}: not a key registry (a regular file of at most {MAX_REGISTRY_BYTES >> 20} MiB)")
        data = yaml.safe_load(path.read_bytes()) or {}
        entries = data.get("keys", []) if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise UserError(f"{path}: expected `keys:` with a list of {{submitter, public_key, added_at}}")
        keys = []
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or set(e) - {"submitter", "public_key", "added_at", "revoked_at"}:
                raise UserError(f"{path}: keys[{i}] must hold only submitter, public_key, added_at, revoked_at")
            keys.append(
                RegisteredKey(
                    validate_submitter(e.get("submitter")),
                    public_key_text(parse_public_key(e.get("public_key"))),
                    str(e.get("added_at", "")),
                    None if e.get("revoked_at") is None else str(e["revoked_at"]),
                )
            )
        return cls(keys)

    def save(self, path: Path) -> None:
        data = {"keys": [dict(vars(k)) for k in self.keys]}
        write_file_atomic(Path(path), yaml.safe_dump(data, sort_keys=False).encode())

    def find(self, key_fingerprint: str) -> RegisteredKey | None:
        return next((k for k in self.keys if k.fingerprint == key_fingerprint), None)

    def add(self, submitter: str, public_key: str, now: str) -> RegisteredKey:
        """Register a key for a submitter (several keys per submitter: rotate by adding the new, then revoking the
        old)."""
        text = public_key_text(parse_public_key(public_key))
        existing = self.find(fingerprint(parse_public_key(text)))
        if existing is not None:
            raise UserError(f"key {existing.fingerprint} is already registered (to {existing.submitter})")
        key = RegisteredKey(validate_submitter(submitter), text, now)
        self.keys.append(key)
        return key

    def revoke(self, key_fingerprint: str, now: str) -> RegisteredKey:
        """Mark a key revoked: uploads signed with it are refused from now on (already approved data stays)."""
        key = self.find(key_fingerprint)
        if key is None:
            raise UserError(
                f"no registered key {excerpt(key_fingerprint)}; `llm-energy-measure submitters list` shows them"
            )
        revoked = RegisteredKey(key.submitter, key.public_key, key.added_at, now)
        self.keys[self.keys.index(key)] = revoked
        return revoked


def read_signature(folder: Path) -> dict:
    """signature.json of an untrusted folder, its size, fields and types checked (nothing verified yet)."""
    path = Path(folder) / SIGNATURE_FILE
    if not path.exists() and not path.is_symlink():
        raise SignatureRefused(
            "unsigned",
            "the folder has no signature.json; sign it with `llm-energy-measure sign FOLDER --key KEY "
            "--submitter ID` (with a key the administrator registered) and upload it again",
        )
    if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_SIGNATURE_BYTES:
        raise SignatureRefused(
            "bad-signature", f"signature.json must be a regular file of at most {MAX_SIGNATURE_BYTES} bytes"
        )
    try:
        record = load_json(path.read_bytes().decode("utf-8"), str(path), max_depth=2)
    except (UnicodeDecodeError, UserError) as exc:
        raise SignatureRefused(
            "bad-signature", f"signature.json is not valid JSON ({excerpt(str(exc), bare=True)})"
        ) from None
    if not isinstance(record, dict) or set(record) != _FIELDS or not all(isinstance(v, str) for v in record.values()):
        raise SignatureRefused(
            "bad-signature",
            f"signature.json must hold exactly the text fields {sorted(_FIELDS)}; sign the folder again",
        )
    if record["format"] != SIGNATURE_FORMAT:
        raise SignatureRefused(
            "bad-signature", f"signature format {excerpt(record['format'])}, expected {SIGNATURE_FORMAT}"
        )
    validate_submitter(record["submitter"])
    return record


def verify_folder(folder: Path, content_hash: str, registry: KeyRegistry) -> dict:
    """The signature record of a folder whose tables were already checked (`content_hash`: their hash), or raise
    SignatureRefused: unsigned, unknown-key, revoked-key, bad-signature or tampered."""
    ed25519, _, invalid_signature = _crypto()
    record = read_signature(folder)
    key = registry.find(record["key_fingerprint"])
    if key is None:
        raise SignatureRefused(
            "unknown-key",
            f"key {excerpt(record['key_fingerprint'])} is not in the platform's submitter registry; ask the "
            "administrator to register your public key (`llm-energy-measure submitters add`)",
        )
    if key.revoked_at is not None:
        raise SignatureRefused(
            "revoked-key",
            f"key {key.fingerprint} of {key.submitter} was revoked at {key.revoked_at}; sign with your current key",
        )
    if key.submitter != record["submitter"]:
        raise SignatureRefused(
            "bad-signature",
            f"key {key.fingerprint} is registered to {key.submitter}, not {excerpt(record['submitter'])}",
        )
    try:
        signature = base64.b64decode(record["signature"], validate=True)
        ed25519.Ed25519PublicKey.from_public_bytes(parse_public_key(key.public_key)).verify(signature, _message(record))
    except (binascii.Error, invalid_signature):
        raise SignatureRefused("bad-signature", "the signature does not verify with the registered key") from None
    if record["content_hash"] != content_hash:
        raise SignatureRefused(
            "tampered",
            f"the tables' content hash is {content_hash}, the signed one {excerpt(record['content_hash'])}: the "
            "folder changed after it was signed",
        )
    if record["summary_sha256"] != file_sha256(Path(folder) / "summary.json"):
        raise SignatureRefused("tampered", "summary.json changed after the folder was signed")
    return record
