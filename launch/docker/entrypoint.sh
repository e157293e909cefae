#!/usr/bin/env bash
# Entry point of the distrain image.
#
# `distrain dht ...` runs the bootstrap peer and publishes its multiaddr in $BOOTSTRAP_DIR/maddrs.
# Any other command (a miner, a validator) waits for that file and runs with `--initial-peers`
# pointing at the bootstrap peer through the compose network: the file names the peer's id, and
# its address is looked up from the service name, because the peer listens on 0.0.0.0, which other
# containers cannot dial.
set -euo pipefail

bootstrap_dir="${BOOTSTRAP_DIR:-/bootstrap}"
dht_host="${DHT_HOST:-dht}"      # compose service name of the bootstrap peer
dht_port="${DHT_PORT:-31337}"

if [[ "${1:-}" == distrain && "${2:-}" == dht ]]; then
  rm -f "$bootstrap_dir/maddrs"  # a file from the last start names a peer id that no longer exists
  exec "$@" --maddrs-file "$bootstrap_dir/maddrs"
fi

if [[ -n "${INITIAL_PEERS:-}" ]]; then  # joining a DHT elsewhere: no bootstrap service to wait for
  # shellcheck disable=SC2086  # several multiaddrs, space-separated
  exec "$@" --initial-peers $INITIAL_PEERS
fi

for _ in $(seq 120); do
  [[ -s "$bootstrap_dir/maddrs" ]] && break
  sleep 1
done
[[ -s "$bootstrap_dir/maddrs" ]] || { echo "no DHT bootstrap peer in $bootstrap_dir/maddrs after 120 s" >&2; exit 1; }

# First match only, without `| head`, which under pipefail can fail the script by closing the pipe early.
peer_id="$(grep -o -m 1 '/p2p/[^/]*$' "$bootstrap_dir/maddrs")"
dht_ip="$(getent hosts "$dht_host" | awk 'NR == 1 { print $1 }')"
[[ -n "$peer_id" && -n "$dht_ip" ]] || { echo "cannot build the bootstrap multiaddr (peer '$peer_id', host '$dht_ip')" >&2; exit 1; }

exec "$@" --initial-peers "/ip4/$dht_ip/tcp/$dht_port$peer_id"
