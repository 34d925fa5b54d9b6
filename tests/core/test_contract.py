"""Every registered pass keeps the pass contract."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import ConfigError
from lamina.core.passes import REGISTRY, get_pass

BUILT_IN = sorted(REGISTRY)


def test_there_are_passes() -> None:
    assert "scan" in BUILT_IN


@pytest.mark.parametrize("name", BUILT_IN)
def test_pass_contract(name: str) -> None:
    cls = REGISTRY[name]
    assert cls.kind in ("map", "global")
    assert cls.schema.names[0] == cls.key
    assert dataclasses.is_dataclass(cls.Config)
    assert cls.Config.__dataclass_params__.frozen, "configs are frozen"
    instance = get_pass(name)
    assert instance.layer_id.startswith(f"{cls.version}-")
    assert instance.layer_id == get_pass(name, dataclasses.asdict(instance.config)).layer_id
    with pytest.raises(ConfigError, match="unknown key"):
        get_pass(name, {"no_such_key": 1})
    assert cls.__doc__, "every pass says what it does"


@pytest.mark.parametrize("name", [n for n in BUILT_IN if REGISTRY[n].kind == "map"])
def test_map_pass_keeps_one_row_per_input_on_empty_input(name: str) -> None:
    instance = get_pass(name)
    empty = pa.table(
        {
            instance.key: pa.array([], pa.string()),
            "abs_path": pa.array([], pa.string()),
            "rel_path": pa.array([], pa.string()),
        }
    )
    out = instance.process(empty)
    assert out.num_rows == 0
    assert out.schema.names == instance.schema.names
