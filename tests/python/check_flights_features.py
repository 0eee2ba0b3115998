#!/usr/bin/env python3
"""Independent point-in-time check of the flights example's feature tables: recompute randomly
chosen rows of `labels`, `origin_7d`, `destination_7d` and `route_28d` straight from the raw
flights with plain filters (no window functions, no shifts, exact rational arithmetic) and
compare them with what the store holds.

    check_flights_features.py STORE_DIR RAW_PARQUET N [--seed S] [--layout fti|peer]

STORE_DIR is a local FTI store (docs/STORAGE.md: the latest version of each table, read by
replaying tables/<t>/_log/ and verifying every data file's size and SHA-256), or, with
`--layout peer`, a store of the Python peer (features/<t>/part-0.parquet). RAW_PARQUET is the
source the tables were computed from (flights-3m.parquet or the demo slice). N rows of each
table are checked (seeded; route_28d draws 3/4 of them from rows with flights in the window).

What the tables must hold (shared/peer/README.md, "The work, exactly"):
  labels           flight_id = row number; origin, destination, route = origin-destination,
                   event_time = date, flight_date = day of date, distance, hour,
                   day_of_week (ISO, Monday = 1), label = delay > 15
  calendar         first flight_date .. last flight_date + 1 day; every key on every day
  origin_7d        row (airport, D): over days max(first, D-7) .. D-1,
  destination_7d     n_flights_7d = flights / number of days (null when no day),
                     mean_delay / frac_delayed_15 / mean_distance = mean of the daily values
                     over the days that had flights (null when none)
  route_28d        route_n_flights_28d = flights on days D-28 .. D-1 (null on the first day),
                   route_mean_delay_28d = their total delay / count (null when 0)
Floats must agree to 1e-9 relative (absolute below 1); the report also gives the largest error.

Exit 0 when every checked value agrees, 1 on a mismatch (each printed to stderr, naming table,
key, date and column), 2 on a store that cannot be read. The last line on stdout is a JSON
summary. Needs pyarrow only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import re
import sys
from fractions import Fraction

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TABLES = {  # table -> (key column, column prefix, window in days)
    "origin_7d": ("origin", "origin", 7),
    "destination_7d": ("destination", "dest", 7),
    "route_28d": ("route", "route", 28),
}
LABEL_COLUMNS = ["flight_id", "origin", "destination", "route", "event_time", "flight_date",
                 "distance", "hour", "day_of_week", "label"]
ENTRY_RE = re.compile(r"^[0-9]{20}\.json$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
EPOCH = dt.date(1970, 1, 1)


class StoreError(Exception):
    pass


# ------------------------------------------------------------------------------ reading

def read_latest(store_dir: str, table: str, layout: str = "fti") -> tuple[pa.Table, dict]:
    """The rows of the latest version of `table`, and {"version", "files"}.

    fti:  docs/STORAGE.md §7.8 — list tables/<t>/_log/<20 digits>.json, check the entries are
          numbered 1..n and say so, replay `remove` then `add` of commits 1..n, then read every
          live file (size and SHA-256 verified first) in live-file order.
    peer: features/<t>/part-0.parquet (shared/peer/fti_peer.py's layout, or verify_sql.py --out).
    """
    if layout == "peer":
        path = os.path.join(store_dir, "features", table, "part-0.parquet")
        if not os.path.exists(path):
            raise StoreError(f"{path} does not exist")
        return pq.read_table(path), {"version": None, "files": 1}

    layout_file = os.path.join(store_dir, "layout.json")
    if os.path.exists(layout_file):
        with open(layout_file) as f:
            doc = json.load(f)
        if doc.get("format") != "fti-layout" or str(doc.get("version", "")).split(".")[0] != "1":
            raise StoreError(f"{layout_file}: unsupported layout {doc.get('format')} {doc.get('version')}")
    table_dir = os.path.join(store_dir, "tables", table)
    log_dir = os.path.join(table_dir, "_log")
    if not os.path.isdir(log_dir):
        raise StoreError(f"table {table!r} does not exist in {store_dir} (no {log_dir})")
    entries = sorted(n for n in os.listdir(log_dir)
                     if ENTRY_RE.match(n) and os.path.isfile(os.path.join(log_dir, n)))
    if not entries:
        raise StoreError(f"table {table!r} has no committed version")
    live: list[dict] = []
    for i, name in enumerate(entries, start=1):
        if int(name[:20]) != i:
            raise StoreError(f"{log_dir}: entry {i} is missing (next is {name})")
        with open(os.path.join(log_dir, name)) as f:
            commit = json.load(f)
        if commit.get("version") != i:
            raise StoreError(f"{log_dir}/{name} says it is version {commit.get('version')}")
        removed = set(commit.get("remove") or [])
        live = [f for f in live if f["path"] not in removed]
        live.extend(commit.get("add") or [])
    parts = []
    for f in live:
        segments = f["path"].split("/")
        if not all(NAME_RE.match(s) and ".." not in s for s in segments):
            raise StoreError(f"{log_dir}/{entries[-1]}: invalid file path {f['path']!r}")
        path = os.path.join(table_dir, *segments)
        with open(path, "rb") as fh:
            data = fh.read()
        if len(data) != f["size"] or hashlib.sha256(data).hexdigest() != f["sha256"]:
            raise StoreError(f"{path}: size or SHA-256 does not match the commit log")
        parts.append(pq.read_table(pa.BufferReader(data)))
    if not parts:
        raise StoreError(f"table {table!r} version {len(entries)} has no live files")
    rows = pa.concat_tables(parts)
    if rows.num_rows != commit.get("num_rows", rows.num_rows):
        raise StoreError(f"table {table!r}: {rows.num_rows} rows read, the commit says {commit['num_rows']}")
    return rows, {"version": len(entries), "files": len(live)}


# ------------------------------------------------------------------------------ raw data

class Raw:
    """The raw flights; per key column, a copy grouped by key and each key's row range,
    so that "flights of key K on days lo .. hi" is a plain filter on a small slice."""

    def __init__(self, path: str):
        t = pq.read_table(path, columns=["date", "delay", "distance", "origin", "destination"])
        t = t.append_column("day", pc.cast(pc.cast(t["date"], pa.date32()), pa.int32()))
        t = t.append_column("route", pc.binary_join_element_wise(
            pc.cast(t["origin"], pa.string()), pc.cast(t["destination"], pa.string()), "-"))
        self.table = t
        self.n = t.num_rows
        self.first_day, self.last_day = pc.min(t["day"]).as_py(), pc.max(t["day"]).as_py()
        self.by_key = {}
        for column in ("origin", "destination", "route"):
            # group the rows by key: sort on the dictionary codes (integers, in order of first
            # appearance); the order of rows within a key does not matter for the filters
            codes = pc.dictionary_encode(t[column]).combine_chunks()
            order = pc.sort_indices(codes.indices)
            part = t.select(["day", "delay", "distance"]).take(order).combine_chunks()
            counts = pc.value_counts(codes.indices.take(order))  # in first-appearance order = sorted
            ranges, start = {}, 0
            for code, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
                ranges[str(codes.dictionary[code])] = (start, n)
                start += n
            self.by_key[column] = (part, ranges)

    def keys(self, column: str) -> set[str]:
        return set(self.by_key[column][1])

    def daily(self, column: str, key: str, lo: int, hi: int) -> list[dict]:
        """Per day with flights, for `column` == key and lo <= day <= hi:
        {day, n, sum_delay, n_delayed_15, sum_distance} (integers)."""
        part, ranges = self.by_key[column]
        start, n = ranges.get(key, (0, 0))
        rows = part.slice(start, n)
        rows = rows.filter(pc.and_(pc.greater_equal(rows["day"], lo), pc.less_equal(rows["day"], hi)))
        rows = rows.append_column("delayed", pc.cast(pc.greater(rows["delay"], 15), pa.int64()))
        out = rows.group_by("day").aggregate(
            [("day", "count"), ("delay", "sum"), ("delayed", "sum"), ("distance", "sum")])
        return [{"day": r["day"], "n": r["day_count"], "sum_delay": r["delay_sum"],
                 "n_delayed_15": r["delayed_sum"], "sum_distance": r["distance_sum"]}
                for r in out.to_pylist()]


# ------------------------------------------------------------------------------ expectations

def expect_airport(raw: Raw, column: str, prefix: str, key: str, d: int, w: int) -> dict:
    lo = max(raw.first_day, d - w)
    n_days = max(0, d - lo)  # days lo .. d-1 (the window is cut at the first data day)
    days = raw.daily(column, key, lo, d - 1)
    total = sum(x["n"] for x in days)
    out = {f"{prefix}_n_flights_{w}d": Fraction(total, n_days) if n_days else None}
    for name, field in (("mean_delay", "sum_delay"), ("frac_delayed_15", "n_delayed_15"),
                        ("mean_distance", "sum_distance")):
        daily_means = [Fraction(x[field], x["n"]) for x in days]  # days without flights: no value
        out[f"{prefix}_{name}_{w}d"] = sum(daily_means, Fraction(0)) / len(days) if days else None
    return out


def expect_route(raw: Raw, key: str, d: int, w: int) -> dict:
    days = raw.daily("route", key, d - w, d - 1)
    n = sum(x["n"] for x in days)
    count = n if d > raw.first_day else None
    mean = Fraction(sum(x["sum_delay"] for x in days), n) if n else None
    return {f"route_n_flights_{w}d": count, f"route_mean_delay_{w}d": mean}


def expect_label(raw: Raw, i: int) -> dict:
    r = raw.table.slice(i, 1).to_pylist()[0]
    ts = r["date"]
    return {
        "flight_id": i, "origin": r["origin"], "destination": r["destination"],
        "route": r["route"], "event_time": ts, "flight_date": ts.date(),
        "distance": r["distance"], "hour": ts.hour, "day_of_week": ts.isoweekday(),
        "label": r["delay"] > 15,
    }


# ------------------------------------------------------------------------------ comparison

class Checker:
    def __init__(self):
        self.mismatches: list[str] = []
        self.checked = 0
        self.max_rel_err = 0.0

    def value(self, table: str, where: str, column: str, got, want):
        self.checked += 1
        if isinstance(want, Fraction) or (isinstance(got, float) and want is not None):
            ok = got is not None and not isinstance(got, bool)
            if ok:
                err = abs(Fraction(got) - Fraction(want))
                scale = max(Fraction(1), abs(Fraction(want)))
                rel = float(err / scale)
                self.max_rel_err = max(self.max_rel_err, rel)
                ok = rel <= 1e-9
            want_shown = float(want)
        else:
            ok = got == want and type(got) is type(want)
            want_shown = want
        if not ok:
            self.fail(f"{table} {where} column {column}: store has {got!r}, raw flights give {want_shown!r}")

    def fail(self, message: str):
        self.mismatches.append(message)
        print("MISMATCH " + message, file=sys.stderr)


def check_grid(check: Checker, raw: Raw, table: str, rows: pa.Table, column: str):
    """Structure: every key seen in the raw data, on every calendar day, once."""
    keys = raw.keys(column)
    n_days = raw.last_day + 1 - raw.first_day + 1
    days = pc.cast(rows["as_of_date"], pa.int32())
    got_keys = set(pc.unique(rows[column]).to_pylist())
    if got_keys != keys:
        check.fail(f"{table}: keys differ from the raw data: missing {sorted(keys - got_keys)[:5]}, "
                   f"extra {sorted(got_keys - keys)[:5]}")
    lo, hi = pc.min(days).as_py(), pc.max(days).as_py()
    if (lo, hi) != (raw.first_day, raw.last_day + 1):
        check.fail(f"{table}: as_of_date spans {EPOCH + dt.timedelta(lo)} .. {EPOCH + dt.timedelta(hi)}, "
                   f"expected {EPOCH + dt.timedelta(raw.first_day)} .. {EPOCH + dt.timedelta(raw.last_day + 1)}")
    if rows.num_rows != len(keys) * n_days:
        check.fail(f"{table}: {rows.num_rows} rows, expected {len(keys)} keys x {n_days} days = {len(keys) * n_days}")
    distinct = rows.group_by([column, "as_of_date"]).aggregate([]).num_rows
    if distinct != rows.num_rows:
        check.fail(f"{table}: {rows.num_rows - distinct} duplicate ({column}, as_of_date) rows")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store")
    parser.add_argument("raw")
    parser.add_argument("n", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=["fti", "peer"], default="fti")
    args = parser.parse_args(argv)

    raw = Raw(args.raw)
    rng = random.Random(args.seed)
    check = Checker()
    summary = {"store": args.store, "raw": args.raw, "raw_rows": raw.n, "tables": {}}

    try:
        loaded = {t: read_latest(args.store, t, args.layout) for t in ["labels", *TABLES]}
    except (StoreError, OSError, KeyError, ValueError, pa.ArrowException) as e:
        print(f"check_flights_features: cannot read the store: {e}", file=sys.stderr)
        print(json.dumps({"ok": False, "error": str(e)}))
        return 2

    # labels: the whole table is one row per raw flight, flight_id = row number
    labels, info = loaded["labels"]
    summary["tables"]["labels"] = {**info, "rows": labels.num_rows}
    if labels.column_names != LABEL_COLUMNS:
        check.fail(f"labels: columns {labels.column_names}, expected {LABEL_COLUMNS}")
    else:
        ids = labels["flight_id"]
        if labels.num_rows != raw.n or pc.min(ids).as_py() != 0 or pc.max(ids).as_py() != raw.n - 1 \
                or pc.count_distinct(ids).as_py() != raw.n:
            check.fail(f"labels: flight_id is not 0..{raw.n - 1} once each ({labels.num_rows} rows)")
        for r in rng.sample(range(labels.num_rows), min(args.n, labels.num_rows)):
            row = {c: labels[c][r].as_py() for c in LABEL_COLUMNS}
            i = row["flight_id"]
            if not isinstance(i, int) or not 0 <= i < raw.n:
                check.fail(f"labels row {r}: flight_id {i!r} is not a row of the raw file")
                continue
            for column, want in expect_label(raw, i).items():
                check.value("labels", f"flight_id={i}", column, row[column], want)

    for table, (column, prefix, w) in TABLES.items():
        rows, info = loaded[table]
        summary["tables"][table] = {**info, "rows": rows.num_rows}
        expected_cols = [column, "as_of_date"] + (
            [f"route_n_flights_{w}d", f"route_mean_delay_{w}d"] if table == "route_28d" else
            [f"{prefix}_{a}_{w}d" for a in ("n_flights", "mean_delay", "frac_delayed_15", "mean_distance")])
        if rows.column_names != expected_cols:
            check.fail(f"{table}: columns {rows.column_names}, expected {expected_cols}")
            continue
        check_grid(check, raw, table, rows, column)
        if table == "route_28d":  # mostly rows with flights in the window, so it is not all empty windows
            busy = pc.indices_nonzero(pc.fill_null(pc.greater(rows[expected_cols[2]], 0), False)).to_pylist()
            picks = rng.sample(busy, min(len(busy), args.n - args.n // 4))
            picks += rng.sample(range(rows.num_rows), min(rows.num_rows, args.n // 4))
        else:
            picks = rng.sample(range(rows.num_rows), min(args.n, rows.num_rows))
        for r in picks:
            row = {c: rows[c][r].as_py() for c in expected_cols}
            d = (row["as_of_date"] - EPOCH).days
            where = f"{column}={row[column]} as_of_date={row['as_of_date']}"
            want = (expect_route(raw, row[column], d, w) if table == "route_28d"
                    else expect_airport(raw, column, prefix, row[column], d, w))
            for c, v in want.items():
                check.value(table, where, c, row[c], v)

    summary.update(ok=not check.mismatches, values_checked=check.checked,
                   mismatches=len(check.mismatches), max_rel_err=check.max_rel_err, n=args.n,
                   seed=args.seed)
    if check.mismatches:
        print(f"check_flights_features: {len(check.mismatches)} mismatches, first: {check.mismatches[0]}",
              file=sys.stderr)
    print(json.dumps(summary))
    return 0 if not check.mismatches else 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Leave without running interpreter and C++ static teardown: pyarrow's thread pools have
    # aborted there ("terminate called without an active exception") on a busy machine,
    # after all the work was done and printed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)
