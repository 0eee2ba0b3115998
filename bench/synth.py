#!/usr/bin/env python3
"""Synthetic scoring workload for "batch inference memory vs number of entities".

    synth.py --entities N --out DIR [--seed 0]

Writes into DIR (all config, nothing dataset-specific in the binaries):
  events.parquet  N entities x 2 days: entity_id, day, event_time, segment, x1, x2, label
  features.toml   three groups: synth_labels (one row per entity and day, the label),
                  synth_features (x1, x2 per entity and day), synth_spine (one row per entity,
                  stamped the day after the data: the scoring spine)
  model.toml      logistic regression on segment, x1, x2; train day 1 (every 10th entity),
                  test day 2
  score.toml      score every entity of the spine; jsonl, csv and dynamodb exports (as the
                  flights example); no monitoring thresholds
Needs numpy and pyarrow (the peer venv has both).
"""
import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DAYS = ["2024-01-01", "2024-01-02"]
AS_OF = "2024-01-03"  # the day after the data: the spine's as_of_date and the scoring time

FEATURES = """# Synthetic feature repository (bench/synth.py): {n} entities x 2 days.
[sources.events]
format = "parquet"
path = "events.parquet"

[groups.synth_labels]
description = "One row per entity and day: the label and the row-level input segment"
entity_keys = ["entity_id"]
event_time = "event_time"
sql = "SELECT entity_id, event_time, segment, label FROM events ORDER BY entity_id, event_time"
[groups.synth_labels.columns]
entity_id = {{ type = "int64" }}
event_time = {{ type = "timestamp[us]" }}
segment = {{ type = "int32" }}
label = {{ type = "bool" }}

[groups.synth_features]
description = "Two numeric features per entity and day"
entity_keys = ["entity_id"]
event_time = "as_of_date"
sql = "SELECT entity_id, day AS as_of_date, x1, x2 FROM events ORDER BY entity_id, as_of_date"
[groups.synth_features.columns]
entity_id = {{ type = "int64" }}
as_of_date = {{ type = "date32[day]" }}
x1 = {{ type = "double" }}
x2 = {{ type = "double" }}

[groups.synth_spine]
description = "The scoring spine: one row per entity, stamped the day after the data"
entity_keys = ["entity_id"]
event_time = "as_of_date"
sql = \"\"\"
SELECT entity_id,
       CAST(MAX(day) + INTERVAL '1 day' AS DATE) AS as_of_date,
       MAX(segment)                              AS segment
FROM events
GROUP BY entity_id
ORDER BY entity_id
\"\"\"
[groups.synth_spine.columns]
entity_id = {{ type = "int64" }}
as_of_date = {{ type = "date32[day]" }}
segment = {{ type = "int32" }}
"""

MODEL = """# Synthetic model (bench/synth.py)
[model]
name = "synth"
task = "binary"

[label]
group = "synth_labels"
column = "label"
time = "event_time"

[[features]]
group = "synth_labels"
columns = ["segment"]

[[features]]
group = "synth_features"
columns = ["x1", "x2"]

[join]
inclusive = true

[split]
method = "time"
train_before = "{day2}"
test_from = "{day2}"
[split.train_sample]
column = "entity_id"
modulo = 10

[preprocessing]
impute = "median"
scale = "standard"

[algorithm]
name = "logistic_regression"
seed = 0
[algorithm.params]
alpha = 1.0

[gate]
[[gate.thresholds]]
metric = "roc_auc"
min = 0.0
"""

SCORE = """# Synthetic batch scoring (bench/synth.py): every entity of the spine
[model]
name = "synth"
ref = "latest"

[entities]
group = "synth_spine"
carry = ["segment"]

[output]
dataset = "synth_scores"
key = "e{{entity_id}}"
batch_rows = 65536
{exports}
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exports", default="jsonl,csv,dynamodb", help="comma-separated export formats ('' for none)")
    args = parser.parse_args()
    n = args.entities
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    entity = np.repeat(np.arange(n, dtype=np.int64), len(DAYS))
    day_index = np.tile(np.arange(len(DAYS)), n)
    days = np.array(DAYS, dtype="datetime64[D]")[day_index]
    segment = (entity % 16).astype(np.int32)
    x1 = rng.normal(size=n * len(DAYS))
    x2 = rng.normal(size=n * len(DAYS)) + 0.1 * segment
    logit = -1.0 + 1.2 * x1 - 0.8 * x2 + 0.05 * segment
    label = rng.random(n * len(DAYS)) < 1.0 / (1.0 + np.exp(-logit))
    table = pa.table({
        "entity_id": pa.array(entity),
        "day": pa.array(days, type=pa.date32()),
        "event_time": pa.array(days.astype("datetime64[us]") + np.timedelta64(12, "h"), type=pa.timestamp("us")),
        "segment": pa.array(segment),
        "x1": pa.array(x1),
        "x2": pa.array(x2),
        "label": pa.array(label),
    })
    pq.write_table(table, out / "events.parquet", compression="zstd", row_group_size=262_144)
    (out / "features.toml").write_text(FEATURES.format(n=n))
    (out / "model.toml").write_text(MODEL.format(day2=DAYS[1]))
    exports = "".join(f"\n[[exports]]\nformat = \"{f.strip()}\"\n" for f in args.exports.split(",") if f.strip())
    (out / "score.toml").write_text(SCORE.format(exports=exports))
    (out / "as_of.txt").write_text(AS_OF + "\n")
    print(f"{out}: {table.num_rows} rows, {n} entities, as of {AS_OF}")


if __name__ == "__main__":
    main()
