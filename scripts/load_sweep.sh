#!/usr/bin/env bash
# Runs the load harness (examples/load.rs) over a range of call counts, one run at a time on a
# quiet host, saves every report with the machine it ran on, and plots them
# (examples/load_plot.rs).
#
#   scripts/load_sweep.sh                 # Opus N = 1 50 100 150 200, G.711 N = 250 500 1000 1500, 20 s each
#   scripts/load_sweep.sh --seconds 30 --opus "50 150" --pcmu ""
#   scripts/load_sweep.sh --long          # only the 10-minute RSS run: 150 Opus calls for 600 s
#   scripts/load_sweep.sh --dry-run       # print what would run
#
# Before each run it waits until the whole host has been under --quiet-busy percent busy
# (all CPUs, from /proc/stat) for --quiet-seconds in a row, at most --quiet-timeout seconds;
# a run started on a host that never became quiet is marked so in the manifest. Reports go to
# --results (benches/results) as <codec>-<N>calls-<S>s.json (the harness's JSON: the command
# line, nproc, CPU model and the load average before and after are inside), and
# sweep-manifest.txt there records the commit, toolchain, kernel, CPU and memory, and each run's
# exit status and wait. Exit status 1 of the harness (deadline misses) is a result; any other
# failure leaves <name>.failed.log instead of a report. Charts go to --plots (benches/plots).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=20
opus_calls="1 50 100 150 200"
pcmu_calls="250 500 1000 1500"
results=benches/results
plots=benches/plots
quiet_busy=12
tag=
quiet_seconds=5
quiet_timeout=900
dry_run=false
plot=true
floor_frames=
extra=()

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  cat <<EOF

Options:
  --seconds S          length of every run (default $seconds)
  --opus "N ..."       Opus call counts, "" for none (default "$opus_calls")
  --pcmu "N ..."       G.711 u-law call counts, "" for none (default "$pcmu_calls")
  --long               only the 10-minute RSS run (150 Opus calls, 600 s, codec floor
                       measured on 500000 frames per direction and scaled up); with --opus N
                       and --seconds S given after it, that run instead
  --tag T              append -T to every report's name (e.g. a run with other harness
                       options next to the default one)
  --floor-frames N     measure the codec floor on at most N frames per direction (the
                       harness's --floor-frames; default: all frames)
  --results DIR        where reports go (default $results)
  --plots DIR          where charts go (default $plots)
  --quiet-busy PCT     host busy share that counts as quiet (default $quiet_busy)
  --quiet-seconds S    quiet seconds in a row before a run (default $quiet_seconds)
  --quiet-timeout S    longest wait for a quiet host (default $quiet_timeout)
  --no-plot            do not run the plot tool
  --dry-run            print the runs, run nothing
  -- ARGS              more harness options for every run (e.g. -- --threads 2)
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --opus) opus_calls=$2; shift 2 ;;
    --pcmu) pcmu_calls=$2; shift 2 ;;
    --long) seconds=600; opus_calls=150; pcmu_calls=""; floor_frames=500000; shift ;;
    --floor-frames) floor_frames=$2; shift 2 ;;
    --results) results=$2; shift 2 ;;
    --tag) tag=-$2; shift 2 ;;
    --plots) plots=$2; shift 2 ;;
    --quiet-busy) quiet_busy=$2; shift 2 ;;
    --quiet-seconds) quiet_seconds=$2; shift 2 ;;
    --quiet-timeout) quiet_timeout=$2; shift 2 ;;
    --no-plot) plot=false; shift ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "load_sweep: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# The busy share of all CPUs (percent) over the next second, from /proc/stat's first line:
# user nice system idle iowait irq softirq steal.
busy_pct() {
  local _c u n s i w q sq st rest b1 t1
  read -r _c u n s i w q sq st rest < /proc/stat
  b1=$((u + n + s + q + sq + st)); t1=$((b1 + i + w))
  sleep 1
  read -r _c u n s i w q sq st rest < /proc/stat
  local b2=$((u + n + s + q + sq + st))
  local t2=$((b2 + i + w))
  echo $(( (100 * (b2 - b1)) / ((t2 - t1) > 0 ? (t2 - t1) : 1) ))
}

