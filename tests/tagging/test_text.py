"""The text-vector cache: computed once per (model, texts, templates), ensembles averaged."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from lamina.tagging.text import cache_key, cache_path, text_vectors


class Counting:
    """A fake text model: a fixed vector per string, counting what it is asked."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rng = [np.random.default_rng(sum(t.encode())) for t in texts]
        return np.stack([r.normal(size=8) for r in rng]).astype(np.float32)


def test_computed_once_and_cached(tmp_path: Path) -> None:
    store = SimpleNamespace(root=tmp_path)
    embed = Counting()
    first = text_vectors(store, "m1", ["cat", "dog", "owl"], (), embed, batch=2)
    assert embed.calls == [["cat", "dog"], ["owl"]]  # batches of 2
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-6)
    path = cache_path(store, "m1", ["cat", "dog", "owl"], ())
    assert path.parent == tmp_path / "cache" / "text" and path.exists()
    mtime = path.stat().st_mtime_ns
    again = text_vectors(store, "m1", ["cat", "dog", "owl"], (), embed)
    assert len(embed.calls) == 2 and path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(first, again)
    # Another model, label list or template set is another entry.
    assert len({cache_key("m1", ["cat"], ()), cache_key("m2", ["cat"], ()),
                cache_key("m1", ["dog"], ()), cache_key("m1", ["cat"], ("{}",))}) == 4  # fmt: skip


def test_templates_are_averaged_and_renormalised(tmp_path: Path) -> None:
    store = SimpleNamespace(root=tmp_path)
    embed = Counting()
    templates = ("a photo of {}", "a drawing of {}")
    got = text_vectors(store, "m", ["cat", "owl"], templates, embed)
    assert embed.calls == [
        ["a photo of cat", "a drawing of cat", "a photo of owl", "a drawing of owl"]
    ]
    for k, label in enumerate(["cat", "owl"]):
        raw = embed([t.replace("{}", label) for t in templates])
        unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        mean = unit.mean(axis=0)
        np.testing.assert_allclose(got[k], mean / np.linalg.norm(mean), rtol=1e-5)


def test_a_damaged_cache_file_is_recomputed(tmp_path: Path) -> None:
    store = SimpleNamespace(root=tmp_path)
    embed = Counting()
    first = text_vectors(store, "m", ["cat"], (), embed)
    cache_path(store, "m", ["cat"], ()).write_bytes(b"not numpy")
    np.testing.assert_allclose(text_vectors(store, "m", ["cat"], (), embed), first)
    assert len(embed.calls) == 2


def test_given_files_the_cache_is_returned_not_written(tmp_path: Path) -> None:
    """The tags pass's way: new cache files go into `files` for the runner to write."""
    store = SimpleNamespace(root=tmp_path)
    files: dict[str, bytes] = {}
    vectors = text_vectors(store, "m1", ["cat"], (), Counting(), files=files)
    path = cache_path(store, "m1", ["cat"], ())
    assert not path.exists()
    assert list(files) == [path.relative_to(tmp_path).as_posix()]
    assert files[path.relative_to(tmp_path).as_posix()].startswith(b"\x93NUMPY")
    path.parent.mkdir(parents=True)
    path.write_bytes(files[path.relative_to(tmp_path).as_posix()])
    embed = Counting()
    np.testing.assert_array_equal(text_vectors(store, "m1", ["cat"], (), embed), vectors)
    assert embed.calls == []
