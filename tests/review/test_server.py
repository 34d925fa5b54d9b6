"""The review app over HTTP (a real uvicorn server on loopback): only recorded files are
served, user text never becomes SQL, POSTs come from the app itself, decisions from two
clients and the shell at once are all kept, and new layers show without a restart."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from lamina.core.store import Store, atomic_write_json, atomic_write_parquet
from tests.report.stores import lamina
from tests.review.conftest import Served

ROOT = Path(__file__).resolve().parents[2]


def get(
    app: Served, raw_path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    """GET a raw path (sent as written: no client-side `..` folding)."""
    con = http.client.HTTPConnection("127.0.0.1", app.port, timeout=30)
    try:
        con.request("GET", raw_path, headers=headers or {})
        r = con.getresponse()
        return r.status, r.getheader("content-type") or "", r.read()
    finally:
        con.close()


def post(
    app: Served, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    con = http.client.HTTPConnection("127.0.0.1", app.port, timeout=60)
    try:
        h = {"Content-Type": "application/json", **(headers or {})}
        con.request("POST", path, body=json.dumps(body), headers=h)
        r = con.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        con.close()


def some_ids(store: Store, n: int) -> list[str]:
    return store.sql("select image_id from images where status = 'ok' order by 1")[
        "image_id"
    ].to_pylist()[:n]


def test_only_files_the_manifest_records_are_served(served: Served, store: Store) -> None:
    image_id = some_ids(store, 1)[0]
    status, kind, body = get(served, f"/original/{image_id}")
    assert status == 200 and kind == "image/jpeg" and body[:2] == b"\xff\xd8"
    status, kind, _ = get(served, f"/thumb/{image_id}")
    assert status == 200 and kind == "image/webp"
    for path in [
        "/thumb/../../../../etc/passwd",
        "/original/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/original/%2Fetc%2Fpasswd",
        "/original//etc/passwd",
        "/thumb/" + quote(str(store.root / "lamina.toml"), safe=""),
        "/original/" + "0" * 32,  # well-formed, not in the manifest
        "/original/" + image_id.upper(),
        "/image/" + "f" * 32,
        "/image/..%2Flamina.toml",
        "/../lamina.toml",
    ]:
        status, _, body = get(served, path)
        assert status == 404, path
        assert b"root:" not in body and b"schema_version" not in body


def test_sql_in_the_url_is_a_value_or_a_shown_error(served: Served, store: Store) -> None:
    status, _, body = get(served, "/?flag=" + quote("blurry' or '1'='1"))
    assert status == 200 and b"0 files" in body
    status, _, body = get(served, "/?where=" + quote("1=1; drop table files"))
    assert status == 200 and b"several statements" in body
    status, _, body = get(
        served, "/?where=" + quote("(select count(*) from read_text('/etc/passwd')) > 0")
    )
    assert status == 200 and b'id="filter-error"' in body and b"root:" not in body
    status, _, body = get(served, "/?where=" + quote("nonsense_column > 1"))
    assert status == 200 and b"nonsense_column" in body
    # ... and the app keeps serving.
    status, _, body = get(served, "/")
    assert status == 200 and b"10 files" in body


def test_requests_for_another_host_or_origin_are_refused(served: Served, store: Store) -> None:
    status, _, _ = get(served, "/", headers={"Host": "evil.example:80"})
    assert status == 400  # a DNS-rebound name
    image_id = some_ids(store, 1)[0]
    body = {"image_ids": [image_id], "decision": "reject"}
    assert post(served, "/api/decide", body, {"Origin": "http://evil.example"})[0] == 403
    con = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    con.request(
        "POST",
        "/api/decide",
        body=f"image_ids={image_id}&decision=reject",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert con.getresponse().status == 415
    con.close()
    assert post(served, "/api/decide", {"image_ids": ["../../etc"], "decision": "reject"})[0] == 400
    assert post(served, "/api/decide", {"image_ids": ["0" * 32], "decision": "reject"})[0] == 400
    assert post(served, "/api/decide", {"image_ids": [image_id], "decision": "delete"})[0] == 400
    assert not store.table_files("decisions")


def test_two_clients_and_the_shell_at_once_lose_no_decision(served: Served, store: Store) -> None:
    ids = some_ids(store, 6)
    results: list[int] = []

    def client(decision: str) -> None:
        for image_id in ids:
            status, answer = post(
                served,
                "/api/decide",
                {"image_ids": [image_id], "decision": decision, "who": decision},
            )
            assert status == 200, answer
            results.append(answer["events"])

    def labels(who: str) -> None:
        for image_id in ids:
            status, answer = post(
                served,
                "/api/approve",
                {"image_ids": [image_id], "labels": [who], "action": "add", "who": who},
            )
            assert status == 200, answer

    threads = [threading.Thread(target=client, args=(d,)) for d in ("reject", "keep")]
    threads += [threading.Thread(target=labels, args=("tab",))]
    for t in threads:
        t.start()
    shell = subprocess.run(
        [
            sys.executable,
            "-m",
            "lamina.cli",
            "--store",
            str(store.root),
            "approve",
            *ids,
            "--add",
            "--labels",
            "shell",
            "--who",
            "shell",
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{ROOT / 'src'}", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    for t in threads:
        t.join()
    assert shell.returncode == 0, shell.stderr
    assert sum(results) == 12
    got = store.sql("select who, count(*) as n from decisions group by 1 order by 1").to_pylist()
    assert got == [{"who": "keep", "n": 6}, {"who": "reject", "n": 6}]
    approvals = store.sql(
        "select who, count(*) as n from approvals where who in ('tab', 'shell') "
        "group by 1 order by 1"
    ).to_pylist()
    assert approvals == [{"who": "shell", "n": 6}, {"who": "tab", "n": 6}]
    from lamina.tagging.approvals import current_approvals

    current = {r["image_id"]: r["approved_labels"] for r in current_approvals(store).to_pylist()}
    assert all({"tab", "shell"} <= set(current[i]) for i in ids)


def test_a_new_layer_shows_on_the_next_request(served: Served, store: Store) -> None:
    status, _, body = get(served, "/")
    assert b"zebra" not in body
    ids = store.sql("select image_id from images where status = 'ok'")["image_id"].to_pylist()
    rows = [
        {
            "image_id": i,
            "model_name": "fake:tagger",
            "top1": "zebra",
            "top1_score": 0.9,
            "top_labels": ["zebra"],
            "top_scores": [0.9],
            "over_threshold": ["zebra"],
            "error": None,
        }
        for i in ids
    ]
    layer = "1-newlabels"
    atomic_write_parquet(
        store.layer_dir("tags", layer) / "part-global.parquet", pa.Table.from_pylist(rows)
    )
    atomic_write_json(
        store.ledger_dir("tags", layer) / "global.json",
        {"pass": "tags", "layer": layer, "run_id": "r2", "rows": len(rows)},
    )
    store.set_current("tags", layer, "r2")  # what the runner does when `lamina tag` ends
    files = store.sql(
        "select count(*) as n from files f join images i using (image_id) "
        "where i.status = 'ok' and f.status <> 'missing'"
    )["n"][0].as_py()
    status, _, body = get(served, "/?tag=zebra")
    assert status == 200 and f"{files} files".encode() in body


def test_bulk_approval_over_the_threshold_of_a_filter(served: Served, store: Store) -> None:
    status, answer = post(
        served, "/api/approve", {"filter": {"tag": "rocket"}, "over_threshold": True, "who": "bulk"}
    )
    assert status == 200, answer
    expected = store.sql(
        "select count(*) as n from tags "
        "where list_contains(top_labels, 'rocket') and len(over_threshold) > 0"
    )["n"][0].as_py()
    assert answer["events"] == expected > 0
    status, answer = post(
        served, "/api/approve", {"filter": {"where": "nonsense > 1"}, "over_threshold": True}
    )
    assert status == 400 and "nonsense" in answer["error"]


def test_a_store_without_thumbnails_makes_previews_on_demand(tree: Path, tmp_path: Path) -> None:
    lamina(tmp_path / "s", "scan", str(tree))
    store = Store.open(tmp_path / "s")
    app = Served(store)
    try:
        status, _, body = get(app, "/")
        assert status == 200 and b"lamina thumbs" in body and b"5 files" in body
        rows = store.sql(
            "select rel_path, image_id from files where image_id is not null"
        ).to_pylist()
        ids = {r["rel_path"]: r["image_id"] for r in rows}
        status, kind, body = get(app, f"/thumb/{ids['cats/a.jpg']}")
        assert status == 200 and kind == "image/jpeg" and body[:2] == b"\xff\xd8"
        status, kind, body = get(app, f"/thumb/{ids['broken/cut.jpg']}")
        assert status == 200 and kind == "image/svg+xml" and b"no preview" in body
        (tree / "cats" / "b.jpg").unlink()
        status, kind, body = get(app, f"/original/{ids['cats/b.jpg']}")
        assert status == 200 and b"missing" in body
        status, _, body = get(app, f"/image/{ids['cats/b.jpg']}")
        assert status == 200 and b"badge missing" in body
        assert (
            post(app, "/api/decide", {"image_ids": [ids["cats/b.jpg"]], "decision": "reject"})[0]
            == 200
        )
        status, _, body = get(app, "/duplicates")
        assert status == 200 and b"lamina sense" in body
    finally:
        app.stop()


def test_an_empty_store_says_to_scan(tmp_path: Path) -> None:
    app = Served(Store.open(tmp_path / "empty", create=True))
    try:
        for path in ("/", "/duplicates", "/clusters"):
            status, _, body = get(app, path)
            assert status == 200 and b"lamina " in body, path
        assert b"lamina scan" in get(app, "/")[2]
    finally:
        app.stop()


def test_similar_and_text_search_go_through_the_search_jobs(served: Served, store: Store) -> None:
    """ "Similar to this image" lists what `lamina similar` lists (the image left out); the
    store's model embeds images only, so the text box says so and a text query is a
    message on the page, never an error page."""
    from lamina.jobs.search import SimilarConfig, similar

    image_id = some_ids(store, 1)[0]
    status, _, body = get(served, f"/image/{image_id}")
    assert status == 200 and f'href="/search?similar={image_id}"'.encode() in body
    status, _, body = get(served, f"/search?similar={image_id}")
    assert status == 200, body[:500]
    expected = [h.image_id for h in similar(store, SimilarConfig(image_id, k=49)).hits]
    expected = [i for i in expected if i != image_id][:48]
    page = body.decode()
    shown = [part.split('"', 1)[0] for part in page.split('class="tile" data-id="')[1:]]
    assert shown == expected and len(shown) >= 2
    status, _, body = get(served, "/")
    assert status == 200 and b'id="no-text-model"' in body and b"no text-capable" in body
    status, _, body = get(served, "/search?text=" + quote("a cat"))
    assert status == 200 and b"no text-capable embedding layer" in body
    assert b'class="tile"' not in body
    assert get(served, "/search?similar=" + "0" * 32)[0] == 404
    assert get(served, "/search?similar=" + quote("../x"))[0] == 404


def test_the_image_view_shows_ocr_text_captions_and_modality(tmp_path: Path) -> None:
    """Issue 18, item 7: the image view shows the text OCR read (the page's text and each
    line with its box), the caption with its model and prompt, and the modality."""
    from lamina.jobs.caption import CaptionConfig, caption
    from lamina.jobs.modality import ModalityJobConfig, modality
    from lamina.jobs.ocr import OcrConfig, ocr
    from lamina.jobs.scan import ScanConfig, scan
    from tests.backends.captioners.tiny import save_tiny_captioner
    from tests.text_images import render_lines

    src = tmp_path / "src"
    render_lines(src / "page.png", ["Herbarium of Uppsala", "Sheet 1753"], size=30)
    store = Store.open(tmp_path / "store", create=True)
    scan(store, ScanConfig(sources=(str(src),), progress=False))
    image_id = some_ids(store, 1)[0]
    app = Served(store)
    try:
        body = get(app, f"/image/{image_id}")[2].decode()
        assert 'id="ocr-text"' not in body and 'id="caption"' not in body
        ocr(store, OcrConfig(all_images=True, workers=1, progress=False))
        modality(store, ModalityJobConfig(workers=1, progress=False))
        model = save_tiny_captioner(tmp_path / "tiny")
        caption(store, CaptionConfig(f"hf:{model}", everything=True, max_new_tokens=4,
                                     progress=False))  # fmt: skip
        status, _, raw = get(app, f"/image/{image_id}")
        body = raw.decode()
        assert status == 200
        assert '<pre id="ocr-text">Herbarium of Uppsala\nSheet 1753</pre>' in body
        lines = body.split('<table id="ocr-lines">')[1].split("</table>")[0]
        assert lines.count("<tr>") == 3 and "Sheet 1753" in lines  # a header and two lines
        text = store.sql("select caption from captions").column(0).to_pylist()[0]
        assert text and f'<p id="caption">{text}</p>' in body and f"hf:{model}" in body
        kind = store.sql("select modality from modality").column(0).to_pylist()[0]
        assert f'<span class="badge" id="modality">{kind}</span>' in body
    finally:
        app.stop()
