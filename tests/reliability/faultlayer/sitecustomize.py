"""A fault layer for lamina subprocesses, loaded by Python at start-up when this folder is
on PYTHONPATH (so every process of a run has it, spawned pool workers included). Nothing
in lamina knows about it.

It counts the writes under one folder (the store) across all processes of a run, and
makes the k-th one fail or end its process. Environment:

    LAMINA_FAULT          count | ENOSPC | EACCES | worker-kill | commit-kill
    LAMINA_FAULT_ROOT     only writes under this folder count
    LAMINA_FAULT_AT       which write (1-based) the fault hits
    LAMINA_FAULT_COUNTER  a file outside the store: the shared count, then the log

A write is: `open`/`os.open` for writing, `os.replace`/`os.rename`, `os.mkdir` of a new
folder, `os.unlink`/`os.rmdir` of an existing path, and `pyarrow.parquet.write_table`.
ENOSPC and EACCES raise that OSError; `worker-kill` SIGKILLs a pool worker at its k-th write
(mid-chunk: the chunk's work is done, its part not yet committed); `commit-kill` SIGKILLs
the process right after the k-th rename made by `Store._apply_commit`, between the renames
of a multi-file commit.
"""

import builtins
import errno
import fcntl
import importlib.abc
import importlib.machinery
import io
import json
import os
import signal
import sys

MODE = os.environ.get("LAMINA_FAULT", "")
ROOT = os.path.abspath(os.environ.get("LAMINA_FAULT_ROOT", "/nonexistent")) + os.sep
AT = int(os.environ.get("LAMINA_FAULT_AT", "0") or 0)
COUNTER = os.environ.get("LAMINA_FAULT_COUNTER", "")

_open = builtins.open
_os_open = os.open
_replace = os.replace
_rename = os.rename
_mkdir = os.mkdir
_unlink = os.unlink
_rmdir = os.rmdir
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _in_root(path):
    if isinstance(path, int):
        return False
    try:
        return os.path.abspath(os.fsdecode(os.fspath(path))).startswith(ROOT)
    except (TypeError, ValueError):
        return False


def _is_worker():
    import multiprocessing

    return multiprocessing.parent_process() is not None


def _tick(op, path):
    """Count one write; return True when this is the one the fault hits."""
    fd = _os_open(COUNTER, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.read(fd, 1 << 20).decode() or "{}"
        state = json.loads(raw)
        worker = _is_worker()
        key = "n"
        if MODE == "worker-kill":
            if not worker:
                return False
            key = "worker_n"
        elif MODE == "commit-kill":
            if sys._getframe(2).f_code.co_name != "_apply_commit" or op != "replace":
                return False
            key = "commit_n"
        elif worker:
            state["worker_n"] = state.get("worker_n", 0) + 1
        state[key] = state.get(key, 0) + 1
        state.setdefault("ops", {})[op] = state.get("ops", {}).get(op, 0) + 1
        hit = MODE not in ("", "count") and state[key] == AT and not state.get("fired")
        if hit:
            state["fired"] = {
                "op": op,
                "path": os.fsdecode(os.fspath(path)),
                "pid": os.getpid(),
                "worker": worker,
                "n": state[key],
            }
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(state).encode())
        return hit
    finally:
        os.close(fd)


def _fault(op, path):
    if MODE in ("ENOSPC", "EACCES"):
        code = getattr(errno, MODE)
        raise OSError(code, os.strerror(code), os.fsdecode(os.fspath(path)))
    if MODE == "worker-kill":
        os.kill(os.getpid(), signal.SIGKILL)


def _wants_write(mode):
    return any(c in mode for c in "wax+")


def open_(file, mode="r", *args, **kwargs):
    if _wants_write(mode) and _in_root(file) and _tick("open", file):
        _fault("open", file)
    return _open(file, mode, *args, **kwargs)


def os_open(path, flags, *args, **kwargs):
    if flags & _WRITE_FLAGS and _in_root(path) and _tick("os.open", path):
        _fault("os.open", path)
    return _os_open(path, flags, *args, **kwargs)


def replace(src, dst, *args, **kwargs):
    hit = _in_root(dst) and _tick("replace", dst)
    if hit and MODE != "commit-kill":
        _fault("replace", dst)
    out = _replace(src, dst, *args, **kwargs)
    if hit:  # commit-kill: after this rename, before the next one
        os.kill(os.getpid(), signal.SIGKILL)
    return out


def rename(src, dst, *args, **kwargs):
    if _in_root(dst) and _tick("rename", dst):
        _fault("rename", dst)
    return _rename(src, dst, *args, **kwargs)


def mkdir(path, *args, **kwargs):
    if _in_root(path) and not os.path.exists(path) and _tick("mkdir", path):
        _fault("mkdir", path)
    return _mkdir(path, *args, **kwargs)


def unlink(path, *args, **kwargs):
    if _in_root(path) and os.path.lexists(path) and _tick("unlink", path):
        _fault("unlink", path)
    return _unlink(path, *args, **kwargs)


def rmdir(path, *args, **kwargs):
    if _in_root(path) and os.path.isdir(path) and _tick("rmdir", path):
        _fault("rmdir", path)
    return _rmdir(path, *args, **kwargs)


def _patch_parquet(module):
    write_table = module.write_table

    def faulty_write_table(table, where, *args, **kwargs):
        if _in_root(where) and _tick("write_table", where):
            _fault("write_table", where)
        return write_table(table, where, *args, **kwargs)

    module.write_table = faulty_write_table


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patch pyarrow.parquet when it is imported (it is not at start-up: that would cost
    every process its import)."""

    def find_spec(self, name, path, target=None):
        if name != "pyarrow.parquet":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch_parquet(module)

        loader.exec_module = exec_and_patch
        return spec


if MODE and COUNTER:
    builtins.open = io.open = open_
    os.open = os_open
    os.replace = replace
    os.rename = rename
    os.mkdir = mkdir
    os.unlink = os.remove = unlink
    os.rmdir = rmdir
    sys.meta_path.insert(0, _PatchOnImport())
