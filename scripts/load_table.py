#!/usr/bin/env python3
"""Markdown table rows for BENCHMARKS.md from load-harness reports (examples/load.rs JSON).

    scripts/load_table.py                          # benches/results/*.json, the sweep's order
    scripts/load_table.py benches/results/repeats/*-repeat1.json

One row per report, sorted by codec (Opus first) and call count: the columns of the "By number
of calls" table, plus the late frames due inside a stall of the harness's probes and the probes'
stalls (count, worst) with their priority. Reports of `--scaling` runs are skipped.
"""

import glob
import json
import sys

HEADER = (
    "| calls | codec | s | deadline misses | in vCPU stalls (stalls, worst ms) "
    "| pacing p50 / p99 / max (ms) | engine CPU per call-s | codec floor per call-s | ratio "
    "| RSS per call (KiB) | jitter buffer p50 (ms) | v2v engine share p50 / p99 (ms) "
    "| stand-in timer excess (ms) | barge-in after decision p50 / p99 (ms) "
    "| load avg before → after |"
)
ALIGN = "|---:|---|---:|---:|---|---|---:|---:|---:|---:|---:|---|---:|---|---|"


def ms(seconds):
    """CPU seconds per call-second as milliseconds, two decimals."""
    return f"{seconds * 1000:.2f} ms"


def misses(report):
    """Late frames, with their share of all 20 ms slots when there are any."""
    n = report["deadline_misses"]
    if n == 0:
        return "0"
    # A share of the 20 ms slots the calls had (silent ones included), as the harness counts.
    slots = max(report["calls"] * report["seconds"] * 50, 1)
    return f"{n} ({100 * n / slots:.2g} %)"


def stalls(report):
    """Late frames inside probe stalls; the stalls' count and worst; the probes' priority."""
    if not report.get("stall_probe"):
        return "no probe"
    found = report.get("host_stalls") or []
    inside = report.get("late_ticks_in_host_stalls")
    inside = "—" if report["deadline_misses"] == 0 or inside is None else str(inside)
    worst = f", {report['host_stall_max_ms']:.1f}" if found else ""
    priority = report.get("stall_probe_priority") or "normal"
    return f"{inside} ({len(found)}{worst}; {priority})"


def row(report):
    split = report["latency_split_ms"]
    machine = report["machine"]
    ratio = report.get("engine_to_floor_ratio")
    cells = [
        str(report["calls"]),
        report["codec"],
        str(report["seconds"]),
        misses(report),
        stalls(report),
        f"{report['pacing_jitter_ms_p50']} / {report['pacing_jitter_ms_p99']} / "
        f"{report['pacing_jitter_ms_max']}",
        ms(report["cpu_per_call_second"]),
        ms(report["codec_floor_cpu_per_call_second"]),
        "—" if ratio is None else str(ratio),
        str(report["rss_per_call_kib"]),
        str(report["jitter_buffer_delay_ms_p50"]),
        f"{report['v2v_engine_ms_p50']} / {report['v2v_engine_ms_p99']}",
        str(split.get("stand_in_timer_excess")),
        f"{report['barge_in_after_decision_ms_p50']} / "
        f"{report['barge_in_after_decision_ms_p99']}",
        f"{machine.get('load_average_1m_before')} → {machine.get('load_average_1m_after')}",
    ]
    return "| " + " | ".join(cells) + " |"


def main(paths):
    if not paths:
        paths = sorted(glob.glob("benches/results/*.json"))
    reports = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
        # `--scaling` reports hold one result per thread count: not a row.
        if not isinstance(report.get("deadline_misses"), int):
            continue
        reports.append(report)
    reports.sort(key=lambda r: (r["codec"] != "opus", r["calls"]))
    print(HEADER)
    print(ALIGN)
    for report in reports:
        print(row(report))


if __name__ == "__main__":
    main(sys.argv[1:])
