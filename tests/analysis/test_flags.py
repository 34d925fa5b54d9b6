from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from lamina.analysis.flags import (
    FLAG_NAMES,
    FlagsPass,
    default_policy,
    default_policy_text,
    flags_config,
    load_policy,
    parse_policy,
    policy_signals,
    signals_skip,
)
from lamina.core.errors import ConfigError
from lamina.core.ledger import Run
from lamina.core.runner import run_global_pass
from lamina.core.store import Store, atomic_write_parquet

NORMAL = {
    "brightness_mean": 0.5,
    "brightness_p05": 0.1,
    "brightness_p50": 0.5,
    "brightness_p95": 0.9,
    "dark_fraction": 0.05,
    "light_fraction": 0.05,
    "clipped_fraction": 0.01,
    "contrast_rms": 0.2,
    "saturation_mean": 0.3,
    "colorfulness": 40.0,
    "entropy": 7.2,
    "laplacian_var": 400.0,
    "blur_effect": 0.3,
    "edge_density": 0.1,
    "noise_sigma": 2.0,
    "chroma_noise": 0.8,
    "fft_high_ratio": 0.1,
    "grey_by_content": False,
    "chroma_mean": 0.1,
    "text_score": 0.05,
    "aspect_ratio": 1.5,
    "alpha": False,
    "width": 600,
    "height": 400,
    "megapixels": 0.24,
    "error": None,
    "detail": None,
}


def signals_row(image_id: str, **changes: object) -> dict:
    return {"image_id": image_id, **NORMAL, **changes}


def fake_store(
    tmp_path: Path,
    rows: list[dict],
    dups: list[dict] | None = None,
    n_files: dict[str, int] | None = None,
) -> Store:
    """A store whose files, images and signals tables are written directly."""
    store = Store.open(tmp_path / "store", create=True)
    ids = [r["image_id"] for r in rows]
    statuses = ["broken" if r.get("error") else "ok" for r in rows]
    files = []
    for image_id in ids:
        files += [
            {
                "image_id": image_id,
                "status": "ok",
                "rel_path": f"{image_id}-{k}.jpg",
                "folder": "",
                "source": "/src",
                "mtime": dt.datetime(2020, 1, 1),
            }
            for k in range((n_files or {}).get(image_id, 1))
        ]
    atomic_write_parquet(store.table_dir("files") / "files.parquet", pa.Table.from_pylist(files))
    atomic_write_parquet(
        store.table_dir("images") / "part-x.parquet",
        pa.table(
            {
                "image_id": ids,
                "status": statuses,
                "huge": [False] * len(ids),
                "width": [r["width"] for r in rows],
                "height": [r["height"] for r in rows],
                "megapixels": [r["megapixels"] for r in rows],
            }
        ),
    )
    atomic_write_parquet(
        store.layer_dir("signals", "t") / "part-x.parquet", pa.Table.from_pylist(rows)
    )
    if dups:
        atomic_write_parquet(
            store.layer_dir("duplicates", "t") / "part-global.parquet", pa.Table.from_pylist(dups)
        )
    return store


def flags_of(store: Store, policy_text: str | None = None) -> dict[str, dict]:
    policy = default_policy()
    if policy_text:
        policy = parse_policy(policy_text, base=policy)
    table = FlagsPass(flags_config(policy)).compute(store)
    return {r["image_id"]: r for r in table.to_pylist()}


