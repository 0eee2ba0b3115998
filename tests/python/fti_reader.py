#!/usr/bin/env python3
"""fti_reader.py: an independent reader of an FTI store, written only from docs/STORAGE.md.

It exists to show that the layout contract is enough to read the store without the Rust
`storage` crate, and to give end-to-end tests a second opinion on what a table or model holds.
Dependencies: pyarrow and the standard library. STORE_DIR is a local filesystem store root.

Usage:
  fti_reader.py table STORE_DIR TABLE [--version N | --as-of RFC3339]
      One JSON object: {"table", "version", "num_rows", "columns", "rows_sha256",
      "row_count_check"}. "columns" are the definition's column names in file order;
      "num_rows" is the number of rows actually read; "row_count_check" is true when every
      file holds the `num_rows` its DataFile records and the total equals the commit's
      `num_rows`.
  fti_reader.py model STORE_DIR MODEL [--alias A | --version N]
      One JSON object: {"model", "version", "status", "algorithm", "features",
      "files": {logical name: sha256}}, after verifying every file. Without --alias or
      --version, the highest version ("latest", whatever its status).
  fti_reader.py rows STORE_DIR TABLE [--version N | --as-of RFC3339]
      Every row of the table as one JSON object per line (column -> value), in file order
      (live files in replay order, rows in file order). Timestamps are ISO 8601 strings
      (fraction printed only when non-zero, with 3/6/9 digits for ms/us/ns; a "Z" suffix for
      zoned columns, none for naive ones), dates "YYYY-MM-DD", floats JSON numbers written with
      Python's repr (non-finite ones as the strings "NaN", "Infinity", "-Infinity"), nulls null.

Every data or model file is checked (size, then SHA-256 of the whole file) before it is
decoded.

Exit codes: 0 success; 2 bad usage or invalid name; 3 a file's size or SHA-256 does not match
its manifest (the message names the file); 4 anything else wrong with the store (not found,
corrupted entry, unsupported layout, schema mismatch).

Canonical row encoding (rows_sha256), meant to be reproduced by a Rust test:
  1. Each row becomes a JSON array of its values in the definition's column order:
       null (any type)                  -> null
       bool                             -> true / false
       int8..int64, uint8..uint64       -> JSON integer
       halffloat, float, double         -> JSON string of 16 lower-case hex digits: the IEEE-754
                                           binary64 bits of the value widened exactly to f64
                                           (Rust: format!("{:016x}", (v as f64).to_bits()));
                                           every NaN is "7ff8000000000000"
       string, large_string, string_view -> JSON string
       timestamp[unit(, tz=...)]        -> JSON integer: the stored value in the column's own
                                           unit (Rust: cast to Int64)
       date32[day]                      -> JSON integer: days since 1970-01-01
       date64[ms]                       -> JSON integer: milliseconds since the epoch
  2. Each array is serialised compactly: no whitespace, non-ASCII characters written as UTF-8
     (not \\u-escaped), escapes exactly as serde_json::to_string writes them (\\" \\\\ \\b \\f
     \\n \\r \\t, other control characters as \\u00xx with lower-case hex). Python:
     json.dumps(row, separators=(",", ":"), ensure_ascii=False).
  3. The encoded rows are sorted by their UTF-8 bytes, ascending, duplicates kept.
  4. The canonical document is "[" + ",".join(sorted rows) + "]" ("[]" for no rows);
     rows_sha256 is the lower-case hex SHA-256 of its UTF-8 bytes.
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import hashlib
import json
import math
import os
import re
import struct
import sys

import pyarrow as pa
import pyarrow.parquet as pq

LAYOUT_FORMAT = "fti-layout"
LAYOUT_MAJOR = 1
ENTRY_RE = re.compile(r"^[0-9]{20}\.json$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
U64_MAX = 2**64 - 1

# STORAGE.md §7.2: canonical pyarrow spellings and the aliases readers accept.
TYPE_ALIASES = {
    "boolean": "bool",
    "float16": "halffloat",
    "float32": "float",
    "float64": "double",
    "utf8": "string",
    "large_utf8": "large_string",
    "date32": "date32[day]",
    "date": "date32[day]",
    "date64": "date64[ms]",
}
SIMPLE_TYPES = {
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "halffloat", "float", "double", "string", "large_string", "string_view",
    "date32[day]", "date64[ms]",
}
TIMESTAMP_RE = re.compile(r"^timestamp\[\s*(s|ms|us|ns)\s*(?:,\s*tz=(.+?)\s*)?\]$")
UNIT_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
UNIT_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


class FtiError(Exception):
    """A failure with the exit code it maps to."""

    def __init__(self, message: str, code: int = 4):
        super().__init__(message)
        self.code = code


# --- names, types, times ---------------------------------------------------------------------


def check_name(kind: str, name: str) -> str:
    if not NAME_RE.match(name) or ".." in name:
        raise FtiError(f"invalid {kind} name {name!r}", code=2)
    return name


def canonical_type(name: str) -> str:
    """The canonical spelling of a declared type (STORAGE.md §7.2), or an error."""
    name = TYPE_ALIASES.get(name, name)
    if name in SIMPLE_TYPES:
        return name
    m = TIMESTAMP_RE.match(name)
    if m:
        unit, tz = m.groups()
        return f"timestamp[{unit}, tz={tz}]" if tz else f"timestamp[{unit}]"
    raise FtiError(f"unsupported column type {name!r}")


def parse_rfc3339_ns(text: str) -> int:
    """An RFC 3339 timestamp with offset, as integer nanoseconds since the epoch."""
    m = re.match(
        r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$",
        text.strip(),
    )
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp with offset: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, offset = m.group(7) or "", m.group(8)
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    nanos = int((frac + "000000000")[:9])
    return seconds * 1_000_000_000 + nanos


# --- the store -------------------------------------------------------------------------------


class Store:
    """A local filesystem store root (STORAGE.md §1); keys are '/'-separated."""

    def __init__(self, root: str):
        if not os.path.isdir(root):
            raise FtiError(f"store {root} does not exist")
        self.root = root

    def path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def get(self, key: str) -> bytes:
        try:
            with open(self.path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise FtiError(f"{key} does not exist") from None

    def get_json(self, key: str) -> dict:
        data = self.get(key)
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FtiError(f"cannot decode {key}: {e}") from None
        if not isinstance(doc, dict):
            raise FtiError(f"cannot decode {key}: not a JSON object")
        return doc

    def entry_numbers(self, log_dir: str) -> list[int]:
        """Numbers of the entries of a create-only log (§5): direct children named
        <20 digits>.json; anything else is ignored."""
        try:
            children = list(os.scandir(self.path(log_dir)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        numbers = []
        for child in children:
            if child.is_file() and ENTRY_RE.match(child.name):
                n = int(child.name[:20])
                if n <= U64_MAX:
                    numbers.append(n)
        return sorted(numbers)

    def check_layout(self) -> None:
        """§2: refuse an unknown format or major; accept any minor; absent is fine."""
        if not os.path.exists(self.path("layout.json")):
            return
        layout = self.get_json("layout.json")
        fmt, version = layout.get("format"), str(layout.get("version", ""))
        major = version.split(".")[0]
        if fmt != LAYOUT_FORMAT or not major.isdigit() or int(major) != LAYOUT_MAJOR:
            raise FtiError(
                f"store has layout {fmt} version {version}; this reader understands major "
                f"version {LAYOUT_MAJOR}"
            )

    def get_verified(self, key: str, stored: dict) -> bytes:
        """§7.7: whole file, size first, then SHA-256."""
        try:
            data = self.get(key)
        except FtiError as e:
            raise FtiError(f"{key} is missing: {e}", code=3) from None
        if len(data) != stored["size"]:
            raise FtiError(
                f"{key} has {len(data)} bytes, but its manifest recorded {stored['size']} "
                f"(truncated or replaced)",
                code=3,
            )
        actual = hashlib.sha256(data).hexdigest()
        if actual != stored["sha256"]:
            raise FtiError(
                f"{key} has checksum {actual}, but its manifest recorded {stored['sha256']}",
                code=3,
            )
        return data


def join_relative(base: str, relative: str) -> str:
    """A manifest path under its owning directory; every segment must be a valid name."""
    for segment in relative.split("/"):
        if not NAME_RE.match(segment) or ".." in segment:
            raise FtiError(f"{base}: manifest path {relative!r} has an invalid segment")
    return f"{base}/{relative}"


# --- tables ----------------------------------------------------------------------------------


def table_history(store: Store, table: str) -> list[dict]:
    """Every commit, oldest first; entry i must be named <i:020>.json and say version i."""
    log_dir = f"tables/{table}/_log"
    numbers = store.entry_numbers(log_dir)
    history = []
    for i, n in enumerate(numbers, start=1):
        key = f"{log_dir}/{n:020d}.json"
        if n != i:
            raise FtiError(f"{log_dir} is corrupted: entry {i} is missing (next is {n})")
        commit = store.get_json(key)
        if commit.get("version") != n:
            raise FtiError(f"{key} is corrupted: entry says it is number {commit.get('version')}")
        history.append(commit)
    return history


def pick_version(table: str, history: list[dict], version: int | None, as_of: str | None) -> int:
    """§7.5."""
    if not history:
        raise FtiError(f"feature table {table!r} has no committed version")
    if version is not None:
        if not 1 <= version <= len(history):
            raise FtiError(f"feature table {table!r} has no version {version}")
        return version
    if as_of is not None:
        try:
            limit = parse_rfc3339_ns(as_of)
        except ValueError as e:
            raise FtiError(str(e), code=2) from None
        upto = 0
        for commit in history:
            if parse_rfc3339_ns(commit["timestamp"]) > limit:
                break
            upto += 1
        if upto == 0:
            raise FtiError(
                f"feature table {table!r} has no version committed at or before {as_of}"
            )
        return upto
    return len(history)


def live_files(history: list[dict], version: int) -> list[dict]:
    """§7.4: replay add/remove of commits 1..=version."""
    files: list[dict] = []
    for commit in history[:version]:
        removed = set(commit["remove"])
        files = [f for f in files if f["path"] not in removed]
        files.extend(commit["add"])
    return files


def read_table_files(store: Store, table: str, commit: dict, files: list[dict]):
    """Yields (DataFile, pyarrow.Table) per live file, verified and schema-checked."""
    columns = commit["definition"]["columns"]
    names = [c["name"] for c in columns]
    types = [canonical_type(c["type"]) for c in columns]
    for f in files:
        key = join_relative(f"tables/{table}", f["path"])
        data = store.get_verified(key, f)
        try:
            tbl = pq.read_table(pa.BufferReader(data), use_threads=False)
        except (pa.ArrowException, OSError) as e:
            raise FtiError(f"cannot decode {key}: {e}") from None
        if tbl.column_names != names:
            raise FtiError(
                f"{key} has columns {tbl.column_names}, the definition declares {names}"
            )
        for name, want in zip(names, types):
            got = canonical_type(str(tbl.schema.field(name).type))
            if got != want:
                raise FtiError(f"{key}: column {name!r} has type {got}, declared {want}")
        yield f, tbl


def canonical_column(array: pa.ChunkedArray, declared: str) -> list:
    """One column's values per the canonical row encoding (module docstring)."""
    if declared.startswith("timestamp") or declared == "date64[ms]":
        return array.cast(pa.int64()).to_pylist()
    if declared == "date32[day]":
        return array.cast(pa.int32()).to_pylist()
    if declared in ("halffloat", "float", "double"):
        return [None if v is None else float_bits(float(v)) for v in array.to_pylist()]
    return array.to_pylist()


