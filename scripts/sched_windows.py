#!/usr/bin/env python3
"""Where the CPUs went during a load run, from a system-wide `sched_switch` trace.

    perf record -a -k CLOCK_MONOTONIC -e sched:sched_switch -o sw.data -- \\
        target/release/examples/load --calls 200 --codec opus > report.json
    perf script -i sw.data -F cpu,time,trace > sw.txt
    scripts/sched_windows.py sw.txt                  # the engine threads are named vx-engine
    scripts/sched_windows.py sw.txt --thread vx-engine --window-ms 50 --max-idle 10

Prints, with times in seconds from the first event of the trace:
- every time a thread of --thread waited longer than --wait-ms to run again after it was
  preempted (switched out runnable): the scheduler kept it from a CPU;
- every time such a thread slept (switched out waiting) longer than --sleep-ms: nothing woke it;
- every --window-ms window in which the CPUs were idle less than --max-idle percent of the time,
  with the five commands that used the most CPU time in it (milliseconds summed over CPUs).
A burst of late frames with no long wait or sleep and the CPUs saturated is a burst of work the
machine could not keep up with (load), not a thread held off the CPU.
"""

import argparse
import collections
import re
import sys

SWITCH = re.compile(
    r"\[(\d+)\]\s+([\d.]+):\s+prev_comm=(.*?) prev_pid=(\d+) prev_prio=\d+ "
    r"prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+) next_prio=\d+"
)


def parse(path):
    """(time, cpu, prev_comm, prev_pid, prev_state, next_comm, next_pid) per switch."""
    events = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = SWITCH.search(line)
            if m:
                events.append(
                    (
                        float(m.group(2)),
                        int(m.group(1)),
                        m.group(3),
                        int(m.group(4)),
                        m.group(5),
                        m.group(6),
                        int(m.group(7)),
                    )
                )
    events.sort(key=lambda e: e[0])
    return events


def analyse(events, thread, wait_s, sleep_s, window_s, max_idle):
    if not events:
        print("no sched_switch events", file=sys.stderr)
        return 1
    t0 = events[0][0]
    preempted = {}
    slept = {}
    running = {}
    waits = []
    sleeps = []
    use = collections.defaultdict(collections.Counter)
    cpus = set()

    def account(start, end, comm):
        name = "idle" if comm.startswith("swapper/") else comm
        at = start
        while at < end:
            k = int((at - t0) / window_s)
            stop = min(end, t0 + (k + 1) * window_s)
            if stop <= at:  # rounding at a window edge: move on to the next window
                stop = min(end, at + 1e-9)
            use[k][name] += stop - at
            at = stop

    for t, cpu, prev, prev_pid, state, nxt, next_pid in events:
        cpus.add(cpu)
        if cpu in running:
            start, comm = running[cpu]
            account(start, t, comm)
        running[cpu] = (t, nxt)
        if prev == thread:
            (preempted if state.startswith("R") else slept)[prev_pid] = (t, state)
        if nxt == thread:
            if next_pid in preempted:
                at, _ = preempted.pop(next_pid)
                if t - at > wait_s:
                    waits.append((at - t0, (t - at) * 1e3, next_pid))
            if next_pid in slept:
                at, state = slept.pop(next_pid)
                if t - at > sleep_s:
                    sleeps.append((at - t0, (t - at) * 1e3, next_pid, state))

    print(f"{thread}: waits after preemption over {wait_s * 1e3:g} ms: {len(waits)}")
    for at, ms, pid in waits:
        print(f"  {at:9.3f} s  {ms:7.2f} ms  tid {pid}")
    print(f"{thread}: sleeps over {sleep_s * 1e3:g} ms: {len(sleeps)}")
    for at, ms, pid, state in sleeps:
        print(f"  {at:9.3f} s  {ms:7.2f} ms  tid {pid} ({state})")
    capacity = len(cpus) * window_s
    busy = [k for k in sorted(use) if use[k]["idle"] < capacity * max_idle / 100]
    print(
        f"{window_s * 1e3:g} ms windows with the {len(cpus)} CPUs idle under {max_idle:g} %: "
        f"{len(busy)}"
    )
    for k in busy:
        top = ", ".join(f"{c} {v * 1e3:.1f}" for c, v in use[k].most_common(5))
        print(f"  {k * window_s:9.3f} s  {top}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace", help="`perf script -F cpu,time,trace` output of sched_switch")
    ap.add_argument("--thread", default="vx-engine", help="command name of the threads to follow")
    ap.add_argument("--wait-ms", type=float, default=4.0)
    ap.add_argument("--sleep-ms", type=float, default=5.0)
    ap.add_argument("--window-ms", type=float, default=50.0)
    ap.add_argument("--max-idle", type=float, default=10.0, help="percent of the CPUs' time")
    a = ap.parse_args()
    return analyse(
        parse(a.trace),
        a.thread,
        a.wait_ms / 1e3,
        a.sleep_ms / 1e3,
        a.window_ms / 1e3,
        a.max_idle,
    )


if __name__ == "__main__":
    sys.exit(main())