def test_each_defect_raises_its_flag_and_only_it(tmp_path: Path) -> None:
    rows = [signals_row(f"n{i}", megapixels=0.24 + i * 0.01) for i in range(20)]
    rows += [
        signals_row("dark", brightness_mean=0.05, brightness_p95=0.12, brightness_p05=0.0),
        signals_row("light", brightness_mean=0.95, brightness_p05=0.85),
        signals_row("blurry", blur_effect=0.8, laplacian_var=5.0),
        # A blank frame with sensor noise: entropy over 3 bits, yet no contrast, no edges.
        signals_row("flat", entropy=3.2, contrast_rms=0.005, edge_density=0.0),
        signals_row("grey", chroma_mean=0.0, grey_by_content=True),
        signals_row("strip", aspect_ratio=20.0),
        signals_row("tiny", width=30, height=20, megapixels=0.0006),
        # Sensor noise is drawn per channel: it shows in the colour differences too.
        signals_row("noisy", noise_sigma=30.0, laplacian_var=20000.0, chroma_noise=25.0),
        # Noise on a greyscale-by-content image is read from luma alone.
        signals_row(
            "grey_noisy",
            noise_sigma=20.0,
            laplacian_var=7000.0,
            chroma_mean=0.0,
            grey_by_content=True,
            chroma_noise=0.0,
        ),
        # A text page is mostly white (low entropy) but full of contrast: not low_information.
        signals_row("page", text_score=0.9, entropy=2.9, contrast_rms=0.17, edge_density=0.5),
        # Grass, downscaled: a high luma noise estimate whose detail nearly matches a noise's
        # (the ratio that flagged it before), but texture moves the channels together.
        signals_row(
            "grass",
            noise_sigma=15.6,
            laplacian_var=6670.0,
            edge_density=0.85,
            chroma_noise=0.5,
        ),
        signals_row("bad", error="decode_error", **{k: None for k in NORMAL if k != "error"}),
    ]
    store = fake_store(tmp_path, rows)
    flags = flags_of(store)
    expected = {
        "dark": "dark",
        "light": "light",
        "blurry": "blurry",
        "flat": "low_information",
        "grey": "grayscale",
        "strip": "odd_aspect",
        "noisy": "noisy",
        "page": "text_heavy",
        "bad": "junk",
    }
    for image_id, flag in expected.items():
        assert flags[image_id][flag], (image_id, flags[image_id]["flags"])
    assert set(flags["tiny"]["flags"]) >= {"tiny", "odd_size"}
    assert all(flags[f"n{i}"]["n_flags"] == 0 for i in range(20))
    assert flags["grass"]["n_flags"] == 0, flags["grass"]["flags"]
    assert flags["page"]["flags"] == ["text_heavy"]
    assert flags["dark"]["dark_score"] == pytest.approx(0.88)
    assert flags["grey"]["flags"] == ["grayscale"]
    assert flags["grey_noisy"]["noisy"]
    assert flags["noisy"]["noisy_score"] == pytest.approx(25.0 / 5.7)


def test_duplicates_flags(tmp_path: Path) -> None:
    rows = [signals_row(i) for i in ("a", "b", "c")]
    dups = [
        {"image_id": "a", "kind": "representative", "distance": 0, "is_representative": True},
        {"image_id": "b", "kind": "near", "distance": 4, "is_representative": False},
    ]
    store = fake_store(tmp_path, rows, dups, n_files={"c": 3})
    flags = flags_of(store)
    assert not flags["a"]["near_duplicate"] and flags["b"]["near_duplicate"]
    assert flags["b"]["near_duplicate_score"] == pytest.approx(1 - 4 / 64)
    assert flags["c"]["exact_duplicate"] and flags["c"]["exact_duplicate_score"] == 2


def outliers_layer(store: Store, rows: list[tuple[str, int | None, float]]) -> None:
    """An outliers layer as `lamina cluster` writes it: (image_id, rank, outlier_z)."""
    table = pa.table(
        {
            "image_id": [r[0] for r in rows],
            "rank": pa.array([r[1] for r in rows], pa.int32()),
            "outlier_z": pa.array([r[2] for r in rows], pa.float32()),
        }
    )
    atomic_write_parquet(store.layer_dir("outliers", "t") / "part-global.parquet", table)


def test_the_outlier_flag_follows_the_embedding_outliers(tmp_path: Path) -> None:
    # "odd" is far off in signal space; in embedding space "far" is, held by two copies.
    rows = [
        signals_row(f"n{i}", brightness_mean=0.5 + 0.01 * i, contrast_rms=0.2 + 0.005 * i)
        for i in range(20)
    ]
    rows += [signals_row(i) for i in ("far", "far_copy")]
    rows.append(signals_row("odd", brightness_mean=0.99, contrast_rms=2.0))
    store = fake_store(tmp_path, rows)
    before = flags_of(store)
    assert before["odd"]["outlier"] and not before["far"]["outlier"]  # signal space
    ranked = [(f"n{i}", i + 3, 0.1) for i in range(20)] + [("odd", 2, 0.5), ("far", 1, 12.0)]
    outliers_layer(store, [*ranked, ("far_copy", None, 12.0)])
    after = flags_of(store)
    assert [i for i, r in after.items() if r["outlier"]] == ["far"]
    assert after["far"]["outlier_score"] == pytest.approx(12.0)
    assert after["far_copy"]["outlier_score"] == 0  # ranked once, as its group's image
    assert after["odd"]["outlier_score"] == pytest.approx(0.5)


