"""Flags: a versioned policy turns raw signals into a score and a boolean per flag.

The policy (`policy.toml` beside this module holds the defaults, each with its reason) is
the `flags` pass's config, so its hash names the layer: a changed threshold makes a new
layer in seconds, without recomputing a pixel, and the old one stays for comparison.

Example:
    >>> policy = load_policy("my-policy.toml")            # doctest: +SKIP
    >>> run_pass(store, "flags", flags_config(policy))    # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import re
import tomllib
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.core.errors import ConfigError, LaminaError
from lamina.core.passes import Pass, register

FLAG_NAMES = (
    "junk",
    "dark",
    "light",
    "blurry",
    "low_information",
    "grayscale",
    "odd_aspect",
    "odd_size",
    "tiny",
    "huge",
    "noisy",
    "text_heavy",
    "exact_duplicate",
    "near_duplicate",
    "outlier",
)
RULE_KEYS = {"score": str, "threshold": float, "enabled": bool, "why": str}
POLICY_SCHEMA_VERSION = 1

# Signals whose robust z-scores make up `outlier_z` (log-scaled where heavy-tailed).
OUTLIER_FEATURES = {
    "brightness_mean": False,
    "contrast_rms": False,
    "saturation_mean": False,
    "colorfulness": False,
    "entropy": False,
    "laplacian_var": True,
    "edge_density": False,
    "noise_sigma": True,
    "fft_high_ratio": False,
}


@dataclass(frozen=True)
class FlagRule:
    score: str
    threshold: float
    enabled: bool = True
    why: str = ""


@dataclass(frozen=True)
class Policy:
    """A named, versioned set of flag rules (one per name in FLAG_NAMES)."""

    name: str
    version: int
    rules: dict[str, FlagRule]

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): the flags pass's config, hashed to name its layer."""
        return json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "rules": {k: vars(v) for k, v in sorted(self.rules.items())},
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Policy:
        data = json.loads(text)
        return cls(
            data["name"], data["version"], {k: FlagRule(**v) for k, v in data["rules"].items()}
        )


def default_policy_text() -> str:
    """The default policy file, comments and reasons included."""
    return resources.files("lamina.analysis").joinpath("policy.toml").read_text()


