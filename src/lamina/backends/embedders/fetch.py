"""Model weights fetched the first time they are asked for, as open_clip, timm and
transformers fetch them: into the Hugging Face hub cache (`~/.cache/huggingface/hub`, or
`HF_HUB_CACHE` / `HF_HOME`), from `HF_ENDPOINT` (default https://huggingface.co).

- A file already in the cache is used as it is: no network at all.
- Offline (`--offline`, the run config's `offline = true`, or `HF_HUB_OFFLINE=1` /
  `TRANSFORMERS_OFFLINE=1`), a missing file is an error saying how to get it; nothing is
  ever downloaded.
- Otherwise the file's size is asked first (a HEAD request, or the hub's file list), logged
  with where it goes, then `huggingface_hub.hf_hub_download` fetches it with a progress
  bar. It writes to a temporary file of its own, resumes a dropped connection from where it
  stopped (HTTP Range), checks the size, and only then moves the file into the cache; an
  interrupted download leaves no file a later load could find (a killed process leaves an
  `*.incomplete` file that nothing reads). Files whose ETag is their SHA-256 (the hub's
  LFS files: all weights) are hashed after the download, and deleted if they differ.

`choose_default` picks the model `lamina embed` and `lamina run` use when none is named.

Heavy imports stay inside functions: `huggingface_hub` (~0.2 s) is imported only when a
cache is looked at.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.core.errors import LaminaError

log = logging.getLogger("lamina")

HUB = "https://huggingface.co"
OFFLINE_HOW = "--offline, `offline = true` or HF_HUB_OFFLINE=1"
# The text-capable model `auto` prefers: open_clip's ViT-B-32 trained on LAION-2B, the most
# used open CLIP (ImageNet zero-shot top-1 66.6%), 512-d, 151 M parameters. The file names are the
# ones open_clip reads for its tag (`open_clip.get_pretrained_cfg`; a test checks).
CLIP_DEFAULT = "open_clip:ViT-B-32/laion2b_s34b_b79k"
CLIP_DEFAULT_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# How long `auto` waits for the hub before it settles for the offline model.
PROBE_TIMEOUT_S = 3.0
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _true(value: str | None) -> bool:
    return (value or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def offline_mode(offline: bool | None = None) -> bool:
    """Whether downloads are off: `offline` when True, else the environment
    (`HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE` set to 1 / true / yes / on).

    Example:
        >>> offline_mode(True)
        True
    """
    return bool(offline) or any(
        _true(os.environ.get(k)) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@contextlib.contextmanager
def offline_env(offline: bool) -> Iterator[None]:
    """`HF_HUB_OFFLINE=1` while the block runs, when `offline`: lamina downloads nothing in
    it, and neither do the worker processes it starts (they inherit the variable).

    Example:
        >>> with offline_env(True):
        ...     offline_mode()
        True
    """
    if not offline:
        yield
        return
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


def endpoint() -> str:
    """The hub lamina downloads from: `HF_ENDPOINT`, else https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or HUB).rstrip("/")


