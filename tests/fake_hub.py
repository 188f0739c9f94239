"""A real HTTP server on loopback that answers the model hub's file API for folders made by the test builders.

It speaks what `huggingface_hub` 0.36's `snapshot_download` asks (read from its source, `hf_api.model_info` and
`file_download.get_hf_file_metadata` / `http_get`):
- `GET /api/models/{repo}/revision/{rev}[?blobs=true]`: the commit id and the sibling files with their sizes;
- `HEAD|GET /{repo}/resolve/{rev}/{path}`: `X-Repo-Commit`, `ETag`, `Content-Length`, and `Range` answered with
  206 (how an interrupted download resumes).
Faults a test can switch on: a gated repository (401 `X-Error-Code: GatedRepo` without the right bearer token), a
file that stalls after some bytes (until `release()`), and a server that goes away after some bytes of a file.
Every request is recorded (method, path, Range header) for the test to read.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:  # `python -m tests.fake_hub` runs where pytest is not installed (after `make setup-gpu`)
    import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"
ROOT = Path(__file__).resolve().parent.parent
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/?]+))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
CHUNK = 64 * 1024


@dataclass
class FakeHub:
    """Serves `repos` (repo id → local folder) at `url` until `stop()`."""

    repos: dict[str, Path]
    gated_token: str | None = None
    #: (file path, byte offset): a GET of that file stalls after this many bytes of the body, until `release()`.
    stall: tuple[str, int] | None = None
    #: (file path, byte offset): after this many bytes of that file, the server goes away (connections and port).
    vanish: tuple[str, int] | None = None
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    port: int = 0
    #: Listed beside the real files (a hostile or broken hub), never served.
    extra_siblings: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        hub = self
        self._released = threading.Event()
        self.stalled = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:  # type: ignore[no-untyped-def]
                pass

            def do_GET(self) -> None:  # noqa: N802
                hub._answer(self, body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                hub._answer(self, body=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # ----- control -------------------------------------------------------------------------------------------

    def release(self) -> None:
        self._released.set()

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    # ----- answers -------------------------------------------------------------------------------------------

    def _files(self, repo: str) -> dict[str, Path]:
        root = self.repos[repo]
        return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        self.requests.append((handler.command, path, handler.headers.get("Range", "")))
        if match := _API.match(path):
            return self._repo_info(handler, match["repo"], body)
        if match := _RESOLVE.match(path):
            return self._file(handler, match["repo"], match["path"], body)
        return self._error(handler, 404, "RepoNotFound")

    def _error(self, handler: BaseHTTPRequestHandler, status: int, code: str) -> None:
        handler.send_response(status)
        handler.send_header("X-Error-Code", code)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _repo_info(self, handler: BaseHTTPRequestHandler, repo: str, body: bool) -> None:
        if repo not in self.repos:
            return self._error(handler, 401, "RepoNotFound")
        siblings = [{"rfilename": name, "size": p.stat().st_size, "blobId": _digest(p)[:40]}
                    for name, p in self._files(repo).items()] + self.extra_siblings
        payload = json.dumps({"id": repo, "modelId": repo, "sha": COMMIT, "private": False,
                              "gated": "manual" if self.gated_token else False, "siblings": siblings}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if body:
            handler.wfile.write(payload)

    def _file(self, handler: BaseHTTPRequestHandler, repo: str, name: str, body: bool) -> None:
        files = self._files(repo) if repo in self.repos else {}
        if name not in files:
            return self._error(handler, 404, "EntryNotFound")
        if self.gated_token and handler.headers.get("Authorization") != f"Bearer {self.gated_token}":
            return self._error(handler, 401, "GatedRepo")
        data = files[name].read_bytes()
        start = 0
        if match := re.match(r"bytes=(\d+)-$", handler.headers.get("Range", "")):
            start = int(match[1])
        handler.send_response(206 if start else 200)
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("ETag", f'"{_digest(files[name])}"')
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(len(data) - start))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        if not body:
            return
        offset = start
        while offset < len(data):
            if self.vanish and self.vanish[0] == name and offset >= self.vanish[1]:
                threading.Thread(target=self.stop, daemon=True).start()
                handler.close_connection = True
                handler.connection.close()
                return
            if self.stall and self.stall[0] == name and offset >= self.stall[1] and not self._released.is_set():
                self.stalled.set()
                self._released.wait()
                return
            piece = data[offset: offset + CHUNK]
            handler.wfile.write(piece)
            offset += len(piece)
            self.sent[name] = self.sent.get(name, 0) + len(piece)


@contextmanager
def hub_endpoint(repos: dict[str, Path], monkeypatch: pytest.MonkeyPatch, hf_home: Path) -> Iterator[FakeHub]:
    """A hub serving `repos` as this test's HF_ENDPOINT (no token; huggingface_hub's own cache in `hf_home`,
    out of ~), stopped when the block ends."""
    from tests.conftest import reset_caches

    server = FakeHub(repos)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    reset_caches()
    try:
        yield server
    finally:
        server.stop()


def cli(*args: str) -> subprocess.CompletedProcess:
    """The LockN command as the operator types it (`models pull …`), in a process of its own (the test's
    environment: HF_ENDPOINT points at the fake hub)."""
    return subprocess.run([sys.executable, "-m", "backend.ops.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def resolved_files(server: FakeHub) -> set[str]:
    """The repository paths whose contents a client fetched from `server`."""
    return {path.split("/resolve/", 1)[1].split("/", 1)[1] for method, path, _ in server.requests
            if method == "GET" and "/resolve/" in path}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _main(argv: list[str]) -> int:  # pragma: no cover - the README's newcomer path, run by hand
    """`python -m tests.fake_hub [PORT]`: serve a tiny random Qwen3-TTS CustomVoice checkpoint as the hub's
    `Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice`, so `HF_ENDPOINT=http://127.0.0.1:PORT … models pull qwen3-custom`
    can be tried on a machine that cannot reach the hub. Ctrl-C stops it."""
    import tempfile

    from backend.media.model_catalog import CATALOG
    from tests.qwen_tiny import make_tiny_qwen_checkpoint

    folder = make_tiny_qwen_checkpoint(Path(tempfile.mkdtemp(prefix="lockn-hub-")) / "repo", "custom_voice")
    hub = FakeHub({CATALOG["qwen3-custom"].repo: folder}, port=int(argv[0]) if argv else 0)
    print(f"serving a tiny {CATALOG['qwen3-custom'].repo} at {hub.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