def float_bits(value: float) -> str:
    if math.isnan(value):
        return "7ff8000000000000"
    return format(struct.unpack(">Q", struct.pack(">d", value))[0], "016x")


def encode_row(row: list) -> str:
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


def cmd_table(store: Store, args) -> dict:
    table = check_name("feature group", args.table)
    history = table_history(store, table)
    version = pick_version(table, history, args.version, args.as_of)
    commit = history[version - 1]
    columns = commit["definition"]["columns"]
    types = [canonical_type(c["type"]) for c in columns]
    encoded: list[bytes] = []
    counts_ok = True
    total = 0
    for f, tbl in read_table_files(store, table, commit, live_files(history, version)):
        total += tbl.num_rows
        counts_ok &= tbl.num_rows == f["num_rows"]
        values = [canonical_column(tbl.column(i), t) for i, t in enumerate(types)]
        encoded.extend(encode_row(list(row)).encode("utf-8") for row in zip(*values))
    encoded.sort()
    document = b"[" + b",".join(encoded) + b"]"
    return {
        "table": table,
        "version": version,
        "num_rows": total,
        "columns": [c["name"] for c in columns],
        "rows_sha256": hashlib.sha256(document).hexdigest(),
        "row_count_check": bool(counts_ok and total == commit["num_rows"]),
    }