def parse_policy(text: str, *, where: str = "policy", base: Policy | None = None) -> Policy:
    """Parse a policy TOML, over `base` (default: no base: every flag must be given).
    Unknown flags or keys and bad values are refused by name.

    Example:
        >>> parse_policy('[dark]\\nthreshold = 0.8', base=default_policy()).rules["dark"].threshold
        0.8
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from exc
    header = data.pop("policy", {})
    unknown = sorted(set(header) - {"name", "version"})
    if unknown:
        raise ConfigError(
            f"unknown key 'policy.{unknown[0]}' in {where}", hint="[policy] takes name and version"
        )
    version = header.get("version", base.version if base else POLICY_SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError(
            f"bad value for 'policy.version' in {where}: {version!r}",
            hint="an integer, e.g. version = 2",
        )
    name = header.get("name", base.name if base else "custom")
    rules = dict(base.rules) if base else {}
    for flag, table in data.items():
        if flag not in FLAG_NAMES:
            raise ConfigError(
                f"unknown flag {flag!r} in {where}", hint=f"flags are: {', '.join(FLAG_NAMES)}"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"bad value for {flag!r} in {where}: expected a [{flag}] table")
        values = dict(vars(rules[flag])) if flag in rules else {}
        for key, value in table.items():
            if key not in RULE_KEYS:
                raise ConfigError(
                    f"unknown key '{flag}.{key}' in {where}",
                    hint=f"a flag takes: {', '.join(RULE_KEYS)}",
                )
            expected = RULE_KEYS[key]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is float and not math.isfinite(value)):
                raise ConfigError(
                    f"bad value for '{flag}.{key}' in {where}: {value!r}",
                    hint=f"expected a {expected.__name__}",
                )
            values[key] = value
        missing = {"score", "threshold"} - set(values)
        if missing:
            raise ConfigError(f"'{flag}' in {where} lacks {sorted(missing)[0]!r}")
        _check_score(values["score"], flag, where)
        rules[flag] = FlagRule(**values)
    absent = [f for f in FLAG_NAMES if f not in rules]
    if absent:
        raise ConfigError(f"{where} does not define the flag {absent[0]!r}")
    return Policy(name=str(name), version=version, rules=rules)


def _check_score(score: str, flag: str, where: str) -> str:
    """The score of `flag` when it is one safe SQL expression (`lamina.core.sqlsafe`: over
    the columns of the rows being scored, `base`; no statements, files or table
    functions), else a ConfigError naming the flag."""
    from lamina.core.sqlsafe import check_condition

    try:
        return check_condition(score, tables=["base"], what=f"score of flag '{flag}' in {where}")
    except LaminaError as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None


def default_policy() -> Policy:
    """The built-in policy (`lamina flags --print-policy` shows it)."""
    return parse_policy(default_policy_text(), where="the default policy")


def load_policy(path: str | Path | None) -> Policy:
    """The default policy, with the entries of the TOML file at `path` laid over it."""
    if path is None:
        return default_policy()
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"no policy file at {file}",
            hint="`lamina flags --print-policy > policy.toml` writes one to edit",
        )
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"the policy file {file} is not UTF-8 (byte offset {exc.start})",
            hint="save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 old.toml > policy.toml`)",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the policy file {file}: {exc.strerror or exc}") from None
    return parse_policy(text, where=str(file), base=default_policy())


def policy_signals(policy: Policy) -> set[str]:
    """The signals columns the enabled rules of `policy` read (the outlier score reads
    OUTLIER_FEATURES).

    Example:
        >>> sorted(policy_signals(default_policy()))[:3]
        ['aspect_ratio', 'blur_effect', 'brightness_mean']
    """
    from lamina.passes.signals import SIGNAL_NAMES

    names: set[str] = set()
    for rule in policy.rules.values():
        if not rule.enabled:
            continue
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", rule.score))
        names |= words & (set(SIGNAL_NAMES) - {"image_id", "error", "detail"})
        if "outlier_z" in words:
            names |= set(OUTLIER_FEATURES)
    return names


def signals_skip(policy: Policy, *, all_signals: bool = False) -> tuple[str, ...]:
    """The optional signals `lamina sense` leaves out for `policy`: the groups of which no
    enabled rule reads a column (laplacian_var always stays: it ranks duplicate
    representatives); none with all_signals.

    Example:
        >>> signals_skip(default_policy())
        ('hist_lab', 'hist_rgb')
    """
    from lamina.passes.signals import GROUPS

    if all_signals:
        return ()
    keep = policy_signals(policy) | {"laplacian_var"}
    # By group: a group computed for one of its columns costs nothing more for the others.
    return tuple(sorted(c for cols in GROUPS.values() if not keep & set(cols) for c in cols))


def flags_config(policy: Policy) -> dict[str, str]:
    """The flags pass config for `policy`."""
    return {"policy": policy.to_json()}


def current_policy(store: Any) -> tuple[Policy, str]:
    """The policy the current flags layer was made with, and where it was read from: the
    config in the record of the run that wrote the layer, else the default policy. Passes
    that change a table the flags read (`lamina cluster` writes `outliers`) recompute the
    flags with it, so a policy given to `lamina flags` stays in force.

    Example:
        >>> current_policy(lamina.open())  # doctest: +SKIP
        (Policy(name='default', ...), 'run 20261203T074912Z-028a0b')
    """
    layer = store.current_layer_dir("flags")
    if layer is None:
        return default_policy(), "default policy (no flags yet)"
    run_ids = []
    for record in sorted(store.ledger_dir("flags", layer.name).glob("*.json")):
        try:
            run_ids.append(str(json.loads(record.read_text()).get("run_id", "")))
        except (OSError, ValueError):
            continue  # a record being written right now
    for run_id in reversed(sorted(r for r in run_ids if r)):
        try:
            record = json.loads((store.run_dir(run_id) / "run.json").read_text())
        except (OSError, ValueError):
            continue
        entry = record.get("config", {}).get("passes", {}).get("flags", {})
        if entry.get("layer") != layer.name:
            continue
        text = entry.get("config", {}).get("policy")
        if text:
            return Policy.from_json(text), f"run {run_id}"
        return default_policy(), f"run {run_id} (default policy)"
    return default_policy(), "default policy (no run record names the flags layer)"


@dataclass(frozen=True)
class FlagsConfig:
    policy: str = ""  # canonical JSON of a Policy; empty = the default policy


FLAGS_SCHEMA = pa.schema(
    [("image_id", pa.string())]
    + [(name, pa.bool_()) for name in FLAG_NAMES]
    + [(f"{name}_score", pa.float32()) for name in FLAG_NAMES]
    + [("n_flags", pa.int16()), ("flags", pa.list_(pa.string()))]
)

BASE_SQL = """
with n as (
    select image_id, count(*)::int as n_files from files
    where image_id is not null and status <> 'missing' group by 1
)
select i.image_id, i.status as image_status, coalesce(i.huge, false) as huge,
       s.* exclude (image_id, width, height, megapixels),
       coalesce(s.width, i.width) as width, coalesce(s.height, i.height) as height,
       coalesce(s.megapixels, i.megapixels) as megapixels,
       n.n_files, d.kind as dup_kind, d.distance as dup_distance,
       d.is_representative,
       -- embedding outliers rank one image per duplicate group: its copies score 0
       case when o.image_id is null then null when o.rank is null then 0.0
            else o.outlier_z end::double as embedding_outlier_z
