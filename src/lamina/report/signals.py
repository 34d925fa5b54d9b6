"""The signals section: each flag rule of the policy, the signal it reads and where its
threshold cuts the signal's distribution (also read by `provenance.flags_policy`)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.analysis.flags import FLAG_NAMES
from lamina.report.context import ReportContext, Section
from lamina.report.provenance import flags_policy

# -- 4. signals and the flag policy (read by `provenance.flags_policy`) -------------------------


def _hits(ctx: ReportContext, column: str, expr: str, threshold: float, grid: np.ndarray) -> Any:
    """Whether the rule's own SQL expression flags each value of `grid` (None when the
    expression needs more than this column, or is not a safe expression)."""
    from lamina.core.sqlsafe import UnsafeSQLError, check_condition

    try:
        expr = check_condition(expr, what="flag score")  # it comes from a stored policy
    except UnsafeSQLError:
        return None
    ctx.con.register("_grid", pa.table({column: grid}))
    try:
        rows = ctx.con.sql(
            f"select coalesce(cast((\n{expr}\n) as double), 0) >= {threshold!r} from _grid"
        ).fetchall()
    except Exception:  # duckdb raises its own error types; any means "no line to draw"
        return None
    finally:
        ctx.con.unregister("_grid")
    return np.array([bool(r[0]) for r in rows])


def _crossings(ctx: ReportContext, column: str, expr: str, threshold: float) -> list[float]:
    """Values of a signal where `expr >= threshold` switches on or off, near the values the
    collection has: the rule's SQL is evaluated over a coarse grid (the observed range plus
    a log-spaced span out to 1e6 either side), then each switch is refined on a fine one."""
    lo, hi = ctx.con.sql(
        f'select min("{column}")::double, max("{column}")::double from signals'
    ).fetchall()[0]
    if lo is None or hi is None:
        return []
    span = max(hi - lo, abs(hi), abs(lo), 1e-3)
    far = np.geomspace(1e-6, 1e6, 1201)
    grid = np.unique(np.concatenate([np.linspace(lo - span, hi + span, 1001), far, -far, [0.0]]))
    hits = _hits(ctx, column, expr, threshold, grid)
    if hits is None:
        return []
    lines = []
    for i in np.nonzero(hits[1:] != hits[:-1])[0]:
        fine = np.linspace(grid[i], grid[i + 1], 1001)
        fine_hits = _hits(ctx, column, expr, threshold, fine)
        j = int(np.nonzero(fine_hits[1:] != fine_hits[:-1])[0][0]) if fine_hits is not None else 0
        value = float((fine[j] + fine[j + 1]) / 2)
        # Only switches near the data make sense on its histogram.
        if lo - 2 * span <= value <= hi + 2 * span:
            lines.append(value)
    return lines


def signal_rules(ctx: ReportContext) -> Section:
    """For each enabled flag rule: its threshold, and the values to plot it over: the raw
    signal when the rule reads one signal (the threshold mapped onto it), else the score."""
    section = Section("signals", "Signals and flag thresholds", ("signals", "flags"))
    if not ctx.has("signals"):
        section.missing = "No signals yet: run `lamina sense`."
        return section
    policy, source = flags_policy(ctx.store)
    numeric = ("DOUBLE", "FLOAT", "REAL", "INTEGER", "BIGINT", "SMALLINT")
    signal_columns = {c for c, t in ctx.columns("signals").items() if t.upper() in numeric}
    rules = []
    for name in FLAG_NAMES:
        rule = policy.rules.get(name)
        if rule is None or not rule.enabled:
            continue
        used = sorted(set(re.findall(r"[a-z_][a-z0-9_]*", rule.score)) & signal_columns)
        entry: dict[str, Any] = {
            "flag": name,
            "score": rule.score,
            "threshold": rule.threshold,
            "why": rule.why,
        }
        if len(used) == 1:
            entry["column"] = used[0]
            entry["values"] = ctx.column(f'select "{used[0]}" from signals where error is null')
            entry["lines"] = _crossings(ctx, used[0], rule.score, rule.threshold)
        elif ctx.has("flags"):
            entry["column"] = f"{name}_score"
            entry["values"] = ctx.column(f'select "{name}_score" from flags')
            entry["lines"] = [rule.threshold]
        else:
            continue
        rules.append(entry)
    section.data = {
        "policy": policy.name,
        "version": policy.version,
        "source": source,
        "rules": rules,
    }
    return section
