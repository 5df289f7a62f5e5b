#!/usr/bin/env python3
"""Turns run_matrix.sh's results (one confab_bench JSON line per run) into the results section of
docs/benchmarks.md: tables per workload with Confab's ratio against the best of ZooKeeper and etcd
measured in the same run, and the issue's targets checked. Only the text between the
results:begin and results:end markers is replaced; the prose around it is kept."""

import argparse
import datetime
import json
import os
import statistics

BEGIN = "<!-- results:begin (written by tests/bench/run_matrix.sh; edit outside the markers) -->"
END = "<!-- results:end -->"
SYSTEMS = [("confab", "Confab"), ("zookeeper", "ZooKeeper"), ("etcd", "etcd")]
PEERS = ["zookeeper", "etcd"]

# (case, title, note) of the closed-loop table, in order.
CASES = [
    ("write", "write", "set 256 B on own keys"),
    ("write-1x1", "write, 1 client × 1", "latency of a lone writer"),
    ("read-local", "read, local", "ZooKeeper read, etcd serializable, Confab get"),
    ("read-linearizable", "read, linearizable",
     "etcd default Range; Confab and ZooKeeper: sync + read"),
    ("create", "create", "ephemeral sequential; etcd: unique-key put, the faster of with/without lease"),
    ("mixed", "mixed", "90% local reads, 10% writes"),
]


