"""Signed uploads through the real results inbox and the moderate_submission job: each refusal is quarantined with
its reason, signed ones wait in pending/, and only what a moderator approved reaches statistics and the
leaderboard, with its submitter as provenance."""

import json

import dagster as dg
import pytest

from energy_assets.assets.leaderboard import leaderboard
from energy_assets.assets.raw import SOURCE_TAG, UPLOAD_TAG
from energy_assets.sensors.automation import results_inbox
from energy_assets.sensors.notifications import notify_leaderboard
from gpu_ops.results import SIGNATURE_FILE, read_tables, write_tables
from gpu_ops.signing import KeyRegistry
from tests.energy_assets.assets.test_pipeline import ASSETS, materialize_partition
from tests.energy_assets.conftest import SUBMITTER, moderate, register_submitter, signed_copy
from tests.energy_assets.sensors.test_automation import evaluate
from tests.gpu_ops.test_notify import Receiver

PARTITION = "builtin-tiny-llama__pytorch|h100-80gb-hbm3"


@pytest.fixture
def inbox(storage, monkeypatch):
    monkeypatch.setenv("LEM_INBOX_SETTLE_S", "0")
    return storage.results_inbox_dir


def _reason(storage, name: str) -> str:
    return (storage.quarantine_dir / name / "REASON.txt").read_text()


def test_each_refused_upload_is_quarantined_with_its_reason_and_a_signed_one_waits(
    good_gpu_result, tmp_path, storage, instance, inbox
):
    key = register_submitter(storage, tmp_path / "keys")
    (tmp_path / "mallory").mkdir()
    stranger = register_submitter(storage, tmp_path / "mallory", "mallory")
    registry = KeyRegistry.load(storage.submitters_file)  # mallory's key is removed again: unknown to the platform
    registry.keys = [k for k in registry.keys if k.submitter != "mallory"]
    registry.save(storage.submitters_file)

    signed_copy(good_gpu_result, inbox / "a-good", key)
    unsigned = signed_copy(good_gpu_result, inbox / "b-unsigned", key)
    (unsigned / SIGNATURE_FILE).unlink()
    signed_copy(good_gpu_result, inbox / "c-unknown-key", stranger, "mallory")
    forged = signed_copy(good_gpu_result, inbox / "d-bad-signature", key)
    record = json.loads((forged / SIGNATURE_FILE).read_text())
    (forged / SIGNATURE_FILE).write_text(json.dumps(dict(record, signed_at="2020-01-01T00:00:00+00:00")))
    tampered = signed_copy(good_gpu_result, tmp_path / "tampered", key)
    old_signature = (tampered / SIGNATURE_FILE).read_bytes()
    tables = read_tables(tampered)
    tables.timeline["temp_c"] = tables.timeline.temp_c + 1.0  # consistent, valid tables with a new content hash
    write_tables(tables, inbox / "e-tampered")
    (inbox / "e-tampered" / SIGNATURE_FILE).write_bytes(old_signature)

    res = evaluate(results_inbox, instance, storage=storage)

    assert res.run_requests == [] and list(inbox.iterdir()) == []
    assert _reason(storage, "b-unsigned").startswith("unsigned: the folder has no signature.json")
    assert _reason(storage, "c-unknown-key").startswith("unknown-key:")
    assert _reason(storage, "d-bad-signature").startswith("bad-signature: the signature does not verify")
    assert _reason(storage, "e-tampered").startswith("tampered:") and "changed after it was signed" in _reason(
        storage, "e-tampered"
    )
    [pending] = storage.submissions()
    assert (pending["submitter"], pending["status"], pending["experiment"] + "|" + pending["hardware"]) == (
        SUBMITTER,
        "pending",
        PARTITION,
    )
    assert (storage.pending_dir / pending["name"] / SIGNATURE_FILE).is_file()
    assert not any(storage.uploads_dir.rglob("summary.json"))


