#!/usr/bin/env bash
# doors.sh: the four doors of one `chaperone serve --gateway` (Connect JSON
# Check, AuthZEN, Envoy ext_authz and forward-auth) asked the same
# request-phase requests (the built-in scenario gateway), interleaved in
# rounds, with the server's CPU per answered request: its utime+stime
# (/proc/PID/stat) over each run divided by the requests answered.
#
# Environment: DURATION (10s), WARMUP (2s, a discarded run before the
# rounds), CONCURRENCY (4), ROUNDS (3), DISTINCT_IDS=1, PROTOCOLS ("json
# authzen ext-authz forward"), SKIP_BUILD=1, PORT (18790), SERVE_ARGS
# (added to chaperone serve). Prints one line per run and the ratio of
# each door to Connect JSON in each round.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-4}
ROUNDS=${ROUNDS:-3}
PROTOCOLS=${PROTOCOLS:-json authzen ext-authz forward}
ADDR=127.0.0.1:${PORT:-18790}
TMP=$(mktemp -d)
pid=
cleanup() {
	if [[ -n $pid ]]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${SKIP_BUILD:-} ]]; then
	mkdir -p bin
	go build -o bin/chaperone ./cmd/chaperone
fi
bin/chaperone bench --write-gateway "$TMP/gw" >/dev/null
# shellcheck disable=SC2086
bin/chaperone serve --addr "$ADDR" --gateway "$TMP/gw/gateway.yaml" --audit-file "$TMP/audit.jsonl" ${SERVE_ARGS:-} 2>"$TMP/serve.log" &
pid=$!
for _ in $(seq 100); do
	curl -fsS -o /dev/null "http://$ADDR/healthz" 2>/dev/null && break
	sleep 0.1
done

ticks() { # utime+stime of the server in clock ticks
	awk '{ sub(/.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$pid/stat"
}
hz=$(getconf CLK_TCK)
bench() { # PROTOCOL DURATION
	bin/chaperone bench --addr "$ADDR" --scenario gateway --protocol "$1" --duration "$2" \
		--concurrency "$CONCURRENCY" --quiet --format json ${DISTINCT_IDS:+--distinct-ids} \
		--gateway "$TMP/gw/gateway.yaml" --gateway-key "$TMP/gw/end-user-key.json"
}

for p in $PROTOCOLS; do bench "$p" "$WARMUP" >/dev/null; done
echo "# doors.sh $(date -u +%FT%TZ): $(nproc) CPUs, $DURATION per run, concurrency $CONCURRENCY, ${DISTINCT_IDS:+distinct resource ids, }load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-10s %10s %12s %10s %s\n' round protocol checks/s server-µs/req ratio decisions
for r in $(seq "$ROUNDS"); do
	base=
	for p in $PROTOCOLS; do
		before=$(ticks)
		out=$(bench "$p" "$DURATION")
		after=$(ticks)
		read -r n errs tput dec < <(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print(r["requests"], r["errors"], round(r["throughput"]), ",".join(f"{k}:{v}" for k, v in sorted(r["decisions"].items())))' "$out")
		us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$n" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
		[[ -z $base ]] && base=$us
		ratio=$(awk -v a="$us" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
		printf '%-6s %-10s %10s %12s %10s %s%s\n' "$r" "$p" "$tput" "$us" "$ratio" "$dec" "$([[ $errs != 0 ]] && echo " ERRORS $errs")"
	done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
