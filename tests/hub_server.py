"""A small, honest stand-in for the Hugging Face Hub, for tests (the real Hub is not reachable).

It implements the endpoints that huggingface_hub 2.4 calls for push / pull / Space flows: whoami,
repo create, preupload, LFS batch + PUT upload, NDJSON commit, branches, tags, repo info, tree
listing and file resolve (HEAD/GET with X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size). It
stores every commit per repo and serves it back; it never advertises Xet, so the client uses
plain LFS (tests also set HF_HUB_DISABLE_XET=1).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

USER = "tester"
GITATTRIBUTES = (
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"
)
# Like the Hub: weights and images go through LFS, small text files are committed inline.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".png", ".jpg", ".jpeg")
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
REPO_TYPE = {prefix: kind for kind, prefix in PREFIX.items()}


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, bytes]  # the full tree at this commit
    lfs: set[str] = field(default_factory=set)  # paths stored through LFS


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    sdk: str | None = None
    hardware: str | None = None
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        sha = self.branches.get(revision) or self.tags.get(revision) or revision
        return self.commits.get(sha)

    def history(self, branch: str = "main") -> list[Commit]:
        out, commit = [], self.resolve(branch)
        while commit is not None:
            out.append(commit)
            commit = self.commits.get(commit.parent) if commit.parent else None
        return out


def _git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """State shared by the handler threads: repos, LFS objects, valid tokens."""

    def __init__(self, tokens: set[str]) -> None:
        self.tokens = set(tokens)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.url = ""

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def new_commit(
        self, repo: Repo, parent: Commit | None, message: str, files: dict[str, bytes], lfs: set[str]
    ):
        sha = hashlib.sha1(f"{repo.repo_id}{time.time_ns()}{message}{len(repo.commits)}".encode()).hexdigest()
        commit = Commit(sha=sha, parent=parent.sha if parent else None, message=message, files=files, lfs=lfs)
        repo.commits[sha] = commit
        return commit


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    # -- plumbing ---------------------------------------------------------------------------
    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, *, head=False):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None, *, head=False) -> None:
        self._send(
            status,
            json.dumps(obj).encode(),
            {"Content-Type": "application/json", **(headers or {})},
            head=head,
        )

    def _error(self, status: int, message: str, code: str | None = None, *, head=False) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers, head=head)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

    def _authorized(self) -> bool:
        return self._token() in self.hub.tokens

    def _require_auth(self) -> bool:
        if not self._authorized():
            self._error(401, "Invalid credentials in Authorization header")
            return False
        return True

    def _find_repo(self, repo_type: str, repo_id: str, *, head=False) -> Repo | None:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self._authorized()):
            self._error(401 if repo is None else 404, "Repository not found", "RepoNotFound", head=head)
            return None
        return repo

    # -- routing ----------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        self.hub.requests.append((method, path))
        body = self._body() if method in ("POST", "PUT") else b""
        with self.hub.lock:
            for pattern, verb, handler in ROUTES:
                m = re.fullmatch(pattern, path)
                if m and verb == method or (m and verb == "GET" and method == "HEAD"):
                    return handler(
                        self, method, body, *[None if g is None else unquote(g) for g in m.groups()]
                    )
        self._error(404, f"no route for {method} {path}")

    # -- endpoints --------------------------------------------------------------------------
    def whoami(self, method, body) -> None:
        if self._require_auth():
            self._json(200, {"type": "user", "name": USER, "auth": {"accessToken": {"role": "write"}}})

    def create_repo(self, method, body) -> None:
        if not self._require_auth():
            return
        payload = json.loads(body)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        url = f"{self.hub.url}/{PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.hub.repos:
            # Like the Hub, the conflict answer still carries the URL (create_repo(exist_ok=True) reads it).
            return self._json(
                409,
                {"error": "You already created this repo", "url": url},
                {"X-Error-Message": "You already created this repo"},
            )
        repo = Repo(
            repo_id=repo_id,
            repo_type=repo_type,
            private=payload.get("visibility") == "private" or bool(payload.get("private")),
            sdk=payload.get("sdk"),
            hardware=payload.get("hardware"),
        )
        # The Hub's first commit holds only .gitattributes.
        first = self.hub.new_commit(repo, None, "initial commit", {".gitattributes": GITATTRIBUTES}, set())
        repo.branches["main"] = first.sha
        self.hub.repos[(repo_type, repo_id)] = repo
        self._json(200, {"url": url, "name": repo_id})

    def preupload(self, method, body, repo_type, repo_id, revision) -> None:
        if not self._require_auth() or (repo := self._find_repo(repo_type, repo_id)) is None:
            return
        if repo.resolve(revision) is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        files = [
            {
                "path": f["path"],
                "uploadMode": "lfs" if f["path"].lower().endswith(LFS_SUFFIXES) else "regular",
                "shouldIgnore": False,
            }
            for f in json.loads(body)["files"]
        ]
        self._json(200, {"files": files})

    def lfs_batch(self, method, body, prefix, repo_id) -> None:
        repo_type = REPO_TYPE[prefix or ""]
        if not self._require_auth() or self._find_repo(repo_type, repo_id) is None:
            return
        payload = json.loads(body)
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.hub.lfs_objects:  # already stored: no actions, the client skips it
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/_lfs/{obj['oid']}"}}
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects})

    def lfs_put(self, method, body, oid) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, "sha256 mismatch")
        self.hub.lfs_objects[oid] = body
        self._send(200)

    def commit(self, method, body, repo_type, repo_id, revision) -> None:
        if not self._require_auth() or (repo := self._find_repo(repo_type, repo_id)) is None:
            return
        if revision not in repo.branches:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        parent = repo.resolve(revision)
        files, lfs = dict(parent.files), set(parent.lfs)
        summary = ""
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value["summary"]
                if value.get("parentCommit") and value["parentCommit"] != parent.sha:
                    return self._error(412, "parentCommit is not the head of the branch")
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                lfs.discard(value["path"])
            elif key == "lfsFile":
                data = self.hub.lfs_objects.get(value["oid"])
                if data is None:
                    return self._error(400, f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = data
                lfs.add(value["path"])
            elif key in ("deletedFile", "deletedFolder"):
                for p in [
                    p for p in files if p == value["path"] or p.startswith(value["path"].rstrip("/") + "/")
                ]:
                    files.pop(p)
                    lfs.discard(p)
        new = self.hub.new_commit(repo, parent, summary, files, lfs)
        repo.branches[revision] = new.sha
        url = f"{self.hub.url}/{PREFIX[repo_type]}{repo_id}/commit/{new.sha}"
        self._json(200, {"commitUrl": url, "commitOid": new.sha, "success": True, "pullRequestUrl": None})

    def branch(self, method, body, repo_type, repo_id, name) -> None:
        if not self._require_auth() or (repo := self._find_repo(repo_type, repo_id)) is None:
            return
        if name in repo.branches:
            return self._error(409, f"Reference {name} already exists")
        start = (json.loads(body or b"{}") or {}).get("startingPoint") or "main"
        commit = repo.resolve(start)
        if commit is None:
            return self._error(404, f"Invalid rev id: {start}", "RevisionNotFound")
        repo.branches[name] = commit.sha
        self._json(200, {})

    def validate_yaml(self, method, body) -> None:
        """The Hub checks a README's YAML header before a commit that adds it."""
        import yaml

        content = json.loads(body)["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            meta = yaml.safe_load(match.group(1)) if match else None
        except yaml.YAMLError as err:
            return self._json(400, {"errors": [{"message": f"invalid YAML: {err}"}]})
        if match and not isinstance(meta, dict):
            return self._json(400, {"errors": [{"message": "metadata must be a mapping"}]})
        warnings = [] if meta else [{"message": "empty or missing yaml metadata in repo card"}]
        self._json(200, {"errors": [], "warnings": warnings})

    def tag(self, method, body, repo_type, repo_id, revision) -> None:
        if not self._require_auth() or (repo := self._find_repo(repo_type, repo_id)) is None:
            return
        name = json.loads(body)["tag"]
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        if name in repo.tags:
            return self._error(409, f"Tag {name} already exists")
        repo.tags[name] = commit.sha
        self._json(200, {})

    def hardware(self, method, body, repo_id) -> None:
        if not self._require_auth() or (repo := self._find_repo("space", repo_id)) is None:
            return
        repo.hardware = json.loads(body)["flavor"]
        self._json(200, self._runtime(repo))

    @staticmethod
    def _runtime(repo: Repo) -> dict[str, Any]:
        return {"stage": "BUILDING", "hardware": {"current": None, "requested": repo.hardware}}

    def info(self, method, body, repo_type, repo_id, revision=None) -> None:
        if (repo := self._find_repo(repo_type, repo_id, head=method == "HEAD")) is None:
            return
        commit = repo.resolve(revision or "main")
        if commit is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        out: dict[str, Any] = {
            "id": repo_id,
            "sha": commit.sha,
            "private": repo.private,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            "tags": [],
        }
        if repo_type == "space":
            out.update(sdk=repo.sdk, runtime=self._runtime(repo))
        self._json(200, out, head=method == "HEAD")

    def tree(self, method, body, repo_type, repo_id, revision, sub=None) -> None:
        if (repo := self._find_repo(repo_type, repo_id)) is None:
            return
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        entries = []
        for p, data in sorted(commit.files.items()):
            if sub and not p.startswith(sub.rstrip("/") + "/"):
                continue
            entry: dict[str, Any] = {"type": "file", "path": p, "size": len(data), "oid": _git_blob_sha(data)}
            if p in commit.lfs:
                entry["lfs"] = {
                    "oid": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "pointerSize": 134,
                }
            entries.append(entry)
        self._json(200, entries)

    def resolve(self, method, body, prefix, repo_id, revision, filename) -> None:
        head = method == "HEAD"
        repo_type = REPO_TYPE[prefix or ""]
        if (repo := self._find_repo(repo_type, repo_id, head=head)) is None:
            return
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound", head=head)
        if filename not in commit.files:
            return self._error(404, f"{filename} does not exist", "EntryNotFound", head=head)
        data = commit.files[filename]
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{_git_blob_sha(data)}"'}
        if filename in commit.lfs:
            headers.update(
                {"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Linked-Size": str(len(data))}
            )
        self._send(200, data, {"Content-Type": "application/octet-stream", **headers}, head=head)


_ID = r"([^/]+/[^/]+)"
_TYPE = r"(model|dataset|space)s"
ROUTES = [
    (r"/api/whoami-v2", "GET", _Handler.whoami),
    (r"/api/repos/create", "POST", _Handler.create_repo),
    (r"/api/validate-yaml", "POST", _Handler.validate_yaml),
    (rf"/api/{_TYPE}/{_ID}/preupload/(.+)", "POST", _Handler.preupload),
    (rf"/(datasets/|spaces/)?{_ID}\.git/info/lfs/objects/batch", "POST", _Handler.lfs_batch),
    (r"/_lfs/([0-9a-f]{64})", "PUT", _Handler.lfs_put),
    (rf"/api/{_TYPE}/{_ID}/commit/(.+)", "POST", _Handler.commit),
    (rf"/api/{_TYPE}/{_ID}/branch/(.+)", "POST", _Handler.branch),
    (rf"/api/{_TYPE}/{_ID}/tag/(.+)", "POST", _Handler.tag),
    (rf"/api/spaces/{_ID}/hardware", "POST", _Handler.hardware),
    (rf"/api/{_TYPE}/{_ID}/tree/([^/]+)(?:/(.+))?", "GET", _Handler.tree),
    (rf"/api/{_TYPE}/{_ID}/revision/(.+)", "GET", _Handler.info),
    (rf"/api/{_TYPE}/{_ID}", "GET", _Handler.info),
    (rf"/(datasets/|spaces/)?{_ID}/resolve/([^/]+)/(.+)", "GET", _Handler.resolve),
]


class HubServer:
    """`with HubServer(tokens={"hf_good"}) as hub:` serves the fake Hub at `hub.url` on a free port."""

    def __init__(self, *, tokens: set[str]) -> None:
        self.state = FakeHub(tokens)
        handler = type("Handler", (_Handler,), {"hub": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = self.state.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.state.repo(repo_id, repo_type)

    def add_repo(self, repo_id: str, files: dict[str, bytes], *, lfs: set[str] = frozenset()) -> Repo:
        """Seed a repo directly (e.g. one holding only a pickle checkpoint)."""
        with self.state.lock:
            repo = Repo(repo_id=repo_id, repo_type="model", private=False)
            commit = self.state.new_commit(repo, None, "seed", dict(files), set(lfs))
            repo.branches["main"] = commit.sha
            self.state.repos[("model", repo_id)] = repo
            return repo
