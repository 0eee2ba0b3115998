#!/usr/bin/env python3
"""Write the Markdown benchmark report from bench.py's records.

    report.py RESULTS.jsonl --out bench/RESULTS.md [--env DIR] [--peer-metadata metadata.json]

Python standard library only. Every figure is the median over a case's accepted runs (runs
repeated because of background load are left out). Ratios are ours / peer: below 1 means we
are faster (or smaller). Which record is which comes from the tags bench/run.sh sets:
  kind=stage   side=ours|peer stage=features|train|predict data=3m|12m variant=...
               [startup=LABEL: the start-up case to subtract in the scale table]
  kind=startup side=ours|peer pair=features|train|predict|none
  kind=synth   entities=N step=features|train|score
"""
import argparse
import json
import statistics
from pathlib import Path

# ---------------------------------------------------------------- loading


class Case:
    def __init__(self, label, tags):
        self.label = label
        self.tags = tags
        self.runs = []      # accepted runs
        self.failed = []    # runs whose exit code was not accepted
        self.rejected = 0   # attempts repeated because of background load

    def ok(self):
        return bool(self.runs)

    def med(self, key):
        return statistics.median(r[key] for r in self.runs) if self.runs else None

    def cpu(self):
        return statistics.median(r["user_s"] + r["sys_s"] for r in self.runs) if self.runs else None

    def wall(self):
        return self.med("wall_s")

    def precise(self):
        return self.med("wall_precise_s") if self.runs and all("wall_precise_s" in r for r in self.runs) else self.wall()

    def rss(self):
        return self.med("max_rss_mib")

    def walls(self):
        return [r["wall_s"] for r in self.runs]

    def others(self):
        return max((r.get("background_cpu_s", 0.0) for r in self.runs), default=0.0)

    def contended(self):
        return any(r.get("contended") for r in self.runs)

    def exits(self):
        return sorted({r["exit_status"] for r in self.runs} - {0})

    def summary(self):
        """The summary of the last accepted run (our stages are deterministic)."""
        for r in reversed(self.runs):
            if r.get("summary"):
                return r["summary"]
        return {}

    def status(self):
        if self.failed and not self.runs:
            return f"FAILED (exit {self.failed[-1]['exit_status']})"
        notes = []
        if self.failed:
            notes.append(f"FAILED after {len(self.runs)} run(s) (exit {self.failed[-1]['exit_status']})")
        if self.exits():
            notes.append("exit " + ",".join(str(e) for e in self.exits()))
        if self.contended():
            notes.append("contended")
        return "; ".join(notes)


def load(path):
    cases = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        case = cases.setdefault(r["label"], Case(r["label"], r.get("tags", {})))
        if r.get("rejected"):
            case.rejected += 1
        elif r.get("ok", r.get("exit_status", 0) == 0):
            case.runs.append(r)
        else:
            case.failed.append(r)
    return list(cases.values())


def select(cases, **tags):
    return [c for c in cases if all(c.tags.get(k) == v for k, v in tags.items())]


def one(cases, **tags):
    found = select(cases, **tags)
    return found[0] if found else None


def fastest(cases):
    ok = [c for c in cases if c.ok()]
    return min(ok, key=lambda c: c.wall()) if ok else None


# ---------------------------------------------------------------- formatting


def f(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def fr(x):
    if x is None:
        return "–"
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.2g}"


def verdict(r, better="faster", worse="slower"):
    if r is None:
        return "–"
    if r <= 1:
        return f"{better} (×{1 / r:.1f})" if r > 0 else better
    return f"**{worse}** (×{r:.1f})"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(out)


def case_name(c):
    return c.label + (f" ({c.status()})" if c.status() else "")


# ---------------------------------------------------------------- sections


class Combined:
    """Two of our cases run back to back (our logreg + RF vs the peer's one process fitting both)."""

    def __init__(self, label, parts):
        self.label, self.parts = label, parts

    def ok(self):
        return all(p is not None and p.ok() for p in self.parts)

    def wall(self):
        return sum(p.wall() for p in self.parts) if self.ok() else None

    def cpu(self):
        return sum(p.cpu() for p in self.parts) if self.ok() else None

    def rss(self):
        return max(p.rss() for p in self.parts) if self.ok() else None

    def status(self):
        return ""


