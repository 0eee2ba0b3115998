#!/usr/bin/env python3
"""Make the embedded demo slice examples/flights/data/flights-demo.parquet from flights-3m.parquet.

    bash scripts/fetch-flights.sh
    python3 examples/flights/make_demo_slice.py data/flights-3m.parquet examples/flights/data/flights-demo.parquet

Deterministic (no randomness), pyarrow only:
  1. the AIRPORTS busiest airports = the most departures (`origin`) in the whole file,
     ties broken by code;
  2. keep the flights whose origin AND destination are both among them (dense airport and
     route histories instead of thousands of sparse routes);
  3. of those, in file order, keep every EVERY-th flight (positions 0, EVERY, 2*EVERY, ...)
     plus every flight of the last day in the file (2001-07-01 00:00), so that the demo's
     calendar ends where the full data's does and batch scoring happens as of 2001-07-02.
File order is preserved; the five columns keep their names and types (date timestamp[us],
delay int64, distance int64, origin/destination large_string as in the source). Written with
zstd (level 19) and DELTA_BINARY_PACKED for the sorted `date` column, which any Parquet reader
(arrow-rs/DataFusion, pyarrow, polars, DuckDB) decodes; the rows are what matters, the bytes
may differ with the pyarrow version.
"""

import argparse
import hashlib
import json
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

COLUMNS = ["date", "delay", "distance", "origin", "destination"]


def make_slice(source: pa.Table, airports: int, every: int) -> tuple[pa.Table, list[str]]:
    source = source.select(COLUMNS)
    departures = source.group_by("origin").aggregate([("origin", "count")])
    departures = departures.sort_by([("origin_count", "descending"), ("origin", "ascending")])
    busiest = departures.column("origin").slice(0, airports)

    both = pc.and_(pc.is_in(source["origin"], value_set=busiest),
                   pc.is_in(source["destination"], value_set=busiest))
    positions = pc.indices_nonzero(both)                       # row numbers in file order
    rank = pa.array(range(len(positions)), pa.int64())         # position among those flights
    last_day = pc.floor_temporal(pc.max(source["date"]), unit="day")
    on_last_day = pc.greater_equal(source["date"].take(positions), last_day)
    # rank % every == 0, with integer division (pyarrow's divide truncates on integers)
    every_th = pc.equal(pc.subtract(rank, pc.multiply(pc.divide(rank, every), every)), 0)
    keep = pc.or_(every_th, on_last_day)
    return source.take(pc.filter(positions, keep)), busiest.to_pylist()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="flights-3m.parquet")
    parser.add_argument("out", help="output parquet")
    parser.add_argument("--airports", type=int, default=30)
    parser.add_argument("--every", type=int, default=8)
    args = parser.parse_args(argv)

    table, busiest = make_slice(pq.read_table(args.source), args.airports, args.every)
    pq.write_table(
        table, args.out,
        compression="zstd", compression_level=19,
        use_dictionary=["origin", "destination", "delay", "distance"],
        column_encoding={"date": "DELTA_BINARY_PACKED"},
    )
    with open(args.out, "rb") as f:
        data = f.read()
    dates = table["date"]
    print(json.dumps({
        "out": args.out, "rows": table.num_rows, "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "first": str(pc.min(dates)), "last": str(pc.max(dates)),
        "airports": busiest,
        "routes": pc.count_distinct(pc.binary_join_element_wise(
            pc.cast(table["origin"], pa.string()), pc.cast(table["destination"], pa.string()), "-")).as_py(),
    }))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
