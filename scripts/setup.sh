#!/usr/bin/env bash
# Installs the system packages voxline's build, examples and tests need, when missing.
# Debian/Ubuntu: apt-get as root (or via sudo). Elsewhere: prints what to install and fails.
set -euo pipefail

# package -> a file or command that proves it is installed
declare -A need=(
  [pkg-config]="cmd:pkg-config"
  [libopus-dev]="pc:opus"
  [cmake]="cmd:cmake"
  [ffmpeg]="cmd:ffmpeg"
  [espeak-ng]="cmd:espeak-ng"
  # Offline providers (voxline-providers features `espeak`, `pocketsphinx`).
  [libespeak-ng-dev]="pc:espeak-ng"
  [libpocketsphinx-dev]="pc:pocketsphinx"
  [libsphinxbase-dev]="pc:sphinxbase"
  [pocketsphinx-en-us]="file:/usr/share/pocketsphinx/model/en-us/en-us/mdef"
)

missing=()
for pkg in "${!need[@]}"; do
  probe=${need[$pkg]}
  case "$probe" in
    cmd:*) command -v "${probe#cmd:}" >/dev/null 2>&1 || missing+=("$pkg") ;;
    pc:*) { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "${probe#pc:}"; } || missing+=("$pkg") ;;
    file:*) [ -e "${probe#file:}" ] || missing+=("$pkg") ;;
  esac
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "voxline setup: installing missing system packages: ${missing[*]}" >&2
if ! command -v apt-get >/dev/null 2>&1; then
  echo "voxline setup: no apt-get here; install these packages yourself: ${missing[*]}" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "voxline setup: need root to run: apt-get install -y ${missing[*]}" >&2
  echo "voxline setup: run this script as root, or install the packages and re-run." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "voxline setup: installed ${missing[*]}" >&2