def headline(cases):
    rows = []

    def add(name, ours, peers, peer_name=None):
        peer = fastest(peers)
        if ours is None:  # not measured in this sitting
            return
        ours_ok = ours is not None and ours.ok()
        w, c, m = (ours.wall(), ours.cpu(), ours.rss()) if ours_ok else (None, None, None)
        pw, pc, pm = (peer.wall(), peer.cpu(), peer.rss()) if peer else (None, None, None)
        rw = ratio(w, pw)
        pname = peer_name or (f"peer {peer.tags.get('variant', '')}" if peer else "peer: no data")
        if ours_ok and ours.status():
            name += f" ({ours.status()})"
        if ours is not None and not ours_ok:
            w_text = ours.status() or "no data"
        else:
            w_text = f(w)
        rows.append([name, w_text, f"{f(pw)} ({pname})", fr(rw), f(c), f(pc), fr(ratio(c, pc)),
                     f(m, 0), f(pm, 0), fr(ratio(m, pm)), verdict(rw)])

    for data, rows_label in (("3m", "3M"), ("12m", "12M")):
        add(f"features, {rows_label} rows", one(cases, kind="stage", side="ours", stage="features", data=data),
            select(cases, kind="stage", side="peer", stage="features", data=data))
        if data == "3m":
            peer_train = select(cases, kind="stage", side="peer", stage="train", data="3m")
            for variant, name in (("gbm", "train: ours GBM (serving model)"),
                                  ("logreg", "train: ours logistic regression"),
                                  ("rf", "train: ours random forest")):
                add(f"{name} vs peer logreg + RF", one(cases, kind="stage", side="ours", stage="train", variant=variant),
                    peer_train, "peer logreg + RF, one process")
            both = Combined("ours logreg + RF", [one(cases, kind="stage", side="ours", stage="train", variant=v) for v in ("logreg", "rf")])
            if both.ok():
                add("train: ours logreg + RF (2 processes, summed; RSS = max) vs peer logreg + RF", both, peer_train,
                    "peer logreg + RF, one process")
        add(f"batch inference, {rows_label} rows", one(cases, kind="stage", side="ours", stage="predict", data=data),
            select(cases, kind="stage", side="peer", stage="predict", data=data))
    if not rows:
        return "_No stage records._"
    return table(["stage", "ours wall s", "fastest peer wall s (variant)", "wall ours/peer", "ours CPU s", "peer CPU s",
                  "CPU ours/peer", "ours max RSS MiB", "peer max RSS MiB", "RSS ours/peer", "ours vs fastest peer (wall)"], rows)


def all_stages(cases):
    rows = []
    for c in select(cases, kind="stage"):
        if not c.ok():
            rows.append([case_name(c), 0] + ["–"] * 8)
            continue
        cpu, w = c.cpu(), c.wall()
        rows.append([case_name(c), len(c.runs), f(w), f(c.med("user_s")), f(c.med("sys_s")), f(cpu),
                     f"{cpu / w:.2f}" if w else "–", f(c.rss(), 0), f"{min(c.walls()):.2f}–{max(c.walls()):.2f}",
                     f"{c.others():.1f}" + (f" ({c.rejected} repeated)" if c.rejected else "")])
    return table(["case", "runs", "wall s (median)", "user s", "sys s", "CPU s", "CPU util (cores)", "max RSS MiB",
                  "wall min–max", "others' CPU s (max)"], rows)


def phases(cases):
    rows = []
    for c in select(cases, kind="stage"):
        if not c.ok():
            continue
        found = {}
        for r in c.runs:
            s = r.get("summary") or {}
            items = {}
            if isinstance(s.get("timings"), dict):
                items.update({k: v for k, v in s["timings"].items() if isinstance(v, (int, float))})
            for g in s.get("groups") or []:
                if g.get("seconds") is not None:
                    items[g["group"]] = g["seconds"]
            if isinstance(s.get("seconds"), (int, float)):
                items["in-process total"] = s["seconds"]
            items.update(r.get("phases") or {})
            for k, v in items.items():
                found.setdefault(k, []).append(v)
        if found:
            rows.append([c.label, ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in found.items())])
    return table(["case", "in-process phases, median s"], rows) if rows else "_No phase timings recorded._"


