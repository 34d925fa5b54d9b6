"""The review app's query layer (`lamina.review.query`) against a full store: every filter
gives what the same question in SQL gives, pages are disjoint and ordered, bad input is a
message on the page, never an exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.core.store import Store
from lamina.review.image_view import image
from lamina.review.query import (
    Filters,
    clusters,
    duplicate_groups,
    filter_ids,
    grid,
    options,
)
from lamina.tagging.decisions import decide
from tests.report.stores import lamina


def ids_of(store: Store, where: str) -> set[str]:
    return set(
        store.sql(f"select f.image_id from files f where f.image_id is not null and {where}")[
            "image_id"
        ].to_pylist()
    )


def grid_ids(store: Store, flt: Filters) -> set[str]:
    page = grid(store, flt)
    assert page.error is None, page.error
    return {r["image_id"] for r in page.rows}


def test_pages_are_disjoint_ordered_and_cover_every_present_file(store: Store) -> None:
    present = store.sql(
        "select image_id, source, rel_path from files where image_id is not null "
        "and status <> 'missing' order by source, rel_path"
    ).to_pylist()
    seen = []
    for number in range(1, 5):
        page = grid(store, Filters(page=number, size=3))
        assert page.total == len(present) == 10
        assert page.pages == 4
        seen += [(r["source"], r["rel_path"]) for r in page.rows]
    assert seen == [(r["source"], r["rel_path"]) for r in present]
    assert grid(store, Filters(page=9, size=3)).rows == []


@pytest.mark.parametrize(
    ("flt", "where"),
    [
        (Filters(flag="blurry"), "image_id in (select image_id from flags where blurry)"),
        (Filters(status="broken"), "status = 'broken'"),
        (
            Filters(dup="copies"),
            "image_id in (select image_id from duplicates "
            "where group_size > 1 and not is_representative)",
        ),
        (Filters(dup="near"), "image_id in (select image_id from duplicates where kind = 'near')"),
        (Filters(cluster="0"), "image_id in (select image_id from clusters where cluster = 0)"),
        (
            Filters(tag="rocket"),
            "image_id in (select image_id from tags where list_contains(top_labels, 'rocket'))",
        ),
        (Filters(approval="approved"), "image_id in (select image_id from approvals)"),
        (
            Filters(approval="unapproved"),
            "status <> 'missing' and image_id not in (select image_id from approvals)",
        ),
        (Filters(folder="pets"), "folder = 'pets'"),
        (
            Filters(where="blurry or dark"),
            "image_id in (select image_id from flags where blurry or dark)",
        ),
    ],
)
def test_each_filter_selects_what_sql_selects(store: Store, flt: Filters, where: str) -> None:
    expected = ids_of(store, where)
    assert expected, "the sample store must hold a row for each filter"
    assert grid_ids(store, flt) == expected
    assert set(filter_ids(store, flt)) == expected


def test_decision_filters_follow_the_latest_event(store: Store) -> None:
    a, b, c = sorted(ids_of(store, "status = 'ok'"))[:3]
    decide(store, [a, b], "reject", who="t")
    decide(store, [b], "keep", who="t")  # b's latest mark is keep
    decide(store, [c], "discard", group_id=c, who="t")
    assert grid_ids(store, Filters(decision="reject")) == {a}
    assert grid_ids(store, Filters(decision="keep")) == {b}
    assert grid_ids(store, Filters(decision="discard")) == {c}
    undecided = grid_ids(store, Filters(decision="undecided", size=100))
    assert undecided == ids_of(store, "status <> 'missing'") - {a, b, c}
    row = next(r for r in grid(store, Filters()).rows if r["image_id"] == b)
    assert row["mark"] == "keep"


def test_user_text_is_a_value_or_a_message_never_sql(store: Store) -> None:
    assert grid(store, Filters(flag="blurry' or '1'='1")).total == 0
    assert grid(store, Filters(tag="x') or true or ('")).total == 0
    assert grid(store, Filters(folder="' or 1=1 --")).total == 0
    page = grid(store, Filters(cluster="1 or 1=1"))
    assert page.total == 0 and "not a number" in page.notes[0]
    for where, said in [
        ("1=1; drop table files", "';'"),
        ("(select count(*) from read_text('/etc/passwd')) > 0", "read"),
        ("nonsense_column > 1", "nonsense_column"),
        ("width >", "syntax"),
    ]:
        page = grid(store, Filters(where=where))
        assert page.rows == [] and page.error is not None and said in page.error, page.error


def test_options_list_what_the_store_holds(store: Store) -> None:
    opts = options(store)
    assert opts["status"] == ["broken", "junk", "ok"]
    assert "blurry" in opts["flag"] and "dark" in opts["flag"]
    assert set(opts["tag"]) == {"cat", "cup of coffee", "rocket"}
    assert opts["cluster"] == sorted(
        set(store.sql("select cluster from clusters")["cluster"].to_pylist())
    )
    assert {"", "pets", "food"} <= set(opts["folder"])


def test_the_image_view_gathers_every_fact(store: Store) -> None:
    dark = store.sql("select image_id from files where rel_path = 'pets/dark.jpg'")["image_id"][
        0
    ].as_py()
    data = image(store, dark)
    assert data is not None
    assert data["files"][0]["rel_path"] == "pets/dark.jpg" and data["files"][0]["on_disk"]
    flags = {f["flag"]: f for f in data["flags"]}
    assert (
        "dark" in flags
        and flags["dark"]["why"]
        and flags["dark"]["score"] >= flags["dark"]["threshold"]
    )
    assert data["signals"]["brightness_mean"] < 0.2
    assert {m["image_id"] for m in data["duplicates"]} >= {dark}
    assert sum(m["is_representative"] for m in data["duplicates"]) == 1
    assert data["cluster"]["cluster"] is not None
    assert data["tags"]["top_labels"]
    assert image(store, "0" * 32) is None
    assert image(store, "../../etc/passwd") is None


def test_duplicate_groups_put_the_suggested_keeper_first(store: Store) -> None:
    page = duplicate_groups(store)
    sizes = store.sql(
        "select group_id, any_value(group_size) as n from duplicates where group_size > 1 "
        "group by 1"
    ).to_pylist()
    assert page.total == len(sizes) > 0
    for group in page.rows:
        members = group["members"]
        assert len(members) == group["group_size"]
        assert members[0]["is_representative"] and members[0]["image_id"] == group["representative"]
        assert group["keep_reason"]


def test_clusters_have_sizes_and_medoids(store: Store) -> None:
    page = clusters(store)
    expected = store.sql(
        "select cluster, count(*) as size, max_by(image_id, is_medoid) as medoid from clusters "
        "group by 1 order by size desc, cluster"
    ).to_pylist()
    assert [(r["cluster"], r["size"], r["medoid"]) for r in page.rows] == [
        (e["cluster"], e["size"], e["medoid"]) for e in expected
    ]


def test_an_empty_store_and_a_scanned_only_store_say_what_to_run(
    tree: Path, tmp_path: Path
) -> None:
    empty = Store.open(tmp_path / "empty", create=True)
    page = grid(empty, Filters())
    assert page.total == 0 and "lamina scan" in page.notes[0]
    assert duplicate_groups(empty).notes and clusters(empty).notes

    lamina(tmp_path / "scanned", "scan", str(tree))
    scanned = Store.open(tmp_path / "scanned")
    assert grid(scanned, Filters()).total == 5
    page = grid(scanned, Filters(flag="dark"))
    assert page.total == 0 and "lamina sense" in page.notes[0]
    assert "lamina cluster" in clusters(scanned).notes[0]


def test_a_deleted_original_is_shown_missing_and_can_still_be_decided(
    tree: Path, tmp_path: Path
) -> None:
    lamina(tmp_path / "s", "scan", str(tree))
    store = Store.open(tmp_path / "s")
    (tree / "cats" / "b.jpg").unlink()
    row = next(r for r in grid(store, Filters()).rows if r["rel_path"] == "cats/b.jpg")
    assert row["on_disk"] is False
    data = image(store, row["image_id"])
    assert data is not None and data["files"][0]["on_disk"] is False
    assert decide(store, [row["image_id"]], "reject", who="t") == 1
    assert grid_ids(store, Filters(decision="reject")) == {row["image_id"]}


def test_the_discard_list_holds_what_a_person_chose_to_drop(store: Store, tmp_path: Path) -> None:
    files = {
        r["rel_path"]: r
        for r in store.sql(
            "select rel_path, image_id, file_path(source, rel_path) as path from files "
            "where image_id is not null"
        ).to_pylist()
    }
    chelsea, flip, dark = (files[f"pets/{n}.jpg"] for n in ("chelsea", "flip", "dark"))
    coffee = files["food/coffee.jpg"]
    decide(store, [chelsea["image_id"]], "dup_keep", group_id=chelsea["image_id"], who="t")
    decide(store, [flip["image_id"], dark["image_id"]], "discard", group_id=chelsea["image_id"])
    decide(store, [dark["image_id"]], "keep", who="t")  # a keep mark wins over the discard
    decide(store, [coffee["image_id"]], "reject", who="t")
    out = tmp_path / "drop.txt"
    before = {p: Path(p).stat().st_mtime_ns for p in (r["path"] for r in files.values())}
    lamina(store.root, "export", "--discard-list", str(out))
    assert out.read_text().splitlines() == sorted([flip["path"], coffee["path"]])
    assert {p: Path(p).stat().st_mtime_ns for p in before} == before  # nothing touched
    rows = store.sql(
        "select decision, count(*) as n from decisions group by 1 order by 1"
    ).to_pylist()
    assert rows == [
        {"decision": "discard", "n": 2},
        {"decision": "keep", "n": 2},
        {"decision": "reject", "n": 1},
    ]


def test_decisions_refuse_unknown_ids_and_decisions(store: Store) -> None:
    from lamina.core.errors import LaminaError

    with pytest.raises(LaminaError, match="unknown image id"):
        decide(store, ["0" * 32], "reject")
    with pytest.raises(LaminaError, match="unknown decision"):
        decide(store, some := sorted(ids_of(store, "true"))[:1], "delete")
    with pytest.raises(LaminaError, match="control character"):
        decide(store, some, "reject", who="a\x1b[2Jb")
    assert not store.table_files("decisions")


def test_views_keep_one_connection_until_a_file_changes(store: Store) -> None:
    from lamina.review.reader import Views

    views = Views(store)
    first = views.reader()
    views.reader()
    made = views._con
    assert views.cached("x", lambda: 1) == 1 and views.cached("x", lambda: 2) == 1
    a = sorted(ids_of(store, "status = 'ok'"))[0]
    assert grid(store, Filters(decision="reject"), first).total == 0
    decide(store, [a], "reject", who="t")  # a new part: the next reader sees it
    after = views.reader()
    assert views._con is not made and views.cached("x", lambda: 2) == 2
    assert grid_ids(store, Filters(decision="reject")) == {a}
    assert {r["image_id"] for r in grid(store, Filters(decision="reject"), after).rows} == {a}
    assert a in views.known_ids() and "0" * 32 not in views.known_ids()
