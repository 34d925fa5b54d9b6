"""The review app's HTTP side: a Starlette app over one store (`make_app`), served by
uvicorn (`serve`). Pages are rendered by Jinja2 (autoescaped) per request from a fresh
read of the store; decisions are POSTed as JSON and appended as events.

Security: only files the manifest records are served, by image id (32 hex; any other
name, `..` or a path is a 404); the only SQL taken from a URL is the grid's free condition,
checked like `lamina approve --where` and run on a sandboxed read-only connection; a POST
must be JSON from the app's own origin (so another web page cannot decide for the user);
on a loopback address, requests naming another Host are refused (DNS rebinding).

Example:
    >>> app = make_app(lamina.open("photos.lamina"))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import io
import logging
import math
import mimetypes
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from lamina.core.archives import open_source, source_mtime_ns
from lamina.core.errors import LaminaError
from lamina.core.remote import is_url
from lamina.core.store import Store
from lamina.review import image_view, query, reader, search
from lamina.review.query import Filters
from lamina.review.reader import IMAGE_ID

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
PLACEHOLDER = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="160" height="120" viewBox="0 0 160 120">'
    '<rect width="160" height="120" fill="#ddd"/><text x="80" y="64" font-size="14" '
    'text-anchor="middle" fill="#555" font-family="sans-serif">{text}</text></svg>'
)


def _env() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        # A column of a table the store lacks yet is undefined, i.e. empty: not an error.
        undefined=jinja2.ChainableUndefined,
    )
    env.filters["bytes"] = _bytes
    env.filters["num"] = _num
    return env


def _bytes(n: Any) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def _num(x: Any) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.4g}"
    return "" if x is None else str(x)


def placeholder(text: str) -> bytes:
    """A small grey SVG with `text` (an image with no preview, or a missing original)."""
    return PLACEHOLDER.format(text=text).encode()


@functools.lru_cache(maxsize=512)
def _thumb_from(path: str, mtime_ns: int) -> bytes | None:
    """A 512 px JPEG of an original, made in memory (a store without thumbnails); None
    when Pillow cannot decode it. Never written anywhere."""
    from PIL import Image, ImageOps

    try:
        with open_source(path) as fh, Image.open(fh) as opened:
            opened.draft("RGB", (512, 512))  # JPEG: decode at a reduced scale
            im = ImageOps.exif_transpose(opened).convert("RGB")
            im.thumbnail((512, 512))
            out = io.BytesIO()
            im.save(out, "JPEG", quality=80)
            return out.getvalue()
    except Exception:  # any decoder failure (truncated, unknown format) means "no preview"
        return None


def make_app(store: Store, *, allowed_hosts: list[str] | None = None) -> Any:
    """The Starlette app over `store`. `allowed_hosts`: the Host names accepted (None:
    any; `serve` gives the loopback names when bound to loopback).

    Example:
        >>> app = make_app(store, allowed_hosts=["127.0.0.1", "localhost"])  # doctest: +SKIP
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    from lamina.passes.thumbs import thumb_path

    env = _env()
    views = reader.Views(store)

    def render(name: str, request: Request, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("error", None)
        html = env.get_template(name).render(
            store=str(store.root), path=request.url.path, user=_user(), **ctx
        )
        return HTMLResponse(html, status_code=status)

    def url(path: str, params: dict[str, Any]) -> str:
        return path + ("?" + urlencode(params) if params else "")

    def grid_page(request: Request) -> Response:
        flt = Filters.from_params(request.query_params)
        r = views.reader()
        page = query.grid(store, flt, r)
        opts = views.cached("options", lambda: query.options(store, r))
        thumbs = _thumbs_made(store)
        for row in page.rows:
            row["thumb"] = f"/thumb/{row['image_id']}"
            row["href"] = f"/image/{row['image_id']}"
        return render(
            "grid.html.j2",
            request,
            title="Images",
            page=page,
            flt=flt,
            opts=opts,
            sizes=query.PAGE_SIZES,
            decisions=query.DECISION_FILTERS,
            approvals=query.APPROVAL_FILTERS,
            thumbs_made=thumbs,
            prev_url=url("/", flt.params(page=page.page - 1)) if page.page > 1 else None,
            next_url=url("/", flt.params(page=page.page + 1)) if page.page < page.pages else None,
            filter_params=flt.params(page=1),
            text_models=views.cached("text_models", lambda: search.text_models(store)),
            no_text_model=search.NO_TEXT_MODEL,
        )

    def image_page(request: Request) -> Response:
        image_id = request.path_params["image_id"]
        known = IMAGE_ID.match(image_id)
        data = image_view.image(store, image_id, views.reader()) if known else None
        if data is None:
            return render(
                "message.html.j2",
                request,
                status=404,
                title="Unknown image",
                message=f"no image {image_id!r} in this store",
            )
        labels: list[str] = []
        tags = data.get("tags") or {}
        for label in [*(tags.get("top_labels") or []), *data["approved"]]:
            if label not in labels:
                labels.append(label)
        scores = dict(zip(tags.get("top_labels") or [], tags.get("top_scores") or [], strict=False))
        return render(
            "image.html.j2",
            request,
            title=data["files"][0]["rel_path"] if data["files"] else image_id,
            img=data,
            labels=labels,
            scores=scores,
        )

    async def search_page(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        params = request.query_params
        text = (params.get("text") or "").strip() or None
        similar_to = params.get("similar") or None
        if similar_to is not None and (
            not IMAGE_ID.match(similar_to) or similar_to not in views.known_ids()
        ):
            return render(
                "message.html.j2",
                request,
                status=404,
                title="Unknown image",
                message=f"no image {similar_to!r} in this store",
            )
        # Embedding a text or building an index takes a while: off the event loop.
        model, hits, error = await run_in_threadpool(
            search.search_hits, store, text=text, similar_to=similar_to
        )
        return render(
            "search.html.j2",
            request,
            title="Search",
            text=text or "",
            similar_to=similar_to,
            model=model,
            hits=hits,
            error=error,
            text_models=views.cached("text_models", lambda: search.text_models(store)),
            no_text_model=search.NO_TEXT_MODEL,
        )

    def listing(
        request: Request, path: str, title: str, read: Callable[[int], query.Page]
    ) -> Response:
        """The page of a listing (`read` gives page number n) with its previous / next
        links; the template is named after the path."""
        page = read(Filters.from_params(request.query_params).page)
        return render(
            f"{path.strip('/')}.html.j2",
            request,
            title=title,
            page=page,
            prev_url=url(path, {"page": page.page - 1}) if page.page > 1 else None,
            next_url=url(path, {"page": page.page + 1}) if page.page < page.pages else None,
        )

    def duplicates_page(request: Request) -> Response:
        return listing(
            request, "/duplicates", "Duplicate groups",
            lambda n: query.duplicate_groups(store, n, 12, views.reader()),
        )  # fmt: skip

    def clusters_page(request: Request) -> Response:
        return listing(
            request, "/clusters", "Clusters", lambda n: query.clusters(store, n, 24, views.reader())
        )

    def _svg(text: str) -> Response:
        return Response(placeholder(text), media_type="image/svg+xml", headers=_NO_STORE)

    def thumb(request: Request) -> Response:
        image_id = request.path_params["image_id"]
        if not IMAGE_ID.match(image_id) or image_id not in views.known_ids():
            return Response("not an image of this store", status_code=404)
        made = thumb_path(store, image_id)
        if made.is_file():
            return FileResponse(made, media_type="image/webp")
        original = reader.original_path(views.reader(), image_id)
        if original is None:
            return _svg("missing")
        data = _thumb_from(original, source_mtime_ns(original))
        if data is None:
            return _svg("no preview")
        return Response(data, media_type="image/jpeg")

    def original(request: Request) -> Response:
        image_id = request.path_params["image_id"]
        if not IMAGE_ID.match(image_id) or image_id not in views.known_ids():
            return Response("not an image of this store", status_code=404)
        r = views.reader()
        path = reader.original_path(r, image_id)
        if path is None:
            return _svg("missing")
        fmt = r.one("select format from images where image_id = ?", [image_id]) or {}
        if fmt.get("format") in image_view.BROWSER_FORMATS:
            if not is_url(path) and os.path.isfile(path):
                return FileResponse(path, headers=_NO_STORE)
            with open_source(path) as fh:  # an archive member or a remote file: its bytes
                name = path.rpartition("/")[2]
                media = mimetypes.guess_type(name)[0] or "application/octet-stream"
                return Response(fh.read(), media_type=media, headers=_NO_STORE)
        return thumb(request)

    async def approve(request: Request) -> Response:
        body = await _json(request)
        if isinstance(body, Response):
            return body
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_approve, store, body, views)

    async def decide(request: Request) -> Response:
        body = await _json(request)
        if isinstance(body, Response):
            return body
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_decide, store, body, views)

    async def _json(request: Request) -> Any:
        # A cross-site page can POST a form to 127.0.0.1 but not JSON without a CORS
        # preflight, which this app never answers; the Origin check covers the rest.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send JSON (Content-Type: application/json)"}, 415)
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host')}":
            return JSONResponse({"error": f"requests from {origin} are refused"}, 403)
        try:
            return await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, 400)

    routes = [
        Route("/", grid_page),
        Route("/image/{image_id}", image_page),
        Route("/duplicates", duplicates_page),
        Route("/search", search_page),
        Route("/clusters", clusters_page),
        Route("/thumb/{image_id}", thumb),
        Route("/original/{image_id}", original),
        Route("/api/approve", approve, methods=["POST"]),
        Route("/api/decide", decide, methods=["POST"]),
    ]
    middleware = []
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("lamina app: %s %s failed", request.method, request.url.path)
        return HTMLResponse(f"<h1>error</h1><p>{_escape(str(exc))}</p>", status_code=500)

    return Starlette(routes=routes, middleware=middleware, exception_handlers={500: server_error})


