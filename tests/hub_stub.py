"""A loopback stand-in for the Hugging Face Hub API (standard library only), enough for huggingface_hub's
create_repo / repo_info / list_repo_tree / create_commit (regular uploads) / create_tag / validate-yaml, and
hf_hub_download of a file (HEAD and GET on resolve/).

It keeps repos in memory as commits of {path: bytes}, checks `parentCommit`, records every request's
Authorization header, and can be told to fail chosen requests (`faults`: [(regex on "METHOD /path", kind)], each
used once): "500", "timeout" (no answer for `stall_s`), "drop" (the connection closes before the request is handled)
or "lost-answer" (handled, then the connection closes before the answer)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: list[tuple[str, dict[str, bytes], str]] = field(default_factory=list)  # (oid, files, message)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def head(self) -> str:
        return self.commits[-1][0]

    @property
    def files(self) -> dict[str, bytes]:
        return self.commits[-1][1]


class HubStub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.auth_headers: list[str | None] = []
        self.faults: list[tuple[str, str]] = []
        self.requests: list[str] = []  # "METHOD /path" of every request, in order
        self.stall_s = 2.0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, code: int, body) -> None:
                if getattr(self, "lose_answer", False):
                    self.close_connection = True
                    return
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _fault(self) -> bool:
                """Apply the first fault matching this request; True: the request is not handled."""
                line = f"{self.command} {urlparse(self.path).path}"
                with stub.lock:
                    stub.requests.append(line)
                    fault = next((f for f in stub.faults if re.search(f[0], line)), None)
                    if fault:
                        stub.faults.remove(fault)
                kind = fault[1] if fault else None
                if kind == "500":
                    self._reply(500, {"error": "stub: injected internal error"})
                elif kind in ("timeout", "drop"):
                    if kind == "timeout":
                        time.sleep(stub.stall_s)
                    self.close_connection = True
                self.lose_answer = kind == "lost-answer"
                return kind in ("500", "timeout", "drop")

            def do_GET(self):
                stub.auth_headers.append(self.headers.get("Authorization"))
                if self._fault():
                    return
                with stub.lock:
                    stub.get(self)

            def do_HEAD(self):
                with stub.lock:
                    if not stub.resolve(self, body=False):
                        self.send_response(404)
                        self.send_header("Content-Length", "0")
                        self.end_headers()

            def do_POST(self):
                stub.auth_headers.append(self.headers.get("Authorization"))
                body = self._body()
                if self._fault():
                    return
                with stub.lock:
                    stub.post(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _commit(self, repo: Repo, files: dict[str, bytes], message: str) -> str:
        oid = hashlib.sha1(
            f"{repo.repo_id}{len(repo.commits)}{message}".encode() + b"".join(sorted(files.values()))
        ).hexdigest()
        repo.commits.append((oid, files, message))
        return oid

    def _info(self, repo: Repo) -> dict:
        return {
            "id": repo.repo_id,
            "_id": repo.repo_id,
            "sha": repo.head,
            "private": repo.private,
            "author": repo.repo_id.split("/")[0],
            "siblings": [{"rfilename": p} for p in sorted(repo.files)],
            "tags": [],
            "downloads": 0,
            "likes": 0,
            "lastModified": "2026-11-27T00:00:00.000Z",
            "createdAt": "2026-11-27T00:00:00.000Z",
        }

    def resolve(self, h, body: bool = True) -> bool:
        """A file of a dataset at a revision (a branch, tag or commit), as hf_hub_download fetches it; False when the
        path is not a resolve URL."""
        m = re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", unquote(urlparse(h.path).path))
        if not m:
            return False
        repo, rev, name = self.repos.get(m.group(1)), m.group(2), m.group(3)
        commits = [] if repo is None else repo.commits
        target = commits[-1][0] if rev == "main" and commits else (repo.tags.get(rev, rev) if repo else rev)
        commit = next((c for c in commits if c[0] == target), None)
        data = None if commit is None else commit[1].get(name)
        if data is None:
            h.send_response(404)
            h.send_header("X-Error-Code", "EntryNotFound")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return True
        h.send_response(200)
        h.send_header("X-Repo-Commit", commit[0])
        h.send_header("ETag", f'"{git_blob_sha(data)}"')
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)
        return True

    def get(self, h) -> None:
        if self.resolve(h):
            return
        path = unquote(urlparse(h.path).path)
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if m:
            repo = self.repos.get(m.group(1))
            return h._reply(200, self._info(repo)) if repo else h._reply(404, {"error": "Repository not found"})
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
        if m:
            repo = self.repos.get(m.group(1))
            if repo is None:
                return h._reply(404, {"error": "Repository not found"})
            prefix = (m.group(3) or "").strip("/")
            entries = [
                {"type": "file", "oid": git_blob_sha(d), "size": len(d), "path": p}
                for p, d in sorted(repo.files.items())
                if p.startswith(prefix)
            ]
            return h._reply(200, entries)
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/refs", path)
        if m and m.group(1) in self.repos:
            repo = self.repos[m.group(1)]
            return h._reply(
                200,
                {
                    "branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.head}],
                    "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": c} for t, c in repo.tags.items()],
                    "converts": [],
                },
            )
        h._reply(404, {"error": f"stub: no route GET {path}"})

    def post(self, h, body: bytes) -> None:
        path = unquote(urlparse(h.path).path)
        if path == "/api/repos/create":
            req = json.loads(body)
            repo_id = f"{req.get('organization') or 'user'}/{req['name']}" if "/" not in req["name"] else req["name"]
            url = f"{self.url}/datasets/{repo_id}"
            if repo_id in self.repos:
                return h._reply(409, {"error": "You already created this dataset repo", "url": url})
            repo = Repo(repo_id, bool(req.get("private")))
            self._commit(repo, {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"}, "initial commit")
            self.repos[repo_id] = repo
            return h._reply(200, {"url": url, "name": repo_id, "id": repo_id})
        if path == "/api/validate-yaml":
            return h._reply(200, {"errors": [], "warnings": []})
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/preupload/([^/]+)", path)
        if m:
            repo = self.repos[m.group(1)]
            files = [
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha(repo.files[f["path"]]) if f["path"] in repo.files else None,
                }
                for f in json.loads(body)["files"]
            ]
            return h._reply(200, {"files": files, "commitOid": repo.head})
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/commit/([^/]+)", path)
        if m:
            repo = self.repos[m.group(1)]
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            header = next(line["value"] for line in lines if line["key"] == "header")
            if header.get("parentCommit") and header["parentCommit"] != repo.head:
                return h._reply(
                    412,
                    {
                        "error": f"A commit has happened since. Parent commit {header['parentCommit']} is not head "
                        f"{repo.head}"
                    },
                )
            files = dict(repo.files)
            for line in lines:
                if line["key"] == "file":
                    files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                elif line["key"] == "deletedFile":
                    files.pop(line["value"]["path"], None)
                elif line["key"] == "lfsFile":
                    return h._reply(400, {"error": "stub: LFS uploads not supported (preupload said regular)"})
            oid = self._commit(repo, files, header["summary"])
            return h._reply(
                200,
                {
                    "commitOid": oid,
                    "commitUrl": f"{self.url}/datasets/{repo.repo_id}/commit/{oid}",
                    "pullRequestUrl": None,
                },
            )
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/tag/([^/]+)", path)
        if m:
            repo = self.repos[m.group(1)]
            req = json.loads(body)
            if req["tag"] in repo.tags:
                return h._reply(409, {"error": f"tag {req['tag']} already exists"})
            rev = m.group(2)
            repo.tags[req["tag"]] = repo.head if rev == "main" else rev
            return h._reply(200, {})
        h._reply(404, {"error": f"stub: no route POST {path}"})
