"""`lamina run`: the main job end to end, its re-run, a kill and resume, and bad sources."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lamina.cli import main
from lamina.core.store import Store
from lamina.sample import package_photos

PHOTOS = (
    "chelsea",
    "coffee",
    "rocket",
    "astronaut",
    "camera",
    "china",
    "flower",
    "motorcycle_left",
)


def photo_tree(dest: Path) -> Path:
    """A few real photos in two folders, a byte copy, a truncated file and some junk."""
    photos = package_photos()
    for i, name in enumerate(PHOTOS):
        folder = dest / ("animals" if i % 2 == 0 else "things")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photos[name]).save(folder / f"{name}.jpg", quality=90)
    data = (dest / "animals" / "chelsea.jpg").read_bytes()
    (dest / "things" / "chelsea_copy.jpg").write_bytes(data)
    (dest / "things" / "cut.jpg").write_bytes(data[: len(data) // 3])
    (dest / "things" / "notes.txt").write_text("not an image\n")
    return dest


def invoke(store: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--store", str(store), "run", *args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("run")
    src = photo_tree(root / "src")
    labels = root / "labels.txt"
    labels.write_text("# what we look for\ncat\ncup of coffee\nrocket\nastronaut\n")
    code, out = invoke(root / "store", str(src), "--labels", str(labels), "--workers", "1")
    assert code == 0, out
    return root, src, out


def test_the_main_job_writes_every_table_the_exports_and_a_report(
    finished: tuple[Path, Path, str],
) -> None:
    root, _, out = finished
    store = Store.open(root / "store")
    tables = set(store.available_tables())
    for name in (
        "files",
        "images",
        "signals",
        "hashes",
        "flags",
        "duplicates",
        "embed",
        "clusters",
        "outliers",
        "semantic_map",
        "tags",
        "thumbs",
    ):
        assert name in tables, name
    for stage in ("scan", "sense", "embed", "cluster", "tag", "export", "report"):
        assert f"] {stage}" in out
    report = root / "store" / "report" / "index.html"
    assert report.is_file() and f"file://{report}" in out
    with (root / "store" / "exports" / "tags.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    by_name = {Path(r["rel_path"]).name: r for r in rows}
    assert by_name["chelsea.jpg"]["top1"] == "cat"
    assert by_name["coffee.jpg"]["top1"] == "cup of coffee"
    assert (root / "store" / "exports" / "folder_medoids.csv").is_file()


def test_the_resolved_config_is_frozen_into_the_run_record(
    finished: tuple[Path, Path, str],
) -> None:
    root, src, _ = finished
    store = Store.open(root / "store")
    runs = store.sql("select run_id from runs where command = 'run'").column(0).to_pylist()
    assert len(runs) == 1
    config = json.loads((store.run_dir(runs[0]) / "config.json").read_text())
    assert config["root"] == [str(src)]
    assert config["embed_model"] == "efficientnet_lite0:imagenet"
    assert config["tagger"] == "offline"
    exported = json.loads((root / "store" / "exports" / "config.json").read_text())
    assert exported["run_id"] == runs[0]


def test_a_second_run_recomputes_nothing_and_says_so(finished: tuple[Path, Path, str]) -> None:
    root, src, _ = finished
    labels = root / "labels.txt"
    report = root / "store" / "report" / "index.html"
    before = report.stat().st_mtime_ns
    code, out = invoke(
        root / "store", str(src), "--labels", str(labels), "--workers", "1", "--json"
    )
    assert code == 0, out
    summary = json.loads(out)
    assert summary["up_to_date"] is True
    assert not any(s["worked"] for s in summary["stages"].values())
    assert report.stat().st_mtime_ns == before  # an unchanged store keeps its report


def test_an_export_deleted_by_hand_is_made_again(finished: tuple[Path, Path, str]) -> None:
    root, src, _ = finished
    medoids = root / "store" / "exports" / "folder_medoids.csv"
    medoids.unlink()
    code, out = invoke(root / "store", str(src), "--labels", str(root / "labels.txt"),
                       "--workers", "1")  # fmt: skip
    assert code == 0, out
    assert "export: skipped" not in out and "report: skipped: up to date" in out
    assert medoids.read_text().startswith("folder,medoid_rel_path,cosine_to_centroid\n")


def test_a_missing_source_is_a_clear_error_and_a_report_says_so(tmp_path: Path) -> None:
    code, out = invoke(tmp_path / "store", str(tmp_path / "nowhere"))
    assert code == 2
    assert "does not exist" in out
    page = (tmp_path / "store" / "report" / "index.html").read_text()
    assert "does not exist" in page


def test_a_source_without_images_gives_a_report_that_says_so(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("nothing to see\n")
    code, out = invoke(tmp_path / "store", str(src), "--workers", "1")
    assert code == 0, out
    assert "skipped: no images to work on" in out
    assert "tag: skipped: no labels_file" in out
    page = (tmp_path / "store" / "report" / "index.html").read_text().lower()
    assert "no images" in page


@pytest.mark.slow
def test_run_resumes_after_a_kill(tmp_path: Path) -> None:
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for i in range(160):
        folder = src / f"d{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
            folder / f"{i:04d}.png"
        )
    store_path = tmp_path / "store"
    cmd = [
        sys.executable,
        "-m",
        "lamina.cli",
        "--store",
        str(store_path),
        "run",
        str(src),
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ledger = store_path / "ledger" / "embed"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if list(ledger.glob("*/chunk-*.json")):
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    code, out = invoke(store_path, str(src), "--workers", "1", "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["stages"]["scan"]["worked"] is False  # scanned before the kill
    assert "already done" in summary["stages"]["embed"]["message"]
    store = Store.open(store_path)
    embedded = store.sql("select image_id from embed").column(0).to_pylist()
    assert sorted(embedded) == sorted(set(embedded))  # nothing twice
    assert len(embedded) == 160
    assert (store_path / "report" / "index.html").is_file()


def test_a_bad_label_file_stops_the_run_before_any_work(tmp_path: Path) -> None:
    src = photo_tree(tmp_path / "src")
    labels = tmp_path / "labels.txt"
    labels.write_bytes("cat\ncaf\xe9\n".encode("latin-1"))
    code, out = invoke(tmp_path / "store", str(src), "--labels", str(labels))
    assert code == 2
    assert "not UTF-8" in out and "line 2" in out
    assert not (tmp_path / "store" / "tables" / "files").exists()  # nothing was scanned


def test_the_next_good_run_replaces_a_report_of_a_bad_source(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, _ = invoke(store, str(tmp_path / "typo"), "--stages", "scan,report")
    assert code == 2
    assert "does not exist" in (store / "report" / "index.html").read_text()
    src = photo_tree(tmp_path / "src")
    code, out = invoke(store, str(src), "--stages", "scan,report", "--workers", "1")
    assert code == 0, out
    assert "does not exist" not in (store / "report" / "index.html").read_text()


def test_an_exports_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    src = photo_tree(tmp_path / "src")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    config = tmp_path / "lamina.toml"
    config.write_text(f'run_dir = "{blocker}"\nstages = ["scan", "export"]\n')
    code, out = invoke(tmp_path / "store", str(src), "--config", str(config), "--workers", "1")
    assert code == 2
    assert f"cannot make the exports folder {blocker}" in out
    assert "Traceback" not in out


def test_a_run_stopped_after_its_export_still_gets_its_config_json_from_the_next_run(
    tmp_path: Path,
) -> None:
    # Found by the reliability suite: a run that stopped (or was killed) after the export
    # stage left run_dir/config.json unwritten, and later runs skipped the export as up to
    # date, so it never came.
    src = photo_tree(tmp_path / "src")
    store = tmp_path / "store"
    (store / "report").mkdir(parents=True)
    (store / "report" / "mine.txt").write_text("not a report: the report stage stops here")
    code, out = invoke(store, str(src), "--stages", "scan,export,report", "--workers", "1")
    assert code == 2 and (store / "exports" / "tags.csv").is_file()
    (store / "report" / "mine.txt").unlink()
    code, out = invoke(store, str(src), "--stages", "scan,export,report", "--workers", "1")
    assert code == 0 and "export: skipped: up to date" in out
    assert json.loads((store / "exports" / "config.json").read_text())["stages"] == [
        "scan",
        "export",
        "report",
    ]


def test_exports_inside_a_source_are_refused(tmp_path: Path) -> None:
    src = photo_tree(tmp_path / "src")
    config = tmp_path / "lamina.toml"
    config.write_text('run_dir = "src/exports"\n')
    code, out = invoke(tmp_path / "store", str(src), "--config", str(config))
    assert code == 2 and "never writes inside a source" in out
    assert not (src / "exports").exists()


def test_a_collection_of_broken_files_still_gets_exports_and_a_report(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = photo_tree(tmp_path / "good")
    (src / "cut.jpg").write_bytes((data / "animals" / "chelsea.jpg").read_bytes()[:3000])
    (src / "noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    code, out = invoke(
        tmp_path / "store", str(src), "--stages", "scan,sense,embed,cluster,export,report",
        "--workers", "1",
    )  # fmt: skip
    assert code == 0, out
    header = (tmp_path / "store" / "exports" / "folder_medoids.csv").read_text()
    assert header == "folder,medoid_rel_path,cosine_to_centroid\n"
    page = (tmp_path / "store" / "report" / "index.html").read_text()
    assert "cut.jpg" in page  # listed among the files that could not be processed


def test_print_config_freezes_command_line_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", "photos", "--labels", "l.txt", "--print-config"])
    assert result.exit_code == 0, result.output
    assert f'root = ["{tmp_path / "photos"}"]' in result.output
    assert f'labels_file = "{tmp_path / "l.txt"}"' in result.output


def test_max_images_senses_a_sample_and_counts_only_it(tmp_path: Path) -> None:
    from lamina.analysis.flags import flag_summary

    src = photo_tree(tmp_path / "src")
    code, out = invoke(
        tmp_path / "store", str(src), "--max-images", "3", "--stages", "scan,sense",
        "--workers", "1", "--json",
    )  # fmt: skip
    assert code == 0, out
    store = Store.open(tmp_path / "store")
    assert store.sql("select count(*) from signals").column(0)[0].as_py() == 3
    first = store.sql("select image_id from images order by image_id limit 3").column(0)
    assert sorted(store.table("signals")["image_id"].to_pylist()) == first.to_pylist()
    assert flag_summary(store)["images"] == 3  # the unsensed ones are not called clean


def test_run_dir_files_are_checked_before_any_work(tmp_path: Path) -> None:
    src = photo_tree(tmp_path / "src")
    run_dir = tmp_path / "out"
    run_dir.mkdir()
    (run_dir / "tags.csv").write_text("someone's spreadsheet\n")
    config = tmp_path / "lamina.toml"
    config.write_text(f'run_dir = "{run_dir}"\nstages = ["scan", "export"]\n')
    code, out = invoke(tmp_path / "store", str(src), "--config", str(config))
    assert code == 2 and "not written by lamina" in out and "run_dir" in out
    assert (run_dir / "tags.csv").read_text() == "someone's spreadsheet\n"
    assert not (tmp_path / "store" / "tables" / "files").exists()  # nothing scanned
    config.write_text(f'run_dir = "{tmp_path / "store" / "tables"}"\n')
    code, out = invoke(tmp_path / "store", str(src), "--config", str(config))
    assert code == 2 and "inside the store" in out


def test_photo_tagger_flags_set_their_config_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --root DIR --labels FILE --threshold T --topk K`, as Photo-Tagger took them."""
    monkeypatch.chdir(tmp_path)
    args = ["run", "--root", "a", "--root", "b", "--labels", "l.txt", "--threshold", "0.3",
            "--topk", "3", "--model-name", "ViT-B-32", "--pretrained", "openai",
            "--batch-images", "8", "--batch-labels", "64", "--max-images", "10",
            "--run-dir", "out", "--print-config"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    config = tomllib.loads(result.output)
    assert config["root"] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert config["labels_file"] == str(tmp_path / "l.txt")
    assert config["run_dir"] == str(tmp_path / "out")
    assert (config["threshold"], config["topk"], config["max_images"]) == (0.3, 3, 10)
    assert (config["model_name"], config["pretrained"]) == ("ViT-B-32", "openai")
    assert (config["batch_images"], config["batch_labels"]) == (8, 64)
    bad = CliRunner().invoke(main, ["run", "--root", "a", "--threshold", "high"])
    assert bad.exit_code == 2 and "'high' is not a number (or 'auto')" in bad.output


def test_a_yaml_config_drives_the_run_and_an_unknown_key_is_refused(tmp_path: Path) -> None:
    src = photo_tree(tmp_path / "src")
    config = tmp_path / "config.yaml"
    config.write_text("root: src\nstages: [scan]\ntopk: 2\n")
    code, out = invoke(tmp_path / "store", "--config", str(config), "--workers", "1")
    assert code == 0, out
    assert "[1/1] scan" in out and f"-> {tmp_path / 'store'}" in out
    assert Store.open(tmp_path / "store").sql("select count(*) from files").column(0)[0].as_py()
    assert (
        str(src)
        in Store.open(tmp_path / "store").sql("select source from files").column(0).to_pylist()
    )
    config.write_text("root: src\ntop_k: 2\n")
    code, out = invoke(tmp_path / "store", "--config", str(config))
    assert code == 2
    assert f"unknown key 'top_k' in {config}" in out and "did you mean 'topk'?" in out


def test_open_serves_the_review_app_on_the_store_after_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lamina run --open`: the run, then the review app on the same store, its URL printed
    (the server start is recorded, not run: it would serve until Ctrl-C)."""
    served: list[dict] = []

    def record(store: Store, **kw: object) -> None:
        served.append({"root": store.root, "tables": store.available_tables(), **kw})

    monkeypatch.setattr("lamina.review.server.serve", record)
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(package_photos()["coffee"]).save(src / "coffee.jpg")
    code, out = invoke(tmp_path / "store", str(src), "--stages", "scan", "--open", "--port", "8801")
    assert code == 0, out
    (call,) = served
    assert call["root"] == Store.open(tmp_path / "store").root and "files" in call["tables"]
    assert (call["host"], call["port"], call["open_browser"]) == ("127.0.0.1", 8801, True)
    assert out.index("files: 1") < out.index("lamina app on http://127.0.0.1:8801/")
    code, out = invoke(tmp_path / "store", str(src), "--stages", "scan")
    assert code == 0 and len(served) == 1  # never without --open


def test_the_app_prints_its_url_when_no_browser_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where no browser starts (`webbrowser.open` is False), the app says where to go."""
    import threading
    import webbrowser

    import uvicorn

    from lamina.review import server

    asked: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: asked.append(url) or False)
    done = threading.Event()

    def run(self: uvicorn.Server, *a: object, **k: object) -> None:
        self.started = True  # listening, as far as the opener can tell
        done.wait(10)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    store = Store.open(tmp_path / "store", create=True)
    thread = threading.Thread(target=server.serve, args=(store,), kwargs={"open_browser": True})
    thread.start()
    err = ""
    for _ in range(200):  # the opener polls every 0.1 s
        err += capsys.readouterr().err
        if "go to" in err:
            break
        time.sleep(0.05)
    done.set()
    thread.join(10)
    assert asked == ["http://127.0.0.1:8765/"]
    assert "no web browser to open: go to http://127.0.0.1:8765/" in err
