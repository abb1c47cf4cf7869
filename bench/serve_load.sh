#!/usr/bin/env bash
# Load test of `attncache serve` (bench/serve_load.py): installs wrk and fortunes (Debian) and the
# openai package (PyPI, in bench/.venv-openai) when missing, builds, then runs the exact path and
# AttnCache at 1, 8 and 64 clients, the openai compatibility check and an overload soak.
# Results: bench/results/serve/load.json and the table in docs/serving.md.
#   bench/serve_load.sh [--duration 10] [--soak 30]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[[ -d /usr/share/games/fortunes ]] || missing+=(fortunes fortunes-min)  # the workload's texts
if ((${#missing[@]})); then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
fi
if [[ ! -x "$root/bench/.venv-openai/bin/python" ]]; then
  python3 -m venv "$root/bench/.venv-openai"
  "$root/bench/.venv-openai/bin/pip" install -q "openai==3.57.0"
fi
cmake --build "$root/build" -j2 --target attncache >/dev/null
exec python3 "$root/bench/serve_load.py" "$@"
