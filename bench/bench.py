#!/usr/bin/env python3
"""Time whole processes under /usr/bin/time -v, N runs per case, one JSON record per run.

    bench.py run LABEL RESULTS.jsonl [--runs 3] [--tag KEY=VALUE]... [--setup SHELL]
                 [--ok-exit 0,99] [--quiet-sample 2] [--max-wait 900] [--attempts 4] -- COMMAND...

Python standard library only. The method is the peer's (shared/peer/bench.py), so both sides
are timed the same way, plus what our stages need:

* `{i}` in COMMAND and in --setup is replaced by the run number (1..N).
* --setup is a shell command run before every attempt, untimed (e.g. a fresh copy of a
  store, so an idempotent pipeline does the full work every time); `sync` follows it so its
  writeback does not land in the measured run.
* Before each attempt: wait (up to --max-wait s) until fewer than --quiet-below cores are busy.
  An attempt during which other processes used more than --max-background cores on average is
  recorded as rejected and repeated (at most --attempts; the last one is kept, flagged).
* Exit codes listed in --ok-exit count as success (recorded in the record). Any other exit
  stops the case: the failed run is recorded (ok: false) and bench.py exits 1.
* stdout and stderr go to RESULTS_DIR/logs/<label>.<i>.{out,err}. The last JSON document on
  stdout (our binaries' run summary; the peer's train/predict output) is kept in `summary`,
  and `  name: 1.23s` lines on stderr (the peer's phases) in `phases`.
* Besides /usr/bin/time's centisecond wall clock, `wall_precise_s` is measured around the
  whole /usr/bin/time process with a monotonic clock (for start-up times in milliseconds).
* Records of LABEL already in RESULTS.jsonl are replaced. With --run N only run N is made:
  run 1 replaces every record of LABEL (a new sitting), run N > 1 only run N's. Calling it
  for run 1 of each case, then run 2 of each, ... interleaves cases round by round, so a
  drift of the machine's speed over minutes falls on every case alike.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_busy_ticks():
    """Busy jiffies over all CPUs from /proc/stat (everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields) - fields[3] - fields[4]


def busy_cores(seconds):
    b0 = cpu_busy_ticks()
    time.sleep(seconds)
    return (cpu_busy_ticks() - b0) / TICK / seconds


def wait_quiet(max_wait, threshold, sample):
    """Wait until fewer than `threshold` cores are busy (or max_wait passes); (waited s, busy cores)."""
    start = time.time()
    while True:
        busy = busy_cores(sample)
        if busy < threshold or time.time() - start >= max_wait:
            return round(time.time() - start, 1), round(busy, 2)
        time.sleep(3)


def parse_time_v(text):
    out = {}
    for line in text.splitlines():
        key, _, value = line.strip().rpartition(": ")
        try:
            if key == "Elapsed (wall clock) time (h:mm:ss or m:ss)":
                parts = [float(p) for p in value.split(":")]
                out["wall_s"] = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
            elif key == "User time (seconds)":
                out["user_s"] = float(value)
            elif key == "System time (seconds)":
                out["sys_s"] = float(value)
            elif key == "Maximum resident set size (kbytes)":
                out["max_rss_mib"] = round(int(value) / 1024, 1)
            elif key == "Involuntary context switches":
                out["invol_ctx_switches"] = int(value)
            elif key == "Exit status":
                out["exit_status"] = int(value)
        except ValueError:
            pass
    return out


SUMMARY_KEYS = ("status", "outcome", "version", "model_version", "entities", "rows", "metrics",
                "baseline", "timings", "seconds", "monitoring_failures", "verdict", "algorithm",
                "metrics_test", "routes", "ok")


def last_json(text):
    """The last JSON object on stdout: the whole text, else the last line that parses."""
    text = text.strip()
    if not text:
        return None
    try:
        doc = json.loads(text)
        return doc if isinstance(doc, dict) else None
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
                if isinstance(doc, dict):
                    return doc
            except ValueError:
                continue
    return None


def trim_summary(doc):
    if doc is None:
        return None
    out = {k: doc[k] for k in SUMMARY_KEYS if k in doc}
    if isinstance(doc.get("groups"), list):  # feature-pipeline: per-group status, rows, seconds
        out["groups"] = [{k: g.get(k) for k in ("group", "status", "rows", "seconds")}
                         for g in doc["groups"] if isinstance(g, dict)]
    return out


PHASE = re.compile(r"^  (.+): ([0-9.]+)s$")


def phases_of(stderr_text):
    found = {}
    for line in stderr_text.splitlines():
        m = PHASE.match(line)
        if m:
            found[m.group(1)] = float(m.group(2))
    return found


def slug(label):
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", label).strip("_")


