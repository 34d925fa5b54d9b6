"""The report's sections as data: numbers equal the store's tables, caps hold, and every
section says which command makes a table that is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lamina.core.store import Store
from lamina.report.context import Section, open_context
from lamina.report.data import (
    cluster_map,
    collect,
    duplicate_groups,
    flag_galleries,
    outliers,
    overview,
    problems,
    signal_rules,
    statuses,
    tags,
)
from lamina.report.provenance import flags_policy, layer_runs, provenance
from tests.report.stores import TAGS_RUN, lamina


def _name(path: str | None) -> str:
    return Path(path or "").name


def test_overview_counts_equal_the_tables(full_store: Store) -> None:
    ctx = open_context(full_store)
    data = overview(ctx).data
    assert data["files"] == ctx.value("select count(*) from files") == 12
    assert data["images"] == ctx.value("select count(distinct image_id) from files") == 9
    assert data["bytes"] == ctx.value("select sum(size) from files")
    by_status = {r["status"]: r["n"] for r in data["by_status"]}
    assert by_status == {"ok": 9, "junk": 2, "broken": 1}
    assert {"scan", "sense", "embed", "cluster"} <= {r["command"] for r in data["runs"]}
    assert len(data["sources"]) == 1 and data["sources"][0]["files"] == 12
    expected_mp = ctx.value(
        "select sum(width * height) / 1e6 from images where image_id in "
        "(select image_id from files)"
    )
    assert data["megapixels"] == pytest.approx(expected_mp)


def test_statuses_list_the_files_of_each_reason(full_store: Store) -> None:
    groups = statuses(open_context(full_store)).data["groups"]
    assert sum(g["n"] for g in groups) == 12
    by_reason = {(g["status"], g["reason"]): g for g in groups}
    assert [_name(f["path"]) for f in by_reason[("junk", "zero_byte")]["files"]] == ["empty.jpg"]
    assert [_name(f["path"]) for f in by_reason[("broken", "truncated")]["files"]] == ["cut.jpg"]
    assert by_reason[("ok", None)]["files"] == []  # plain ok files are only counted
    assert by_reason[("junk", "zero_byte")]["command"] == (
        "lamina select --where \"status = 'junk' and reason = 'zero_byte'\""
    )
    capped = statuses(open_context(full_store), cap=0).data["groups"]
    assert {(g["reason"], g["more"]) for g in capped if g["status"] == "junk"} == {
        ("zero_byte", 1),
        ("not_an_image", 1),
    }


def test_signal_rules_map_thresholds_onto_the_signals(full_store: Store) -> None:
    section = signal_rules(open_context(full_store))
    rules = {r["flag"]: r for r in section.data["rules"]}
    assert section.data["policy"] == "default"
    # dark: 1 - brightness_p95 >= 0.74, so the line is at brightness_p95 = 0.26.
    assert rules["dark"]["column"] == "brightness_p95"
    assert rules["dark"]["lines"] == [pytest.approx(0.26, abs=0.002)]
    # light and blurry read two signals: the score is plotted, with the threshold itself.
    assert rules["light"]["column"] == "light_score" and rules["light"]["lines"] == [1.0]
    assert rules["blurry"]["column"] == "blurry_score" and rules["blurry"]["lines"] == [0.41]
    assert len(rules["dark"]["values"]) == 8  # every decodable image


def test_flag_galleries_worst_first_and_capped(full_store: Store) -> None:
    ctx = open_context(full_store)
    galleries = {g["flag"]: g for g in flag_galleries(ctx, 24).data["galleries"]}
    assert [_name(t["path"]) for t in galleries["dark"]["tiles"]] == ["dark.jpg"]
    assert "food/blurry.jpg" in {
        t["path"].split("photos/")[1] for t in galleries["blurry"]["tiles"]
    }
    near = galleries["near_duplicate"]
    assert near["count"] == ctx.value("select count(*) from flags where near_duplicate")
    scores = [t["score"] for t in near["tiles"]]
    assert scores == sorted(scores, reverse=True)
    capped = {g["flag"]: g for g in flag_galleries(ctx, 1).data["galleries"]}
    assert len(capped["near_duplicate"]["tiles"]) == 1 < capped["near_duplicate"]["count"]


def test_duplicate_groups_put_the_representative_first(full_store: Store) -> None:
    ctx = open_context(full_store)
    data = duplicate_groups(ctx).data
    groups = data["groups_list"]
    assert (
        len(groups)
        == data["groups"]
        == ctx.value("select count(distinct group_id) from duplicates where group_size > 1")
    )
    for group in groups:
        flags = [t["is_representative"] for t in group["tiles"]]
        assert flags[0] and not any(flags[1:])
        assert len(group["tiles"]) == group["size"]
    names = [{_name(t["path"]) for t in g["tiles"]} for g in groups]
    assert {"chelsea.jpg", "flip.jpg"} in [n & {"chelsea.jpg", "flip.jpg"} for n in names]
    assert data["exact"] == {"images": 1, "extra": 1}  # astronaut and its byte copy


def test_the_cluster_map_draws_a_repeatable_sample_of_a_large_map(
    full_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above MAP_POINTS the map gets a seeded sample (the full count still says how many
    images it covers); below, every point."""
    from lamina.report import data as report_data

    ctx = open_context(full_store)
    total = ctx.value("select count(*) from semantic_map")
    assert cluster_map(ctx).data["n_points"] == total == len(cluster_map(ctx).data["x"])
    monkeypatch.setattr(report_data, "MAP_POINTS", 3)
    first, again = cluster_map(ctx).data, cluster_map(ctx).data
    assert first["n_points"] == total > 3
    assert len(first["x"]) == len(first["y"]) == len(first["cluster"]) == 3
    assert first["x"].tolist() == again["x"].tolist()