def median_row(runs):
    """One row from several rounds of a case: the median of each figure (the rounds failed or
    not measured left out), the other fields from the first round."""
    good = [r for r in runs if ok(r)]
    if not good:
        return runs[0]
    row = dict(good[0])
    for key, value in good[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "round":
            values = [r[key] for r in good if isinstance(r.get(key), (int, float))]
            row[key] = statistics.median(values)
    row["rounds"] = len(good)
    return row


# Rounds of a case, by (system, case): [row of round 1, row of round 2, ...].
ROUNDS = {}


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                row = json.loads(line)
                if "round" in row:
                    ROUNDS.setdefault((row["system"], row["case"]), []).append(row)
                else:
                    rows[(row["system"], row["case"])] = row
    for key, runs in ROUNDS.items():
        runs.sort(key=lambda r: r["round"])
        rows[key] = median_row(runs)
    # etcd's create: the faster of the two (the issue compares against the faster).
    plain, lease = rows.get(("etcd", "create")), rows.get(("etcd", "create-lease"))
    candidates = [r for r in (plain, lease) if r and not r.get("failed")]
    if candidates:
        best = max(candidates, key=lambda r: r["ops_per_s"])
        rows[("etcd", "create")] = dict(best, case="create")
    return rows


def ok(row):
    return row is not None and not row.get("failed")


def ms(us):
    v = us / 1000.0
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def num(v, digits=0):
    return f"{v:,.{digits}f}"


def ratio(v):
    return f"{v:.2f}×"


def cell_ops(row):
    if row is None:
        return "—"
    if row.get("failed"):
        return "failed"
    return num(row["ops_per_s"])


def cell_latency(row):
    if not ok(row):
        return "—"
    return f"{ms(row['p50_us'])} / {ms(row['p99_us'])} / {ms(row['p999_us'])}"


def round_ratios(case, key, higher_is_better):
    """Confab ÷ the best peer on `key`, round by round (each round measured the three systems
    one after the other, under the same background load); empty without rounds."""
    ratios = []
    confab = {r["round"]: r for r in ROUNDS.get(("confab", case), []) if ok(r)}
    for number, mine in sorted(confab.items()):
        peers = [r[key] for p in PEERS for r in ROUNDS.get((p, case), [])
                 if r["round"] == number and ok(r) and r.get(key)]
        if peers and key in mine:
            best = max(peers) if higher_is_better else min(peers)
            ratios.append(mine[key] / best)
    return ratios


def rounds_table():
    cases = [(case, title) for case, title, _ in CASES
             if any((system, case) in ROUNDS for system, _ in SYSTEMS)]
    if not cases:
        return []
    count = max(len(runs) for runs in ROUNDS.values())
    out = ["", "### Rounds", "",
           f"The headline workloads ran in {count} round{'s' if count > 1 else ''}: each round "
           "started every system in turn on a fresh ensemble, so that the three met the same "
           "background load. The tables above show the median of each figure; the targets below "
           "use the median of Confab's ratio to the best peer of each round. Per round, in order:",
           "",
           "| workload | system | ops/s | p50 / p99 ms | server CPU µs/op | writes per fsync |",
           "|---|---|---|---|---|---|"]
    for case, title in cases:
        for system, name in SYSTEMS:
            runs = ROUNDS.get((system, case), [])
            if not runs:
                continue

            def each(fmt):
                return " · ".join(fmt(r) if ok(r) else "failed" for r in runs)
            out.append(
                f"| {title} | {name} | {each(lambda r: num(r['ops_per_s']))} | "
                f"{each(lambda r: ms(r['p50_us']) + ' / ' + ms(r['p99_us']))} | "
                f"{each(lambda r: num(r.get('server_cpu_us_per_op', 0), 1))} | "
                f"{each(lambda r: num(r.get('writes_per_fsync', 0), 1))} |")
        ops = round_ratios(case, "ops_per_s", True)
        cpu = round_ratios(case, "server_cpu_us_per_op", False)
        if ops:
            out.append(f"| {title} | Confab ÷ best peer | {' · '.join(ratio(r) for r in ops)} | "
                       f"p99 {' · '.join(ratio(r) for r in round_ratios(case, 'p99_us', False))} "
                       f"| {' · '.join(ratio(r) for r in cpu)} | |")
    return out


def best_peer(rows, case, key, higher_is_better):
    values = [(rows[(p, case)][key], p) for p in PEERS
              if ok(rows.get((p, case))) and rows[(p, case)].get(key) is not None]
    if not values:
        return None
    return max(values) if higher_is_better else min(values)


def closed_loop_tables(rows):
    out = ["### Throughput and latency", "",
           "ops/s in the measured window; latency p50 / p99 / p99.9 in ms, from send to answer. "
           "Ratios: Confab ÷ the best peer on that measure (ops/s: higher is better; p99: lower).",
           "",
           "| workload | " + " | ".join(f"{n} ops/s | {n} latency" for _, n in SYSTEMS) +
           " | Confab ÷ best peer: ops/s | p99 |",
           "|---|" + "---:|---|" * len(SYSTEMS) + "---:|---:|"]
    for case, title, note in CASES:
        cells = []
        for system, _ in SYSTEMS:
            row = rows.get((system, case))
            ops = cell_ops(row)
            if system == "etcd" and case == "create" and ok(row):
                ops += " (lease)" if row.get("etcd_lease") else " (no lease)"
            cells += [ops, cell_latency(row)]
        confab = rows.get(("confab", case))
        r_ops = r_p99 = "—"
        if ok(confab):
            best = best_peer(rows, case, "ops_per_s", True)
            if best and best[0] > 0:
                r_ops = f"{ratio(confab['ops_per_s'] / best[0])} ({best[1]})"
            best = best_peer(rows, case, "p99_us", False)
            if best and best[0] > 0:
                r_p99 = f"{ratio(confab['p99_us'] / best[0])} ({best[1]})"
        out.append(f"| {title} <br><sub>{note}</sub> | " + " | ".join(cells) +
                   f" | {r_ops} | {r_p99} |")
    out += ["", "### Cost", "",
            "Server CPU per operation: utime + stime of all members (from /proc) over the window, "
            "÷ operations. Writes per fsync: the leader's log records (Confab), proposals "
            "(ZooKeeper `mntr`) or committed entries (etcd `/metrics`) ÷ its log fsyncs. "
            "Bench cores: CPU used by confab_bench itself (it shares the 2 cores). "
            "Each cell: Confab / ZooKeeper / etcd.", "",
            "| workload | server CPU µs/op | Confab ÷ best peer | writes per fsync | bench cores |",
            "|---|---:|---:|---:|---:|"]
    for case, title, _ in CASES:
        cpu, batch, bench = [], [], []
        for system, _ in SYSTEMS:
            row = rows.get((system, case))
            cpu.append(num(row["server_cpu_us_per_op"], 1)
                       if ok(row) and "server_cpu_us_per_op" in row else "—")
            batch.append(num(row["writes_per_fsync"], 1)
                         if ok(row) and "writes_per_fsync" in row else "—")
            bench.append(num(row["bench_cpu_cores"], 2) if ok(row) else "—")
        confab = rows.get(("confab", case))
        r_cpu = "—"
        best = best_peer(rows, case, "server_cpu_us_per_op", False)
        if ok(confab) and best and best[0] > 0 and "server_cpu_us_per_op" in confab:
            r_cpu = f"{ratio(confab['server_cpu_us_per_op'] / best[0])} ({best[1]})"
        out.append(f"| {title} | {' / '.join(cpu)} | {r_cpu} | {' / '.join(batch)} | "
                   f"{' / '.join(bench)} |")
    return out


def watch_table(rows):
    out = ["", "### Watch", "",
           "1,000 watchers over 10 sessions on one key, a writer setting it every 20 ms. Latency: "
           "from the write's send time to the notification, in ms. Expected: writes sent in the "
           "window × watchers. Unseen: writes a watcher was never told of (a one-shot watcher "
           "misses the writes between its firing and its re-arming read). ZooKeeper's C client "
           "has one-shot watches only; etcd's watches are persistent streams.", "",
           "| system | watch | p50 / p99 / p99.9 / max ms | delivered / expected | unseen | "
           "duplicated | server CPU µs per notification |",
           "|---|---|---|---:|---:|---:|---:|"]
    for system, name in SYSTEMS:
        for case, kind in (("watch-persistent", "persistent"), ("watch-oneshot", "one-shot")):
            row = rows.get((system, case))
            if row is None:
                continue
            if row.get("failed"):
                out.append(f"| {name} | {kind} | failed: {row.get('error', '')} | | | | |")
                continue
            latency = (f"{ms(row['p50_us'])} / {ms(row['p99_us'])} / {ms(row['p999_us'])} / "
                       f"{ms(row['max_us'])}")
            cpu = num(row["server_cpu_us_per_op"], 1) if "server_cpu_us_per_op" in row else "—"
            out.append(f"| {name} | {kind} | {latency} | {num(row['events_delivered'])} / "
                       f"{num(row['events_expected'])} | {num(row['events_unseen'])} | "
                       f"{num(row['events_duplicated'])} | {cpu} |")
    return out


def memory_table(rows):
    out = ["", "### Memory", "",
           "Resident set size of each member after the nodes were created (256 B each) on a fresh "
           "ensemble, and the growth per node of the member that grew most. ZooKeeper runs with "
           "-Xmx1000m as zkServer.sh does; a JVM's RSS includes heap it has not collected yet.", "",
           "| system | nodes | RSS per member before → after (MiB) | bytes per node | create ops/s |",
           "|---|---:|---|---:|---:|"]
    for system, name in SYSTEMS:
        row = rows.get((system, "memory"))
        if row is None:
            continue
        if row.get("failed"):
            out.append(f"| {name} | failed: {row.get('error', '')} | | | |")
            continue
        members = ", ".join(f"{b:.0f} → {a:.0f}"
                            for b, a in zip(row["rss_before_mib"], row["rss_after_mib"]))
        out.append(f"| {name} | {num(row['nodes'])} | {members} | "
                   f"{num(row['rss_bytes_per_node'])} | {num(row['ops_per_s'])} |")
    return out


def targets(rows, quick):
    def get(system, case):
        row = rows.get((system, case))
        return row if ok(row) else None

    def vs_best(case, key, higher):
        per_round = round_ratios(case, key, higher)
        if per_round:
            return statistics.median(per_round)
        confab = get("confab", case)
        best = best_peer(rows, case, key, higher)
        if confab is None or best is None or best[0] == 0 or key not in confab:
            return None
        return confab[key] / best[0]

    lines = ["", "### Against the targets of issue 8", "",
             "| target | measured | met |", "|---|---|:---:|"]

    def add(target, measured, met):
        mark = "—" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {target} | {measured} | {mark} |")

    for case, floor in (("write", 1.5), ("create", 1.5), ("read-local", 2.0)):
        r_ops, r_p99 = vs_best(case, "ops_per_s", True), vs_best(case, "p99_us", False)
        if r_ops is None:
            add(f"{case}: ≥ {floor}× the best peer's ops/s", "not measured", None)
            continue
        met = r_ops >= floor and (case == "read-local" or r_p99 <= 1.0)
        p99_text = f", p99 {ratio(r_p99)}" if r_p99 is not None else ""
        add(f"{case}: ≥ {floor}× the best peer's ops/s" +
            (" at p99 no worse" if case != "read-local" else ""),
            f"{ratio(r_ops)}{p99_text}", met)
    r_cpu = vs_best("write", "server_cpu_us_per_op", False)
    add("server CPU per write ≤ 1/3 of the best peer's",
        "not measured" if r_cpu is None else ratio(r_cpu),
        None if r_cpu is None else r_cpu <= 1 / 3)
    lone = get("confab", "write-1x1")
    add("single-client write p50 ≤ 0.6 ms",
        "not measured" if lone is None else f"{ms(lone['p50_us'])} ms",
        None if lone is None else lone["p50_us"] <= 600)
    confab_watch = get("confab", "watch-persistent")
    peer_p99 = [r["p99_us"] for r in (get("zookeeper", "watch-oneshot"),
                                      get("etcd", "watch-persistent")) if r]
    if confab_watch is None:
        add("watch p99 below both peers, nothing missed by a persistent watcher", "not measured",
            None)
    else:
        add("watch p99 below both peers, nothing missed by a persistent watcher",
            f"{ms(confab_watch['p99_us'])} ms vs {', '.join(ms(p) + ' ms' for p in peer_p99)}; "
            f"unseen {confab_watch['events_unseen']}",
            bool(peer_p99) and all(confab_watch["p99_us"] < p for p in peer_p99) and
            confab_watch["events_unseen"] == 0)
    memory = get("confab", "memory")
    if memory is None:
        add("member RSS after 100,000 nodes of 256 B ≤ 80 MiB", "not measured", None)
    else:
        full = memory["nodes"] >= 100000
        add("member RSS after 100,000 nodes of 256 B ≤ 80 MiB",
            f"{memory['rss_max_mib']:.0f} MiB after {num(memory['nodes'])} nodes",
            memory["rss_max_mib"] <= 80 if full else None)
    write = get("confab", "write")
    add("≥ 50 writes per fsync on the leader at saturation",
        "not measured" if write is None or "writes_per_fsync" not in write
        else f"{write['writes_per_fsync']:.1f}",
        None if write is None or "writes_per_fsync" not in write
        else write["writes_per_fsync"] >= 50)
    if quick:
        lines.append("")
        lines.append("Quick run: short windows and 20,000 nodes; the memory target is not judged.")
    return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--commands", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--machine", required=True)
    parser.add_argument("--confab-mode", required=True)
    parser.add_argument("--quick", default="0")
    parser.add_argument("--invocation", default="tests/bench/run_matrix.sh")
    parser.add_argument("--versions", default="")
    args = parser.parse_args()
    quick = args.quick == "1"
    rows = load(args.results)
    with open(args.results) as f:
        raw = [line.rstrip("\n") for line in f if line.strip()]
    with open(args.commands) as f:
        commands = [line.rstrip("\n") for line in f if line.strip()]

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = [BEGIN, "",
               f"## Results of {now}" + (" (quick run)" if quick else ""), "",
               f"- Machine: {args.machine}.",
               f"- Versions: {args.versions}.",
               f"- Command: `{args.invocation.strip()}`.",
               "- Every system as 3 members on 127.0.0.1 with fsync on, data on one disk; "
               "8 sessions × 16 requests in flight, 256-byte values; session i on member i % 3."]
    if args.confab_mode == "standalone":
        section.append("- **Confab ran standalone** (one confabd: this build has no `--peers`), "
                       "against 3-member ZooKeeper and etcd: its write numbers carry no "
                       "replication and are not comparable yet.")
    section.append("")
    section += closed_loop_tables(rows)
    section += watch_table(rows)
    section += memory_table(rows)
    section += rounds_table()
    section += targets(rows, quick)
    section += ["", "<details><summary>The confab_bench runs (endpoints and pids elided)</summary>",
                "", "```"] + commands + ["```", "", "</details>", "",
                "<details><summary>Raw results (one JSON line per run)</summary>", "", "```"]
    section += raw + ["```", "", "</details>", "", END]

    text = ""
    if os.path.exists(args.out):
        with open(args.out) as f:
            text = f.read()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + "\n".join(section) + tail
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "# Benchmarks\n\n") + \
            "\n".join(section) + "\n"
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
