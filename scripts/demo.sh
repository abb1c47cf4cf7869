#!/usr/bin/env bash
# Sets everything up, then embeds a few real sentences with all-MiniLM-L6-v2 and prints their
# cosine-similarity table.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
echo
"$root/build/attncache" similarity --model all-MiniLM-L6-v2 --input "$root/docs/demo-sentences.txt"
