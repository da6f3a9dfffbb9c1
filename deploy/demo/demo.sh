#!/usr/bin/env bash
# One-command demo on one machine: a simulated RTSP camera (xl-camsim), the
# command centre with its embedded MQTT broker (xl-central) and an edge agent
# (xl-agent) analysing the camera and publishing alerts to the centre.
#
#   make demo                        (builds first, then runs this script)
#   deploy/demo/demo.sh              runs until Ctrl-C
#   DEMO_DURATION=75 deploy/demo/demo.sh
#                                    stops after 75 s; exit 0 if an alert was
#                                    stored by then, 1 otherwise
#
# Ports start at HTTP 8080, broker 18830, RTSP 8554, agent HTTP 9101 and move
# up until free. DEMO_HTTP_PORT, DEMO_BROKER_PORT, DEMO_RTSP_PORT and
# DEMO_AGENT_PORT fix a port (the demo fails if it is taken).
# Everything the demo writes goes to .demo/ in the repository root; the alert
# store there starts empty on every run.
set -euo pipefail

cd "$(dirname "$0")/../.."
RUN=.demo
CAMERA=lixin-sluice-east

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites

for b in xl-central xl-agent xl-camsim; do
	if [[ ! -x bin/$b ]]; then
		say "bin/$b is missing; running make build"
		make build
		break
	fi
done
command -v curl >/dev/null 2>&1 || die "curl is required (apt-get install curl)"
command -v setsid >/dev/null 2>&1 || die "setsid is required (apt-get install util-linux)"

VIDEO=
for v in ../shared/media/vtest.avi /usr/share/doc/opencv-doc/examples/data/vtest.avi; do
	if [[ -f $v ]]; then
		VIDEO="$(cd "$(dirname "$v")" && pwd)/$(basename "$v")"
		break
	fi
done
[[ -n $VIDEO ]] || die "no test video: neither ../shared/media/vtest.avi nor \
/usr/share/doc/opencv-doc/examples/data/vtest.avi exists; install it with: sudo apt-get install opencv-doc"

# ---------------------------------------------------------------- ports

CHOSEN=()

# True when nothing accepts connections on 127.0.0.1:$1 (connection refused).
# A connection that neither succeeds nor fails within 1 s counts as taken.
port_free() {
	local rc=0
	timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null || rc=$?
	((rc != 0 && rc != 124))
}

# pick_port NAME DEFAULT OVERRIDE: prints the port to use for NAME.
pick_port() {
	local name=$1 port=$2 override=$3 c
	if [[ -n $override ]]; then
		if ! [[ $override =~ ^[0-9]+$ ]] || ((override < 1 || override > 65535)); then
			die "$name port '$override' is not a port number"
		fi
		port_free "$override" || die "$name port $override (set by environment) is already in use"
		for c in "${CHOSEN[@]}"; do
			[[ $c != "$override" ]] || die "$name port $override is already used by another demo process"
		done
		echo "$override"
		return
	fi
	local limit=$((port + 100))
	while ((port < limit)); do
		if port_free "$port" && [[ " ${CHOSEN[*]} " != *" $port "* ]]; then
			echo "$port"
			return
		fi
		port=$((port + 1))
	done
	die "no free $name port between $2 and $((limit - 1))"
}

HTTP=$(pick_port HTTP 8080 "${DEMO_HTTP_PORT:-}");        CHOSEN+=("$HTTP")
BROKER=$(pick_port broker 18830 "${DEMO_BROKER_PORT:-}"); CHOSEN+=("$BROKER")
RTSP=$(pick_port RTSP 8554 "${DEMO_RTSP_PORT:-}");        CHOSEN+=("$RTSP")
AGENT=$(pick_port agent 9101 "${DEMO_AGENT_PORT:-}");     CHOSEN+=("$AGENT")

if [[ -n ${DEMO_DURATION:-} ]] && ! [[ $DEMO_DURATION =~ ^[0-9]+$ ]]; then
	die "DEMO_DURATION must be a number of seconds, not '$DEMO_DURATION'"
fi

# ---------------------------------------------------------------- run directory

mkdir -p "$RUN/cache"
rm -f "$RUN"/central.db "$RUN"/central.db-wal "$RUN"/central.db-shm
sed "s#rtsp://127.0.0.1:8554/#rtsp://127.0.0.1:$RTSP/#g" configs/agent.yaml >"$RUN/agent.yaml"

