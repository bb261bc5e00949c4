"""The report's blocks, and rewriting or checking them in the docs.

A block is `<!-- report:NAME -->` ... `<!-- /report -->` in a Markdown file. Written on one line it is an inline figure
inside a sentence; with a line break after the opening marker it is a block of its own (a table, a list), and the
report adds its sources below it. Every block in the docs must have a function here, and every function a block.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

from benchmarks.report.blocks import Block
from benchmarks.report.raw import DOCS, Raw, is_hand

MARKER = re.compile(r"<!-- report:(?P<name>[a-z0-9][a-z0-9-]*) -->(?P<body>.*?)<!-- /report -->", re.S)
DOC_FILES = ("README.md", "platform-gpu/README.md")
HOW_TO_FIX = (
    "run `python -m benchmarks.report` and commit what it writes; if a raw file or the code behind a figure "
    "changed, say why in the commit (a figure is never edited by hand)"
)


def all_blocks() -> dict[str, Block]:
    from benchmarks.report import answers, early, evidence, platform, sessions

    out: dict[str, Block] = {}
    for module in (early, sessions, platform, evidence, answers):
        twice = set(out) & set(module.blocks)
        if twice:
            raise ValueError(f"report blocks defined in two modules: {', '.join(sorted(twice))}")
        out.update(module.blocks)
    return out


def sources_line(used: list[str], doc_dir: Path, root: Path) -> str:
    rel = [Path(root / u).relative_to(doc_dir).as_posix() if (root / u).is_relative_to(doc_dir) else f"../{u}"
           for u in used]  # fmt: skip
    hand = [r for r, u in zip(rel, used) if is_hand(u)]
    line = "<sub>Source: " + ", ".join(f"`{r}`" for r in rel) + ".</sub>"
    if hand and len(hand) == len(rel):
        line += " **These figures rest only on a file assembled by hand** (" + ", ".join(f"`{h}`" for h in hand)
        line += "): no file produced by a command backs them."
    elif hand:
        line += " Assembled by hand: " + ", ".join(f"`{h}`" for h in hand) + "."
    return line


def render(raw: Raw, name: str, fn: Block, doc_dir: Path, inline: bool) -> str:
    raw.used = []
    text = fn(raw).strip("\n")
    if inline:
        hand = [u for u in raw.used if is_hand(u)]
        if hand and len(hand) == len(raw.used):
            text += f" (only in the hand-assembled `{Path(hand[0]).name}`)"
        return text
    return f"\n{text}\n\n{sources_line(raw.used, doc_dir, raw.root)}\n" if raw.used else f"\n{text}\n"


def regenerate(raw: Raw, blocks: dict[str, Block] | None = None) -> dict[Path, tuple[str, str]]:
    """{doc: (committed text, regenerated text)} for every doc file. Unknown or unused blocks are errors."""
    blocks = all_blocks() if blocks is None else blocks
    out, seen = {}, set()
    for name in DOC_FILES:
        path = raw.root / name
        committed = path.read_text()

        def replace(m: re.Match, path=path) -> str:
            block = m["name"]
            if block not in blocks:
                raise ValueError(f"{path.name}: block {block!r} has no function in benchmarks/report")
            seen.add(block)
            body = render(raw, block, blocks[block], path.parent, inline=not m["body"].startswith("\n"))
            return f"<!-- report:{block} -->{body}<!-- /report -->"

        out[path] = (committed, MARKER.sub(replace, committed))
    unused = set(blocks) - seen
    if unused:
        raise ValueError(f"report blocks no doc uses: {', '.join(sorted(unused))}; add their markers or remove them")
    return out


def differences(docs: dict[Path, tuple[str, str]]) -> list[str]:
    """One entry per block whose committed text differs from its regeneration, with a short diff."""
    out = []
    for path, (committed, fresh) in docs.items():
        old = {m["name"]: m["body"] for m in MARKER.finditer(committed)}
        for m in MARKER.finditer(fresh):
            if old.get(m["name"]) != m["body"]:
                diff = difflib.unified_diff(
                    old.get(m["name"], "").splitlines(), m["body"].splitlines(), "committed", "regenerated", lineterm=""
                )
                out.append(f"{path.relative_to(DOCS.parents[1])}: block {m['name']}\n" + "\n".join(list(diff)[:12]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 when a committed block differs")
    args = ap.parse_args(argv)
    raw = Raw()
    try:
        docs = regenerate(raw)
    finally:
        raw.close()
    diffs = differences(docs)
    if args.check:
        for d in diffs:
            print(d, file=sys.stderr)
        if diffs:
            print(f"{len(diffs)} block(s) differ from their regeneration: {HOW_TO_FIX}", file=sys.stderr)
        return 1 if diffs else 0
    for path, (committed, fresh) in docs.items():
        if fresh != committed:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(fresh)
            tmp.replace(path)
    print(f"{sum(len(MARKER.findall(f)) for _, f in docs.values())} blocks written, {len(diffs)} changed")
    return 0
