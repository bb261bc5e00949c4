"""Reading docs/benchmarks' raw files for the report, and remembering which files each block read.

Every read goes through `Raw`, which notes the file (relative to docs/benchmarks), so the report prints each block's
sources beside it and says so when a block rests only on files assembled by hand (`*.hand.*`, `raw/hand/`). Archives
(`.tgz` of result folders or a Dagster instance) are unpacked once per report into a temporary folder.
"""

from __future__ import annotations

import json
import re
import sqlite3
import tarfile
import tempfile
from pathlib import Path

from benchmarks.ledger import LEDGER, RAW_RUNS, Ledger

DOCS = LEDGER.parent
HAND_LINE = "# HAND-ASSEMBLED:"


class ReportError(Exception):
    """A raw file lacks what a block needs: the message names the file and what was looked for."""


def is_hand(rel: str) -> bool:
    return ".hand." in Path(rel).name or "/hand/" in f"/{rel}"


class Raw:
    def __init__(self, root: Path = DOCS, ledger: Path = LEDGER, runs: Path = RAW_RUNS):
        self.root, self.ledger_path, self.runs_root = Path(root), Path(ledger), Path(runs)
        self.used: list[str] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="lem-report-")
        self._archives: dict[str, Path] = {}
        self._folders: dict[str, object] = {}
        self._ledger: Ledger | None = None

    def close(self) -> None:
        self._tmp.cleanup()

    def note(self, rel: str) -> str:
        if rel not in self.used:
            self.used.append(rel)
        return rel

    def path(self, rel: str) -> Path:
        path = self.root / self.note(rel)
        if not path.exists():
            raise ReportError(f"{rel}: no such file under {self.root}")
        return path

    def text(self, rel: str) -> str:
        return self.path(rel).read_text(errors="replace")

    def json(self, rel: str):
        return json.loads(self.text(rel))

    def find(self, rel: str, pattern: str, flags: int = re.M) -> re.Match:
        """The first match of `pattern` in the file; a file without one is a ReportError naming both."""
        match = re.search(pattern, self.text(rel), flags)
        if match is None:
            raise ReportError(f"{rel}: no line matches {pattern!r}")
        return match

    def all(self, rel: str, pattern: str, flags: int = re.M) -> list[re.Match]:
        found = list(re.finditer(pattern, self.text(rel), flags))
        if not found:
            raise ReportError(f"{rel}: no line matches {pattern!r}")
        return found

    def numbers(self, rel: str, pattern: str) -> list[float]:
        """Group 1 of every match, as numbers."""
        return [float(m.group(1)) for m in self.all(rel, pattern)]

    def archive(self, rel: str) -> Path:
        """The archive unpacked (once) into the report's temporary folder."""
        if rel not in self._archives:
            out = Path(self._tmp.name) / f"a{len(self._archives)}"
            with tarfile.open(self.path(rel)) as tar:
                tar.extractall(out, filter="data")
            self._archives[rel] = out
        self.note(rel)
        return self._archives[rel]

    def folders(self, rel: str) -> list[tuple[str, object]]:
        """Every result folder in a folder or an archive, read and schema-checked (gpu_ops.results.read_tables):
        [(its path inside, its tables)], sorted by path."""
        from gpu_ops.results import read_tables

        base = self.archive(rel) if rel.endswith((".tgz", ".tar.gz")) else self.path(rel)
        out = []
        for summary in sorted(base.rglob("summary.json")):
            key = f"{rel}::{summary.parent.relative_to(base).as_posix()}"
            if key not in self._folders:
                self._folders[key] = read_tables(summary.parent)
            out.append((summary.parent.relative_to(base).as_posix(), self._folders[key]))
        if not out:
            raise ReportError(f"{rel}: no result folder (summary.json) in it")
        return out

    def folder(self, rel: str, contains: str = ""):
        """The one result folder of `rel` whose path inside contains `contains`."""
        found = [t for name, t in self.folders(rel) if contains in name]
        if len(found) != 1:
            raise ReportError(f"{rel}: {len(found)} result folders match {contains!r}; expected one")
        return found[0]

    def sqlite(self, rel: str, archive: str, query: str) -> list[tuple]:
        """Rows of a query on an SQLite file inside an archive (a Dagster instance's run storage)."""
        path = self.archive(archive) / rel
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute(query).fetchall()

    def ledger(self) -> Ledger:
        self.note(self.ledger_path.relative_to(self.root).as_posix())
        if self._ledger is None:
            self._ledger = Ledger.load(self.ledger_path)
        return self._ledger

    def run_dir(self, run) -> Path:
        return self.runs_root / run.raw_dir
