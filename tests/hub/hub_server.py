"""A small in-memory server speaking the part of the Hugging Face Hub HTTP API that
``huggingface_hub`` uses to create repos, commit files and download them.

Endpoints (model repos; ``{repo}`` is ``namespace/name``, ``{rev}`` a branch or a commit sha):

- ``GET  /api/whoami-v2``
- ``POST /api/repos/create``                         ``{"name", "organization", "visibility"}``
- ``POST /api/validate-yaml``                        front matter of a README.md must parse
- ``GET  /api/models/{repo}[/revision/{rev}]``       repo info: ``id``, ``sha``, ``siblings``
- ``GET  /api/models/{repo}/tree/{rev}[/{path}]``    file listing with sizes and blob oids
- ``POST /api/models/{repo}/preupload/{rev}``        every file is uploaded "regular" (no LFS)
- ``POST /api/models/{repo}/commit/{rev}``           NDJSON: header, file (base64), deletedFile,
  deletedFolder
- ``POST /api/models/{repo}/branch/{branch}``        ``{"startingPoint": rev}``
- ``GET|HEAD /{repo}/resolve/{rev}/{path}``          body with ``ETag``, ``X-Repo-Commit``,
  ``Content-Length``; errors carry ``X-Error-Code`` as the Hub's do

Every request is appended to :attr:`HubServer.requests` as ``(method, path, authorization)`` so
tests can assert what the client sent (or that it sent nothing).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

_SHA = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(data: bytes) -> str:
    """The git blob id of ``data``: what the Hub reports as a regular file's oid and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    files: dict[str, bytes]
    message: str
    parent: str | None


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, rev: str) -> Commit | None:
        if rev in self.branches:
            return self.commits[self.branches[rev]]
        return self.commits.get(rev) if _SHA.match(rev) else None


