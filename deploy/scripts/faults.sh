#!/usr/bin/env bash
# The fault suite (make faults): internal/e2e/faults_test.go, build tag
# "faults". Runs as root (network namespaces, a tmpfs, a private PostgreSQL
# cluster as the postgres user); needs Mosquitto, PostgreSQL on
# 127.0.0.1:5432 for the replica case (deploy/scripts/postgres.sh) and the
# test footage. Prints one "FAULT PASS|FAIL <case>" line per case, then the
# summary table; the whole go test output is kept in a temporary file whose
# name is printed on failure.
#
# Environment:
#   XL_FAULT_PARTITION   how long the agent's link is cut (default 10m)
#   XL_FAULT_FLAP        how long the camera flaps (default 60s)
#   FAULTS_RUN           a -run pattern below TestFaults, e.g.
#                        'TestFaults/group/serial/broker_restart'
#   FAULTS_TIMEOUT       go test timeout (default 30m)
#   XL_BIN_DIR           built binaries (make faults sets it)
set -euo pipefail

cd "$(dirname "$0")/../.."

GO=${GO:-go}
case ":$PATH:" in
	*:/usr/local/go/bin:*) ;;
	*) [[ -d /usr/local/go/bin ]] && PATH="/usr/local/go/bin:$PATH" ;;
esac

if [[ $(id -u) -ne 0 ]]; then
	echo "faults: run as root (network namespaces, tmpfs, a private PostgreSQL)" >&2
	exit 1
fi

export XL_FAULT_PARTITION=${XL_FAULT_PARTITION:-10m}
log=$(mktemp -t xl-faults.XXXXXX.log)
echo "== fault suite: partition ${XL_FAULT_PARTITION}, camera flapping ${XL_FAULT_FLAP:-60s}; log in $log"
start=$SECONDS
rc=0
"$GO" test -tags faults -count=1 -v -timeout "${FAULTS_TIMEOUT:-30m}" -run "${FAULTS_RUN:-TestFaults}" ./internal/e2e >"$log" 2>&1 || rc=$?

grep -E '^FAULT (PASS|FAIL) ' "$log" || true
echo
grep -E '^\|' "$log" || true
took=$((SECONDS - start))
if ((rc != 0)); then
	echo
	echo "== faults: FAIL after $((took / 60))m$((took % 60))s; failures:"
	grep -E -- '--- FAIL|faults_test.go:[0-9]+:|panic:' "$log" | head -40 || true
	echo "(the whole output: $log)"
	exit "$rc"
fi
rm -f "$log"
printf '== faults: OK, %dm%02ds\n' $((took / 60)) $((took % 60))
