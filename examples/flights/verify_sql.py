#!/usr/bin/env python3
"""Run a feature-pipeline config (features.toml) with the Python bindings of Apache DataFusion,
outside the Rust pipeline, to check that its SQL is valid DataFusion and computes what it says.

    verify_sql.py [--config features.toml] [--source NAME=PATH ...] [--out DIR] [--view-types]

What it does, in the order the Rust feature-pipeline does it:
  1. registers every [sources.*] table (parquet | csv | jsonl; paths relative to the config
     file unless overridden with --source), adding the `row_index` column (int64, 0-based row
     number in file order) itself with pyarrow;
  2. creates every [views.*] in file order (CREATE VIEW name AS sql);
  3. runs every [groups.*] query and checks that its output columns have exactly the declared
     names, order and types (pyarrow spelling; like feature-pipeline, any string encoding --
     string, large_string, string_view -- is accepted for `string`, and written as `string`);
  4. checks the group's rules that need no previous version (everything but `drift`), and the
     default `finite` rule of float columns without one, as a
     sanity check that the shipped rules pass on the shipped data;
  5. with --out DIR, writes each group as DIR/features/<group>/part-0.parquet (zstd), the layout
     of the Python peer's store, so that shared/peer/compare_stores.py can compare the two.

Prints one JSON line per group and a JSON summary; exits 1 if a query fails, a column does
not match its declaration or an `error` rule fails.

Requires: datafusion (55.x, matching the Rust crate), pyarrow. Source strings are handed to
DataFusion with the types pyarrow reads (large_string for flights-3m.parquet), as the
feature-pipeline's session does (schema_force_view_types = false); --view-types hands them over
as string_view instead, the way DataFusion's default Parquet reader returns them, to check that
the SQL does not depend on it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from datafusion import SessionContext

HERE = Path(__file__).resolve().parent

STRING_TYPES = {"string", "large_string", "string_view"}
TYPE_ALIASES = {
    "boolean": "bool", "float16": "halffloat", "float32": "float", "float64": "double",
    "utf8": "string", "large_utf8": "large_string", "date32": "date32[day]", "date": "date32[day]",
    "date64": "date64[ms]",
}


def canonical_type(name: str) -> str:
    name = name.strip()
    return TYPE_ALIASES.get(name, name)


def read_source(name: str, spec: dict, path: Path, view_types: bool) -> pa.Table:
    fmt = spec.get("format", "parquet")
    if fmt == "parquet":
        table = pq.read_table(path)
    elif fmt == "csv":
        table = pacsv.read_csv(path)
    elif fmt == "jsonl":
        table = pajson.read_json(path)
    else:
        raise SystemExit(f"source {name}: unknown format {fmt!r}")
    if view_types:
        fields = []
        for field in table.schema:
            if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
                field = field.with_type(pa.string_view())
            fields.append(field)
        table = table.cast(pa.schema(fields))
    index = spec.get("row_index")
    if index:
        if index in table.column_names:
            raise SystemExit(f"source {name}: row_index column {index!r} already exists")
        table = table.append_column(pa.field(index, pa.int64(), nullable=False),
                                    pa.array(range(table.num_rows), pa.int64()))
    return table


# ------------------------------------------------------------------------------------ rules

def check_rule(rule: dict, table: pa.Table, group: dict) -> dict:
    """One validation rule against one output table (drift is skipped: it needs a previous
    committed version). Returns {rule, column, severity, passed, measured, message}."""
    kind, column = rule["rule"], rule.get("column")
    out = {"rule": kind, "column": column, "severity": rule.get("severity", "error")}

    def is_number(t):
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)

    def col():
        if column not in table.column_names:
            raise KeyError(f"no column {column!r}")
        return table.column(column)

    try:
        if kind == "required_columns":
            missing = [c for c in rule["columns"] if c not in table.column_names]
            out.update(passed=not missing, measured=missing)
        elif kind == "forbidden_columns":
            present = [c for c in rule["columns"] if c in table.column_names]
            out.update(passed=not present, measured=present)
        elif kind == "not_null":
            nulls = col().null_count
            out.update(passed=nulls == 0, measured=nulls)
        elif kind == "max_null_fraction":
            frac = col().null_count / max(1, table.num_rows)
            out.update(passed=frac <= rule["max"], measured=round(frac, 6))
        elif kind == "range":
            values = col()
            if not (is_number(values.type)
                    or pa.types.is_date(values.type) or pa.types.is_timestamp(values.type)):
                raise TypeError(f"range applies to numbers, dates and time stamps, not {values.type}")
            lo, hi = pc.min(values).as_py(), pc.max(values).as_py()
            ok = True
            if "min" in rule and lo is not None:
                ok &= lo >= rule["min"]
            if "max" in rule and hi is not None:
                ok &= hi <= rule["max"]
            # min/max take infinities but skip NaN, which is in no range (as feature-pipeline).
            if pa.types.is_floating(values.type) and ("min" in rule or "max" in rule):
                ok &= (pc.sum(pc.is_nan(values)).as_py() or 0) == 0
            out.update(passed=bool(ok), measured=[lo, hi])
        elif kind == "allowed_values":
            # Compared as the column's type, like feature-pipeline: the allowed values are
            # cast from text to it (1 and 1.0 are one float; a date takes "2001-07-02").
            text = [str(v).lower() if isinstance(v, bool)
                    else str(int(v)) if isinstance(v, float) and v.is_integer()
                    else str(v) for v in rule["values"]]
            allowed = set(pa.array(text).cast(col().type).to_pylist())
            seen = set(pc.unique(col().drop_null()).to_pylist())
            bad = sorted(seen - allowed, key=str)[:10]
            out.update(passed=not bad, measured=bad)
        elif kind == "row_count":
            n = table.num_rows
            ok = n >= rule.get("min", 0) and n <= rule.get("max", math.inf)
            out.update(passed=ok, measured=n)
        elif kind == "unique_key":
            keys = list(group["entity_keys"]) + [group["event_time"]]
            distinct = table.group_by(keys).aggregate([]).num_rows
            out.update(passed=distinct == table.num_rows, measured=table.num_rows - distinct)
        elif kind == "finite":
            values = col().drop_null()
            if not is_number(values.type):
                raise TypeError(f"finite applies to numbers, not {values.type}")
            bad = 0
            if pa.types.is_floating(values.type):
                bad = len(values) - pc.sum(pc.is_finite(values).cast(pa.int64())).as_py() if len(values) else 0
            out.update(passed=bad == 0, measured=bad)
        elif kind == "drift":
            out.update(passed=None, measured=None, message="skipped (needs a previous version)")
        else:
            out.update(passed=False, measured=None, message=f"unknown rule {kind!r}")
    except (KeyError, TypeError, pa.ArrowInvalid) as e:
        # A rule that cannot measure its column fails, as in feature-pipeline.
        out.update(passed=False, measured=None, message=str(e))
    return out


# ------------------------------------------------------------------------------------- main

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=HERE / "features.toml")
    parser.add_argument("--source", action="append", default=[], metavar="NAME=PATH",
                        help="override a source's path (relative to the current directory)")
    parser.add_argument("--out", type=Path, help="write DIR/features/<group>/part-0.parquet")
    parser.add_argument("--group", action="append", help="only these groups (default: all)")
    parser.add_argument("--view-types", action="store_true",
                        help="hand source strings to DataFusion as string_view")
    args = parser.parse_args(argv)

    config = tomllib.loads(args.config.read_text())
    overrides = dict(s.split("=", 1) for s in args.source)
    base = args.config.resolve().parent

    import datafusion
    ctx = SessionContext()
    summary = {"datafusion": datafusion.__version__, "config": str(args.config), "sources": {},
               "groups": {}, "ok": True}

    for name, spec in config.get("sources", {}).items():
        path = Path(overrides[name]) if name in overrides else base / spec["path"]
        start = time.perf_counter()
        table = read_source(name, spec, path, args.view_types)
        ctx.register_record_batches(name, [table.to_batches()])
        summary["sources"][name] = {"path": str(path), "rows": table.num_rows,
                                    "seconds": round(time.perf_counter() - start, 3)}

    for name, spec in config.get("views", {}).items():
        ctx.sql(f"CREATE VIEW {name} AS {spec['sql']}").collect()

    for name, group in config["groups"].items():
        if args.group and name not in args.group:
            continue
        start = time.perf_counter()
        result = {"rows": None, "columns_ok": False, "errors": []}
        summary["groups"][name] = result
        try:
            table = ctx.sql(group["sql"]).to_arrow_table()
        except Exception as e:  # DataFusion raises a plain Exception with the planner's message
            result["errors"].append(f"query failed: {e}")
            summary["ok"] = False
            print(json.dumps({"group": name, **result}), flush=True)
            continue
        result["seconds"] = round(time.perf_counter() - start, 3)
        result["rows"] = table.num_rows

        declared = [(c, canonical_type(spec["type"])) for c, spec in group["columns"].items()]
        actual = [(f.name, canonical_type(str(f.type))) for f in table.schema]
        actual = [(c, want if want == "string" and got in STRING_TYPES else got)
                  for (c, got), (_, want) in zip(actual, declared + [(None, None)] * len(actual))]
        if declared == actual:
            result["columns_ok"] = True
        else:
            names_d, names_a = [c for c, _ in declared], [c for c, _ in actual]
            if names_d != names_a:
                result["errors"].append(f"columns {names_a}, declared {names_d}")
            for (c, want), (_, got) in zip(declared, actual):
                if want != got:
                    result["errors"].append(f"column {c!r} has type {got}, declared {want}")
        for c, spec in group["columns"].items():
            if not spec.get("description"):
                result["errors"].append(f"column {c!r} has no description")

        result["rules"] = []
        # As in feature-pipeline: every float column without a declared finite rule gets one.
        rules = list(group.get("rules", []))
        declared_finite = {r.get("column") for r in rules if r["rule"] == "finite"}
        rules += [{"rule": "finite", "column": f.name} for f in table.schema
                  if pa.types.is_floating(f.type) and f.name not in declared_finite]
        for rule in rules:
            r = check_rule(rule, table, group)
            result["rules"].append(r)
            if r["passed"] is False and r["severity"] == "error":
                result["errors"].append(f"rule {r['rule']} on {r['column']} failed: measured {r['measured']}")
        result["rules_failed"] = [f"{r['rule']}({r['column']}, {r['severity']})"
                                  for r in result["rules"] if r["passed"] is False]
        if result["errors"]:
            summary["ok"] = False

        if result["columns_ok"]:  # strings as declared (`string`), like feature-pipeline writes them
            table = table.cast(pa.schema([
                f.with_type(pa.string()) if canonical_type(str(f.type)) in STRING_TYPES else f
                for f in table.schema]))
        if args.out:
            path = args.out / "features" / name / "part-0.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            pq.write_table(table, tmp, compression="zstd")
            tmp.replace(path)
        nulls = {c: table.column(c).null_count for c in table.column_names if table.column(c).null_count}
        line = {"group": name, "rows": table.num_rows, "columns_ok": result["columns_ok"],
                "seconds": result["seconds"], "nulls": nulls, "rules_failed": result["rules_failed"],
                "errors": result["errors"]}
        print(json.dumps(line), flush=True)

    print(json.dumps({"summary": {k: v for k, v in summary.items() if k != "groups"},
                      "rows": {g: r["rows"] for g, r in summary["groups"].items()}}))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
