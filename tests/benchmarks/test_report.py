"""docs/benchmarks regenerates itself: every committed block equals its regeneration from the raw files and the
ledger (a figure edited by hand fails here), regeneration is deterministic, and a figure resting only on a file
assembled by hand says so."""

import re

import pytest

from benchmarks.report.blocks import Blocks
from benchmarks.report.build import HOW_TO_FIX, MARKER, differences, regenerate, sources_line
from benchmarks.report.raw import DOCS, Raw

REPO_TARGETS = DOCS.parents[1] / "benchmarks" / "targets"


@pytest.fixture(scope="module")
def docs():
    raw = Raw()
    try:
        yield regenerate(raw)
    finally:
        raw.close()


def test_every_committed_block_equals_its_regeneration(docs):
    diffs = differences(docs)
    assert not diffs, f"{len(diffs)} block(s) differ: {HOW_TO_FIX}\n" + "\n".join(diffs)
    assert sum(len(MARKER.findall(fresh)) for _, fresh in docs.values()) >= 80


def test_regeneration_is_deterministic(docs):
    raw = Raw()
    try:
        again = regenerate(raw)
    finally:
        raw.close()
    assert {p: fresh for p, (_, fresh) in again.items()} == {p: fresh for p, (_, fresh) in docs.items()}


def test_a_figure_edited_by_hand_is_caught_and_prose_is_not(docs):
    """The check CI runs, fed the committed README with one digit of one figure changed inside a block: it names that
    block; the same change in prose outside every block passes."""
    readme = DOCS / "README.md"
    committed, fresh = docs[readme]
    block = next(m for m in MARKER.finditer(committed) if m["name"] == "s13-reference-pytorch")
    figure = re.search(r"\d\.\d{5}", block["body"])  # the first J/token of the table
    last = block.start("body") + figure.end() - 1
    edited = committed[:last] + ("1" if committed[last] == "0" else "0") + committed[last + 1 :]
    found = differences({readme: (edited, fresh)})
    assert len(found) == 1 and "block s13-reference-pytorch" in found[0]
    prose = committed.replace("carries no measured figure", "carries no measured figure 1", 1)
    assert prose != committed and differences({readme: (prose, fresh)}) == []


def test_a_block_without_a_function_or_a_function_without_a_block_is_refused(tmp_path):
    (tmp_path / "platform-gpu").mkdir()
    (tmp_path / "README.md").write_text("x <!-- report:nope --><!-- /report -->\n")
    (tmp_path / "platform-gpu" / "README.md").write_text("")
    raw = Raw(root=tmp_path)
    try:
        with pytest.raises(ValueError, match="block 'nope' has no function"):
            regenerate(raw, Blocks())
        unused = Blocks()
        unused("orphan")(lambda raw: "1")
        (tmp_path / "README.md").write_text("no blocks\n")
        with pytest.raises(ValueError, match="report blocks no doc uses: orphan"):
            regenerate(raw, unused)
    finally:
        raw.close()


def test_a_figure_resting_only_on_a_hand_file_says_so(docs):
    line = sources_line(["raw/x.hand.txt"], DOCS, DOCS)
    assert "rest only on a file assembled by hand" in line
    assert "rest only" not in sources_line(["raw/x.hand.txt", "raw/y.log"], DOCS, DOCS)
    committed, _ = docs[DOCS / "README.md"]
    body = next(m["body"] for m in MARKER.finditer(committed) if m["name"] == "s8-parity-cpu")
    assert "rest only on a file assembled by hand" in body and "vllm_parity_cpu.hand.txt" in body
    inline = next(m["body"] for m in MARKER.finditer(committed) if m["name"] == "s13-calls")
    assert inline.endswith("(only in the hand-assembled `device-calls.hand.txt`)")


def test_every_hand_file_is_labelled_on_its_first_line():
    for path in (DOCS / "raw").rglob("*.hand.*"):
        assert path.read_text().startswith("# HAND-ASSEMBLED: "), path
    named = {p.name for p in (DOCS / "raw").rglob("*") if re.search(r"\.hand\.", p.name)}
    assert {"machine1-replies.hand.txt", "device-calls.hand.txt", "commands.hand.txt"} <= named


def test_no_measured_figure_is_typed_outside_a_block():
    """Prose keeps configuration (batch 16, 128 tokens, 3 cycles) but no result: decimals and percentages appear
    only inside blocks."""
    for name in ("README.md", "platform-gpu/README.md"):
        text = MARKER.sub("", (DOCS / name).read_text())
        text = re.sub(r"```.*?```", "", text, flags=re.S)  # commands
        prose = re.sub(r"`[^`]*`", "", text)  # file names, keys, commands
        found = re.findall(r"(?<![\w.-])\d+\.\d+\s?(?:%|W|J|s|ms|tok/s|GB/s)(?!\w)", prose)
        assert not found, f"{name}: figures typed outside a block: {found[:10]}"