def test_cluster_recomputes_the_flags_with_their_policy(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lamina.cli import main
    from tests.analysis.embedded_store import blobs, write_embeddings

    # Blob members loose enough (cosine ~0.6) that none is a semantic duplicate.
    vectors, _ = blobs(10, 2, dim=64, spread=0.1, seed=1)
    far = np.linalg.qr(np.random.default_rng(0).normal(size=(64, 64)))[0][7]
    vectors = np.vstack([vectors, far])
    ids = [f"n{i}" for i in range(20)] + ["far"]
    store = fake_store(tmp_path, [signals_row(i) for i in ids])
    write_embeddings(store, ids, vectors)
    strict = tmp_path / "strict.toml"
    strict.write_text("[policy]\nname = 'strict'\n[dark]\nthreshold = 0.05\n")
    runner = CliRunner()
    args = ["--store", str(store.root)]
    assert runner.invoke(main, [*args, "flags", "--policy", str(strict)]).exit_code == 0
    assert store.sql("select count(*) n from flags where outlier")["n"][0].as_py() == 0
    result = runner.invoke(main, [*args, "cluster", "--k", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert not json.loads(result.output)["passes"]["flags"]["skipped"]
    flagged = store.sql("select image_id, dark from flags where outlier").to_pylist()
    assert flagged == [{"image_id": "far", "dark": True}]  # the strict policy, kept
    top = store.sql("select image_id from outliers where rank = 1")["image_id"][0].as_py()
    assert top == "far"


def test_changing_the_policy_changes_flags_without_pixels(tmp_path: Path) -> None:
    rows = [signals_row(f"n{i}") for i in range(5)] + [signals_row("dim", brightness_p95=0.4)]
    store = fake_store(tmp_path, rows)
    assert not flags_of(store)["dim"]["dark"]
    assert flags_of(store, "[dark]\nthreshold = 0.5\n")["dim"]["dark"]
    assert not flags_of(store, "[dark]\nthreshold = 0.5\nenabled = false\n")["dim"]["dark"]
    # Through the runner: a new policy is a new layer, computed from the same signals.
    a = FlagsPass(flags_config(default_policy()))
    b = FlagsPass(flags_config(parse_policy("[dark]\nthreshold = 0.5", base=default_policy())))
    assert a.layer_id != b.layer_id
    with Run(store, "flags", {}) as run:
        first = run_global_pass(store, a, run)
        again = run_global_pass(store, a, run)
        other = run_global_pass(store, b, run)
    assert not first["skipped"] and again["skipped"] and not other["skipped"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[darkk]\nthreshold = 1", "unknown flag 'darkk'"),
        ("[dark]\nthresold = 1", "unknown key 'dark.thresold'"),
        ("[dark]\nthreshold = 'high'", "bad value for 'dark.threshold'"),
        ("[policy]\nversion = 'x'", "bad value for 'policy.version'"),
        ("[dark\n", "not valid TOML"),
    ],
)
def test_bad_policy_is_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse_policy(text, base=default_policy())


def test_a_policy_file_that_is_not_utf8_is_refused_with_its_name(tmp_path: Path) -> None:
    # Found by the reliability suite's fuzz run: it was a UnicodeDecodeError traceback.
    path = tmp_path / "latin1.toml"
    path.write_bytes("[dark]\nwhy = 'tr\xe8s sombre'\nthreshold = 0.9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=f"the policy file {path} is not UTF-8"):
        load_policy(path)


def test_bad_score_expression_names_the_flag(tmp_path: Path) -> None:
    store = fake_store(tmp_path, [signals_row("a")])
    with pytest.raises(ConfigError, match="flag 'dark'"):
        flags_of(store, "[dark]\nscore = 'no_such_column * 2'\n")


def test_default_policy_documents_every_flag(tmp_path: Path) -> None:
    policy = default_policy()
    assert set(policy.rules) == set(FLAG_NAMES)
    assert all(rule.why for rule in policy.rules.values())
    assert "version = 6" in default_policy_text()
    path = tmp_path / "p.toml"
    path.write_text("[policy]\nname = 'strict'\nversion = 2\n[blurry]\nthreshold = 0.4\n")
    loaded = load_policy(path)
    assert (loaded.name, loaded.version, loaded.rules["blurry"].threshold) == ("strict", 2, 0.4)
    assert loaded.rules["dark"] == policy.rules["dark"]
    with pytest.raises(ConfigError, match="no policy file"):
        load_policy(tmp_path / "missing.toml")


def test_a_policy_score_is_an_expression_that_reads_no_file() -> None:
    attacks = {
        "(select length(content) from read_text('/etc/passwd'))": "read_text",
        "1); copy (select 1) to '/tmp/lamina-pwned.csv'; select (1": "parenthesis",
        "getenv('HOME') is null": "getenv",
        "1 -- a comment hides the rest": "comment",
    }
    for score, named in attacks.items():
        with pytest.raises(ConfigError) as caught:
            parse_policy(f'[dark]\nscore = "{score}"\nthreshold = 1', base=default_policy())
        assert named in str(caught.value) and "'dark'" in str(caught.value)
    assert not Path("/tmp/lamina-pwned.csv").exists()


def test_the_flags_pass_checks_a_stored_policy_too(tmp_path: Path) -> None:
    """A policy that never went through `parse_policy` (a hand-made run config) is checked
    when the pass runs, and a subquery over the pass's own rows is a valid score."""
    from dataclasses import replace

    store = fake_store(tmp_path, [signals_row("a"), signals_row("b", brightness_p95=0.1)])
    policy = default_policy()
    bad = replace(policy.rules["dark"], score="(select 1 from read_text('/etc/passwd'))")
    with pytest.raises(ConfigError, match="read_text"):
        FlagsPass(flags_config(replace(policy, rules={**policy.rules, "dark": bad}))).compute(store)
    mean = "brightness_p95 < (select avg(brightness_p95) from base)"
    flags = flags_of(store, f"[dark]\nscore = 'case when {mean} then 1 else 0 end'\n")
    assert flags["b"]["dark"] and not flags["a"]["dark"]


def test_sense_skips_only_the_signals_no_enabled_rule_reads() -> None:
    assert signals_skip(default_policy()) == ("hist_lab", "hist_rgb")
    assert signals_skip(default_policy(), all_signals=True) == ()
    assert {"text_score", "noise_sigma", "fft_high_ratio"} <= policy_signals(default_policy())
    quiet = parse_policy(
        "[text_heavy]\nenabled = false\n[outlier]\nenabled = false", base=default_policy()
    )
    skip = signals_skip(quiet)
    assert "text_score" in skip and "fft_high_ratio" in skip
    assert "laplacian_var" not in skip  # ranks duplicate representatives
    assert "noise_sigma" not in skip  # the noisy rule still reads it


def test_a_policy_reading_a_skipped_signal_is_refused(tmp_path: Path) -> None:
    rows = [signals_row(f"n{i}", text_score=None) for i in range(5)]
    store = fake_store(tmp_path, rows)
    with pytest.raises(ConfigError, match="text_score") as err:
        flags_of(store)
    assert "--signals all" in (err.value.hint or "")
    flags = flags_of(store, "[text_heavy]\nenabled = false")  # not read: fine
    assert not any(f["text_heavy"] for f in flags.values())


def test_light_catches_clipped_highlights_over_mid_grey_shadows(tmp_path: Path) -> None:
    rows = [signals_row(f"n{i}", megapixels=0.24 + i * 0.01) for i in range(10)]
    rows += [
        # x3 over-exposure: half the pixels clipped, the median white, shadows mid-grey.
        signals_row("blown", brightness_p05=0.3, brightness_p50=0.97, clipped_fraction=0.55),
        signals_row("washed", brightness_p05=0.8, brightness_p50=0.9, clipped_fraction=0.0),
        # A page: a white median and many light pixels, but paper sits below the clip level.
        signals_row(
            "page",
            brightness_p05=0.45,
            brightness_p50=0.95,
            light_fraction=0.85,
            clipped_fraction=0.02,
        ),
        # A bright window clipped over a fifth of the frame, the rest a normal scene.
        signals_row("window", brightness_p05=0.1, brightness_p50=0.6, clipped_fraction=0.2),
        # Over-exposed over a black background (a fundus photo): the median stays dark.
        signals_row("fundus", brightness_p05=0.0, brightness_p50=0.3, clipped_fraction=0.5),
    ]
    flags = flags_of(fake_store(tmp_path, rows))
    assert flags["blown"]["light"] and flags["washed"]["light"] and flags["fundus"]["light"]
    assert not flags["page"]["light"] and not flags["window"]["light"]
    assert flags["blown"]["light_score"] == pytest.approx(0.55 / 0.30, 1e-5)


def test_low_information_is_judged_against_the_exposure_headroom(tmp_path: Path) -> None:
    rows = [signals_row(f"n{i}", megapixels=0.24 + i * 0.01) for i in range(10)]
    rows += [
        signals_row("blank", contrast_rms=0.004, brightness_mean=0.5, edge_density=0.0),
        # A photo at x0.1: its absolute contrast is tiny, but so is its room below black.
        signals_row(
            "dim", contrast_rms=0.008, brightness_mean=0.03, brightness_p95=0.08, edge_density=0.0
        ),
    ]
    flags = flags_of(fake_store(tmp_path, rows))
    assert flags["blank"]["low_information"]
    assert not flags["dim"]["low_information"] and flags["dim"]["dark"]
