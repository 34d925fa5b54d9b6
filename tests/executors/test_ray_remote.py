"""A bucket source (moto's S3) sensed on a local Ray (2 CPUs): the workers read the objects
themselves, with the credentials of their own environment (the standard AWS variables,
as on a cluster node), and the tables equal the local executor's. One test: a Ray start
costs seconds on a loaded machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("ray", reason="Ray is optional: pip install 'lamina[scale]'")

from lamina.cli import main
from lamina.core import archives
from tests.executors.ray_support import ray_env
from tests.reliability.tables import compare, snapshot
from tests.s3_support import KEY_ID, SECRET, make_bucket

pytestmark = pytest.mark.slow


def _driver_must_not_read(url: str) -> None:
    raise AssertionError(f"the driver read {url}; Ray's workers should have")


def lamina(store: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--store", str(store), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_an_s3_source_sensed_on_ray_equals_the_local_executor(
    tree: Path, s3env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The workers of the local Ray inherit this environment: the checkout importable, and
    # the AWS variables s3fs reads (nothing of them is passed to lamina or Ray).
    for name in ("PYTHONPATH", "RAY_AUTH_MODE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, ray_env()[name])
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    source = make_bucket(s3env, "ray-pages", tree)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    for store in (local, on_ray):
        lamina(store, "scan", source)
    lamina(local, "sense", "-j", "1")
    # The driver (this process, and the child it forks) may not read an object: Ray's
    # workers, started fresh by the raylet, read them with their own s3fs.
    with monkeypatch.context() as driver:
        driver.setattr(archives, "open_remote", _driver_must_not_read)
        out = lamina(on_ray, "sense", "-j", "2", "--executor", "ray")
    assert "sensed 4 images" in out, out
    reference, other = snapshot(local), snapshot(on_ray)
    assert {"signals", "hashes", "thumbs", "duplicates", "flags"} <= {
        name.split("/")[1] for name in reference.tables if name.startswith("layers/")
    }
    assert compare(reference, other) == []
    assert len(other.tables["files"]) == 9
    assert [len(v) for k, v in other.tables.items() if k.startswith("layers/signals/")] == [4]
    for path in on_ray.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and KEY_ID.encode() not in data, path