from images i join n using (image_id)
left join signals s using (image_id)
left join {duplicates} d using (image_id)
left join {outliers} o using (image_id)
order by i.image_id
"""


def robust_z(values: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 * MAD), NaN-aware; 0 where the spread is zero.

    Example:
        >>> robust_z(np.array([1.0, 2.0, 3.0, 100.0])).round(1).tolist()
        [-1.0, -0.3, 0.3, 65.8]
    """
    if not np.isfinite(values).any():  # nothing could be measured (every image broken)
        return np.zeros_like(values)
    median = np.nanmedian(values)
    mad = 1.4826 * np.nanmedian(np.abs(values - median))
    if not np.isfinite(mad) or mad == 0:
        return np.zeros_like(values)
    return (values - median) / mad


@register
class FlagsPass(Pass):
    """Score and flag every image by the policy, from signals, duplicates and the manifest."""

    name = "flags"
    version = "1"
    kind = "global"
    Config = FlagsConfig
    # `outliers` is written by `lamina cluster`, after `sense` made the flags: the cluster
    # step recomputes them (`current_policy`), so the outlier flag follows the embeddings.
    reads = ("files", "images", "signals", "duplicates", "outliers")
    schema = FLAGS_SCHEMA

    @property
    def policy(self) -> Policy:
        return Policy.from_json(self.config.policy) if self.config.policy else default_policy()

    def compute(self, store: Any) -> pa.Table:
        tables = store.available_tables()
        if "signals" not in tables:
            raise LaminaError("the flags need the signals table", hint="run `lamina sense`")
        con = store.connect(sandbox=True)
        duplicates = "duplicates"
        if "duplicates" not in tables:
            con.execute(
                "create temp table no_dups (image_id varchar, kind varchar, "
                "distance integer, is_representative boolean)"
            )
            duplicates = "no_dups"
        outliers = "outliers"
        if "outliers" not in tables:
            con.execute(
                "create temp table no_outliers (image_id varchar, outlier_z float, rank integer)"
            )
            outliers = "no_outliers"
        base = con.sql(BASE_SQL.format(duplicates=duplicates, outliers=outliers)).to_arrow_table()
        base = self._with_collection_stats(base)
        con.register("base", base)
        policy = self.policy
        self._check_signals(con, policy)
        columns = ["image_id"]
        for flag in FLAG_NAMES:
            rule = policy.rules[flag]
            # Checked again here: a policy can reach the pass without `parse_policy`.
            expr = _check_score(rule.score, flag, "the policy")
            score = f"coalesce(cast((\n{expr}\n) as float), 0)"
            try:
                con.execute(f"select {score} from base limit 0")
            except Exception as exc:  # duckdb raises its own error types
                raise ConfigError(
                    f"bad score expression for flag '{flag}': {rule.score}",
                    hint=str(exc).splitlines()[0],
                ) from exc
            hit = f"({score} >= {rule.threshold!r})" if rule.enabled else "false"
            columns += [f"{hit} as {flag}", f"{score} as {flag}_score"]
        scored = con.sql(f"select {', '.join(columns)} from base").to_arrow_table()
        flags = [scored[name].to_numpy(zero_copy_only=False) for name in FLAG_NAMES]
        hits = np.stack(flags, axis=1) if flags else np.zeros((scored.num_rows, 0), bool)
        names = np.array(FLAG_NAMES)
        scored = scored.append_column("n_flags", pa.array(hits.sum(axis=1), pa.int16()))
        return scored.append_column(
            "flags", pa.array([names[row].tolist() for row in hits], pa.list_(pa.string()))
        )

    @staticmethod
    def _check_signals(con: Any, policy: Policy) -> None:
        """Refuse a policy that reads a signal the signals layer left out (`skip`): null on
        every decoded image of 64 px and more, where every signal can be measured."""
        from lamina.passes.signals import OPTIONAL

        columns = set(con.execute("select * from base limit 0").fetchnumpy())
        for name in sorted(policy_signals(policy) & columns & set(OPTIONAL)):
            measured, present = con.execute(
                f"select count(*), count({name}) from base where error is null "
                "and least(width, height) >= 64"
            ).fetchone()
            if measured and not present:
                raise ConfigError(
                    f"the policy reads the signal {name!r}, which this store's signals leave "
                    "out (computed only when a policy reads it)",
                    hint="run `lamina sense --signals all` (or with this --policy) first",
                )

    @staticmethod
    def _with_collection_stats(base: pa.Table) -> pa.Table:
        """Add `size_z` and `outlier_z`: robust statistics over this collection's images."""
        ok = np.array([s == "ok" for s in base["image_status"].to_pylist()], bool)
        if "error" in base.column_names:
            ok &= np.array([e is None for e in base["error"].to_pylist()], bool)

        def column(name: str, log: bool = False) -> np.ndarray:
            values = (
                np.array(base[name].to_pylist(), dtype=float)
                if name in base.column_names
                else np.full(base.num_rows, np.nan)
            )
            values[~ok] = np.nan
            return np.log1p(np.maximum(values, 0)) if log else values

        size_z = robust_z(np.log(np.maximum(column("megapixels"), 1e-6)))
        zs = [robust_z(column(name, log)) for name, log in OUTLIER_FEATURES.items()]
        with warnings.catch_warnings():
            # An image with no signals (undecodable) has only NaNs: its mean is NaN, then 0.
            warnings.simplefilter("ignore", RuntimeWarning)
            outlier = np.sqrt(np.nanmean(np.square(np.stack(zs)), axis=0)) if zs else size_z
        base = base.append_column("size_z", pa.array(np.nan_to_num(size_z), pa.float64()))
        return base.append_column("outlier_z", pa.array(np.nan_to_num(outlier), pa.float64()))


