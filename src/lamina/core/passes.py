"""The pass contract and the registry.

A pass adds one table. A *map pass* turns a batch of input rows (one per image or file)
into a batch of output rows, one per input row, and never writes to the store: the runner
(`lamina.core.runner`) owns chunking, parallelism, retries, atomic writes and the ledger.
A *global pass* reads whole tables (through the store it is given) and returns one
table (dedup groups, clusters); the runner writes it.

A pass that makes files besides its rows (thumbnails, a cache of text vectors) declares
the folders they go in (`outputs`) and returns them with its rows (`PassOutput`); the
runner writes them, atomically, in the same fenced commit as the rows, and refuses a
path outside the declared folders. A pass may read its own earlier files to reuse them.

The layer's name is `<version>-<config hash>`, the hash over every config field but
those in `run_only` (how to run, not what: batch sizes, devices, where the store is).

Adding a pass: see docs/adding-a-pass.md.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pyarrow as pa

from lamina.core.config import config_dict, config_from_dict, config_hash
from lamina.core.errors import ConfigError, LaminaError

if TYPE_CHECKING:
    from lamina.core.decode import Decoded
    from lamina.core.store import Store


@dataclass(frozen=True)
class Resources:
    """What one worker of a pass needs. The runner sizes its worker pool by them when no
    worker count is given: no more workers than the cores over `cpu`, nor than the free
    memory over the `memory_mb` of every pass a worker holds (see
    `lamina.core.runner.plan_workers`). The Ray executor asks a cluster for `cpu` and `gpu`
    per task (see `lamina.core.runner.group_resources`)."""

    cpu: float = 1.0
    memory_mb: int = 512
    # GPUs one task asks of a Ray cluster (a fraction shares one; 0: none). The local
    # executor does not schedule GPUs: a pass picks its device itself.
    gpu: float = 0.0


@dataclass(frozen=True)
class FileOutputs:
    """A folder under the store root that a pass writes files into, through the runner.
    `fsync=False` for files that can be made again (thumbnails): not flushed to disk, so
    after a power cut one may be empty (the pass then makes it again), never half of
    another.

    Example:
        >>> FileOutputs("thumbs", fsync=False).folder
        'thumbs'
    """

    folder: str
    fsync: bool = True


@dataclass
class PassOutput:
    """What `process`, `process_decoded` or `compute` returns when the pass has files to
    write: its rows, and `files` (path relative to the store root -> bytes), each under
    one of the pass's declared `outputs` folders. A pass without files returns the table.

    Example:
        >>> out = PassOutput(pa.table({"image_id": ["a"]}), {"thumbs/x/a.webp": b"..."})
        >>> sorted(out.files)
        ['thumbs/x/a.webp']
    """

    table: pa.Table
    files: dict[str, bytes] = field(default_factory=dict)


def split_output(out: pa.Table | PassOutput) -> tuple[pa.Table, dict[str, bytes]]:
    """(rows, files) of what a pass returned.

    Example:
        >>> split_output(pa.table({"k": [1]}))[1]
        {}
    """
    if isinstance(out, PassOutput):
        return out.table, out.files
    return out, {}


@dataclass(frozen=True)
class NoConfig:
    """The config of a pass that takes none."""


class Pass:
    """Base class of every pass. Subclasses set the class attributes and `process`.

    Example:
        >>> @register
        ... class Width(Pass):
        ...     name = "width_example"
        ...     version = "1"
        ...     schema = pa.schema([("image_id", pa.string()), ("w", pa.int32())])
        ...     def process(self, batch):
        ...         return pa.table({"image_id": batch["image_id"], "w": batch["width"]})
        >>> Width().layer_id  # doctest: +ELLIPSIS
        '1-...'
    """

    name: ClassVar[str]
    version: ClassVar[str]
    kind: ClassVar[Literal["map", "global"]] = "map"
    Config: ClassVar[type] = NoConfig
    reads: ClassVar[tuple[str, ...]] = ("images",)
    # The output columns; an instance may refine them (a model's vector dimension).
    schema: pa.Schema
    key: ClassVar[str] = "image_id"
    # Config fields that say how to run, not what to compute: left out of the layer hash.
    run_only: ClassVar[tuple[str, ...]] = ()
    # Folders under the store root this pass's files go into (see PassOutput).
    outputs: ClassVar[tuple[FileOutputs, ...]] = ()
    resources: ClassVar[Resources] = Resources()
    # (importable module, pip requirement) pairs checked when the pass is created.
    requires: tuple[tuple[str, str], ...] = ()  # an instance may refine it (its model's)
    # Map passes that work on pixels set this to a decode recipe ("working": EXIF-oriented
    # RGB, long side <= 512, see lamina.core.decode) and implement `process_decoded`. The
    # runner then decodes each image once for all such passes run together.
    decode: ClassVar[str | None] = None

    def __init__(self, config: Any = None) -> None:
        if isinstance(config, dict) or config is None:
            config = config_from_dict(self.Config, config, where=f"the {self.name} config")
        self.config = config
        for module, requirement in self.requires:
            # Found, not imported: importing costs every process that creates the pass
            # (scipy.ndimage ~0.3 s, the main process of `lamina sense` included), and the
            # workers import what they use when they use it.
            cause: Exception | None = None
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError) as exc:  # a parent package missing or broken
                found, cause = False, exc
            if not found:
                raise LaminaError(
                    f"the {self.name} pass needs the package {requirement!r}",
                    hint=f"pip install '{requirement}'",
                ) from cause

    @property
    def config_hash(self) -> str:
        """The hash of every config field but `run_only`: what names the layer.

        Example:
            >>> get_pass("embed", {"batch_size": 8}).config_hash == get_pass("embed").config_hash
            True
        """
        return config_hash(self.config, exclude=self.run_only)

    @property
    def layer_id(self) -> str:
        """Names the output layer: version and config hash."""
        return f"{self.version}-{self.config_hash}"

    def config_dict(self) -> dict[str, Any]:
        return config_dict(self.config)

    def describe(self) -> dict[str, Any]:
        """What the run record should say about this pass beyond its config (a model's
        weights digest and preprocessing, say). Called once in the main process before any
        work, so it is also where a pass that cannot start fails early. Default: nothing.

        Example:
            >>> get_pass("scan").describe()
            {}
        """
        return {}

    # -- map passes ------------------------------------------------------------------------

    def setup(self) -> None:
        """Once per worker, before the first batch: load models here."""

    def process(self, batch: pa.Table) -> pa.Table | PassOutput:
        """One output row per input row, in the pass's `schema` (with files to write, a
        `PassOutput`). No store writes: the runner writes what it returns.

        A pass with a `decode` recipe gets this for free: it decodes each row's
        `abs_path` and calls `process_decoded`.
        """
        if self.decode is None:
            raise NotImplementedError(f"{type(self).__name__} is a {self.kind} pass")
        from lamina.core.decode import decode_batch

        return self.process_decoded(batch, decode_batch(batch, self.decode))

    def process_decoded(self, batch: pa.Table, images: list[Decoded]) -> pa.Table | PassOutput:
        """Like `process`, with `images[i]` the decoded pixels of row i (a
        `lamina.core.decode.Decoded`, whose `error` is set when decoding failed)."""
        raise NotImplementedError(f"{type(self).__name__} has no decode recipe")

    # -- global passes ---------------------------------------------------------------------

    def compute(self, store: Store) -> pa.Table | PassOutput:
        """A global pass's whole output table (with files to write, a `PassOutput`), from
        the tables in `reads` (read through `store.table(...)` / `store.sql(...)`; never
        written by the pass)."""
        raise NotImplementedError(f"{type(self).__name__} is a {self.kind} pass")

    def input_paths(self, store: Store) -> list[Path]:
        """Files a global pass reads beyond the current layers of its `reads` (one model's
        embedding layer, another pass's layer for a given config): the runner hashes them
        into the input fingerprint, so a change to any of them re-runs the pass."""
        return []

    def teardown(self) -> None:
        """Once per worker, after the last batch."""


REGISTRY: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Add a pass class to the registry under its `name` (used as a class decorator)."""
    for attr in ("name", "version", "schema"):
        if not hasattr(cls, attr):
            raise TypeError(f"pass {cls.__name__} lacks the class attribute {attr!r}")
    if cls.schema.names[0] != cls.key:
        raise TypeError(f"pass {cls.name}: the first output column must be {cls.key!r}")
    if not dataclasses.is_dataclass(cls.Config):
        raise TypeError(f"pass {cls.name}: Config must be a dataclass")
    REGISTRY[cls.name] = cls
    return cls


def get_pass(name: str, config: Any = None) -> Pass:
    """Create the registered pass `name` with `config` (a dict or its Config).

    Example:
        >>> import lamina.catalog  # registers the passes
        >>> get_pass("scan").name
        'scan'
    """
    if name not in REGISTRY:
        raise ConfigError(
            f"unknown pass {name!r}", hint=f"registered passes: {', '.join(sorted(REGISTRY))}"
        )
    return REGISTRY[name](config)
