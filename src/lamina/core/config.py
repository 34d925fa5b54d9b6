"""Frozen, typed pass configs: defaults on the pass, unknown keys refused, a stable hash.

The hash names a pass's output layer, so two runs with the same config share their work
and a different config never overwrites it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from lamina.core.errors import ConfigError

C = TypeVar("C")


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a plain dict (JSON-ready).

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Cfg:
        ...     size: int = 512
        >>> config_dict(Cfg())
        {'size': 512}
    """
    return dataclasses.asdict(config)


def config_hash(config: Any, exclude: Iterable[str] = ()) -> str:
    """A short, stable hash of a config's values (8 hex chars), independent of key order,
    over every field but those in `exclude` (fields that say how to run, not what).

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Cfg:
        ...     size: int = 512
        ...     threads: int = 0
        >>> config_hash(Cfg()) == config_hash(Cfg(size=512))
        True
        >>> config_hash(Cfg(threads=4), exclude=("threads",)) == config_hash(Cfg(), ("threads",))
        True
    """
    skip = set(exclude)
    values = {k: v for k, v in config_dict(config).items() if k not in skip}
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def config_from_dict(cls: type[C], values: dict[str, Any] | None, *, where: str = "") -> C:
    """Build a config dataclass from a dict, refusing unknown keys and wrong types by name.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Cfg:
        ...     size: int = 512
        >>> config_from_dict(Cfg, {"size": 256})
        Cfg(size=256)
    """
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    place = f" in {where}" if where else ""
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r}{place}",
            hint=f"valid keys are: {', '.join(sorted(fields))}",
        )
    for name, value in values.items():
        default = (
            getattr(cls, name, None) if fields[name].default is not dataclasses.MISSING else None
        )
        # Types are checked against the default's type: configs hold plain scalars and tuples.
        if default is not None and value is not None:
            expected = type(default)
            if expected is tuple and isinstance(value, list):
                value = values[name] = tuple(value)
            ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
            if isinstance(value, bool) and expected is not bool:
                ok = False
            if not ok:
                raise ConfigError(
                    f"bad value for {name!r}{place}: {value!r} is not a {expected.__name__}",
                    hint=f"the default is {default!r}",
                )
            if expected is float:
                values[name] = float(value)
    return cls(**values)


def expand_user(path: str | os.PathLike[str]) -> Path:
    """`path` with a leading `~` or `~user` expanded, as a shell would; a `~name` whose
    user does not exist is a ConfigError with the fix (pathlib raises a bare RuntimeError).

    Example:
        >>> expand_user("data/photos")
        PosixPath('data/photos')
    """
    try:
        return Path(path).expanduser()
    except RuntimeError:
        text = os.fspath(path)
        head = text[1:].split(os.sep, 1)[0]
        raise ConfigError(
            f"{text}: no user named {head!r} on this machine, so {'~' + head} has no home folder",
            hint=f"for a folder in your home, write ~/{text[1:]}",
        ) from None
