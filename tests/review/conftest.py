"""Stores and a running app for the review app's tests: the report tests' full store
(scanned, sensed, embedded, clustered, tagged), built once and copied per test, and the
app served by uvicorn on a free loopback port in a thread."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.core.store import Store
from tests.report.stores import build_full_store


@pytest.fixture(scope="session")
def built_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The root of a full store (with its photos beside it), built once."""
    root = tmp_path_factory.mktemp("review")
    build_full_store(root)
    return root


@pytest.fixture
def store(built_store: Path, tmp_path: Path) -> Store:
    """A fresh copy of the full store, so each test's decisions start from none. The
    photos are shared: the manifest's paths are absolute, and the app never writes there."""
    target = tmp_path / "store"
    shutil.copytree(built_store / "store", target)
    return Store.open(target)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """The app over a store, served on 127.0.0.1 in a thread until `stop`."""

    def __init__(self, store: Store) -> None:
        import uvicorn

        from lamina.review.server import LOOPBACK, make_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = make_app(store, allowed_hosts=list(LOOPBACK))
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the app did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def served(store: Store) -> Iterator[Served]:
    app = Served(store)
    try:
        yield app
    finally:
        app.stop()
