#!/usr/bin/env bash
# matrix_smoke_test.sh BUILD_DIR — ctest's check that the benchmark matrix runs end to end against a
# real 3-member Confab ensemble: run_matrix.sh --smoke (every workload for half a second, 2,000
# nodes for memory) writes its report to a temporary file, and every run must have produced a
# result with no errors, a watcher that missed nothing, and the targets table. ZooKeeper and etcd
# are not needed (the full matrix runs them). Only the processes run_matrix.sh starts are stopped.
set -euo pipefail
build_dir=$(cd "$1" && pwd)
cd "$(dirname "$0")/../.."
work=$(mktemp -d "${TMPDIR:-/tmp}/confab-matrix-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
tests/bench/run_matrix.sh --smoke --systems=confab --no-build --build-dir="$build_dir" \
  --work-dir="$work" --out="$work/report.md"
/usr/bin/python3 - "$work/report.md" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
for heading in ("## Results of", "### Throughput and latency", "### Cost", "### Watch",
                "### Memory", "### Rounds", "### Against the targets of issue 8"):
    assert heading in text, f"the report has no {heading!r}"
runs = [json.loads(line) for line in text.splitlines() if line.startswith('{"')]
cases = {run["case"]: run for run in runs}
expected = {"write", "write-1x1", "read-local", "read-linearizable", "create", "mixed",
            "watch-persistent", "watch-oneshot", "memory"}
assert set(cases) == expected, f"cases run: {sorted(cases)}, expected {sorted(expected)}"
for case, run in cases.items():
    assert not run.get("failed"), f"{case} failed: {run.get('error')}"
    assert run["system"] == "confab" and run["members"] == 3, f"{case}: {run}"
    assert run.get("errors", 0) == 0, f"{case}: {run['errors']} errors"
    if case == "memory":
        assert run["nodes"] == 2000 and run["rss_max_mib"] > 0, run
    else:
        assert run["ops_per_s"] > 0 and run["p50_us"] > 0, f"{case}: {run}"
    if case.startswith("watch"):
        assert run["events_unseen"] == 0 and run["events_duplicated"] == 0, f"{case}: {run}"
assert cases["write"]["writes_per_fsync"] >= 1, cases["write"]
print(f"matrix smoke: {len(cases)} workloads ran against 3 members, report complete")
PY