# Waits for quiet_seconds in a row under quiet_busy percent; prints the seconds waited and
# returns 1 when quiet_timeout passed first.
wait_quiet() {
  local quiet=0 waited=0 b
  while [ "$quiet" -lt "$quiet_seconds" ]; do
    b=$(busy_pct)
    waited=$((waited + 1))
    if [ "$b" -lt "$quiet_busy" ]; then quiet=$((quiet + 1)); else quiet=0; fi
    if [ "$waited" -ge "$quiet_timeout" ]; then
      echo "$waited"
      return 1
    fi
  done
  echo "$waited"
}

if [ -n "$floor_frames" ]; then
  extra=(--floor-frames "$floor_frames" "${extra[@]}")
fi

runs=()
for n in $opus_calls; do runs+=("opus $n"); done
for n in $pcmu_calls; do runs+=("pcmu $n"); done
if [ ${#runs[@]} -eq 0 ]; then
  echo "load_sweep: no runs asked for" >&2
  exit 2
fi

if $dry_run; then
  for r in "${runs[@]}"; do
    set -- $r
    echo "cargo run --release --example load -- --calls $2 --seconds $seconds --codec $1${extra[*]:+ ${extra[*]}} > $results/$1-$2calls-${seconds}s$tag.json"
  done
  $plot && echo "cargo run --release --example load_plot -- $results --out $plots"
  exit 0
fi

# The system packages the build needs (libopus, cmake, ...), as on a fresh machine.
scripts/setup.sh
cargo build --release --example load --example load_plot
load=target/release/examples/load
mkdir -p "$results"
# Two sockets per call, plus the runtime's own descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

manifest=$results/sweep-manifest.txt
{
  echo "# load sweep $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)')"
  echo "rustc: $(rustc -V)"
  echo "kernel: $(uname -srm)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc)"
  echo "memory: $(grep MemTotal /proc/meminfo | awk '{print $2}') KiB"
  echo "open files limit: $(ulimit -n)"
  echo "quiet: under ${quiet_busy} % busy for ${quiet_seconds} s, waiting at most ${quiet_timeout} s"
  echo "# codec calls seconds exit waited_s quiet loadavg_1m_before report"
} >> "$manifest"

for r in "${runs[@]}"; do
  set -- $r
  codec=$1 n=$2
  name=$codec-${n}calls-${seconds}s$tag
  echo "load_sweep: $name: waiting for a quiet host…" >&2
  quiet=yes
  waited=$(wait_quiet) || quiet=no
  [ "$quiet" = yes ] || echo "load_sweep: $name: host still busy after ${waited} s, running anyway" >&2
  loadavg=$(cut -d' ' -f1 /proc/loadavg)
  echo "load_sweep: $name: running (load average $loadavg)" >&2
  status=0
  "$load" --calls "$n" --seconds "$seconds" --codec "$codec" "${extra[@]}" \
    > "$results/$name.json.tmp" 2> "$results/$name.log.tmp" || status=$?
  if [ "$status" -le 1 ] && [ -s "$results/$name.json.tmp" ]; then
    mv "$results/$name.json.tmp" "$results/$name.json"
    rm -f "$results/$name.log.tmp" "$results/$name.failed.log"
    report=$name.json
  else
    mv "$results/$name.log.tmp" "$results/$name.failed.log"
    rm -f "$results/$name.json.tmp"
    report="- (see $name.failed.log)"
    echo "load_sweep: $name: the harness failed (exit $status)" >&2
  fi
  echo "$codec $n $seconds $status $waited $quiet $loadavg $report" >> "$manifest"
done

if $plot; then
  target/release/examples/load_plot "$results" --out "$plots"
fi
