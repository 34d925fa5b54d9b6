"""Shared fixtures: small generated image trees."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lamina.catalog  # noqa: F401 - registers the built-in passes, as every entry point does
from tests.s3_support import endpoint, s3env  # noqa: F401 - the moto S3 fixtures

# The suite runs offline: lamina downloads missing hub weights by default, and no test may
# (set before huggingface_hub is imported, which reads it once). The tests of the download
# path clear it and serve a fake hub (tests/backends/embedders/fake_hub.py).
os.environ["HF_HUB_OFFLINE"] = "1"


def _threads_per_worker() -> int | None:
    """Each pytest-xdist worker's share of the cores (None outside xdist)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers < 2:
        return None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // workers)


# `make test` runs two xdist workers on CI's two cores. torch (and OpenMP, BLAS in the
# processes the tests start) would give every in-process model a thread per core in each
# worker, and the threads of two workers fight over the cores: the planted-motifs test
# took 93 s of CPU with two threads and 56 s with one, MiniLM's encode 8.7 s and 3.5 s.
# So each worker gets its share (set before torch is imported, which reads it once;
# a test or a run that asks for threads still sets its own).
if (_threads := _threads_per_worker()) is not None:
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))
    if "torch" in sys.modules:  # imported already (by a plugin): it read the variable before
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _keep_big_blocks() -> None:
    """glibc's malloc maps every block over 32 MB anew and unmaps it when freed, so each
    forward pass of a torch model over a batch (activations of 25-50 MB) faults its pages
    in again: the planted-motifs test spent 27 s of its 60 s of CPU in the kernel (15
    million page faults), 1.4 s with big blocks kept. This process only (the tests that
    start processes measure their memory as a user would run them)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 256 << 20)
    libc.mallopt(m_trim_threshold, 512 << 20)


_keep_big_blocks()


def write_photo(path: Path, seed: int, size: tuple[int, int] = (64, 48), fmt: str = "JPEG") -> Path:
    """A small, distinct, noise-textured RGB image."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, fmt)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A source with good images, a byte copy, every junk kind and a broken file."""
    src = tmp_path / "src"
    write_photo(src / "cats" / "a.jpg", 1)
    write_photo(src / "cats" / "b.jpg", 2)
    write_photo(src / "dogs" / "c.png", 3, fmt="PNG")
    (src / "dogs" / "c_copy.png").write_bytes((src / "dogs" / "c.png").read_bytes())
    good = (src / "cats" / "a.jpg").read_bytes()
    (src / "broken").mkdir()
    (src / "broken" / "cut.jpg").write_bytes(good[: len(good) // 2])
    (src / "broken" / "empty.jpg").write_bytes(b"")
    (src / "broken" / "notes.txt").write_text("not an image\n")
    (src / "__MACOSX" / "cats").mkdir(parents=True)
    (src / "__MACOSX" / "cats" / "._a.jpg").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)
    (src / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 100)
    return src
