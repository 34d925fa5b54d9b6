"""Choosing the executor for a command (`--executor`): local by default, Ray only when
asked, connected lazily, and a clear message when Ray is not installed."""

from __future__ import annotations

import importlib.util
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
