"""Signed result folders: keygen, sign, the registry, and every way verification refuses a folder."""

import json
import shutil
import stat

import pytest

from gpu_ops.cli import main
from gpu_ops.errors import UserError
from gpu_ops.results import SIGNATURE_FILE, read_tables, write_tables
from gpu_ops.signing import (
    KeyRegistry,
    SignatureRefused,
    fingerprint,
    keygen,
    parse_public_key,
    sign_folder,
    verify_folder,
)


@pytest.fixture
def signed(good_gpu_result, tmp_path):
    """A copy of a good result folder signed by a registered key: (folder, registry, key path)."""
    folder = tmp_path / "result"
    shutil.copytree(good_gpu_result, folder)
    key = tmp_path / "keys" / "alice.pem"
    registry = KeyRegistry([])
    registry.add("alice-lab", keygen(key), "2026-01-01T00:00:00+00:00")
    sign_folder(folder, key, "alice-lab")
    return folder, registry, key


def _content_hash(folder):
    return read_tables(folder).summary["content_hash"]


def test_keygen_writes_an_owner_only_key_and_never_overwrites_one(tmp_path, capsys):
    key = tmp_path / "k.pem"
    assert main(["keygen", "--out", str(key)]) == 0
    public = capsys.readouterr().out.strip()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(parse_public_key(public)) == 32
    before = key.read_bytes()
    assert main(["keygen", "--out", str(key)]) == 2
    assert "exists" in capsys.readouterr().err and key.read_bytes() == before


def test_a_signed_folder_from_a_registered_key_verifies_and_still_reads_as_a_result(signed):
    folder, registry, _ = signed
    record = verify_folder(folder, _content_hash(folder), registry)
    assert record["submitter"] == "alice-lab" and record["key_fingerprint"] == registry.keys[0].fingerprint
    assert (folder / SIGNATURE_FILE).exists() and read_tables(folder).summary["content_hash"] == record["content_hash"]


def test_unsigned_unknown_revoked_and_forged_folders_are_refused_with_their_kind(signed, tmp_path):
    folder, registry, key = signed
    with pytest.raises(SignatureRefused, match="unknown-key"):
        verify_folder(folder, _content_hash(folder), KeyRegistry([]))
    record = json.loads((folder / SIGNATURE_FILE).read_text())
    forged = dict(record, submitter="alice-lab", signed_at="2030-01-01T00:00:00+00:00")  # field changed, same sig
    (folder / SIGNATURE_FILE).write_text(json.dumps(forged))
    with pytest.raises(SignatureRefused, match="bad-signature"):
        verify_folder(folder, _content_hash(folder), registry)
    (folder / SIGNATURE_FILE).write_text(json.dumps(record))
    registry.revoke(record["key_fingerprint"], "2026-02-01T00:00:00+00:00")
    with pytest.raises(SignatureRefused, match="revoked-key"):
        verify_folder(folder, _content_hash(folder), registry)
    (folder / SIGNATURE_FILE).unlink()
    with pytest.raises(SignatureRefused, match="unsigned") as exc:
        verify_folder(folder, _content_hash(folder), registry)
    assert "llm-energy-measure sign" in str(exc.value)


def test_a_tampered_folder_with_a_valid_old_signature_is_refused(signed):
    """The tables are rewritten consistently (checksums and content hash match again): only the signature tells."""
    folder, registry, _ = signed
    old = (folder / SIGNATURE_FILE).read_bytes()
    tables = read_tables(folder)
    tables.cycles["avg_power_w"] = tables.cycles.avg_power_w * 0.5  # a better-looking result
    write_tables(tables, folder)  # replaces the folder: the old signature is put back beside it
    (folder / SIGNATURE_FILE).write_bytes(old)
    with pytest.raises(SignatureRefused, match="tampered") as exc:
        verify_folder(folder, _content_hash(folder), registry)
    assert "changed after it was signed" in str(exc.value)


def test_an_edited_summary_is_tampering_even_with_the_same_tables(signed):
    folder, registry, _ = signed
    summary = json.loads((folder / "summary.json").read_text())
    summary["hardware"] = "h200-141gb"
    (folder / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SignatureRefused, match="summary.json changed"):
        verify_folder(folder, _content_hash(folder), registry)


def test_submitters_cli_adds_lists_and_revokes_keys(tmp_path, capsys):
    registry = tmp_path / "submitters.yaml"
    main(["keygen", "--out", str(tmp_path / "k.pem")])
    public = capsys.readouterr().out.strip()
    assert main(["submitters", "add", "--registry", str(registry), "--submitter", "bob", "--public-key", public]) == 0
    fp = fingerprint(parse_public_key(public))
    assert KeyRegistry.load(registry).find(fp).submitter == "bob"
    assert main(["submitters", "add", "--registry", str(registry), "--submitter", "eve", "--public-key", public]) == 2
    assert "already registered" in capsys.readouterr().err
    assert main(["submitters", "revoke", "--registry", str(registry), "--fingerprint", fp]) == 0
    assert KeyRegistry.load(registry).find(fp).revoked_at is not None
    main(["submitters", "list", "--registry", str(registry)])
    assert "REVOKED" in capsys.readouterr().out


def test_bad_input_names_the_field(tmp_path, good_gpu_result):
    with pytest.raises(UserError, match="submitter id 'Alice Lab'"):
        sign_folder(good_gpu_result, tmp_path / "none.pem", "Alice Lab")
    with pytest.raises(UserError, match="--key .*not a readable private key"):
        sign_folder(good_gpu_result, tmp_path / "none.pem", "alice")
    with pytest.raises(UserError, match="expected ed25519:<base64 of 32 bytes>"):
        KeyRegistry([]).add("alice", "ssh-ed25519 AAAA", "now")
