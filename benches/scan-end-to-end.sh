#!/usr/bin/env bash
# End-to-end `vigil scan` (the release binary) on a generated audit log: events/s and peak RSS, with the default rule
# and with the 35 example rules. The log goes to $TMPDIR (default /tmp), never into the repository.
#
#   benches/scan-end-to-end.sh [SIZE_MIB]     # default 1024: memory must stay flat while streaming 1 GiB
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
log=${TMPDIR:-/tmp}/vigil-audit-${size_mib}mib.log
target=${CARGO_TARGET_DIR:-target}

cargo build --release --quiet --bin vigil
if [ ! -f "$log" ]; then
  cargo bench --quiet --bench scan_throughput -- --write-log "$log" --mib "$size_mib"
fi
events=$(wc -l < "$log")
timing=$(mktemp)
trap 'rm -f "$timing"' EXIT
for rules in default examples/rules; do
  if [ "$rules" = default ]; then args=(); else args=(--rules "$rules"); fi
  /usr/bin/time -f "%e %M" -o "$timing" "$target/release/vigil" scan "${args[@]}" "$log" > /dev/null 2> /dev/null
  read -r seconds max_rss_kib < "$timing"
  awk -v rules="$rules" -v events="$events" -v s="$seconds" -v rss="$max_rss_kib" 'BEGIN {
    printf "%-15s %d events in %.2f s: %.0f events/s, max RSS %.1f MiB\n", rules, events, s, events / s, rss / 1024 }'
done