# ---------------------------------------------------------------- processes

# Each process runs in its own session (setsid), so Ctrl-C reaches only this
# script, which then stops them in order, and signals reach their children.
declare -A PID=() LOG=()
ORDER=()

start() { # start NAME COMMAND...; env assignments go before via `env`
	local name=$1; shift
	LOG[$name]="$RUN/$name.log"
	setsid "$@" >"${LOG[$name]}" 2>&1 </dev/null &
	PID[$name]=$!
	ORDER+=("$name")
}

log_tail() {
	local name=$1
	printf -- '--- last lines of %s ---\n' "${LOG[$name]}" >&2
	tail -n 25 "${LOG[$name]}" >&2 || true
	printf -- '---\n' >&2
}

# Prints the name of a process that has exited, if any.
dead() {
	local name
	for name in "${ORDER[@]}"; do
		if ! kill -0 "${PID[$name]}" 2>/dev/null; then
			echo "$name"
			return 0
		fi
	done
	return 1
}

# Reports a process that exited on its own and fails the demo.
died() {
	local name=$1 rc=0
	wait "${PID[$name]}" 2>/dev/null || rc=$?
	unset "PID[$name]"
	printf 'demo: error: %s exited unexpectedly (status %d)\n' "$name" "$rc" >&2
	log_tail "$name"
	exit 1
}

# Stops the processes in reverse order of start (agent, central, camsim), so
# the agent can still hand queued alerts to the broker: SIGTERM to each one's
# process group and a wait for it, all within 10 s; then SIGKILL leftovers.
STOPPING=0
cleanup() {
	local rc=$? name pid i deadline=$((SECONDS + 10)) status
	((STOPPING)) && return
	STOPPING=1
	trap '' INT TERM
	for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do
		name=${ORDER[i]}
		pid=${PID[$name]:-}
		[[ -n $pid ]] || continue
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			say "$name (pid $pid) did not stop in time; killing it"
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		fi
		status=0
		wait "$pid" 2>/dev/null || status=$?
		# Whatever else is left in its process group (e.g. ffmpeg).
		kill -KILL -- "-$pid" 2>/dev/null || true
		if ((status != 0)); then
			say "$name exited with status $status while stopping (see ${LOG[$name]})"
		fi
	done
	say "stopped"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Sleeps $1 seconds; returns early when a trapped signal arrives.
nap() {
	sleep "$1" &
	wait $! 2>/dev/null || true
}

say "video $VIDEO"
say "ports: HTTP $HTTP, MQTT broker $BROKER, RTSP $RTSP, agent HTTP $AGENT"

start camsim bin/xl-camsim --listen "127.0.0.1:$RTSP" --camera "$CAMERA=$VIDEO" \
	--cache-dir "$RUN/cache" --log-format text

# The console needs an account: a demo officer-admin with a password made
# for this run (nothing fixed ships in a config), and an API token for the
# alert count below.
DEMO_USER=demo
DEMO_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | cut -c1-16)
central_cli() { XL_STORE_PATH="$RUN/central.db" XL_LOG_FORMAT=text bin/xl-central "$@" --config configs/central.yaml; }
if ! printf '%s\n' "$DEMO_PASSWORD" | central_cli user add --username "$DEMO_USER" --role admin --display-name 演示管理员 >/dev/null 2>&1; then
	printf '%s\n' "$DEMO_PASSWORD" | central_cli user passwd --username "$DEMO_USER" >/dev/null || die "could not set the demo user's password"
fi
DEMO_TOKEN=$(central_cli user token --username "$DEMO_USER" --name demo-script) || die "could not create an API token"

start central env XL_HTTP_ADDR="127.0.0.1:$HTTP" XL_BROKER_LISTEN="127.0.0.1:$BROKER" \
	XL_STORE_PATH="$RUN/central.db" XL_LOG_FORMAT=text \
	bin/xl-central serve --config configs/central.yaml

