#!/usr/bin/env bash
# Set up this machine and run the sensor with the bundled rules: alerts on the terminal (text) and in
# ./falconet-alerts.jsonl (one JSON alert per line). Extra arguments go to `falconet run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/falconet run \
  -o file_output.enabled=true -o file_output.format=json \
  -o file_output.filename="$PWD/falconet-alerts.jsonl" "$@"