class HubServer:
    """:meth:`start` it, point ``huggingface_hub`` at :attr:`url`, :meth:`stop` it."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # --- repository operations (called with the lock held) ---------------------------------

    def new_commit(self, repo: Repo, files: dict[str, bytes], message: str, parent: str | None):
        self._counter += 1
        oid = hashlib.sha1(f"{repo.repo_id}\n{self._counter}\n{message}".encode()).hexdigest()
        commit = Commit(oid, files, message, parent)
        repo.commits[oid] = commit
        return commit

    def create_repo(self, repo_id: str, private: bool) -> Repo:
        repo = Repo(repo_id, private)
        attributes = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
        initial = self.new_commit(repo, attributes, "initial commit", None)
        repo.branches["main"] = initial.oid
        self.repos[repo_id] = repo
        return repo


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    # --- plumbing ------------------------------------------------------------------------

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str | None, message: str, **headers: str) -> None:
        extra = {"X-Error-Message": message, **headers}
        if code:
            extra["X-Error-Code"] = code
        self._json(status, {"error": message}, extra)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _route(self) -> None:
        parts = urlsplit(self.path)
        self.query = parse_qs(parts.query)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        with self.hub.lock:
            self.hub.requests.append((self.command, parts.path, self.headers.get("Authorization")))
            try:
                self._dispatch(segments)
            except (BrokenPipeError, ConnectionResetError):
                pass

    do_GET = do_HEAD = do_POST = _route

    def _dispatch(self, seg: list[str]) -> None:
        if seg[:2] == ["api", "whoami-v2"]:
            return self._json(200, {"type": "user", "name": "tester", "auth": {}})
        if seg[:3] == ["api", "repos", "create"] and self.command == "POST":
            return self._create_repo()
        if seg[:2] == ["api", "validate-yaml"] and self.command == "POST":
            return self._validate_yaml()
        if seg[:2] == ["api", "models"] and len(seg) >= 4:
            repo = self._repo("/".join(seg[2:4]))
            if repo is None:
                return
            rest = seg[4:]
            if not rest and self.command == "GET":
                return self._info(repo, "main")
            if rest[:1] == ["revision"] and len(rest) == 2 and self.command == "GET":
                return self._info(repo, rest[1])
            if rest[:1] == ["tree"] and len(rest) >= 2 and self.command == "GET":
                return self._tree(repo, rest[1], "/".join(rest[2:]))
            if rest[:1] == ["preupload"] and len(rest) == 2 and self.command == "POST":
                return self._preupload(repo, rest[1])
            if rest[:1] == ["commit"] and len(rest) == 2 and self.command == "POST":
                return self._commit(repo, rest[1])
            if rest[:1] == ["branch"] and len(rest) == 2 and self.command == "POST":
                return self._branch(repo, rest[1])
        if len(seg) >= 5 and seg[2] == "resolve" and self.command in ("GET", "HEAD"):
            repo = self._repo("/".join(seg[:2]))
            if repo is None:
                return
            return self._resolve(repo, seg[3], "/".join(seg[4:]))
        return self._error(404, None, f"no route for {self.command} {self.path}")

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository not found: {repo_id}")
        return repo

    def _commit_for(self, repo: Repo, rev: str) -> Commit | None:
        commit = repo.resolve(rev)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return commit

    # --- endpoints -----------------------------------------------------------------------

    def _create_repo(self) -> None:
        payload = json.loads(self._body() or b"{}")
        name, org = payload.get("name"), payload.get("organization")
        repo_id = f"{org}/{name}" if org else f"tester/{name}"
        if repo_id in self.hub.repos:
            message = "You already created this model repo"
            body = {"error": message, "url": f"{self.hub.url}/{repo_id}"}
            return self._json(409, body, {"X-Error-Message": message})
        self.hub.create_repo(repo_id, private=payload.get("visibility") == "private")
        self._json(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id})

    def _validate_yaml(self) -> None:
        content = json.loads(self._body())["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        if match is None:
            return self._json(200, {"errors": [], "warnings": [{"message": "empty metadata"}]})
        try:
            data = yaml.safe_load(match.group(1))
        except yaml.YAMLError as exc:
            return self._json(400, {"errors": [{"message": str(exc)}], "warnings": []})
        if not isinstance(data, dict):
            return self._json(400, {"errors": [{"message": "metadata is not a mapping"}]})
        self._json(200, {"errors": [], "warnings": []})

    def _info(self, repo: Repo, rev: str) -> None:
        commit = self._commit_for(repo, rev)
        if commit is None:
            return
        self._json(
            200,
            {
                "_id": repo.repo_id,
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": commit.oid,
                "private": repo.private,
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
                "tags": [],
            },
        )

    def _tree(self, repo: Repo, rev: str, path: str) -> None:
        commit = self._commit_for(repo, rev)
        if commit is None:
            return
        recursive = self.query.get("recursive", ["False"])[0].lower() == "true"
        prefix = f"{path.rstrip('/')}/" if path else ""
        entries: dict[str, dict] = {}
        for name, data in sorted(commit.files.items()):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if "/" in rest and not recursive:
                folder = prefix + rest.split("/")[0]
                entries[folder] = {"type": "directory", "path": folder, "oid": "0" * 40, "size": 0}
            else:
                entries[name] = {
                    "type": "file",
                    "path": name,
                    "size": len(data),
                    "oid": git_blob_oid(data),
                }
        if path and not entries:
            return self._error(404, "EntryNotFound", f"{path} does not exist on {rev}")
        self._json(200, list(entries.values()))

    def _preupload(self, repo: Repo, rev: str) -> None:
        commit = repo.resolve(rev)
        files = json.loads(self._body())["files"]
        answer = []
        for f in files:
            existing = commit.files.get(f["path"]) if commit else None
            answer.append(
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_oid(existing) if existing is not None else None,
                }
            )
        self._json(200, {"files": answer, "commitOid": commit.oid if commit else None})

    def _commit(self, repo: Repo, branch: str) -> None:
        if branch not in repo.branches:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
        head = repo.commits[repo.branches[branch]]
        files = dict(head.files)
        message = ""
        for line in self._body().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value["summary"]
                parent = value.get("parentCommit")
                if parent and not head.oid.startswith(parent):
                    return self._error(412, None, "parent commit is not the head of the branch")
            elif key == "file":
                if value.get("encoding") != "base64":
                    return self._error(400, None, "only base64 file contents are supported")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    return self._error(404, "EntryNotFound", "A file with this name doesn't exist")
                del files[value["path"]]
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(folder)}
            else:  # lfsFile: this server tells clients to upload everything as regular files
                return self._error(400, None, f"unsupported commit operation {key!r}")
        commit = self.hub.new_commit(repo, files, message, head.oid)
        repo.branches[branch] = commit.oid
        self._json(
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{commit.oid}",
            },
        )

    def _branch(self, repo: Repo, branch: str) -> None:
        if branch in repo.branches:
            return self._error(409, None, f"Reference already exists: refs/heads/{branch}")
        payload = json.loads(self._body() or b"{}")
        start = self._commit_for(repo, payload.get("startingPoint") or "main")
        if start is None:
            return
        repo.branches[branch] = start.oid
        self._json(200, {})

    def _resolve(self, repo: Repo, rev: str, path: str) -> None:
        commit = self._commit_for(repo, rev)
        if commit is None:
            return
        data = commit.files.get(path)
        if data is None:
            message = f"{path} does not exist on {rev}"
            return self._error(404, "EntryNotFound", message, **{"X-Repo-Commit": commit.oid})
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{git_blob_oid(data)}"',
            "X-Repo-Commit": commit.oid,
        }
        self._send(200, data, headers)