def test_a_pending_upload_reaches_statistics_only_once_approved(
    good_gpu_result, tmp_path, storage, resources, instance, inbox
):
    signed_copy(good_gpu_result, inbox / "result", register_submitter(storage, tmp_path))
    held = evaluate(results_inbox, instance, storage=storage)
    [record] = storage.submissions()
    # pending: no run is requested, and a run asked for it by hand finds nothing to ingest
    assert held.run_requests == []
    again = evaluate(results_inbox, instance, cursor=held.cursor, storage=storage)
    assert again.run_requests == []
    tags = {SOURCE_TAG: "upload", UPLOAD_TAG: record["name"]}
    instance.add_dynamic_partitions("experiment", [record["experiment"]])
    instance.add_dynamic_partitions("hardware", [record["hardware"]])
    assert not materialize_partition(instance, resources, PARTITION, tags=tags, raise_on_error=False).success
    assert instance.get_latest_materialization_event(dg.AssetKey("cycle_statistics")) is None

    assert moderate(storage, instance, record["name"]).success
    assert storage.submission(record["name"])["status"] == "approved"
    [request] = evaluate(results_inbox, instance, cursor=again.cursor, storage=storage).run_requests
    assert request.partition_key == PARTITION and request.tags[UPLOAD_TAG] == record["name"]
    res = materialize_partition(instance, resources, PARTITION, tags=request.tags)
    assert res.success and set(res.output_for_node("cycle_statistics").submitter) == {SUBMITTER}
    board = dg.materialize(ASSETS, selection=[leaderboard.key], instance=instance, resources=resources)
    assert set(board.output_for_node("leaderboard").submitter) == {SUBMITTER}
    # and the community hears of it, from the stored leaderboard, naming who sent it
    with Receiver() as rx:
        (storage.root / "notify.yaml").write_text(f"notify:\n  webhooks:\n    - url: {rx.url()}\n")
        empty = json.dumps({"after": 0, "rows": [], "leaders": {}})
        notify_leaderboard(dg.build_sensor_context(instance=instance, cursor=empty, resources={"storage": storage}))
    assert [b["event"] for b in rx.bodies] == ["leaderboard_entry", "new_leader"]
    assert f"(from {SUBMITTER})" in rx.bodies[0]["entries"] and rx.bodies[1]["hardware"] == record["hardware"]


def test_a_rejected_upload_goes_to_quarantine_with_the_moderators_reason(
    good_gpu_result, tmp_path, storage, instance, inbox
):
    signed_copy(good_gpu_result, inbox / "result", register_submitter(storage, tmp_path))
    evaluate(results_inbox, instance, storage=storage)
    [record] = storage.submissions()
    refused = moderate(storage, instance, record["name"], "reject")
    assert not refused.success and storage.submission(record["name"])["status"] == "pending"  # a reason is required
    assert not moderate(storage, instance, "no-such-folder").success
    assert moderate(storage, instance, record["name"], "reject", "warm-up too short for this model").success
    decided = storage.submission(record["name"])
    assert (decided["status"], decided["reason"]) == ("rejected", "warm-up too short for this model")
    assert "rejected by a moderator: warm-up too short" in _reason(storage, record["name"])
    assert not moderate(storage, instance, record["name"]).success  # decided once
    signed_copy(good_gpu_result, inbox / "result", register_submitter(storage, tmp_path / "again", "bob"), "bob")
    again = evaluate(results_inbox, instance, storage=storage)
    assert again.run_requests == [] and f"was submitted before as {record['name']}" in again.skip_reason.skip_message
    assert storage.submission(record["name"])["status"] == "rejected" and list(inbox.iterdir()) == []


def test_approval_rechecks_the_key_revoked_since_the_upload(good_gpu_result, tmp_path, storage, instance, inbox):
    signed_copy(good_gpu_result, inbox / "result", register_submitter(storage, tmp_path))
    evaluate(results_inbox, instance, storage=storage)
    [record] = storage.submissions()
    registry = KeyRegistry.load(storage.submitters_file)
    registry.revoke(record["key_fingerprint"], "2026-03-01T00:00:00+00:00")
    registry.save(storage.submitters_file)
    res = moderate(storage, instance, record["name"])
    assert not res.success
    failure = [e for e in res.all_events if e.event_type_value == "STEP_FAILURE"][0].event_specific_data.error
    assert "revoked-key" in failure.message + (failure.cause.message if failure.cause else "")
    assert storage.submission(record["name"])["status"] == "pending"