def cache_dir() -> str:
    """The hub cache folder huggingface_hub reads and writes."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def human_bytes(n: int | None) -> str:
    """A size for people.

    Example:
        >>> human_bytes(605_123_456), human_bytes(None)
        ('605.1 MB', 'unknown size')
    """
    if n is None:
        return "unknown size"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class Remote:
    """One file on the hub: where it is, its size and ETag (the SHA-256 for LFS files)."""

    repo: str
    filename: str
    size: int | None
    etag: str | None

    @property
    def url(self) -> str:
        return f"{endpoint()}/{self.repo}/blob/main/{self.filename}"


def cached_file(repo: str, names: tuple[str, ...], revision: str | None = None) -> str | None:
    """The first of `names` in `repo` that the hub cache holds, or None. No network.

    Example:
        >>> cached_file("timm/test_vit.r160_in1k", ("model.safetensors",))  # doctest: +SKIP
        '/root/.cache/huggingface/hub/models--timm--…/snapshots/…/model.safetensors'
    """
    from huggingface_hub import try_to_load_from_cache

    for name in names:
        found = try_to_load_from_cache(repo, name, revision=revision)
        if isinstance(found, str):
            return found
    return None


def find_remote(
    repo: str, names: tuple[str, ...], *, revision: str | None = None, timeout: float = 10.0
) -> Remote:
    """The first of `names` that `repo` has, with its size (HEAD requests only). A
    LaminaError when the hub cannot be reached or has none of them.

    Example:
        >>> find_remote(CLIP_DEFAULT_REPO, OPEN_CLIP_FILES).size  # doctest: +SKIP
        605143604
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    where = endpoint()
    for name in names:
        url = hf_hub_url(repo, name, revision=revision, endpoint=where)
        try:
            meta = get_hf_file_metadata(url, timeout=timeout, endpoint=where)
        except EntryNotFoundError:
            continue
        except RepositoryNotFoundError:
            raise LaminaError(
                f"{where} has no model repository {repo!r} (or it is private or gated)",
                hint="check the name; for a gated model log in with `hf auth login`",
            ) from None
        except Exception as exc:  # no network, a proxy, DNS, a timeout, a 5xx
            raise _unreachable(where, exc) from None
        return Remote(repo, name, meta.size, meta.etag)
    raise LaminaError(
        f"{where}/{repo} has none of the files {', '.join(names)}",
        hint="check the model name; it may be stored in a format lamina does not read",
    )


def _unreachable(where: str, exc: BaseException) -> LaminaError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return LaminaError(
        f"could not reach {where} to download model weights ({reason})",
        hint="check the network (or HTTPS_PROXY, HF_ENDPOINT); or copy ~/.cache/huggingface "
        "from a machine that has the weights; --offline stops lamina from trying",
    )


