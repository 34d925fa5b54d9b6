"""`lamina tag` / `lamina score` and `lamina approve`: output, exit codes, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lamina.cli import main
from lamina.tagging import current_approvals
from tests.tagging.stores import LABELS, image_ids, scanned, seed_class_vectors, write_photos


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("cli")
    src = write_photos(folder / "src")
    store = scanned(src, folder / "store")
    seed_class_vectors(store)
    labels = folder / "labels.txt"
    labels.write_text("# what is in the photos\n" + "\n".join(LABELS) + "\nCat\n")
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--store", str(store.root), *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return invoke, store, labels, src


def test_tag_prints_a_summary(env) -> None:
    invoke, _, labels, _ = env
    out = invoke("tag", "--labels", str(labels), "--workers", "1")
    lines = out.splitlines()
    assert lines[0].startswith("model offline:efficientnet_lite0+all-minilm-l6-v2 (approximate")
    assert lines[1].startswith("4 labels, 4 images tagged, threshold 0.4, top 4")
    counts = {line.split()[0]: line.split()[-2:] for line in lines if line.startswith("  cat ")}
    assert counts == {"cat": ["1", "1"]}
    assert "1 images could not be read:" in out and "cut.jpg" in out
    # The classify pass it ran first (this store was never embedded), and how.
    assert lines[-2] == (
        "classify: 4 classified, 1 errors, by EfficientNet-Lite0 (the offline tagger's "
        "ImageNet classes)"
    )
    assert lines[-1].startswith("run ")


def test_score_is_tag_with_json(env) -> None:
    invoke, _, labels, _ = env
    out = json.loads(invoke("score", "--labels", str(labels), "--json", "--topk", "2"))
    assert out["labels"] == 4 and out["topk"] == 2 and out["images"] == 4
    assert out["label_counts"]["cup of coffee"] == {"top1": 1, "over_threshold": 1}
    assert out["missing"] == [] and len(out["errors"]) == 1
    assert "Example:" in (main.commands["score"].help or "")


def test_bad_label_file_exits_2(env, tmp_path: Path) -> None:
    invoke, *_ = env
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("cat\ncaf\xe9\n".encode("latin-1"))
    out = invoke("tag", "--labels", str(bad), code=2)
    assert "not UTF-8" in out and "line 2" in out
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    assert "only comments" in invoke("tag", "--labels", str(empty), code=2)
    assert "does not exist" in invoke("tag", "--labels", str(tmp_path / "no.txt"), code=2)


def test_non_text_model_exits_2(env) -> None:
    invoke, _, labels, _ = env
    out = invoke("tag", "--labels", str(labels), "--model", "default", code=2)
    assert "embeds images only" in out and "open_clip:" in out
    out = invoke("tag", "--labels", str(labels), "--template", "a photo", code=2)
    assert "templates apply to CLIP" in out


def test_approve_verbs(env) -> None:
    invoke, store, labels, src = env
    invoke("tag", "--labels", str(labels), "--workers", "1")
    ids = image_ids(store)
    cat = ids["chelsea.jpg"]
    out = invoke("approve", "chelsea.jpg", str(src / "coffee.jpg"), "--labels", "Cat, indoor",
                 "--who", "ana")  # fmt: skip
    assert "recorded 2 approval event(s)" in out
    invoke("approve", cat, "--add", "--labels", "tabby", "--who", "ana")
    invoke("approve", "coffee.jpg", "--remove", "--labels", "cat", "--who", "ben")
    invoke("approve", "--where", "top1 = 'rocket' and top1_score > 0.5", "--labels", "rocket")
    now = {r["image_id"]: r["approved_labels"] for r in current_approvals(store).to_pylist()}
    assert now == {
        cat: ["cat", "indoor", "tabby"],
        ids["coffee.jpg"]: ["indoor"],
        ids["rocket.jpg"]: ["rocket"],
    }
    out = json.loads(invoke("approve", "--over-threshold", "--who", "bot", "--json"))
    assert out["events"] == 3
    invoke("approve", "coffee.jpg", "--clear")
    history = invoke("approve", "--history", "coffee.jpg").splitlines()
    assert [line.split()[3] for line in history] == ["set", "remove", "add", "clear"]
    assert history[0].split()[1] == "ana" and history[1].split()[1] == "ben"
    rows = json.loads(invoke("approve", "--history", "--json"))
    assert len(rows) == 9 and {r["action"] for r in rows} == {"set", "add", "remove", "clear"}


def test_approve_errors_exit_2(env) -> None:
    invoke, *_ = env
    assert "not an image id or a path" in invoke("approve", "nope.jpg", "--labels", "x", code=2)
    assert "no image selected" in invoke("approve", "--labels", "x", code=2)
    assert "needs at least one label" in invoke("approve", "chelsea.jpg", code=2)
    assert "bad --where condition" in invoke("approve", "--where", "nosuch = 1", "--labels",
                                             "x", code=2)  # fmt: skip
    out = invoke("approve", "chelsea.jpg", "--over-threshold", "--labels", "x", code=2)
    assert "takes no --labels" in out


def test_tag_without_embeddings_lists_what_to_run(tmp_path: Path) -> None:
    src = write_photos(tmp_path / "src")
    store = scanned(src, tmp_path / "store")
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\n")
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["--store", str(store.root), "tag", "--labels", str(labels), "--model",
         "open_clip:ViT-B-32/laion2b_s34b_b79k"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "lamina embed --model open_clip:ViT-B-32/laion2b_s34b_b79k" in result.output


def test_approve_where_names_every_column_once_and_label_keeps_commas(env) -> None:
    invoke, store, labels, _ = env
    from lamina.core.runner import run_pass

    invoke("tag", "--labels", str(labels), "--workers", "1")
    run_pass(store, "signals", workers=1, progress=False)
    ids = image_ids(store)
    # tags and signals both have an `error` column (and signals a `detail`, as files
    # does): each is named with its table's prefix, so no name is ambiguous.
    assert "tag_error" in invoke("approve", "--help")
    out = invoke("approve", "--where", "error is null", "--label", "x", code=2)
    assert "not found" in out and "tag_error" in out and "signal_error" in out
    where = "tag_error is null and signal_error is null and top1 = 'rocket' and top1_score > 0.5"
    out = invoke("approve", "--where", where, "--label",
                 "salt, pepper", "--label", "Still Life", "--labels", "a,b", "--json")  # fmt: skip
    now = {r["image_id"]: r["approved_labels"] for r in json.loads(out)["approvals"]}
    assert now == {ids["rocket.jpg"]: ["a", "b", "salt, pepper", "still life"]}
    out = invoke("approve", "--where", "tag_error is not null", "--label", "broken", "--json")
    assert [r["image_id"] for r in json.loads(out)["approvals"]] == [ids["cut.jpg"]]
    out = invoke("approve", "--where", "tags.top1 = 'cat'", "--label", "x, y", "--json")
    assert json.loads(out)["approvals"][0]["approved_labels"] == ["x, y"]
    assert "takes no --labels, --label" in invoke(
        "approve", "--over-threshold", "--label", "x", code=2
    )


def test_tag_on_a_store_without_images_says_to_scan(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("no image here")
    store = scanned(src, tmp_path / "store")
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\n")
    result = CliRunner().invoke(main, ["--store", str(store.root), "tag", "--labels", str(labels)])
    assert result.exit_code == 2
    assert "no images to tag" in result.output and "lamina scan SOURCE" in result.output
    assert "lamina tag --labels" not in result.output


def test_approve_where_cannot_write_a_file(env, tmp_path: Path) -> None:
    invoke, store, labels, _ = env
    invoke("tag", "--labels", str(labels), "--workers", "1")
    written = tmp_path / "pwned.csv"
    attack = f"true); copy (select 1 as x) to '{written}'; select 1 where (true"
    out = invoke("approve", "--where", attack, "--labels", "x", code=2)
    assert "fix:" in out and not written.exists()
    out = invoke("approve", "--where", "image_id in (select content from read_text('/etc/passwd'))",
                 "--labels", "x", code=2)  # fmt: skip
    assert "read_text" in out
    # A subquery over the store's own tables is a condition too.
    out = invoke("approve", "--where", "image_id in (select image_id from tags where "
                 "top1 = 'rocket' and top1_score > 0.5)", "--labels", "rocket",
                 "--json")  # fmt: skip
    assert [r["image_id"] for r in json.loads(out)["approvals"]] == [image_ids(store)["rocket.jpg"]]


def test_approve_refuses_control_characters_in_labels(env) -> None:
    invoke, store, *_ = env
    before = current_approvals(store).num_rows
    out = invoke("approve", "chelsea.jpg", "--label", "cat\x1b[2J\x1b[31m", code=2)
    assert "\\x1b" in out and "\x1b" not in out and "control character" in out
    out = invoke("approve", "chelsea.jpg", "--labels", "cat,dog\x00", code=2)
    assert "\\x00" in out
    assert current_approvals(store).num_rows == before


def test_tag_truncates_long_labels_in_its_text_output(env, tmp_path: Path) -> None:
    invoke, *_ = env
    long = "x" * 2_000_000
    labels = tmp_path / "long.txt"
    labels.write_text(f"cat\n{long}\n")
    out = invoke("tag", "--labels", str(labels), "--workers", "1")
    assert len(out) < 10_000 and "xxx…" in out
    data = json.loads(invoke("tag", "--labels", str(labels), "--workers", "1", "--json"))
    assert long in data["label_counts"]
    invoke("approve", "coffee.jpg", "--label", long)
    assert len(invoke("approve", "coffee.jpg", "--history")) < 10_000
