"""A fake Hugging Face hub on 127.0.0.1: the endpoints `huggingface_hub` calls to download
(HEAD and GET `/<repo>/resolve/<revision>/<file>`, with Range requests, and the model API
`/api/models/<repo>[/revision/<revision>]`), answering the way the real hub does (the
`X-Repo-Commit`, `ETag` / `X-Linked-Etag` = SHA-256 and `X-Error-Code` headers), so the
real download code runs against it with `HF_ENDPOINT` pointing here.

It can misbehave on purpose: cut a file's download after some bytes (a dropped
connection), serve a file's bytes corrupted under its true SHA-256, or accept connections
and never answer (a firewall that drops packets).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Hub:
    """The repos served (repo id -> file name -> bytes) and what to do wrong."""

    repos: dict[str, dict[str, bytes]]
    cut: dict[str, int] = field(default_factory=dict)  # file name -> bytes sent before a cut
    cuts_left: int = 0  # how many GETs of a file in `cut` are cut (then it is served whole)
    corrupt: set[str] = field(default_factory=set)  # file names served with a byte flipped
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    url: str = ""

    @staticmethod
    def commit(repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()

    @staticmethod
    def sha256(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()


def add_folder(hub: Hub, repo: str, folder: Path) -> None:
    """Serve every file of `folder` (top level) as `repo`."""
    hub.repos[repo] = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _split(self) -> tuple[str, str, str] | None:
            """(repo, revision, file) of a resolve URL."""
            path = unquote(urlsplit(self.path).path).strip("/")
            if "/resolve/" not in path:
                return None
            repo, _, rest = path.partition("/resolve/")
            revision, _, filename = rest.partition("/")
            return repo, revision, filename

        def _error(self, code: str, repo: str | None) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", code)
            if repo is not None:
                self.send_header("X-Repo-Commit", Hub.commit(repo))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _file(self, head: bool) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Range")))
            parts = self._split()
            if parts is None:
                self._error("RepoNotFound", None)
                return
            repo, _, filename = parts
            if repo not in hub.repos:
                self._error("RepoNotFound", None)
                return
            data = hub.repos[repo].get(filename)
            if data is None:
                self._error("EntryNotFound", repo)
                return
            digest = Hub.sha256(data)
            if filename in hub.corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            start = 0
            asked = self.headers.get("Range")
            if asked and asked.startswith("bytes=") and not head:
                start = int(asked[6:].split("-")[0])
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", Hub.commit(repo))
            self.send_header("ETag", f'"{digest}"')
            self.send_header("X-Linked-Etag", f'"{digest}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if head:
                return
            body = data[start:]
            if filename in hub.cut and hub.cuts_left > 0:
                hub.cuts_left -= 1
                self.wfile.write(body[: hub.cut[filename]])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

        def do_HEAD(self) -> None:
            self._file(head=True)

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path).strip("/")
            if not path.startswith("api/models/"):
                self._file(head=False)
                return
            hub.requests.append((self.command, self.path, None))
            repo = path.removeprefix("api/models/").partition("/revision/")[0]
            if repo not in hub.repos:
                self._error("RepoNotFound", None)
                return
            siblings = [
                {
                    "rfilename": name,
                    "size": len(data),
                    "lfs": {"sha256": Hub.sha256(data), "size": len(data), "pointerSize": 130},
                }
                for name, data in sorted(hub.repos[repo].items())
            ]
            body = json.dumps({"id": repo, "sha": Hub.commit(repo), "siblings": siblings})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

    return Handler


@contextmanager
def serve(hub: Hub) -> Iterator[Hub]:
    """Serve `hub` on a free local port (its `url`) while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_server() -> Iterator[str]:
    """A URL whose server accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
