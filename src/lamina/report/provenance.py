"""Where the report's numbers came from: the layer of each pass and the runs that wrote it
(from the ledger), the flags policy a layer was made with, and the provenance section.
"""

from __future__ import annotations

import json
from typing import Any

from lamina.analysis.flags import Policy, current_policy
from lamina.core.store import TABLE_NAMES, Store
from lamina.report.context import ReportContext, Section


def layer_runs(store: Store, pass_name: str) -> dict[str, Any] | None:
    """The current layer of a pass and the runs that wrote it (from its ledger records).

    Example:
        >>> layer_runs(lamina.open(), "flags")  # doctest: +SKIP
        {'pass': 'flags', 'layer': '1-3f9c00aa', 'runs': ['20261203T074912Z-028a0b'], ...}
    """
    layer = store.current_layer_dir(pass_name)
    if layer is None:
        return None
    ledger = store.ledger_dir(pass_name, layer.name)
    run_ids: dict[str, int] = {}
    finished: list[str] = []
    for record in sorted(ledger.glob("*.json")):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue  # a record being written right now: the next report shows it
        run_id = str(data.get("run_id", ""))
        run_ids[run_id] = run_ids.get(run_id, 0) + int(data.get("rows", 0) or 0)
        if data.get("finished"):
            finished.append(str(data["finished"]))
    return {
        "pass": pass_name,
        "layer": layer.name,
        "runs": sorted(r for r in run_ids if r),
        "rows_by_run": run_ids,
        "finished": max(finished) if finished else None,
    }


def _run_record(store: Store, run_id: str) -> dict[str, Any]:
    try:
        return json.loads((store.run_dir(run_id) / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def flags_policy(store: Store) -> tuple[Policy, str]:
    """The policy the current flags layer was made with, and where it was read from (see
    `lamina.analysis.flags.current_policy`)."""
    return current_policy(store)


def _latest(ctx: ReportContext, command: str) -> list[dict[str, Any]]:
    """The latest run of `command` (its id and start), as a list of at most one row."""
    return ctx.rows(
        "select run_id, started from runs where command = ? order by started desc, ended desc "
        "limit 1",
        [command],
    )


def provenance(ctx: ReportContext, sections: list[Section]) -> Section:
    """For each section: the runs that wrote its tables (run id, layer, model, when)."""
    section = Section("provenance", "Where every number came from", ("runs",))
    if not ctx.has("runs"):
        section.missing = "No run records yet: run `lamina scan SOURCE`."
        return section
    scans = ctx.rows(
        "select run_id, started from runs where command = 'scan' "
        "order by started desc, ended desc limit 1"
    )
    rows = []
    cache: dict[str, dict[str, Any] | None] = {}
    for sec in sections:
        for table in sec.tables:
            if table == "runs" or table not in ctx.tables:
                continue
            if table in TABLE_NAMES:
                # The items tables are written by `lamina layout apply` (or a scan's step
                # after its commit, recorded as a run of its own): name that run.
                command = "layout" if table.startswith("item") else "scan"
                made = scans if command == "scan" else _latest(ctx, "layout")
                for scan in made:
                    rows.append(
                        {
                            "section": sec.title,
                            "table": table,
                            "layer": "(table)",
                            "run_id": scan["run_id"],
                            "when": scan["started"],
                            "model": None,
                            "command": command,
                        }
                    )
                continue
            if table not in cache:
                cache[table] = layer_runs(ctx.store, table)
            info = cache[table]
            if info is None:
                continue
            columns = ctx.columns(table)
            model = None
            for name in ("model", "model_name"):  # the embedding or tagging model
                if name in columns:
                    model = ctx.value(f"select string_agg(distinct {name}, ', ') from \"{table}\"")
                    break
            for run_id in info["runs"] or [""]:
                record = _run_record(ctx.store, run_id) if run_id else {}
                rows.append(
                    {
                        "section": sec.title,
                        "table": table,
                        "layer": info["layer"],
                        "run_id": run_id or "(no ledger record)",
                        "when": record.get("started") or info["finished"],
                        "model": model,
                        "command": record.get("command"),
                    }
                )
    section.data = {"rows": rows, "store": str(ctx.store.root)}
    return section