def test_cluster_map_outliers_and_tags(full_store: Store) -> None:
    ctx = open_context(full_store)
    space = cluster_map(ctx).data
    assert (
        len(space["x"]) == len(space["cluster"]) == ctx.value("select count(*) from semantic_map")
    )
    assert sum(c["size"] for c in space["clusters"]) == ctx.value("select count(*) from clusters")
    assert all(c["medoid"] is not None for c in space["clusters"])
    assert space["model"] == "efficientnet_lite0:imagenet"
    out = outliers(ctx, 3).data
    assert [t["rank"] for t in out["tiles"]] == [1, 2, 3]
    assert out["count"] + out["copies"] == ctx.value("select count(*) from outliers")
    assert out["flagged"] == ctx.value("select count(*) from flags where outlier")
    # One image per duplicate group: no two tiles of the full gallery share a group.
    tiles = outliers(ctx, 100).data["tiles"]
    groups = ctx.rows("select image_id, group_id from semantic_duplicates where group_size > 1")
    group_of = {r["image_id"]: r["group_id"] for r in groups}
    shown = [group_of[t["image_id"]] for t in tiles if t["image_id"] in group_of]
    assert len(shown) == len(set(shown)) and len(tiles) == out["count"]
    data = tags(ctx, 24).data
    assert {r["label"]: (r["top1"], r["over"]) for r in data["labels"]} == {
        "cat": (3, 3),
        "cup of coffee": (3, 3),
        "rocket": (2, 2),
    }
    assert data["model"] == "fake:tagger" and len(data["labels"][0]["tiles"]) == 3
    assert data["approvals"] == [{"label": "cat", "n": 2}, {"label": "rocket", "n": 1}]


def test_problems_list_each_failing_file_once_with_every_layer(full_store: Store) -> None:
    data = problems(open_context(full_store)).data
    assert [_name(f["path"]) for f in data["files"]] == ["cut.jpg"]  # once, not per layer
    assert data["total"] == 1 and data["more"] == 0
    failures = data["files"][0]["failures"]
    layers = [f["layer"] for f in failures]
    assert layers[0] == "scan" and {"signals", "hashes", "embed"} <= set(layers)
    assert len(layers) == len(set(layers))
    assert failures[0]["reason"].startswith("broken: truncated")
    assert all("truncated" in f["reason"] for f in failures)
    counts = {c["layer"]: c["files"] for c in data["layers"]}
    assert counts["scan"] == 1 and counts["signals"] == 1
    assert problems(open_context(full_store), cap=0).data["more"] == 1