def display_column(array: pa.ChunkedArray, declared: str) -> list:
    """One column's values as the `rows` command prints them."""
    if declared.startswith("timestamp"):
        m = TIMESTAMP_RE.match(declared)
        unit, tz = m.group(1), m.group(2)
        return [
            None if v is None else iso_timestamp(v, unit, tz is not None)
            for v in array.cast(pa.int64()).to_pylist()
        ]
    if declared == "date32[day]":
        return [
            None if v is None else (dt.date(1970, 1, 1) + dt.timedelta(days=v)).isoformat()
            for v in array.cast(pa.int32()).to_pylist()
        ]
    if declared == "date64[ms]":
        return [
            None if v is None else (dt.date(1970, 1, 1) + dt.timedelta(days=v // 86_400_000)).isoformat()
            for v in array.cast(pa.int64()).to_pylist()
        ]
    if declared in ("halffloat", "float", "double"):
        return [None if v is None else display_float(float(v)) for v in array.to_pylist()]
    return array.to_pylist()


def iso_timestamp(value: int, unit: str, zoned: bool) -> str:
    seconds, frac = divmod(value, UNIT_PER_SECOND[unit])
    text = (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + str(frac).rjust(UNIT_DIGITS[unit], "0")
    return text + ("Z" if zoned else "")


def display_float(value: float):
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value  # json.dumps writes floats with repr


def cmd_rows(store: Store, args) -> None:
    table = check_name("feature group", args.table)
    history = table_history(store, table)
    version = pick_version(table, history, args.version, args.as_of)
    commit = history[version - 1]
    columns = commit["definition"]["columns"]
    names = [c["name"] for c in columns]
    types = [canonical_type(c["type"]) for c in columns]
    out = sys.stdout
    for _, tbl in read_table_files(store, table, commit, live_files(history, version)):
        values = [display_column(tbl.column(i), t) for i, t in enumerate(types)]
        for row in zip(*values):
            out.write(json.dumps(dict(zip(names, row)), ensure_ascii=False, allow_nan=False))
            out.write("\n")


# --- models ----------------------------------------------------------------------------------


def cmd_model(store: Store, args) -> dict:
    model = check_name("model", args.model)
    model_dir = f"models/{model}"
    if args.alias is not None:
        alias = check_name("alias", args.alias)
        alias_dir = f"{model_dir}/aliases/{alias}"
        seqs = store.entry_numbers(alias_dir)
        if not seqs:
            raise FtiError(f"model {model!r} has no alias {alias!r}")
        key = f"{alias_dir}/{seqs[-1]:020d}.json"
        move = store.get_json(key)
        if move.get("seq") != seqs[-1]:
            raise FtiError(f"{key} is corrupted: entry says it is number {move.get('seq')}")
        version = move["version"]
    elif args.version is not None:
        version = args.version
    else:
        versions = store.entry_numbers(f"{model_dir}/versions")
        if not versions:
            raise FtiError(f"model {model!r} does not exist in the registry")
        version = versions[-1]
    key = f"{model_dir}/versions/{version:020d}.json"
    if not os.path.exists(store.path(key)):
        raise FtiError(f"model {model!r} has no version {version}")
    manifest = store.get_json(key)
    if manifest.get("version") != version:
        raise FtiError(f"{key} is corrupted: entry says it is number {manifest.get('version')}")
    files = {}
    for logical, stored in sorted(manifest["files"].items()):
        store.get_verified(join_relative(model_dir, stored["path"]), stored)
        files[logical] = stored["sha256"]
    return {
        "model": model,
        "version": version,
        "status": manifest["status"],
        "algorithm": manifest["algorithm"],
        "features": manifest["features"],
        "files": files,
    }


# --- CLI -------------------------------------------------------------------------------------


def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(
        prog="fti_reader.py",
        description="Read an FTI store (docs/STORAGE.md) with pyarrow alone.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command, help_text in [
        ("table", "summarise a table version with a canonical hash of its rows"),
        ("rows", "print a table version's rows as JSON lines"),
    ]:
        p = sub.add_parser(command, help=help_text)
        p.add_argument("store", metavar="STORE_DIR")
        p.add_argument("table", metavar="TABLE")
        at = p.add_mutually_exclusive_group()
        at.add_argument("--version", type=int, help="a version number, e.g. 3")
        at.add_argument("--as-of", help="an RFC 3339 instant, e.g. 2024-05-02T06:00:00Z")
    p = sub.add_parser("model", help="resolve and verify a model version")
    p.add_argument("store", metavar="STORE_DIR")
    p.add_argument("model", metavar="MODEL")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--alias", help="e.g. champion")
    which.add_argument("--version", type=int, help="e.g. 3")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        store = Store(args.store)
        store.check_layout()
        if args.command == "table":
            print(json.dumps(cmd_table(store, args), ensure_ascii=False))
        elif args.command == "model":
            print(json.dumps(cmd_model(store, args), ensure_ascii=False))
        else:
            cmd_rows(store, args)
    except FtiError as e:
        print(f"fti_reader: {e}", file=sys.stderr)
        return e.code
    except (KeyError, TypeError, ValueError) as e:
        print(f"fti_reader: malformed store document: {e!r}", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Leave without running interpreter and C++ static teardown: pyarrow's thread pools have
    # aborted there ("terminate called without an active exception") on a busy machine,
    # after all the work was done and printed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)
