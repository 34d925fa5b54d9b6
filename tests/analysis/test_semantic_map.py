"""The map's UMAP: its numba code compiled once per machine and kept on disk, and a log
line when that one-off compile happens. (The layouts themselves: test_clusters.py.)"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from lamina.analysis import semantic_map
from lamina.analysis.semantic_map import MapConfig, layout_2d, numba_cache_dir


def test_the_cache_folder_is_per_user_unless_numba_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert numba_cache_dir() == tmp_path / "xdg" / "lamina" / "numba"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert numba_cache_dir() == tmp_path / "mine"


PROBE = """
import json, sys
from lamina.analysis.semantic_map import _cache_numba_functions
import lamina_numba_probe as probe

turned = _cache_numba_functions(("lamina_numba_probe",))
value = probe.triple(2.0)
stats = probe.triple.stats
print(json.dumps([turned, value, sum(stats.cache_hits.values()), sum(stats.cache_misses.values())]))
"""


def test_functions_compiled_once_are_loaded_by_the_next_process(tmp_path: Path) -> None:
    """A jitted function without `cache=True` (as most of umap-learn's are) is compiled in
    the first process and read back from the cache folder by the next one."""
    (tmp_path / "lamina_numba_probe.py").write_text(
        textwrap.dedent(
            """
            import numba

            @numba.njit
            def triple(x):
                return 3 * x
            """
        )
    )
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{Path(semantic_map.__file__).parents[2]}",
    }

    def run() -> list:
        out = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
        )
        import json

        return json.loads(out.stdout.strip().splitlines()[-1])

    turned, value, hits, misses = run()
    assert (turned, value, hits, misses) == (1, 6.0, 0, 1)
    assert list((tmp_path / "cache").rglob("*.nbi"))  # written to the folder given
    _, _, hits, _ = run()
    assert hits == 1  # the second process compiled nothing


def test_a_log_line_says_when_umap_compiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class FakeUMAP:  # the real one compiles for ~30 s; the mark is what is checked here
        def __init__(self, **kwargs: object) -> None:
            pass

        def fit_transform(self, x: np.ndarray) -> np.ndarray:
            return x[:, :2]

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    vectors = np.random.default_rng(0).normal(size=(120, 8)).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="lamina"):
        layout_2d(vectors, MapConfig(layout="umap"))
    said = [r.getMessage() for r in caplog.records]
    assert any("compiling UMAP's numba code, once on this machine" in m for m in said)
    assert any(str(tmp_path) in m for m in said)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lamina"):
        layout_2d(vectors, MapConfig(layout="umap"))
    assert not [r for r in caplog.records if "compiling" in r.getMessage()]


def test_auto_layout_falls_back_to_pca_above_umap_max_and_the_config_says_so() -> None:
    """UMAP over a million points takes hours and tens of GB: `auto` switches to PCA above
    `umap_max` images, a limit that is part of the pass config (so of its layer's config)."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(150, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cfg = MapConfig(umap_max=120)
    xy, how = layout_2d(vectors, cfg)
    assert how == "pca"
    assert xy.shape == (150, 2) and float(np.abs(xy).sum()) > 0
    assert MapConfig().umap_max == semantic_map.UMAP_MAX == 200_000
    import lamina.catalog  # noqa: F401 - registers the passes
    from lamina.core.passes import get_pass

    assert get_pass("semantic_map", {"umap_max": 120}).config.umap_max == 120
