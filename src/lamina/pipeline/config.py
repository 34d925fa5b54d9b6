"""The config of `lamina run`: one flat TOML (or YAML) file, laid over built-in defaults
and under the command line (`resolve_config`), printed back by `lamina run --print-config`
(`config_toml`), and checked before any stage runs (`check_before_work`).

The keys `root, labels_file, model_name, pretrained, batch_images, batch_labels, threshold,
topk, max_images, run_dir` are the ones Photo-Tagger users know; the rest are lamina's.

Example:
    >>> resolve_config(None, {"root": ["/photos"], "topk": 3}).topk
    3
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamina.core.config import expand_user
from lamina.core.errors import ConfigError
from lamina.core.remote import is_url

# Stages in run order. `sidecars` writes files next to the originals (or into a mirror
# tree), so it runs only when asked for; so do the language stages (ocr, modality,
# caption), which cost model time (their keys below say how much), and `segment` and
# `motifs`, which cost as much as embedding again (~30 crops per image).
# `modality` follows `embed`, so its head reads the vectors a first run makes.
STAGES = ("scan", "sense", "ocr", "embed", "modality", "cluster", "segment", "motifs",
          "caption", "depth", "tag", "export", "sidecars", "report")  # fmt: skip
DEFAULT_STAGES = ("scan", "sense", "embed", "cluster", "tag", "export", "report")

# Keys holding paths: relative ones are read from the config file's folder.
PATH_KEYS = ("labels_file", "run_dir", "policy", "sidecar_dir")


@dataclass
class PipelineConfig:
    """Everything `lamina run` can be told; `lamina run --print-config` shows it resolved.

    Example:
        >>> PipelineConfig(root=["photos"], model="default").embed_model()
        'efficientnet_lite0:imagenet'
    """

    root: list[str] = field(default_factory=list)  # source folders
    labels_file: str = ""  # one label per line; tags are made only when given
    model: str = "auto"  # embedder spec; auto: a CLIP if cached or downloadable, else default
    model_name: str = ""  # open_clip architecture (Photo-Tagger); overrides `model`
    pretrained: str = ""  # its pretrained tag or checkpoint path
    tag_model: str = ""  # "" = the embedder when it has a text tower, else "offline"
    templates: list[str] = field(default_factory=lambda: ["a photo of {}"])
    batch_images: int = 32
    batch_labels: int = 256
    threshold: float | str = "auto"  # "auto" = the tagger's own default
    topk: int = 5
    max_images: int = 0  # 0 = every image; else the first N by image id (a stable sample)
    run_dir: str = ""  # exports and config.json; "" = <store>/exports
    workers: int = 0  # 0 = every core
    follow_links: bool = False  # follow symlinks that lead out of the sources
    archive_depth: int = 2  # levels of ZIP / TAR archives read as folders (0: none)
    offline: bool = False  # never download model weights (HF_HUB_OFFLINE=1 does too)
    invariant: bool = False  # group mirrored / rotated copies too
    policy: str = ""  # flags policy TOML laid over the defaults
    clusters: int = 0  # k for k-means; 0 = round(sqrt(N / 2))
    sidecar_use: str = "approved"  # approved | over_threshold
    sidecar_style: str = "adobe"  # adobe (name.xmp) | darktable (name.ext.xmp)
    sidecar_dir: str = ""  # a mirror tree instead of next to the originals
    stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES))
    ocr_engine: str = "rapidocr"  # stage ocr (off by default): text_heavy images, ~1-2 s each
    caption_model: str = ""  # stage caption (off by default): hf:<repo or folder>
    caption_max: int = 50  # captions per run at most (~0.5-5 s each on a CPU, model-dependent)
    depth_model: str = ""  # stage depth (off by default): hf:<repo or folder>, on the photos

    def embed_model(self) -> str:
        """The canonical embedder spec: `open_clip:<model_name>/<pretrained>` when the
        Photo-Tagger keys are set, else `model` (`auto` resolved, once per process)."""
        from lamina.backends.embedders.fetch import resolve_model

        spec = self.model
        if self.model_name:
            spec = self.model_name
            if ":" not in spec:
                if not self.pretrained:
                    raise ConfigError(
                        f"model_name = {self.model_name!r} needs `pretrained` (a tag such as "
                        "'openai' or a checkpoint file)",
                        hint="set pretrained in the config, or give a full spec as `model`",
                    )
                spec = f"open_clip:{self.model_name}/{self.pretrained}"
        return resolve_model(spec, self.offline)

    def tagger(self) -> str:
        """The model that scores labels: `tag_model`, else the embedder when it can embed
        text, else the offline tagger."""
        if self.tag_model:
            return self.tag_model
        model = self.embed_model()
        return model if model.startswith(("open_clip:", "hf:")) else "offline"

    def threshold_value(self) -> float | None:
        return None if self.threshold == "auto" else float(self.threshold)


def _check_type(key: str, value: Any, default: Any) -> Any:
    if key == "root" and isinstance(value, str):
        return [value]
    if key == "threshold":
        if value == "auto" or (isinstance(value, int | float) and not isinstance(value, bool)):
            return value
        raise ConfigError(f"threshold must be a number or 'auto', not {value!r}")
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(
            f"config key {key!r} must be {type(default).__name__}, not {value!r}",
            hint=f"default: {key} = {_toml_value(default)}",
        )
    return value


def resolve_config(path: str | Path | None, overrides: dict[str, Any]) -> PipelineConfig:
    """Defaults, then the TOML (or YAML) file at `path`, then `overrides` (the command line).
    Unknown keys are refused by name; relative paths in the file are read from its folder.

    Example:
        >>> resolve_config(None, {"root": ["photos"], "topk": 3}).topk
        3
    """
    defaults = PipelineConfig()
    values: dict[str, Any] = {}
    known = [f.name for f in dataclasses.fields(PipelineConfig)]
    if path is not None:
        file = expand_user(path)
        data = read_config_file(file)
        base = file.absolute().parent
        for key, value in data.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                raise ConfigError(
                    f"unknown key {key!r} in {file}",
                    hint=f"did you mean {close[0]!r}?" if close else f"keys: {', '.join(known)}",
                )
            value = _check_type(key, value, getattr(defaults, key))
            if key == "root":
                value = [v if is_url(v) else os.path.normpath(base / expand_user(v)) for v in value]
            elif (key in PATH_KEYS and value) or (key == "pretrained" and _is_path(value)):
                value = os.path.normpath(base / expand_user(value))
            values[key] = value
    for key, value in overrides.items():
        if value is not None and value != () and value != []:
            value = list(value) if isinstance(value, tuple) else value
            value = _check_type(key, value, getattr(defaults, key))
            # Paths from the command line are read from the working folder: frozen
            # absolute, so the recorded config means the same from anywhere.
            if key == "root":
                value = [
                    v if is_url(v) else os.path.abspath(os.fspath(expand_user(v))) for v in value
                ]
            elif key in PATH_KEYS and value:
                value = os.path.abspath(os.fspath(expand_user(value)))
            values[key] = value
    config = dataclasses.replace(defaults, **values)
    unknown = [s for s in config.stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}", hint=f"stages: {', '.join(STAGES)}")
    _check_ranges(config)
    config.embed_model()  # a bad model spec fails here, before any work
    return config


def read_config_file(file: Path) -> dict[str, Any]:
    """The keys of a config file: TOML, or YAML when it is named `.yaml` / `.yml` (the
    `config.yaml` of Photo-Tagger; same keys). A YAML key left empty (`run_dir:`) keeps its
    default.

    Example:
        >>> read_config_file(Path("config.yaml"))  # doctest: +SKIP
        {'root': '/photos', 'labels_file': 'labels.txt', 'topk': 5}
    """
    yaml_file = file.suffix.lower() in (".yaml", ".yml")
    kind = "YAML" if yaml_file else "TOML"
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"the config file {file} does not exist",
            hint="`lamina run --print-config > lamina.toml` writes one to edit",
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the config file {file} is not valid {kind}: {exc}") from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the config file {file}: {exc.strerror or exc}",
            hint="check its permissions",
        ) from None
    if not yaml_file:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"the config file {file} is not valid TOML: {exc}") from None
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the config file {file} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ConfigError(
            f"the config file {file} must be a mapping of keys to values, not "
            f"{type(data).__name__}",
            hint="one `key: value` per line, e.g. `topk: 5`",
        )
    return {k: v for k, v in data.items() if v is not None}


def _is_path(value: str) -> bool:
    """A `pretrained` value that names a checkpoint file rather than a tag."""
    return "/" in value or value.endswith((".pt", ".pth", ".bin", ".safetensors"))


def _check_ranges(config: PipelineConfig) -> None:
    at_least = {"topk": 1, "batch_images": 1, "batch_labels": 1, "max_images": 0,
                "workers": 0, "clusters": 0, "caption_max": 1}  # fmt: skip
    for key, low in at_least.items():
        if getattr(config, key) < low:
            raise ConfigError(f"{key} must be at least {low}, not {getattr(config, key)}")
    if config.threshold != "auto" and not -1.0 <= float(config.threshold) <= 1.0:
        raise ConfigError(
            f"threshold must lie in [-1, 1] (a cosine or a score), not {config.threshold}",
            hint='threshold = "auto" takes the tagger\'s own default',
        )
    choices = {"sidecar_use": ("approved", "over_threshold"),
               "sidecar_style": ("adobe", "darktable")}  # fmt: skip
    for key, allowed in choices.items():
        if getattr(config, key) not in allowed:
            raise ConfigError(
                f"{key} must be one of {', '.join(allowed)}, not {getattr(config, key)!r}"
            )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML string


def config_toml(config: PipelineConfig) -> str:
    """The config as TOML (what `lamina run --print-config` prints), with a comment per key.

    Example:
        >>> "topk = 5" in config_toml(PipelineConfig())
        True
    """
    import inspect

    comments: dict[str, str] = {}
    for line in inspect.getsource(PipelineConfig).splitlines():
        name, _, rest = line.strip().partition(":")
        if "#" in rest and name.isidentifier():
            comments[name] = rest.split("#", 1)[1].strip()
    lines = ["# lamina run: the resolved pipeline config (lamina run --config FILE reads it)"]
    for f in dataclasses.fields(config):
        note = comments.get(f.name)
        lines.append(f"{f.name} = {_toml_value(getattr(config, f.name))}")
        if note:
            lines[-1] += f"  # {note}"
    return "\n".join(lines) + "\n"


def check_before_work(config: PipelineConfig) -> None:
    """Refuse, before hours of scanning and embedding, what would stop the run at a later
    stage: a bad label file, an exports folder inside a source.

    Example:
        >>> check_before_work(PipelineConfig(labels_file="nope.txt"))  # doctest: +SKIP
        ConfigError: the label file nope.txt does not exist ...
    """
    if config.labels_file and "tag" in config.stages:
        from lamina.tagging.labels import load_labels

        load_labels(config.labels_file)
    if config.run_dir and "export" in config.stages:
        out = expand_user(config.run_dir).absolute().resolve()
        for root in config.root:
            if is_url(root):  # a remote source: nothing local to write into
                continue
            src = expand_user(root).absolute().resolve()
            if out == src or src in out.parents:
                raise ConfigError(
                    f"run_dir {config.run_dir} lies inside the source {root}; lamina never "
                    "writes inside a source",
                    hint="choose a run_dir outside it (default: <store>/exports)",
                )