def quality(cases, peer_metadata):
    rows = []
    names = {"gbm": "ours: GBM (model.toml, serving)", "logreg": "ours: logistic regression (model-logreg.toml)",
             "rf": "ours: random forest (model-rf.toml)"}
    peer_best = None
    peer_rows = []
    metrics = None
    if peer_metadata and Path(peer_metadata).exists():
        metrics = json.loads(Path(peer_metadata).read_text()).get("metrics_test")
    if metrics is None:
        peer_train = one(cases, kind="stage", side="peer", stage="train")
        if peer_train is not None:
            metrics = peer_train.summary().get("metrics_test")
    for key, name in (("logreg", "peer: StandardScaler + LogisticRegression"),
                      ("random_forest", "peer: RandomForest 50 trees depth 10 (serving)"),
                      ("base_rate_constant", "peer: constant = training positive rate")):
        m = (metrics or {}).get(key)
        if m:
            peer_rows.append([name, m.get("roc_auc"), m.get("log_loss"), m.get("accuracy")])
            if key != "base_rate_constant" and (peer_best is None or m.get("roc_auc", 0) > peer_best):
                peer_best = m.get("roc_auc")
    ours_baseline = None
    for variant in ("gbm", "logreg", "rf"):
        c = one(cases, kind="stage", side="ours", stage="train", variant=variant)
        if c is None:
            continue
        m = c.summary().get("metrics") or {}
        aucs = {round(r["summary"]["metrics"].get("roc_auc", 0), 9) for r in c.runs
                if r.get("summary") and r["summary"].get("metrics")}
        name = names[variant] + (" — AUC varies across runs" if len(aucs) > 1 else "")
        if not c.ok():
            name += f" ({c.status()})"
        rows.append([name, m.get("roc_auc"), m.get("log_loss"), m.get("accuracy")])
        if ours_baseline is None and c.summary().get("baseline"):
            ours_baseline = c.summary()["baseline"]
    if ours_baseline:
        rows.append(["ours: constant baseline (as reported by training-pipeline)", ours_baseline.get("roc_auc"),
                     ours_baseline.get("log_loss"), ours_baseline.get("accuracy")])
    rows += peer_rows
    if not rows:
        return "_No quality records._"
    out = []
    for name, auc, ll, acc in rows:
        d = "–" if auc is None or peer_best is None else f"{auc - peer_best:+.4f}"
        out.append([name, f(auc, 4), f(ll, 4), f(acc, 4), d])
    return table(["model", "ROC AUC", "log loss", "accuracy (p ≥ 0.5)", "AUC − best peer AUC"], out)


def paired(cases, side, pair):
    """Start-up cases of `side` whose `pair` tag (a comma-separated list) names `pair`."""
    return [c for c in select(cases, kind="startup", side=side) if pair in c.tags.get("pair", "").split(",")]


def startup(cases):
    rows = []
    for c in select(cases, kind="startup"):
        if not c.ok():
            rows.append([c.tags.get("side", ""), case_name(c), 0, "–", "–", "–", "–"])
            continue
        p = [r.get("wall_precise_s", r["wall_s"]) * 1000 for r in c.runs]
        note = "; ".join(x for x in c.status().split("; ") if x and not x.startswith("exit "))
        rows.append([c.tags.get("side", ""), c.label + (f" ({note})" if note else ""), len(c.runs), f(c.precise() * 1000, 1),
                     f"{min(p):.1f}–{max(p):.1f}", f(c.cpu() * 1000, 0), f(c.rss(), 0)])
    if not rows:
        return "_No start-up records._"
    text = table(["side", "command", "runs", "wall ms (median)", "wall ms min–max", "CPU ms", "max RSS MiB"], rows)
    pairs = []
    for pair, name in (("features", "feature stage"), ("train", "training stage"), ("predict", "inference stage")):
        ours = [c for c in paired(cases, "ours", pair) if c.ok()]
        peer = [c for c in paired(cases, "peer", pair) if c.ok()]
        if ours and peer:
            o = max(ours, key=lambda c: c.precise())
            p = min(peer, key=lambda c: c.precise())
            r = ratio(o.precise(), p.precise())
            pairs.append([name, f"{o.precise() * 1000:.1f} ({o.label})", f"{p.precise() * 1000:.1f} ({p.label})", fr(r), verdict(r)])
    helps = [c for c in paired(cases, "ours", "none") if c.ok()]
    bare = next(iter(paired(cases, "peer", "none")), None)
    if helps and bare is not None and bare.ok():
        o = max(helps, key=lambda c: c.precise())
        r = ratio(o.precise(), bare.precise())
        pairs.insert(0, ["bare start-up", f"{o.precise() * 1000:.1f} ({o.label})", f"{bare.precise() * 1000:.1f} ({bare.label})", fr(r), verdict(r)])
    if pairs:
        text += ("\n\nOur slowest no-op of each stage against the peer's cheapest import set for that stage "
                 "(the peer pays this before any work):\n\n")
        text += table(["", "ours ms", "peer ms", "ours/peer", ""], pairs)
    return text


