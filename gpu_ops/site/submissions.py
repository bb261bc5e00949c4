"""The site's submissions page: who sent which signed result, when, and what the moderators decided.

It reads plain submission records (the platform's storage/submissions/*.json: name, submitter, experiment, hardware,
signed_at, received_at, status, decided_at, reason), so any list of such dicts renders.
"""

import html

COLUMNS = (
    ("submitter", "submitter"),
    ("experiment", "experiment"),
    ("hardware", "hardware"),
    ("received_at", "received"),
    ("status", "status"),
    ("decided_at", "decided"),
    ("reason", "reason"),
)


def submissions_body(records: list[dict]) -> str:
    """The page's HTML body: newest first; a rejected submission shows the moderator's reason."""
    rows = "".join(
        "<tr>" + "".join(f'<td class="{key}">{html.escape(str(r.get(key) or ""))}</td>' for key, _ in COLUMNS) + "</tr>"
        for r in sorted(records, key=lambda r: str(r.get("received_at")), reverse=True)
    )
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in COLUMNS)
    empty = "" if records else '<div class="empty">No signed submissions yet.</div>'
    return f"""<p><a href="index.html">← leaderboard</a></p>
<h1>Submissions</h1>
<div class="sub">Signed result folders uploaded to this platform. <em>pending</em>: waiting for a moderator;
<em>approved</em>: ingested (its leaderboard rows name the submitter);
<em>rejected</em>: kept out, with the reason.</div>
{empty}<div style="overflow-x:auto"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"""
