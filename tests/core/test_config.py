from __future__ import annotations

from dataclasses import dataclass

import pytest

from lamina.core.config import config_from_dict, config_hash
from lamina.core.errors import ConfigError


@dataclass(frozen=True)
class Cfg:
    size: int = 512
    ratio: float = 0.5
    names: tuple = ("a",)
    fast: bool = False


def test_hash_is_stable_and_value_sensitive() -> None:
    assert config_hash(Cfg()) == config_hash(Cfg(size=512))
    assert config_hash(Cfg()) != config_hash(Cfg(size=256))
    assert len(config_hash(Cfg())) == 8


def test_from_dict_coerces_ints_to_floats_and_lists_to_tuples() -> None:
    cfg = config_from_dict(Cfg, {"ratio": 1, "names": ["x", "y"]})
    assert cfg.ratio == 1.0 and isinstance(cfg.ratio, float)
    assert cfg.names == ("x", "y")


def test_unknown_key_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="unknown key 'sise'") as info:
        config_from_dict(Cfg, {"sise": 3}, where="policy.toml")
    assert "policy.toml" in str(info.value)
    assert "size" in str(info.value)  # the valid keys are listed


@pytest.mark.parametrize(("key", "value"), [("size", "big"), ("fast", 1), ("size", True)])
def test_bad_value_is_refused_by_name(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"bad value for '{key}'"):
        config_from_dict(Cfg, {key: value})


def test_a_home_folder_of_a_user_that_does_not_exist_is_a_config_error() -> None:
    """`~photos` is the home folder of a user named photos (found by the reliability
    suite's fuzz run: pathlib raised RuntimeError from a config's `root`)."""
    import os
    from pathlib import Path

    from lamina.core.config import expand_user
    from lamina.core.errors import ConfigError

    assert expand_user("~/pics") == Path(os.path.expanduser("~/pics"))
    assert expand_user("plain/dir") == Path("plain/dir")
    with pytest.raises(ConfigError, match="~nosuchuser-lamina") as caught:
        expand_user("~nosuchuser-lamina/photos")
    assert "~/nosuchuser-lamina" in (caught.value.hint or "")