def timed(command, out_path, err_path, cwd):
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf, \
            open(out_path, "w") as out, open(err_path, "w") as err:
        b0 = cpu_busy_ticks()
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-v", "-o", tf.name, *command],
                              stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd)
        t1 = time.perf_counter()
        b1 = cpu_busy_ticks()
        rec = parse_time_v(Path(tf.name).read_text())
    rec["wall_precise_s"] = round(t1 - t0, 4)
    rec["exit_status"] = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    rec.setdefault("wall_s", rec["wall_precise_s"])
    rec.setdefault("user_s", 0.0)
    rec.setdefault("sys_s", 0.0)
    rec.setdefault("max_rss_mib", 0.0)
    rec["background_cpu_s"] = round(max(0.0, (b1 - b0) / TICK - rec["user_s"] - rec["sys_s"]), 2)
    return rec


def run(args):
    results = Path(args.results)
    logs = results.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    numbers = [args.run] if args.run else list(range(1, args.runs + 1))

    def replaced(rec):  # re-measuring a case replaces its earlier records (see --run)
        return rec["label"] == args.label and (args.run <= 1 or rec["run"] == args.run)

    if results.exists():
        keep = [line for line in results.read_text().splitlines()
                if line.strip() and not replaced(json.loads(line))]
        results.write_text("".join(line + "\n" for line in keep))
    tags = dict(t.split("=", 1) for t in args.tag)
    ok_exit = {int(c) for c in args.ok_exit.split(",") if c.strip()}
    what = f"run {args.run}" if args.run else f"{args.runs} run{'s' if args.runs != 1 else ''}"
    print(f"-- {args.label} ({what})", file=sys.stderr, flush=True)
    for i in numbers:
        command = [c.replace("{i}", str(i)) for c in args.command]
        for attempt in range(1, args.attempts + 1):
            if args.setup:
                setup = subprocess.run(["bash", "-c", args.setup.replace("{i}", str(i)) + "\nsync"], cwd=args.cwd)
                if setup.returncode != 0:
                    print(f"!! setup failed (exit {setup.returncode}): {args.setup}", file=sys.stderr)
                    return 1
            waited, busy = wait_quiet(args.max_wait, args.quiet_below, args.quiet_sample)
            base = logs / f"{slug(args.label)}.{i}"
            out_path, err_path = Path(f"{base}.out"), Path(f"{base}.err")
            rec = {"label": args.label, "tags": tags, "run": i, "attempt": attempt,
                   **timed(command, out_path, err_path, args.cwd),
                   "waited_for_quiet_s": waited, "busy_cores_before": busy}
            rec["ok"] = rec["exit_status"] in ok_exit
            # /proc/stat has 10 ms ticks and includes the time(1) wrapper: ignore tiny amounts
            rec["contended"] = rec["background_cpu_s"] > max(0.3, args.max_background * rec["wall_s"])
            rec["rejected"] = rec["ok"] and rec["contended"] and attempt < args.attempts
            rec["summary"] = trim_summary(last_json(out_path.read_text(errors="replace")))
            rec["phases"] = phases_of(err_path.read_text(errors="replace"))
            rec["command"] = " ".join(command)
            with results.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"   run {i} attempt {attempt}: wall {rec['wall_s']:.2f}s (precise {rec['wall_precise_s']:.3f}s) "
                  f"cpu {rec['user_s'] + rec['sys_s']:.2f}s rss {rec['max_rss_mib']:.0f}MiB exit {rec['exit_status']}"
                  f" others {rec['background_cpu_s']:.2f}cpu-s{' REJECTED (contended)' if rec['rejected'] else ''}",
                  file=sys.stderr, flush=True)
            if not rec["ok"]:
                tail = err_path.read_text(errors="replace").splitlines()[-15:]
                print(f"!! {args.label}: exit {rec['exit_status']} (accepted: {sorted(ok_exit)}); "
                      f"logs {out_path} {err_path}; stderr tail:", file=sys.stderr)
                for line in tail:
                    print(f"   | {line}", file=sys.stderr)
                return 1
            if not rec["rejected"]:
                break
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("label")
    p.add_argument("results")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--run", type=int, default=0, help="make only run N (1 starts a new sitting of LABEL)")
    p.add_argument("--tag", action="append", default=[], help="KEY=VALUE stored with every record")
    p.add_argument("--setup", default="", help="shell command before every attempt, untimed ({i} = run number)")
    p.add_argument("--cwd", default=None)
    p.add_argument("--ok-exit", default="0", help="comma-separated exit codes that count as success")
    p.add_argument("--max-wait", type=float, default=900, help="seconds to wait for a quiet machine per attempt")
    p.add_argument("--quiet-below", type=float, default=0.3, help="busy cores under which the machine counts as quiet")
    p.add_argument("--quiet-sample", type=float, default=2.0, help="seconds over which busy cores are sampled")
    p.add_argument("--max-background", type=float, default=0.25, help="cores others may use on average during a run")
    p.add_argument("--attempts", type=int, default=4)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1:]
    if not args.command:
        parser.error("no command after --")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