_NO_STORE = {"Cache-Control": "no-store"}


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def _user() -> str:
    from lamina.tagging.approvals import _user as login

    return login()


def _ids(body: dict[str, Any]) -> list[str]:
    ids = body.get("image_ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) and IMAGE_ID.match(i) for i in ids):
        raise LaminaError("image_ids must be a list of image ids (32 hex characters)")
    return ids


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise LaminaError(f"{key} must be text")
    return value


def _approve(store: Store, body: Any, views: reader.Views) -> Any:
    """POST /api/approve: {image_ids, labels, action} or {over_threshold: true, image_ids
    or filter}; through `lamina.jobs.approve` like `lamina approve`."""
    from starlette.responses import JSONResponse

    from lamina.jobs.approve import ApproveConfig
    from lamina.jobs.approve import approve as approve_job

    try:
        if not isinstance(body, dict):
            raise LaminaError("the body must be a JSON object")
        ids = _ids(body)
        if isinstance(body.get("filter"), dict):
            flt = Filters.from_params(body["filter"])
            ids = query.filter_ids(store, flt, reader=views.reader())
            if not ids:
                raise LaminaError("the filter selects no image")
        labels = body.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise LaminaError("labels must be a list of text")
        action = str(body.get("action") or "set")
        if action == "set" and not labels and not body.get("over_threshold"):
            action = "clear"
        config = ApproveConfig(
            images=tuple(ids),
            labels=tuple(labels),
            action=action,
            over_threshold=bool(body.get("over_threshold")),
            who=_text(body, "who"),
            note=_text(body, "note") or "lamina app",
        )
        result = approve_job(store, config)
    except LaminaError as exc:
        return JSONResponse({"error": str(exc)}, 400)
    return JSONResponse({"events": result.events})


def _decide(store: Store, body: Any, views: reader.Views) -> Any:
    """POST /api/decide: {image_ids, decision} (a mark), or {group_id, keep} (keep one
    image of a duplicate group, discard the others), or {group_id, decision:
    "not_duplicate"}."""
    from starlette.responses import JSONResponse

    from lamina.tagging.decisions import DECISIONS, decide

    try:
        if not isinstance(body, dict):
            raise LaminaError("the body must be a JSON object")
        who, note = _text(body, "who"), _text(body, "note") or "lamina app"
        group = _text(body, "group_id")
        decision = _text(body, "decision")
        if group is not None:
            if not IMAGE_ID.match(group):
                raise LaminaError(f"{group!r} is not a duplicate group id")
            members = query.group_ids(store, group, views.reader())
            if len(members) < 2:
                raise LaminaError(f"{group} is not a duplicate group of this store")
            keep = _text(body, "keep")
            if keep is not None:
                if keep not in members:
                    raise LaminaError(f"{keep} is not in the group {group}")
                n = decide(store, [keep], "dup_keep", group_id=group, who=who, note=note)
                others = [m for m in members if m != keep]
                n += decide(store, others, "discard", group_id=group, who=who, note=note)
            elif decision == "not_duplicate":
                n = decide(store, members, "not_duplicate", group_id=group, who=who, note=note)
            else:
                raise LaminaError("a group decision needs `keep` or decision not_duplicate")
        else:
            if decision not in DECISIONS:
                raise LaminaError(f"unknown decision {decision!r}", hint=", ".join(DECISIONS))
            ids = _ids(body)
            if not ids:
                raise LaminaError("no image selected")
            n = decide(store, ids, decision, who=who, note=note)
    except LaminaError as exc:
        return JSONResponse({"error": str(exc)}, 400)
    return JSONResponse({"events": n})


def _thumbs_made(store: Store) -> bool:
    return bool(store.table_files("thumbs"))


def serve(
    store: Store, *, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False
) -> None:
    """Serve the app until interrupted; `open_browser` opens it in the web browser once it
    listens. A host other than loopback is served as asked (the CLI warns: anyone who can
    reach it can read the images and record decisions).

    Example:
        >>> serve(lamina.open(), port=8765)  # doctest: +SKIP
    """
    import threading
    import time
    import webbrowser

    import uvicorn

    # On loopback, a request naming another Host comes through a rebound DNS name.
    allowed = list(LOOPBACK) if host in LOOPBACK else None
    app = make_app(store, allowed_hosts=allowed)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    if open_browser:
        shown = f"[{host}]" if ":" in host else host

        def _open() -> None:
            for _ in range(300):  # up to 30 s for the socket to listen
                if server.started:
                    url = f"http://{shown}:{port}/"
                    try:
                        opened = webbrowser.open(url)
                    except webbrowser.Error:
                        opened = False
                    if not opened:  # a server, a container: the person opens it by hand
                        print(f"no web browser to open: go to {url}", file=sys.stderr)
                    return
                time.sleep(0.1)

        threading.Thread(target=_open, daemon=True).start()
    server.run()