def sensed_flags_sql(tables: list[str]) -> str:
    """The flags of sensed images only, as a FROM clause: flags covers every image, but a
    sensing run limited to a sample (`max_images`) leaves the rest with no signals, and
    counting them would call them clean.

    Example:
        >>> sensed_flags_sql(["flags", "signals"])
        '(select * from flags semi join signals using (image_id)) flags'
    """
    if "signals" not in tables:
        return "flags"
    return "(select * from flags semi join signals using (image_id)) flags"


def flag_summary(store: Any) -> dict[str, Any]:
    """Images per flag, and duplicate groups, from the store's current tables.

    Example:
        >>> flag_summary(lamina.open())["flags"]["blurry"]  # doctest: +SKIP
        12
    """
    con = store.connect()
    tables = store.available_tables()
    out: dict[str, Any] = {}
    if "flags" in tables:
        sensed = sensed_flags_sql(tables)
        sums = ", ".join(f"count(*) filter (where {f}) as {f}" for f in FLAG_NAMES)
        row = con.execute(f"select count(*), {sums} from {sensed}").fetchone()
        out["images"] = row[0]
        out["flags"] = dict(zip(FLAG_NAMES, row[1:], strict=True))
        out["clean"] = con.execute(f"select count(*) from {sensed} where n_flags = 0").fetchone()[0]
    if "duplicates" in tables:
        groups, members, redundant = con.execute(
            "select count(distinct group_id) filter (where group_size > 1), "
            "count(*) filter (where group_size > 1), "
            "coalesce(sum(n_files - case when is_representative then 1 else 0 end), 0) "
            "from duplicates"
        ).fetchone()
        out["duplicates"] = {
            "near_groups": groups,
            "images_in_near_groups": members,
            "redundant_files": int(redundant),
        }
    return out
