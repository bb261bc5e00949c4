"""The site's submissions page: who, when, status, from plain submission records, linked from the index."""

from html.parser import HTMLParser

import pandas as pd

from gpu_ops.leaderboard import build_leaderboard
from gpu_ops.site import build_site

RECORDS = [
    {
        "name": "run-a-1234abcd",
        "submitter": "alice-lab",
        "experiment": "builtin-tiny-llama__pytorch",
        "hardware": "h100-80gb-hbm3",
        "received_at": "2026-03-01T10:00:00+00:00",
        "status": "approved",
        "decided_at": "2026-03-01T12:00:00+00:00",
        "reason": None,
    },
    {
        "name": "run-b-9876fedc",
        "submitter": "bob",
        "experiment": "builtin-tiny-llama__vllm",
        "hardware": "l4-24gb",
        "received_at": "2026-03-02T10:00:00+00:00",
        "status": "rejected",
        "decided_at": "2026-03-02T11:00:00+00:00",
        "reason": "<script>alert(1)</script> warm-up too short",
    },
]


class Cells(HTMLParser):
    """The body rows of a page's table as {column class: text}."""

    def __init__(self):
        super().__init__()
        self.rows, self._col = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append({})
        elif tag == "td":
            self._col = dict(attrs)["class"]
            self.rows[-1][self._col] = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self._col = None

    def handle_data(self, data):
        if self._col:
            self.rows[-1][self._col] += data


def test_submissions_page_lists_who_when_and_status_newest_first(tmp_path):
    site = build_site(build_leaderboard(pd.DataFrame()), {}, tmp_path / "site", submissions=RECORDS)
    page = (site.folder / "submissions.html").read_text()
    parser = Cells()
    parser.feed(page)
    rows = [r for r in parser.rows if r]  # the header row has no cells
    assert [(r["submitter"], r["status"]) for r in rows] == [("bob", "rejected"), ("alice-lab", "approved")]
    assert [r["received_at"] for r in rows] == [r["received_at"] for r in reversed(RECORDS)]
    assert rows[0]["reason"] == RECORDS[1]["reason"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; warm-up too short" in page  # a reason is text, never markup
    assert 'href="submissions.html"' in (site.folder / "index.html").read_text()


def test_without_records_there_is_no_page_and_no_link(tmp_path):
    site = build_site(build_leaderboard(pd.DataFrame()), {}, tmp_path / "site")
    assert not (site.folder / "submissions.html").exists()
    assert "submissions.html" not in (site.folder / "index.html").read_text()
    empty = build_site(build_leaderboard(pd.DataFrame()), {}, tmp_path / "empty", submissions=[])
    assert "No signed submissions yet" in (empty.folder / "submissions.html").read_text()