def test_problems_of_a_file_held_twice_list_both_paths(full_store: Store, tmp_path: Path) -> None:
    # Two byte-identical broken files: one image, two files, each listed once.
    shutil.copytree(full_store.root, tmp_path / "store")
    store = Store.open(tmp_path / "store")
    source = Path(store.sql("select any_value(source) s from files")["s"][0].as_py())
    copy = tmp_path / "photos"
    shutil.copytree(source, copy)
    (copy / "cut_again.jpg").write_bytes((copy / "cut.jpg").read_bytes())
    lamina(store.root, "scan", str(copy))
    files = problems(open_context(store)).data["files"]
    names = [_name(f["path"]) for f in files]
    assert "cut_again.jpg" in names and len(names) == len(set(f["path"] for f in files))


def test_provenance_names_the_runs_of_each_layer(full_store: Store) -> None:
    ctx = open_context(full_store)
    sections = collect(full_store)
    rows = provenance(ctx, sections[:-1]).data["rows"]
    by_table = {r["table"]: r for r in rows}
    for table in ("signals", "flags", "duplicates", "clusters", "semantic_map", "embed"):
        ledger = layer_runs(full_store, table)
        assert ledger is not None
        assert by_table[table]["run_id"] == ledger["runs"][0]
        assert by_table[table]["layer"] == full_store.current_layer_dir(table).name
    assert by_table["clusters"]["command"] == "cluster"
    assert by_table["clusters"]["model"] == "efficientnet_lite0:imagenet"
    assert by_table["tags"]["run_id"] == TAGS_RUN
    assert by_table["files"]["command"] == "scan"


def test_the_policy_comes_from_the_run_that_made_the_flags(
    full_store: Store, tmp_path: Path
) -> None:
    shutil.copytree(full_store.root, tmp_path / "store")
    store = tmp_path / "store"
    strict = tmp_path / "strict.toml"
    strict.write_text("[policy]\nname = 'strict'\nversion = 1\n[dark]\nthreshold = 0.1\n")
    lamina(store, "flags", "--policy", str(strict))
    opened = Store.open(store)
    policy, source = flags_policy(opened)
    assert policy.name == "strict" and policy.rules["dark"].threshold == 0.1
    run_id = layer_runs(opened, "flags")["runs"][0]
    assert source == f"run {run_id}"
    record = json.loads((opened.run_dir(run_id) / "run.json").read_text())
    assert record["command"] == "flags"
    rules = {r["flag"]: r for r in signal_rules(open_context(opened)).data["rules"]}
    assert rules["dark"]["lines"] == [pytest.approx(0.9, abs=0.002)]


def test_missing_tables_name_the_command_that_makes_them(scan_only: Store) -> None:
    by_id: dict[str, Section] = {s.id: s for s in collect(scan_only)}
    assert not by_id["overview"].missing and not by_id["statuses"].missing
    assert "`lamina sense`" in (by_id["signals"].missing or "")
    assert "`lamina sense`" in (by_id["flags"].missing or "")
    assert "`lamina sense`" in (by_id["duplicates"].missing or "")
    assert "`lamina embed`" in (by_id["clusters"].missing or "")
    assert "`lamina embed`" in (by_id["outliers"].missing or "")
    assert "`lamina tag --labels labels.txt`" in (by_id["tags"].missing or "")
    assert "`lamina sense`" in (by_id["problems"].missing or "")


def test_an_empty_store_says_to_scan(tmp_path: Path) -> None:
    sections = collect(Store.open(tmp_path / "store", create=True))
    for section in sections:
        assert section.missing, section.id
    assert "`lamina scan SOURCE`" in (sections[0].missing or "")
