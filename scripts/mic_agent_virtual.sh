#!/usr/bin/env bash
# Runs examples/mic_agent against a virtual sound card, for machines without one (servers, CI):
# a private PulseAudio with two null sinks, "caller_line" (its monitor is the agent's
# microphone) and "agent_speaker" (the agent's speaker, recorded). The caller WAVs are played
# into the line after the greeting, so the agent hears them through cpal → ALSA → PulseAudio
# exactly as it would hear a microphone. Checks that the call ends by the agent's end_call
# after a booking, and that the speaker got audio.
#
#   scripts/mic_agent_virtual.sh [OUT_DIR]      (default: out/mic_agent_virtual)
#
# Installs pulseaudio, pulseaudio-utils, libasound2-plugins and libasound2-dev via apt-get when
# missing (as root). Takes about a minute after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/mic_agent_virtual}
mkdir -p "$out"
out=$(cd "$out" && pwd)

need=()
for pkg in pulseaudio pulseaudio-utils libasound2-plugins libasound2-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "mic_agent_virtual: install ${need[*]} (needs root)" >&2
    exit 2
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

cargo build --release --features mic --example mic_agent

# A private PulseAudio: its own runtime folder, nothing shared with a desktop session.
runtime=$(mktemp -d)
export XDG_RUNTIME_DIR="$runtime" HOME="$runtime" PULSE_RUNTIME_PATH="$runtime/pulse"
cleanup() {
  pulseaudio --kill >/dev/null 2>&1 || true
  [ -n "${recorder:-}" ] && kill "$recorder" >/dev/null 2>&1 || true
  rm -rf "$runtime"
}
trap cleanup EXIT
pulseaudio --daemonize=yes --exit-idle-time=-1 -n \
  --load="module-native-protocol-unix" \
  --load="module-null-sink sink_name=agent_speaker" \
  --load="module-null-sink sink_name=caller_line" 2>/dev/null
for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done

export PULSE_SOURCE=caller_line.monitor PULSE_SINK=agent_speaker
./target/release/examples/mic_agent --input default --output default --max-seconds 45 \
  --out "$out" >"$out/transcript.txt" 2>"$out/stderr.txt" &
agent=$!
parecord --device=agent_speaker.monitor --file-format=wav "$out/speaker.wav" &
recorder=$!

# The caller: waits for the end of the greeting (the transcript prints an agent line when it
# was said), asks, then talks over the answer 1.5 s after the tool's hold message.
wait_for() {
  for _ in $(seq 300); do grep -qE "$1" "$out/transcript.txt" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
wait_for 's  agent   [A-Z]' || true
sleep 0.6
paplay --device=caller_line assets/caller.wav
wait_for 's  agent   One moment' || true
sleep 1.5
paplay --device=caller_line assets/caller_followup.wav

status=0
wait "$agent" || status=$?
kill "$recorder" 2>/dev/null || true
wait "$recorder" 2>/dev/null || true
cat "$out/transcript.txt"

fail() { echo "mic_agent_virtual: FAILED: $*" >&2; exit 1; }
[ "$status" = 0 ] || fail "mic_agent exited with $status (see $out/stderr.txt)"
grep -q "tool    book_appointment(" "$out/transcript.txt" || fail "no booking"
grep -q "call ended (assistant_ended)" "$out/transcript.txt" || fail "the agent did not end the call"
grep -q "(barge-in: " "$out/transcript.txt" || fail "no barge-in"
level=$(ffmpeg -hide_banner -i "$out/speaker.wav" -af volumedetect -f null - 2>&1 |
  sed -n 's/.*max_volume: \(-*[0-9.]*\) dB/\1/p')
awk -v l="$level" 'BEGIN { exit !(l > -20) }' || fail "the speaker got no voice (max ${level} dB)"
echo "mic_agent_virtual: ok — booked, ended by the agent, speaker peak ${level} dB; files in $out"
