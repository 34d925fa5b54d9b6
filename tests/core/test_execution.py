"""Choosing the executor for a command (`--executor`): local by default, Ray only when
asked, connected lazily, and a clear message when Ray is not installed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lamina.cli import main
from lamina.core.errors import ConfigError, LaminaError
from lamina.core.execution import current_executor, use_executor
from lamina.executors.ray import RayExecutor

HAS_RAY = importlib.util.find_spec("ray") is not None


def test_local_is_the_default_and_takes_no_address() -> None:
    with use_executor() as chosen:
        assert chosen is None and current_executor() is None
    no_address = pytest.raises(ConfigError, match="--ray-address is for the Ray executor")
    with no_address, use_executor("local", "head:6379"):
        pass
    with pytest.raises(ConfigError, match="unknown executor 'dask'"), use_executor("dask"):
        pass


@pytest.mark.skipif(not HAS_RAY, reason="Ray is optional: pip install 'lamina[scale]'")
def test_ray_is_chosen_for_the_block_and_started_only_when_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "head.example:6379")
    with use_executor("ray", workers=3) as chosen:
        assert isinstance(chosen, RayExecutor) and current_executor() is chosen
        assert chosen.address == "head.example:6379"  # from RAY_ADDRESS
        assert chosen.slots(1.0) == 3  # --workers caps the tasks at once
        assert not chosen.started  # no work yet: no Ray
    assert current_executor() is None
    with use_executor("ray", "other:6379") as chosen:
        assert chosen is not None and chosen.address == "other:6379"  # the flag wins


def test_without_ray_the_command_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(LaminaError, match="needs the package 'ray'"), use_executor("ray"):
        pass
    result = CliRunner().invoke(
        main, ["--store", str(tmp_path / "s"), "sense", "--executor", "ray"]
    )
    assert result.exit_code == 2
    assert "--executor ray needs the package 'ray'" in result.output
    assert "pip install 'lamina[scale]'" in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_cluster_never_puts_its_credentials_in_the_run_record(
    tmp_path: Path,
) -> None:
    """The error that ends a run is written to run.json: the cluster's address in it (ours,
    or echoed by Ray's own message) loses its user and password there."""
    from lamina.core.ledger import Run
    from lamina.core.store import Store

    executor = RayExecutor("ray://admin:s3cret@head.example:10001")
    lost = str(executor._lost("Connection refused"))
    assert lost == "the Ray cluster at ray://head.example:10001 went away (Connection refused)"
    token = RayExecutor("ray://admin:s3cret@head.example:10001/?token=t0k")._lost("refused")
    assert "t0k" not in str(token) and "s3cret" not in str(token)
    store = Store.open(tmp_path / "store", create=True)
    with pytest.raises(LaminaError), Run(store, "sense", {}) as run:
        raise LaminaError(
            "cannot reach the Ray cluster at ray://admin:s3cret@head.example:10001: "
            "Failed to connect to ray://admin:s3cret@head.example:10001/"
        )
    text = (store.run_dir(run.run_id) / "run.json").read_text()
    assert "s3cret" not in text and "admin" not in text, text
    message = json.loads(text)["errors"][0]["message"]
    assert message.startswith("cannot reach the Ray cluster at ray://head.example:10001: ")
