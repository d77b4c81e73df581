# Turns bench/run.sh's JSON lines into the side-by-side table (summary.md) and the data files gnuplot draws.
# usage: python3 bench/summarize.py RESULTS.jsonl OUT_DIR     (standard library only)
import json
import os
import sys


def load(path):
    runs = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                r = json.loads(line)
                runs[(r["server"], r["run"])] = r
    return runs


def get(r, *path):
    for key in path:
        if r is None:
            return None
        r = r.get(key) if isinstance(r, dict) else None
    return r


def fmt(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, float) and not v.is_integer():
        text = f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    else:
        text = f"{int(v):,}"
    return text + unit


def ratio(chorus, reference, higher_is_better):
    if chorus is None or reference is None or chorus == 0 or reference == 0:
        return "—"
    x = chorus / reference if higher_is_better else reference / chorus
    return f"{x:,.2f}×"


# (run, label, path into the JSON line, unit, higher is better)
ROWS = [
    ("fanout", "fanout 100k/s offered: deliveries/s", ("result", "deliveries_per_s"), "", True),
    ("fanout", "fanout 100k/s: delivery ratio", ("result", "delivery_ratio"), "", True),
    ("fanout", "fanout 100k/s: delivery p50", ("result", "delivery_latency", "p50_ms"), " ms", False),
    ("fanout", "fanout 100k/s: delivery p99", ("result", "delivery_latency", "p99_ms"), " ms", False),
    ("fanout", "fanout 100k/s: server CPU (cores)", ("result", "server_cpu"), "", False),
    ("fanout", "fanout 100k/s: generator's worst stall", ("result", "max_pacer_lag_ms"), " ms", None),
    ("fanout-500k", "fanout 500k/s offered: deliveries/s", ("result", "deliveries_per_s"), "", True),
    ("fanout-500k", "fanout 500k/s: delivery ratio", ("result", "delivery_ratio"), "", True),
    ("fanout-500k", "fanout 500k/s: delivery p99", ("result", "delivery_latency", "p99_ms"), " ms", False),
    ("fanout-500k", "fanout 500k/s: server CPU (cores)", ("result", "server_cpu"), "", None),
    ("fanout-500k", "fanout 500k/s: generator CPU (cores)", ("result", "generator_cpu"), "", None),
    ("fanout-500k", "fanout 500k/s: generator's worst stall", ("result", "max_pacer_lag_ms"), " ms", None),
    ("fanout-ramp", "fanout ramp: highest step held, deliveries/s", ("result", "deliveries_per_s"), "", True),
    ("fanout-ramp", "fanout ramp: p99 at that step", ("result", "delivery_latency", "p99_ms"), " ms", False),
    ("big-room", "big-room 5,000 members: deliveries/s", ("result", "deliveries_per_s"), "", True),
    ("big-room", "big-room: delivery ratio", ("result", "delivery_ratio"), "", True),
    ("big-room", "big-room: delivery p99", ("result", "delivery_latency", "p99_ms"), " ms", False),
    ("big-room", "big-room: time to join 5,000 members", ("connect", "join_time_s"), " s", False),
    ("dm", "dm 2,500 pairs: acks/s", ("result", "acknowledged"), "", True),
    ("dm", "dm: ack p99", ("result", "ack_latency", "p99_ms"), " ms", False),
    ("dm", "dm: delivery p99", ("result", "delivery_latency", "p99_ms"), " ms", False),
    ("idle", "idle: connections held", ("connect", "open"), "", True),
    ("idle", "idle: connect rate (conn/s)", ("connect", "connect_rate"), "", True),
    ("idle", "idle: server RSS per connection", ("server_memory", "rss_per_connection_kib"), " KiB", False),
    ("churn", "churn: new authenticated connections/s", ("churn", "completed_per_s"), "", True),
    ("churn", "churn: connect+join p99", ("churn", "latency", "p99_ms"), " ms", False),
    ("churn", "churn: chat delivery p99 meanwhile", ("result", "delivery_latency", "p99_ms"), " ms", False),
    ("churn-alone", "churn alone (8,000/s offered): connections/s", ("churn", "completed_per_s"), "", True),
    ("churn-alone", "churn alone: connect+join p99", ("churn", "latency", "p99_ms"), " ms", False),
    ("churn-alone", "churn alone: server CPU (cores)", ("result", "server_cpu"), "", None),
]


def value(runs, server, run, path):
    r = runs.get((server, run))
    v = get(r, *path)
    if run == "dm" and path == ("result", "acknowledged") and v is not None:
        v = v / get(r, "result", "duration_s")  # acknowledged in the window -> per second
    return v


def main():
    results, out = sys.argv[1], sys.argv[2]
    runs = load(results)
    have_reference = any(server == "reference" for server, _ in runs)
    lines = []
    if os.path.exists(os.path.join(out, "machine.md")):
        lines += open(os.path.join(out, "machine.md")).read().rstrip().splitlines() + [""]
    lines += ["| measure | Chorus | Node `ws` reference | Chorus advantage |", "|---|---:|---:|---:|"]
    for run, label, path, unit, higher in ROWS:
        if ("chorus", run) not in runs and ("reference", run) not in runs:
            continue
        c = value(runs, "chorus", run, path)
        n = value(runs, "reference", run, path) if have_reference else None
        adv = ratio(c, n, higher) if higher is not None else "—"
        lines.append(f"| {label} | {fmt(c, unit)} | {fmt(n, unit)} | {adv} |")
    problems = []
    for (server, run), r in sorted(runs.items()):
        if r.get("aborted"):
            problems.append(f"- {server} {run}: aborted: {r['aborted']}")
        errors = get(r, "result", "errors") or {}
        if errors:
            problems.append(f"- {server} {run}: errors {json.dumps(errors)}")
        if r.get("disconnects"):
            codes = json.dumps(r.get("close_codes"))
            problems.append(f"- {server} {run}: {r['disconnects']} disconnects, close codes {codes}")
    if problems:
        lines += ["", "Problems seen:"] + problems
    lines += ["", "Chorus advantage: Chorus ÷ reference where more is better, "
              "reference ÷ Chorus where less is better."]
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")

    for server in ("chorus", "reference"):
        ramp = runs.get((server, "fanout-ramp"))
        if ramp and ramp.get("steps"):
            with open(os.path.join(out, f"ramp-{server}.tsv"), "w") as f:
                f.write("# offered_msgs_per_s deliveries_per_s p50_ms p99_ms p999_ms delivery_ratio held\n")
                for s in ramp["steps"]:
                    d = s["delivery_latency"]
                    f.write(f"{s['offered_rate']} {s['deliveries_per_s']} {d['p50_ms']} {d['p99_ms']} "
                            f"{d['p999_ms']} {s['delivery_ratio']} {1 if s['held'] else 0}\n")
        idle = runs.get((server, "idle"))
        samples = get(idle, "server_memory", "samples")
        if samples:
            with open(os.path.join(out, f"memory-{server}.tsv"), "w") as f:
                f.write("# open_connections server_rss_mib\n")
                for n, kib in samples:
                    f.write(f"{n} {kib / 1024:.2f}\n")


if __name__ == "__main__":
    main()