# Waits until central answers /healthz and camsim accepts RTSP connections
# (camsim transcodes the video once before it listens; later runs reuse the
# cache in .demo/cache).
say "waiting for xl-central on http://127.0.0.1:$HTTP/healthz and xl-camsim on port $RTSP"
central_up=0 camsim_up=0
for ((i = 0; i < 300; i++)); do
	if name=$(dead); then died "$name"; fi
	if ((!central_up)) && curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$HTTP/healthz" 2>/dev/null; then
		central_up=1
	fi
	if ((!camsim_up)) && ! port_free "$RTSP"; then
		camsim_up=1
	fi
	((central_up && camsim_up)) && break
	if ((i == 300 - 1 || (!central_up && i >= 30 * 5))); then
		((central_up)) || { log_tail central; die "xl-central did not answer /healthz within 30 s"; }
		log_tail camsim
		die "xl-camsim did not listen on port $RTSP within 60 s"
	fi
	nap 0.2
done

# YOLOX-Nano when the shared model is beside the repository (checked against
# models/manifest.yaml); otherwise the agent uses OpenCV's HOG person detector.
DETECTOR=()
if [[ -f ../shared/models/yolox_nano.onnx ]]; then
	DETECTOR=(XL_DETECTOR_MODEL="$(cd ../shared/models && pwd)/yolox_nano.onnx" XL_DETECTOR_MANIFEST=models/manifest.yaml)
	say "detector: YOLOX-Nano (../shared/models/yolox_nano.onnx)"
else
	say "detector: HOG person detector (no ../shared/models/yolox_nano.onnx)"
fi
start agent env XL_MQTT_URL="tcp://127.0.0.1:$BROKER" XL_HTTP_ADDR="127.0.0.1:$AGENT" XL_LOG_FORMAT=text XL_OUTBOX_PATH="$RUN/agent-outbox.db" \
	"${DETECTOR[@]}" bin/xl-agent run --config "$RUN/agent.yaml"

for ((i = 0; i < 100; i++)); do
	if name=$(dead); then died "$name"; fi
	curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$AGENT/healthz" 2>/dev/null && break
	((i < 100 - 1)) || { log_tail agent; die "xl-agent did not answer /healthz within 20 s"; }
	nap 0.2
done

cat <<EOF

  ================================================================
   Xueliang demo is running
  ----------------------------------------------------------------
   Console         http://127.0.0.1:$HTTP/
   Sign in         $DEMO_USER / $DEMO_PASSWORD   (made for this run)
   Field unit      http://127.0.0.1:$HTTP/field  (add one: bin/xl-central user add --role agency --agency agri-brigade …)
   Alerts API      http://127.0.0.1:$HTTP/api/v1/alerts   (Authorization: Bearer <token from xl-central user token>)
   Camera (RTSP)   rtsp://127.0.0.1:$RTSP/$CAMERA
   MQTT broker     tcp://127.0.0.1:$BROKER
   Metrics         http://127.0.0.1:$HTTP/metrics   (central)
                   http://127.0.0.1:$AGENT/metrics   (agent)
   Logs            $RUN/central.log  $RUN/camsim.log  $RUN/agent.log
   Alert store     $RUN/central.db

   Alerts appear within about a minute.
   $(if [[ -n ${DEMO_DURATION:-} ]]; then echo "Stopping after $DEMO_DURATION s (DEMO_DURATION); Ctrl-C stops everything sooner."; else echo "Ctrl-C stops everything."; fi)
  ================================================================

EOF

# Number of alerts stored, or "?" when the API does not answer.
alert_count() {
	local body
	body=$(curl -fsS --max-time 5 -H "Authorization: Bearer $DEMO_TOKEN" "http://127.0.0.1:$HTTP/api/v1/alerts?limit=1000" 2>/dev/null) || {
		echo "?"
		return
	}
	grep -o '"alert_id"' <<<"$body" | wc -l | tr -d ' '
}

started=$SECONDS
next_report=$((SECONDS + 10))
while :; do
	if name=$(dead); then died "$name"; fi
	if [[ -n ${DEMO_DURATION:-} ]] && ((SECONDS - started >= DEMO_DURATION)); then
		n=$(alert_count)
		if [[ $n =~ ^[0-9]+$ ]] && ((n > 0)); then
			say "$n alert(s) stored after $((SECONDS - started)) s"
			exit 0
		fi
		say "error: no alert stored after $DEMO_DURATION s (see $RUN/agent.log and $RUN/central.log)" >&2
		exit 1
	fi
	if ((SECONDS >= next_report)); then
		say "$(date +%H:%M:%S) alerts stored: $(alert_count)"
		next_report=$((next_report + 10))
	fi
	nap 1
done
