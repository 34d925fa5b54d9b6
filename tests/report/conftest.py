"""Stores for the report tests, built once per session (scan + sense + embed + cluster of
a dozen files takes a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.core.store import Store
from lamina.report import build_report
from tests.report.stores import build_full_store, scanned_store


@pytest.fixture(scope="session")
def full_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return build_full_store(tmp_path_factory.mktemp("full"))


@pytest.fixture(scope="session")
def full_report(full_store: Store) -> Path:
    """index.html of the full store's report, thumbnails made."""
    return build_report(full_store)


@pytest.fixture(scope="session")
def scan_only(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return scanned_store(tmp_path_factory.mktemp("scanned"))