def scale(cases):
    rows = []
    startups = {c.label: c for c in select(cases, kind="startup") if c.ok()}
    for c3 in select(cases, kind="stage", data="3m"):
        if c3.tags.get("stage") == "train":
            continue
        match = {k: v for k, v in c3.tags.items() if k not in ("data", "startup")}
        c12 = next((c for c in select(cases, **match, data="12m")), None)
        if c12 is None:
            continue
        name = c3.label.replace("3M", "").replace("  ", " ").strip(" ,:/")
        if not (c3.ok() and c12.ok()):
            rows.append([name, c3.status() or "–", c12.status() or "–"] + ["–"] * 5)
            continue
        rw = ratio(c12.wall(), c3.wall())
        st = startups.get(c3.tags.get("startup", ""))
        net = "–"
        if st is not None:
            s = st.precise()
            if c3.wall() - s > 0.05:
                net = fr(ratio(c12.wall() - s, c3.wall() - s))
        rows.append([name, f(c3.wall()), f(c12.wall()), fr(rw), net, fr(ratio(c12.cpu(), c3.cpu())),
                     f"{c3.rss():.0f} → {c12.rss():.0f} (×{c12.rss() / c3.rss():.2f})",
                     "linear or better" if rw is not None and rw <= 4.4 else "**super-linear**"])
    if not rows:
        return "_No 3M/12M pairs recorded._"
    return table(["case", "wall 3M s", "wall 12M s", "× wall", "× wall without start-up", "× CPU", "max RSS MiB 3M → 12M",
                  "4× rows →"], rows)


def entities(cases):
    by_n = {}
    for c in select(cases, kind="synth"):
        by_n.setdefault(int(c.tags.get("entities", 0)), {})[c.tags.get("step")] = c
    if not by_n:
        return "_No synthetic scoring records._"
    rows = []
    first = None
    for n in sorted(by_n):
        steps = by_n[n]
        s = steps.get("score")
        feat, train = steps.get("features"), steps.get("train")
        side = lambda c: f"{f(c.wall())} s / {f(c.rss(), 0)} MiB" if c is not None and c.ok() else (c.status() if c else "–")
        if s is None or not s.ok():
            rows.append([f"{n:,}", "–", s.status() if s else "–", "–", "–", "–", "–", side(feat), side(train)])
            continue
        scored = s.summary().get("entities")
        if first is None:
            first = (n, s.rss(), s.wall())
            grow, per = "1.00", "–"
        else:
            grow = fr(ratio(s.rss(), first[1]))
            per = f"{(s.rss() - first[1]) * 1048576 / (n - first[0]):.0f}" if n != first[0] else "–"
        rows.append([f"{n:,}", f"{scored:,}" if isinstance(scored, int) else "–", f(s.wall()), f(s.cpu()),
                     f(s.rss(), 0), grow, per, side(feat), side(train)])
    return table(["entities", "scored", "score wall s", "score CPU s", "score max RSS MiB", "RSS × (vs smallest)",
                  "extra bytes of RSS per extra entity", "features (setup) wall / RSS", "train (setup) wall / RSS"], rows)


def environment(env_dir):
    if not env_dir or not Path(env_dir).is_dir():
        return "_Machine description not recorded._"
    d = Path(env_dir)
    read = lambda name: (d / name).read_text().strip() if (d / name).exists() else "–"
    rows = [
        ["date (start → end)", f"{read('date_start.txt')} → {read('date_end.txt')}"],
        ["CPU model (/proc/cpuinfo)", read("cpu_model.txt")],
        ["`nproc`", read("nproc.txt")],
        ["kernel", read("uname.txt")],
        ["code", read("git.txt").replace("\n", " ")],
        ["Rust", read("rust.txt").replace("\n", "; ")],
        ["peer Python", read("peer_python.txt").replace("\n", "; ")],
        ["benchmark settings", read("settings.txt").replace("\n", "; ")],
    ]
    if (d / "reruns.txt").exists():
        rows.insert(1, ["parts re-measured later (FTI_BENCH_PARTS)", read("reruns.txt").replace("\n", "; ")])
    text = table(["", ""], rows)
    text += "\n\n`free -g`:\n\n```\n" + read("free.txt") + "\n```"
    return text


