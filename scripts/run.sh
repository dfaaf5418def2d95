#!/usr/bin/env bash
# Set up this machine and run the sensor with the bundled rules: alerts on the terminal (text) and in
# ./falconet-alerts.jsonl (one JSON alert per line). Extra arguments go to the sensor, as Falco's
# flags do (`scripts/run.sh -M 60`, `scripts/run.sh -o json_output=true`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  # eBPF capture, apt and tracefs need root; as another user the venv's files are not even readable.
  echo "scripts/run.sh: the sensor needs root (eBPF capture); run it as root: sudo scripts/run.sh $*" >&2
  exit 4
fi
scripts/setup.sh
exec .venv/bin/falconet run \
  -o file_output.enabled=true -o file_output.format=json \
  -o file_output.filename="$PWD/falconet-alerts.jsonl" "$@"
