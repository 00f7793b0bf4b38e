"""A real local Hugging Face Hub mirror on 127.0.0.1 (stdlib http.server), for `HF_ENDPOINT`.

It serves local directories as model repos with the few endpoints `huggingface_hub`'s
`snapshot_download` uses:
  GET  /api/models/ORG/NAME/revision/REV         repo info: sha + siblings
  GET  /api/models/ORG/NAME/tree/REV[/PATH]      file listing (size, blob id, lfs sha256)
  HEAD /ORG/NAME/resolve/REV/FILE                X-Repo-Commit, ETag (X-Linked-Etag/-Size for LFS), Content-Length
  GET  /ORG/NAME/resolve/REV/FILE                the bytes; `Range: bytes=N-` answered 206
An unknown repo gets 404 with X-Error-Code RepoNotFound, like the hub. `cut_after[FILE] = N` drops
the connection after N bytes of that file's first GET (a flaky network), to test resuming. Every
request is recorded with its headers.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".gguf")


@dataclass(frozen=True)
class RepoFile:
    path: str
    data: bytes

    @property
    def lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES)

    @property
    def blob_id(self) -> str:  # git's blob sha1
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id


class FakeHub:
    def __init__(self):
        self.repos: dict[str, tuple[str, dict[str, RepoFile]]] = {}  # repo id -> (commit, files)
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers)
        self.cut_after: dict[str, int] = {}
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.hub = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add_repo(self, repo_id: str, directory: Path, *, skip: tuple[str, ...] = (), extra: dict[str, bytes] | None = None) -> str:
        """Serve every file under `directory` (minus `skip`, plus `extra`) as `repo_id`; returns its commit."""
        files = {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
        files = {k: v for k, v in files.items() if k not in skip} | (extra or {})
        commit = hashlib.sha1(repo_id.encode() + b"".join(hashlib.sha1(v).digest() for v in files.values())).hexdigest()
        with self.lock:
            self.repos[repo_id] = (commit, {k: RepoFile(k, v) for k, v in files.items()})
        return commit

    def start(self) -> FakeHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def downloads(self) -> list[tuple[str, dict]]:
        with self.lock:
            return [(p, h) for m, p, h in self.requests if m == "GET" and "/resolve/" in p]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    @property
    def hub(self) -> FakeHub:
        return self.server.hub  # type: ignore[attr-defined]

    def _json(self, status: int, obj, headers: dict | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _not_found(self, code: str = "RepoNotFound") -> None:
        self._json(404, {"error": "Repository not found"}, {"X-Error-Code": code, "X-Error-Message": "Repository not found"})

    def _repo(self, parts: list[str]):
        repo_id = "/".join(parts[:2])
        with self.hub.lock:
            return repo_id, self.hub.repos.get(repo_id)

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        path = unquote(urlsplit(self.path).path)
        with self.hub.lock:
            self.hub.requests.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            return self._api(parts[2:])
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(parts)
        self._not_found("EntryNotFound")

    def _api(self, parts: list[str]) -> None:
        repo_id, repo = self._repo(parts)
        if repo is None:
            return self._not_found()
        commit, files = repo
        kind, rev = parts[2], parts[3]
        if rev not in ("main", commit):
            return self._not_found("RevisionNotFound")
        if kind == "revision":
            siblings = [{"rfilename": f} for f in files]
            return self._json(200, {"id": repo_id, "modelId": repo_id, "sha": commit, "private": False, "gated": False,
                                    "disabled": False, "siblings": siblings, "tags": []})  # fmt: skip
        if kind == "tree":
            prefix = "/".join(parts[4:])
            entries = []
            for f in files.values():
                if prefix and not f.path.startswith(prefix + "/"):
                    continue
                entry = {"type": "file", "oid": f.blob_id, "size": len(f.data), "path": f.path}
                if f.lfs:
                    entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
                entries.append(entry)
            return self._json(200, entries)
        self._not_found("EntryNotFound")

    def _resolve(self, parts: list[str]) -> None:
        repo_id, repo = self._repo(parts)
        if repo is None:
            return self._not_found()
        commit, files = repo
        rev, name = parts[3], "/".join(parts[4:])
        if rev not in ("main", commit):
            return self._not_found("RevisionNotFound")
        f = files.get(name)
        if f is None:
            return self._not_found("EntryNotFound")
        start = 0
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and self.command == "GET":
            start = int(rng.removeprefix("bytes=").split("-", 1)[0] or 0)
        body = f.data[start:]
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{f.etag}"')
        if f.lfs:
            self.send_header("X-Linked-Etag", f'"{f.sha256}"')
            self.send_header("X-Linked-Size", str(len(f.data)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(f.data) - 1}/{len(f.data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        with self.hub.lock:
            cut = self.hub.cut_after.pop(name, None)
        if cut is not None:  # part of the bytes, then the connection drops
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)
