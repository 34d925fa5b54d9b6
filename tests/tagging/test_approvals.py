"""Approvals: events appended, replayed in order (set/add/remove/clear), kept apart from
the predictions, history, approving what is over the threshold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lamina.core.errors import LaminaError
from lamina.jobs.tag import tag_images
from lamina.tagging import (
    approval_history,
    approve,
    approve_over_threshold,
    current_approvals,
    current_tags,
)
from lamina.tagging.approvals import EVENT_SCHEMA
from tests.tagging.stores import LABELS, image_ids, scanned, seed_class_vectors, write_photos


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory):
    src = write_photos(tmp_path_factory.mktemp("src"))
    store = scanned(src, tmp_path_factory.mktemp("approvals") / "store")
    seed_class_vectors(store)
    summary = tag_images(store, LABELS, workers=1, progress=False)
    return store, summary


@pytest.fixture
def store(tagged, tmp_path: Path):
    """The tagged store with an empty approvals table for each test."""
    store, _ = tagged
    for part in store.table_dir("approvals").glob("*.parquet"):
        part.unlink()
    return store


def approved(store) -> dict[str, list[str]]:
    return {r["image_id"]: r["approved_labels"] for r in current_approvals(store).to_pylist()}


def test_set_add_remove_clear_replay(store, tagged) -> None:
    ids = image_ids(store)
    cat, coffee = ids["chelsea.jpg"], ids["coffee.jpg"]
    assert approve(store, [cat, coffee], ["Cat", " indoor ", "cat"], who="ana") == 2
    assert approved(store) == {cat: ["cat", "indoor"], coffee: ["cat", "indoor"]}
    assert approve(store, [coffee], ["cup of coffee", "indoor"], action="set", who="ben") == 1
    assert approve(store, [cat], ["tabby", "indoor"], action="add", who="ana") == 1
    assert approve(store, [cat], ["indoor"], action="remove", who="ana", note="it is a porch") == 1
    assert approved(store) == {cat: ["cat", "tabby"], coffee: ["cup of coffee", "indoor"]}
    assert approve(store, [coffee], action="clear", who="ben") == 1
    now = current_approvals(store).to_pylist()
    by_id = {r["image_id"]: r for r in now}
    assert by_id[coffee]["approved_labels"] == [] and by_id[coffee]["approved_by"] == "ben"
    assert by_id[cat]["approved_by"] == "ana"
    assert by_id[cat]["tag_run_id"] == tagged[1]["tags_run_id"]
    assert by_id[cat]["approved_at"] <= dt.datetime.now(dt.UTC)
    # The predictions are untouched.
    top1 = {r["image_id"]: r["top1"] for r in current_tags(store).to_pylist()}
    assert top1[coffee] == "cup of coffee"


def test_history_is_append_only_and_ordered(store) -> None:
    ids = image_ids(store)
    cat = ids["chelsea.jpg"]
    approve(store, [cat], ["cat"], who="ana")
    approve(store, [cat], ["kitten"], action="add", who="ben", note="young")
    approve(store, [ids["rocket.jpg"]], ["rocket"], who="ana")
    history = approval_history(store, cat).to_pylist()
    assert [(h["action"], h["labels"], h["who"]) for h in history] == [
        ("set", ["cat"], "ana"),
        ("add", ["kitten"], "ben"),
    ]
    assert history[1]["note"] == "young" and history[0]["note"] is None
    assert approval_history(store).num_rows == 3
    parts = sorted(store.table_dir("approvals").glob("part-*.parquet"))
    assert len(parts) == 3  # one part per call, never rewritten
    assert pq.read_schema(parts[0]).remove_metadata() == EVENT_SCHEMA


def test_approve_over_threshold_adds_the_predictions(store) -> None:
    ids = image_ids(store)
    cat = ids["chelsea.jpg"]
    approve(store, [cat], ["tabby"], who="ana")
    written = approve_over_threshold(store, who="bot")
    # chelsea, coffee and rocket have a label over 0.4; the astronaut has none: no event.
    assert written == 3
    assert approved(store) == {
        cat: ["tabby", "cat"],
        ids["coffee.jpg"]: ["cup of coffee"],
        ids["rocket.jpg"]: ["rocket"],
    }
    assert approve_over_threshold(store, image_ids=[ids["astronaut.jpg"]]) == 0


def test_bad_approvals_are_refused(store) -> None:
    ids = image_ids(store)
    with pytest.raises(LaminaError, match="unknown image id") as info:
        approve(store, [ids["chelsea.jpg"], "feedfeedfeedfeedfeedfeedfeedfeed"], ["cat"])
    assert "feedfeed" in str(info.value)
    with pytest.raises(LaminaError, match="needs at least one label"):
        approve(store, [ids["chelsea.jpg"]], [" "], action="add")
    with pytest.raises(LaminaError, match="takes no labels"):
        approve(store, [ids["chelsea.jpg"]], ["cat"], action="clear")
    with pytest.raises(LaminaError, match="unknown approval action"):
        approve(store, [ids["chelsea.jpg"]], ["cat"], action="merge")
    with pytest.raises(LaminaError, match="unknown image id"):
        approve_over_threshold(store, image_ids=["nope"])
    assert approval_history(store).num_rows == 0  # nothing written by a refused call