def notes(cases):
    lines = []
    rejected = sum(c.rejected for c in cases)
    worst = max(cases, key=lambda c: c.others(), default=None)
    if worst is not None:
        lines.append(f"- Background load: {rejected} run(s) repeated because other processes used more than 0.25 cores "
                     f"on average; across accepted runs, other processes used at most {worst.others():.1f} CPU-s "
                     f"(in \"{worst.label}\").")
    contended = [c.label for c in cases if c.contended()]
    if contended:
        lines.append("- Still contended after the last attempt (figures less reliable): " + ", ".join(contended) + ".")
    failed = [c for c in cases if c.failed]
    for c in failed:
        r = c.failed[-1]
        lines.append(f"- **{c.label}** failed with exit {r['exit_status']} (command: `{r.get('command', '')}`); see "
                     f"`logs/` in the work directory.")
    exits = [c for c in cases if c.exits()]
    for c in exits:
        lines.append(f"- {c.label}: accepted non-zero exit {', '.join(map(str, c.exits()))} "
                     "(99 = already done, 4 = rejected by the gate but registered, 7 = monitoring thresholds failed).")
    return "\n".join(lines) if lines else "- No failures, no contended runs."


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results")
    parser.add_argument("--out", required=True)
    parser.add_argument("--env", default=None, help="directory of machine description files written by run.sh")
    parser.add_argument("--peer-metadata", default=None, help="the peer's models/flight_delay/v<N>/metadata.json")
    args = parser.parse_args()
    cases = load(args.results)
    counts = sorted({len(c.runs) for c in select(cases, kind="stage")}) or [0]
    runs = str(counts[0]) if counts[0] == counts[-1] else f"{counts[0]}–{counts[-1]}"
    resumed = (
        " (or, for the parts listed there as re-measured later, from that later sitting and code:"
        " the ours/peer ratios of those stages compare runs of that sitting; the start-up"
        " subtracted in the scaling table comes from the first sitting)"
        if args.env and (Path(args.env) / "reruns.txt").exists()
        else ""
    )
    md = f"""# FTI vs the Python peer: side-by-side benchmark

Written by `bench/run.sh` (see [README.md](README.md)); every number below comes from one sitting on
the machine described at the end{resumed}. Each stage is a whole process timed under `/usr/bin/time -v`
(start-up, imports and I/O included), median of {runs} run(s) per case (each case's count is in the runs column of "All cases") after waiting for a quiet
machine; runs during which other processes used more than 0.25 cores were repeated. The feature
stages run in interleaved rounds (run 1 of every case, then run 2, ...), so a slow phase of the
machine falls on both sides alike. Ratios are
**ours / peer**: below 1 means we are faster or smaller. "Fastest peer" is the peer variant with the
lowest median wall time for that stage (polars, pandas or DuckDB for features).

## Stages: ours vs the fastest peer variant

{headline(cases)}

The peer's train stage fits both of its models (logistic regression and a random forest) in one
process; ours trains one model per process, so each of our models is compared with the whole
peer stage, and the logreg + RF line adds our two processes up.

## Quality (test set: June 2001, same split, sample and features as the peer)

{quality(cases, args.peer_metadata)}

## Start-up

Wall time in milliseconds measured around the whole process (monotonic clock; `/usr/bin/time`
itself only has centiseconds).

{startup(cases)}

## Scale: 4× the rows (3M → 12M flights)

The 12M input is the peer's `make_scaled.py` output (4 copies of the 3M file shifted by 26 weeks).
Batch inference at 12M uses the model trained at 3M, copied into the 12M store (as the peer does);
it scores the same 3,399 routes, so only reading the larger feature tables grows. "Without
start-up" subtracts the median no-op/import start-up of that process from both sides.

{scale(cases)}

## Batch inference memory vs number of entities

A synthetic feature repository (`bench/synth.py`: N entities × 2 days, a spine group, a feature
group, a logistic regression) scored with `inference-pipeline score` (jsonl, csv and DynamoDB
exports as in the flights example). Flat memory means max RSS does not grow with N.

{entities(cases)}

## All cases

{all_stages(cases)}

## Where the time goes inside each process

Ours: the `timings` / per-group `seconds` of the run summary each binary prints on stdout; the
peer: the `  phase: s` lines on stderr.

{phases(cases)}

## Notes

{notes(cases)}

## Machine

{environment(args.env)}
"""
    Path(args.out).write_text(md)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