def test_an_approved_folder_edited_before_ingestion_is_refused(
    good_gpu_result, tmp_path, storage, resources, instance, inbox
):
    signed_copy(good_gpu_result, inbox / "result", register_submitter(storage, tmp_path))
    held = evaluate(results_inbox, instance, storage=storage)
    [record] = storage.submissions()
    assert moderate(storage, instance, record["name"]).success
    [request] = evaluate(results_inbox, instance, cursor=held.cursor, storage=storage).run_requests
    folder = storage.upload_dir(record["experiment"], record["hardware"]) / record["name"]
    signature = (folder / SIGNATURE_FILE).read_bytes()
    tables = read_tables(folder)
    tables.timeline["temp_c"] = tables.timeline.temp_c + 1.0  # consistent, valid, and not what was signed
    write_tables(tables, folder)
    (folder / SIGNATURE_FILE).write_bytes(signature)
    res = materialize_partition(instance, resources, PARTITION, tags=request.tags, raise_on_error=False)
    assert not res.success and instance.get_latest_materialization_event(dg.AssetKey("raw_measurements")) is None
    assert f"differ from what {SUBMITTER} signed" in _reason(storage, record["name"])


def test_the_same_tables_under_another_name_and_submitter_are_refused_naming_the_accepted_upload(
    good_gpu_result, tmp_path, storage, resources, instance, inbox
):
    """Duplicates are keyed on content alone: a re-upload of an accepted folder under a new name (here by another
    submitter) is no new submission, is never ingested, and its reason names the upload it repeats."""
    signed_copy(good_gpu_result, inbox / "result", register_submitter(storage, tmp_path))
    held = evaluate(results_inbox, instance, storage=storage)
    [record] = storage.submissions()
    assert moderate(storage, instance, record["name"]).success
    [request] = evaluate(results_inbox, instance, cursor=held.cursor, storage=storage).run_requests
    assert materialize_partition(instance, resources, PARTITION, tags=request.tags).success
    stored = {p: p.read_bytes() for p in storage.root.joinpath("assets").rglob("*") if p.is_file()}

    bob = register_submitter(storage, tmp_path / "bob", "bob")
    signed_copy(good_gpu_result, inbox / "renamed-copy", bob, "bob")
    res = evaluate(results_inbox, instance, cursor=held.cursor, storage=storage)

    assert [r for r in res.run_requests if r.tags[UPLOAD_TAG] != record["name"]] == []
    assert [r["name"] for r in storage.submissions()] == [record["name"]]
    reason = _reason(storage, "renamed-copy")
    assert reason.startswith("duplicate:") and f"as {record['name']} by {SUBMITTER}" in reason and "approved" in reason
    assert {p: p.read_bytes() for p in storage.root.joinpath("assets").rglob("*") if p.is_file()} == stored
    assert list(inbox.iterdir()) == []


@pytest.mark.parametrize("name", [".hidden-result", ".result.tmp-x1y2", "result.part", "result~"])
def test_a_hidden_or_temporary_folder_is_quarantined_with_its_reason_once_settled(
    good_gpu_result, tmp_path, storage, instance, inbox, monkeypatch, name
):
    signed_copy(good_gpu_result, inbox / name, register_submitter(storage, tmp_path))
    monkeypatch.setenv("LEM_INBOX_SETTLE_S", "3600")  # just copied: it may still be being written
    waiting = evaluate(results_inbox, instance, storage=storage)
    assert [p.name for p in inbox.iterdir()] == [name] and "waiting until it has been unchanged" in (
        waiting.skip_reason.skip_message
    )
    monkeypatch.setenv("LEM_INBOX_SETTLE_S", "0")  # settled
    res = evaluate(results_inbox, instance, storage=storage)
    assert res.run_requests == [] and list(inbox.iterdir()) == [] and storage.submissions() == []
    [kept] = list(storage.quarantine_dir.iterdir())
    assert "a hidden or temporary name" in (kept / "REASON.txt").read_text()
    assert f"quarantined {name}: " in res.skip_reason.skip_message


def test_a_reason_stays_one_line_when_the_folder_name_holds_newlines(good_gpu_result, storage, instance, inbox):
    import shutil

    shutil.copytree(good_gpu_result, inbox / "evil\nname\r\nline2")  # unsigned, and a name with line breaks
    evaluate(results_inbox, instance, storage=storage)
    [kept] = list(storage.quarantine_dir.iterdir())
    reason = (kept / "REASON.txt").read_text()
    assert reason.count("\n") == 1 and reason.endswith("\n") and "\r" not in reason
    assert "evil\\nname\\r\\nline2" in reason  # the name, escaped, on the one line
