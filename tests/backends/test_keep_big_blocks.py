"""A process that loads a model keeps glibc's big malloc blocks (`keep_big_blocks`).

Each check runs in a fresh interpreter: the test process keeps them already (conftest)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")

# A 64 MB block: over glibc's default mmap threshold (at most 32 MB), under the kept one.
PROBE = """
import ctypes
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks"
                " fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
mapped = libc.mallinfo2().hblkhd
block = libc.malloc(64 << 20)
mapped = libc.mallinfo2().hblkhd - mapped
libc.free(block)
print(applied, mapped >> 20, libc.mallinfo2().fordblks >> 20)
"""


def _probe(setup: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    clean.pop("LAMINA_KEEP_BIG_BLOCKS", None)
    out = subprocess.run(
        [sys.executable, "-c", setup + PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={**clean, **env},
    )
    return out.stdout.split()


def _glibc() -> bool:
    import ctypes

    return hasattr(ctypes.CDLL(None), "mallinfo2")


@pytest.mark.skipif(not _glibc(), reason="needs glibc 2.33+ (mallinfo2)")
def test_a_process_that_loads_a_model_keeps_big_blocks() -> None:
    _, mapped, free = _probe(
        "from lamina.backends.embedders import load_embedder\n"
        "load_embedder('default', device='cpu', offline=True)\n"
        "applied = True\n"
    )
    # From the heap, not mapped, and kept there once freed.
    assert int(mapped) == 0
    assert int(free) >= 64


@pytest.mark.skipif(not _glibc(), reason="needs glibc 2.33+ (mallinfo2)")
def test_escape_hatch_leaves_malloc_as_it_was() -> None:
    setup = "from lamina.backends import keep_big_blocks\napplied = keep_big_blocks()\n"
    assert _probe(setup)[:2] == ["True", "0"]
    applied, mapped, _ = _probe(setup, LAMINA_KEEP_BIG_BLOCKS="0")
    assert applied == "False"
    assert int(mapped) >= 64  # glibc's default: mapped anew
    applied, mapped, _ = _probe(setup, MALLOC_MMAP_THRESHOLD_=str(32 << 20))
    assert (applied, int(mapped) >= 64) == ("False", True)  # the user's own setting stands