def test_a_run_is_judged_by_its_recorded_target_until_an_amendment_says_why_it_changed(tmp_path):
    import sys

    from benchmarks import ledger as L
    from benchmarks.report.evidence import verdicts

    target = tmp_path / "t.yaml"
    target.write_text((DOCS.parents[1] / "benchmarks" / "targets" / "parity-64.yaml").read_text())
    write = "import json, sys; json.dump({'series': {'ratio': [1.0] * 10}}, open(sys.argv[1] + '/result.json', 'w'))"
    ledger, runs = tmp_path / "ledger.jsonl", tmp_path / "runs"
    L.run("t", [sys.executable, "-c", write, "{run_dir}"], target, ledger, runs, echo=False)

    def judged() -> list[str]:
        raw = Raw(root=tmp_path, ledger=ledger, runs=runs)
        try:
            return verdicts(raw, raw.ledger().runs[0])
        finally:
            raw.close()

    assert judged()[0].startswith("met: median 1, 95 % bootstrap CI 1–1")
    target.write_text(target.read_text().replace("threshold: 0.97", "threshold: 1.01"))
    said = judged()
    assert said[0].startswith("met") and "changed after this run with no amendment" in said[1]
    L.amend(target, "1 % above parity was asked for", ledger)
    said = judged()
    assert said[0].startswith("not met") and said[1].endswith("1 % above parity was asked for")


def test_a_run_with_several_targets_is_judged_by_each_under_its_name(tmp_path):
    import sys

    from benchmarks import ledger as L
    from benchmarks.report.evidence import verdicts

    targets = REPO_TARGETS / "warm-campaign-pass1.yaml", REPO_TARGETS / "warm-campaign-pass2.yaml"
    write = (
        "import json, sys; json.dump({'series': {'share_pass1': [0.7], 'share_pass2': [0.8]}}, "
        "open(sys.argv[1] + '/result.json', 'w'))"
    )
    ledger, runs = tmp_path / "ledger.jsonl", tmp_path / "runs"
    L.run("t", [sys.executable, "-c", write, "{run_dir}"], list(targets), ledger, runs, echo=False)
    raw = Raw(root=tmp_path, ledger=ledger, runs=runs)
    try:
        run = raw.ledger().runs[0]
        assert [t["path"] for t in run.targets()] == [f"benchmarks/targets/{t.name}" for t in targets]
        said = verdicts(raw, run)
    finally:
        raw.close()
    assert said == [
        "warm-campaign-pass1.yaml: met: min 0.7 (rule: min >= 0.6), 1 values",
        "warm-campaign-pass2.yaml: not met: min 0.8 (rule: min >= 0.85), 1 values",
    ]


def test_start_phases_splits_each_new_engine_start_from_vllms_log_stamps():
    from benchmarks.report.evidence import start_phases

    log = "\n".join(
        [
            "INFO 12-07 08:51:50 [api_utils.py:273] non-default args: {...}",
            "(EngineCore pid=1) INFO 12-07 08:52:23 [core.py:114] Initializing a V1 LLM engine",
            "(EngineCore pid=1) INFO 12-07 08:52:54 [core.py:337] init engine (profile, ...) took 27.80 s",
            "  ready in 89.1 s (engine start 80.5 s; reused False; spare False; engine core spawn)",
            "  ready in 0.2 s (engine start 0.0 s; reused True; spare False; engine core spawn)",  # reused: no start
            "INFO 12-07 08:54:02 [core_client.py:662] [shutdown] MPClient: complete",
            "INFO 12-07 08:54:12 [api_utils.py:273] non-default args: {...}",
            "(EngineCore pid=2) INFO 12-07 08:54:27 [core.py:114] Initializing a V1 LLM engine",
            "(EngineCore pid=2) INFO 12-07 08:54:36 [core.py:337] init engine (profile, ...) took 5.33 s",
            "  ready in 30.5 s (engine start 30.2 s; reused False; spare True; engine core spawn)",
        ]
    )
    cold, spare = start_phases(log)
    assert cold["shutdown"] is None and not cold["spare"] and cold["method"] == "spawn"
    assert [(p["core"] - p["args"]).seconds for p in (cold, spare)] == [33, 15]
    assert [(p["init"] - p["core"]).seconds for p in (cold, spare)] == [31, 9]
    assert spare["spare"] and (spare["args"] - spare["shutdown"]).seconds == 10
