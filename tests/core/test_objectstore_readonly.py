"""A store on a protocol lamina cannot commit to (gs://, http(s)://) is refused before a
command that creates or fills it does any work, with a message saying why and what to
use instead (docs/scale.md, "Where the store can live")."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lamina.cli import main
from lamina.core.store import checkout_dir


@pytest.mark.parametrize("url", ["gs://bucket/lamina-store", "https://example.org/lamina-store"])
def test_a_store_that_cannot_be_written_is_refused_before_the_scan(
    url: str, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["--store", url, "scan", str(tree)])
    assert result.exit_code == 2, result.output
    protocol = url.split(":", 1)[0]
    assert (
        f"error: the store {url} can be read but not written: lamina commits to an object "
        "store by a conditional put, wired for memory://, s3://, s3a:// only"
    ) in result.output
    assert f"{protocol}:// stores are read-only" in result.output
    assert "docs/scale.md" in result.output and "on s3://" in result.output
    assert "scanned" not in result.output and not checkout_dir(url).exists()
