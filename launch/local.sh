#!/usr/bin/env bash
# A small subnet on this machine: a local chain, a DHT bootstrap peer, 2 honest miners and a
# validator, each its own process on 127.0.0.1, for 3 rounds of the tiny-gpt recipe (~1 min on a laptop).
#
#   launch/local.sh                              # the defaults below
#   MINERS=4 ROUNDS=10 launch/local.sh           # a bigger one
#   launch/local.sh --inner.steps 12             # extra arguments are recipe overrides
#
# Results: $OUT/summary.json, $OUT/loss.png, and one folder of logs per peer.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"  # the recipe path and the default output folder are relative to the repository

MINERS="${MINERS:-2}"
FREERIDERS="${FREERIDERS:-0}"  # miners that publish a zero delta, to watch validators refuse to pay them
ROUNDS="${ROUNDS:-3}"
OUT="${OUT:-runs/local}"

# hivemind is chatty at INFO; wandb must never try to log in from a demo.
export HIVEMIND_LOGLEVEL="${HIVEMIND_LOGLEVEL:-ERROR}"
export WANDB_MODE="${WANDB_MODE:-offline}"

# The console script when the package is installed, else the module from this checkout.
if command -v distrain >/dev/null 2>&1; then
  distrain=(distrain)
else
  distrain=(python3 -m distrain)
fi

"${distrain[@]}" swarm \
  --recipe recipes/tiny-gpt/swarm.yaml \
  --miners "$MINERS" \
  --validators 1 \
  --freeriders "$FREERIDERS" \
  --rounds "$ROUNDS" \
  --out "$OUT" \
  "$@"

echo "summary: $OUT/summary.json   plot: $OUT/loss.png   logs: $OUT/<peer>/log.txt"
