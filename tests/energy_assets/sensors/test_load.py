"""A backlog in the inboxes drains in bounded sensor ticks with a cursor: every item is held or requested exactly
once, none dropped, each tick takes at most LEM_INBOX_BATCH items. The 500-upload / 50-file load is
benchmarks/inbox_load.py; this is its smallest run that shows the batching."""

import math

import pytest

from benchmarks.inbox_load import SENSOR_TIMEOUT_S, run_load, shown, time_page
from tests.gpu_ops.site.test_site import browser  # noqa: F401  (the fixture: Debian's Chromium through Playwright)


@pytest.mark.timeout(600)
def test_a_backlog_drains_in_bounded_ticks_nothing_dropped_or_requested_twice(
    good_gpu_result, tmp_path, instance, monkeypatch
):
    monkeypatch.setenv("LEM_INBOX_SETTLE_S", "0")
    monkeypatch.setenv("LEM_INBOX_BATCH", "3")
    uploads, experiments = 7, 5
    res = run_load(tmp_path, good_gpu_result, uploads, experiments, instance)  # raises if one is dropped or doubled
    assert len(res["results inbox (hold)"]) == math.ceil(uploads / 3)
    # batches of 3 requests, then one tick that finds nothing left
    assert len(res["results inbox (request)"]) == math.ceil(uploads / 3) + 1
    assert len(res["experiment inbox"]) == math.ceil(experiments / 3) + 1
    assert max(t for k, v in res.items() if k.endswith(("hold)", "request)", "inbox")) for t in v) < SENSOR_TIMEOUT_S
    assert sorted(r["status"] for r in res["storage"].submissions()) == ["approved"] * uploads
    assert instance.get_dynamic_partitions("hardware") == sorted(
        {"h100-80gb-hbm3", *(f"load-hw-{i:03d}" for i in range(experiments))}
    )


def test_a_page_timing_waits_for_its_content_and_says_so_when_it_never_shows(browser):  # noqa: F811
    context = browser.new_context()
    page = "data:text/html,<p>Materialized (50)</p>"
    assert 0 < time_page(context, page, "Materialized (50)", timeout_s=10) < 10
    with pytest.raises(RuntimeError, match=r"did not show 'Materialized \(51\)' within 1 s"):
        time_page(context, page, "Materialized (51)", timeout_s=1)
    # the UI writes 1650 as "1,650": a wait for "1650" alone timed out in the first full-size run
    board = "data:text/html,<p>rows</p><p>1,650</p>"
    assert 0 < time_page(context, board, shown("1650", "1,650"), timeout_s=10) < 10
    with pytest.raises(RuntimeError, match="did not show"):
        time_page(context, board, "1650", timeout_s=1)
    context.close()
