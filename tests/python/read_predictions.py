#!/usr/bin/env python3
"""read_predictions.py STORE_DIR DATASET: the published predictions of a dataset, read with
pyarrow from a local FTI store following docs/STORAGE.md only.

Prints one JSON object {"snapshot": ..., "model_version": ..., "scores": {key: score}}.
The current snapshot is the newest entry of predictions/<DATASET>/current/; its
_snapshot.json lists the files; each is checked (size, SHA-256) before it is read.
Exit 3 on a checksum mismatch, 4 when nothing is published.
"""
import hashlib
import json
import os
import re
import sys

import pyarrow.parquet as pq


def main(store, dataset):
    base = os.path.join(store, "predictions", dataset)
    pointer_dir = os.path.join(base, "current")
    entries = sorted(f for f in os.listdir(pointer_dir) if re.fullmatch(r"\d{20}\.json", f)) if os.path.isdir(pointer_dir) else []
    if not entries:
        print(f"{dataset}: nothing published", file=sys.stderr)
        return 4
    pointer = json.load(open(os.path.join(pointer_dir, entries[-1])))
    snap_dir = os.path.join(base, "snapshots", pointer["snapshot"])
    manifest = json.load(open(os.path.join(snap_dir, "_snapshot.json")))
    scores, versions = {}, set()
    for name, f in sorted(manifest["files"].items()):
        if not name.endswith("predictions.parquet"):
            continue
        path = os.path.join(snap_dir, f["path"])
        data = open(path, "rb").read()
        if len(data) != f["size"] or hashlib.sha256(data).hexdigest() != f["sha256"]:
            print(f"{path}: size or sha256 does not match the manifest", file=sys.stderr)
            return 3
        table = pq.read_table(path, use_threads=False)
        for key, score, version in zip(table["key"].to_pylist(), table["score"].to_pylist(), table["model_version"].to_pylist()):
            scores[key] = score
            versions.add(version)
    print(json.dumps({"snapshot": pointer["snapshot"], "model_version": sorted(versions), "scores": scores}))
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1], sys.argv[2])
    # Leave without running interpreter and C++ static teardown: pyarrow's thread pools have
    # aborted there ("terminate called without an active exception") on a busy machine,
    # after all the work was done and printed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)