def _tqdm_class() -> Any:
    """The hub's own progress bar on a terminal; elsewhere none (log lines say it instead),
    so a log file does not fill with carriage returns."""
    if sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    class Silent(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


def download(what: str, remotes: list[Remote]) -> list[str]:
    """Fetch `remotes` into the hub cache (see the module docstring), saying first what
    and how much; their cached paths, in order.

    Example:
        >>> remote = find_remote(CLIP_DEFAULT_REPO, OPEN_CLIP_FILES)  # doctest: +SKIP
        >>> download("open_clip ViT-B-32", [remote])  # doctest: +SKIP
        ['/root/.cache/huggingface/hub/models--laion--…/open_clip_model.safetensors']
    """
    from huggingface_hub import hf_hub_download

    known = [r.size for r in remotes if r.size is not None]
    total = human_bytes(sum(known)) if len(known) == len(remotes) else "unknown size"
    repos = sorted({r.repo for r in remotes})
    log.info(
        "downloading %s: %s in %d file(s) from %s/%s into %s (once: later runs read the "
        "cache; %s never downloads)",
        what,
        total,
        len(remotes),
        endpoint(),
        ", ".join(repos),
        cache_dir(),
        OFFLINE_HOW,
    )
    t0 = time.monotonic()
    paths = []
    for remote in remotes:
        try:
            path = hf_hub_download(
                remote.repo, remote.filename, endpoint=endpoint(), tqdm_class=_tqdm_class()
            )
        except Exception as exc:  # a connection lost for good, a size check, the disk
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise LaminaError(
                f"the download of {remote.filename} ({what}) failed: {reason}",
                hint="run the command again: nothing partial was kept, it starts over",
            ) from None
        _verify(path, remote, what)
        paths.append(path)
    log.info("downloaded %s (%s) in %.0f s", what, total, time.monotonic() - t0)
    return paths


def _verify(path: str, remote: Remote, what: str) -> None:
    """Hash a downloaded LFS file (its ETag is its SHA-256); delete it when they differ."""
    if not remote.etag or not _SHA256.fullmatch(remote.etag):
        return
    from lamina.backends.embedders._common import file_sha256

    digest = file_sha256(os.path.realpath(path))
    if digest != remote.etag:
        blob = os.path.realpath(path)
        Path(path).unlink(missing_ok=True)
        Path(blob).unlink(missing_ok=True)
        raise LaminaError(
            f"the downloaded {remote.filename} ({what}) is corrupt: SHA-256 {digest[:12]}… "
            f"where the hub says {remote.etag[:12]}…; it was deleted",
            hint="run the command again to download it afresh",
        )


def fetch_file(
    what: str,
    repo: str,
    names: tuple[str, ...],
    *,
    offline: bool | None,
    missing: LaminaError,
    revision: str | None = None,
) -> tuple[str, str]:
    """(path, source) of the first of `names` in `repo`: from the cache ("cache"), else
    downloaded ("download"), unless offline, where `missing` (the error saying how to get
    the file) is raised.

    Example:
        >>> fetch_file("timm test_vit", "timm/test_vit.r160_in1k", ("model.safetensors",),
        ...            offline=None, missing=LaminaError("no"))  # doctest: +SKIP
        ('/root/.cache/huggingface/hub/…/model.safetensors', 'download')
    """
    found = cached_file(repo, names, revision)
    if found is not None:
        return found, "cache"
    if offline_mode(offline):
        raise missing
    remote = find_remote(repo, names, revision=revision)
    return download(what, [remote])[0], "download"


# Top-level files of a transformers repo that loading needs: configs, tokenizer and
# image-processor files, and the weights in one format, as transformers picks them
# (`model.safetensors` or its shards, else `pytorch_model.bin` or its shards; not the
# fp16 / onnx / flax / tf variants).
_CONFIG_SUFFIXES = (".json", ".txt", ".model", ".tiktoken")
_SAFETENSORS = re.compile(r"model(-\d+-of-\d+)?\.safetensors")
_PYTORCH_BIN = re.compile(r"pytorch_model(-\d+-of-\d+)?\.bin")


def _repo_files(siblings: list[Any]) -> list[Any]:
    """The siblings (hub file entries) a transformers model loads from.

    Example:
        >>> from types import SimpleNamespace as F
        >>> names = ["config.json", "model.safetensors", "pytorch_model.bin", "onnx/m.onnx"]
        >>> [f.rfilename for f in _repo_files([F(rfilename=n) for n in names])]
        ['config.json', 'model.safetensors']
    """
    top = [s for s in siblings if "/" not in s.rfilename]
    configs = [s for s in top if s.rfilename.endswith(_CONFIG_SUFFIXES)]
    weights = [s for s in top if _SAFETENSORS.fullmatch(s.rfilename)] or [
        s for s in top if _PYTORCH_BIN.fullmatch(s.rfilename)
    ]
    return configs + weights


def fetch_snapshot(what: str, repo: str, *, offline: bool | None, missing: LaminaError) -> Path:
    """The folder of `repo`'s snapshot in the hub cache: as it is when the cache has one,
    else its configs, tokenizer files and weights downloaded (the sizes from the hub's file
    list first), unless offline (`missing` is raised).

    Example:
        >>> fetch_snapshot("CLIP", "openai/clip-vit-base-patch32", offline=None,
        ...                missing=LaminaError("no"))  # doctest: +SKIP
        PosixPath('/root/.cache/huggingface/hub/models--openai--clip-vit-base-patch32/snapshots/…')
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except Exception:  # LocalEntryNotFoundError, a bad repo id, ...
        if offline_mode(offline):
            raise missing from None
    try:
        info = HfApi(endpoint=endpoint()).model_info(repo, files_metadata=True, timeout=10)
    except RepositoryNotFoundError:
        raise LaminaError(
            f"{endpoint()} has no model repository {repo!r} (or it is private or gated)",
            hint="check the name, or give a local folder: --model hf:/path/to/folder",
        ) from None
    except Exception as exc:
        raise _unreachable(endpoint(), exc) from None
    files = _repo_files(list(info.siblings or []))
    if not any(s.rfilename.endswith((".safetensors", ".bin")) for s in files):
        raise LaminaError(
            f"{endpoint()}/{repo} has no PyTorch weights (model*.safetensors or "
            "pytorch_model*.bin)",
            hint="lamina loads transformers models in PyTorch format",
        )
    remotes = [
        Remote(repo, s.rfilename, s.size, s.lfs.sha256 if getattr(s, "lfs", None) else None)
        for s in files
    ]
    download(what, remotes)
    return Path(snapshot_download(repo, local_files_only=True))


@dataclass(frozen=True)
class Choice:
    """The model `auto` stands for, and why, in words for the one line that says so."""

    spec: str
    reason: str

    def line(self) -> str:
        return f"model: {self.spec} ({self.reason})"


def _probe(repo: str, names: tuple[str, ...], timeout: float) -> Remote | str:
    """The remote file, or why not (unreachable, no answer within `timeout` seconds). Runs
    in a daemon thread, because a name lookup can block past any socket timeout."""
    box: list[Remote | str] = [f"{endpoint()} did not answer within {timeout:g} s"]

    def ask() -> None:
        try:
            box[0] = find_remote(repo, names, timeout=timeout)
        except LaminaError as exc:
            box[0] = exc.message

    thread = threading.Thread(target=ask, name="lamina-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)  # the HEAD's own timeout first, when it can fire
    return box[0]


@functools.cache
def choose_default(offline: bool) -> Choice:
    """The model to embed with when none is named: the best text-capable one available
    (open_clip ViT-B-32 LAION-2B, `CLIP_DEFAULT`) when its weights are cached, or can be
    downloaded (the hub answers a HEAD within `PROBE_TIMEOUT_S`); else the offline
    EfficientNet-Lite0, which ships in a package. Decided once per process.

    Example:
        >>> choose_default(True).spec  # doctest: +SKIP
        'efficientnet_lite0:imagenet'
    """
    from lamina.backends.embedders import DEFAULT_SPEC

    fallback = "EfficientNet-Lite0, offline, images only"
    if importlib.util.find_spec("open_clip") is None:
        return Choice(
            DEFAULT_SPEC,
            f"{fallback}: open_clip_torch is not installed; with it (pip install "
            f"open_clip_torch) the default is {CLIP_DEFAULT}, which also searches by text",
        )
    if cached_file(CLIP_DEFAULT_REPO, OPEN_CLIP_FILES) is not None:
        return Choice(CLIP_DEFAULT, "text-capable CLIP, weights in the HF cache")
    if offline:
        return Choice(
            DEFAULT_SPEC,
            f"{fallback}: offline ({OFFLINE_HOW}) and {CLIP_DEFAULT} is not in the HF cache",
        )
    remote = _probe(CLIP_DEFAULT_REPO, OPEN_CLIP_FILES, PROBE_TIMEOUT_S)
    if isinstance(remote, str):
        return Choice(
            DEFAULT_SPEC, f"{fallback}: {CLIP_DEFAULT} is not in the HF cache and {remote}"
        )
    return Choice(
        CLIP_DEFAULT,
        f"text-capable CLIP; its weights ({human_bytes(remote.size)}) download once into "
        f"{cache_dir()}",
    )


def resolve_model(spec: str | None, offline: bool | None = None) -> str:
    """The canonical spec of `spec`, with `auto` (or nothing) replaced by `choose_default`.

    Example:
        >>> resolve_model("default")
        'efficientnet_lite0:imagenet'
    """
    from lamina.backends.embedders import parse_spec

    text = (spec or "").strip()
    if text in ("", "auto"):
        return choose_default(offline_mode(offline)).spec
    return parse_spec(text).canonical
