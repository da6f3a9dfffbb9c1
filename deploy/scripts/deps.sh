#!/usr/bin/env bash
# Installs what building, testing and demonstrating xl needs on Debian 12.
#
#   deploy/scripts/deps.sh          install the missing Debian packages (and Go
#                                   when it is absent or older than go.mod asks)
#   deploy/scripts/deps.sh --check  only report what is missing (exit 1 if any)
#
# Then it makes the PostgreSQL the store tests use ready (scripts/postgres.sh:
# start the cluster when it is down, create the xl_test role and database).
#
# Idempotent: when everything is present it prints one line and changes nothing.
set -euo pipefail

cd "$(dirname "$0")/../.."

PACKAGES=(
	libopencv-dev opencv-data
	ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
	pkg-config mosquitto mosquitto-clients postgresql prometheus
	chromium fonts-noto-cjk
	gcc g++ make git ca-certificates curl
	# GStreamer's RTSP server: the RTSP client's interoperability tests
	# (agent/internal/rtsp/testdata/gst_rtsp_server.py) run it.
	python3 python3-gi gir1.2-gst-rtsp-server-1.0
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
)
# The test video ships with opencv-doc; only needed without the shared copy.
if [[ ! -f ../shared/media/vtest.avi ]]; then
	PACKAGES+=(opencv-doc)
fi

log() { printf 'deps: %s\n' "$*"; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

usage() {
	sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
}

CHECK_ONLY=0
case "${1:-}" in
	"") ;;
	--check) CHECK_ONLY=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
esac

# ---------------------------------------------------------------- Debian packages

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing_packages() {
	local p
	for p in "${PACKAGES[@]}"; do
		installed "$p" || printf '%s\n' "$p"
	done
}

# Runs a command as root: directly, through sudo, or fails with a clear message.
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run '$*' (not root and sudo is not installed); run this script as root"
	fi
}

# ---------------------------------------------------------------- Go toolchain

# The version go.mod asks for, e.g. 1.26.0.
go_mod_version() {
	awk '$1 == "go" { print $2; exit }' go.mod
}

# True when version $1 >= version $2 (dotted numbers; "1.26" counts as 1.26.0).
version_ge() {
	local -a a b
	local i x y
	IFS=. read -ra a <<<"$1"
	IFS=. read -ra b <<<"$2"
	for i in 0 1 2; do
		x=${a[i]:-0}; y=${b[i]:-0}
		x=${x%%[!0-9]*}; y=${y%%[!0-9]*}
		((10#${x:-0} > 10#${y:-0})) && return 0
		((10#${x:-0} < 10#${y:-0})) && return 1
	done
	return 0
}

# The official tarball's location is used even when it is not on PATH yet.
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	PATH="/usr/local/go/bin:$PATH"
	export PATH
fi

# Prints the reason Go is not usable, or nothing when it is.
go_problem() {
	local want have
	want=$(go_mod_version)
	if ! command -v go >/dev/null 2>&1; then
		echo "Go is not installed (go.mod needs go $want)"
		return
	fi
	have=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)
	have=${have#go}
	if [[ -z $have ]]; then
		echo "cannot tell the version of $(command -v go) (go.mod needs go $want)"
	elif ! version_ge "$have" "$want"; then
		echo "Go $have at $(command -v go) is older than go $want that go.mod needs"
	fi
}

install_go() {
	local want arch url tmp
	want=$(go_mod_version)
	case $(uname -m) in
		x86_64 | amd64) arch=amd64 ;;
		aarch64 | arm64) arch=arm64 ;;
		*) die "no official Go download for $(uname -m); install Go >= $want manually (https://go.dev/dl/)" ;;
	esac
	command -v curl >/dev/null 2>&1 ||
		die "curl is missing; install Go >= $want manually from https://go.dev/dl/ into /usr/local/go"
	url="https://go.dev/dl/go${want}.linux-${arch}.tar.gz"
	tmp=$(mktemp --suffix=.tar.gz)
	log "downloading $url"
	if ! curl -fsSL --retry 3 -o "$tmp" "$url"; then
		rm -f "$tmp"
		die "downloading $url failed; install Go >= $want manually from https://go.dev/dl/ into /usr/local/go"
	fi
	log "installing Go $want into /usr/local/go"
	as_root rm -rf /usr/local/go
	if ! as_root tar -C /usr/local -xzf "$tmp"; then
		rm -f "$tmp"
		die "extracting $tmp failed; install Go >= $want manually from https://go.dev/dl/"
	fi
	rm -f "$tmp"
	log "Go $want installed; add it to your PATH: export PATH=/usr/local/go/bin:\$PATH"
}

# ---------------------------------------------------------------- main

mapfile -t MISSING < <(missing_packages)
GO_PROBLEM=$(go_problem)

if ((CHECK_ONLY)); then
	status=0
	if ((${#MISSING[@]})); then
		log "missing Debian packages: ${MISSING[*]}"
		status=1
	fi
	if [[ -n $GO_PROBLEM ]]; then
		log "$GO_PROBLEM"
		status=1
	fi
	if installed postgresql && ! bash deploy/scripts/postgres.sh --check; then
		status=1
	fi
	((status)) || log "nothing missing (${#PACKAGES[@]} packages, $(GOTOOLCHAIN=local go env GOVERSION))"
	exit "$status"
fi

if ((${#MISSING[@]} == 0)) && [[ -z $GO_PROBLEM ]] && bash deploy/scripts/postgres.sh --check >/dev/null 2>&1; then
	log "nothing missing (${#PACKAGES[@]} packages, $(GOTOOLCHAIN=local go env GOVERSION), PostgreSQL ready for tests)"
	exit 0
fi

if ((${#MISSING[@]})); then
	command -v apt-get >/dev/null 2>&1 ||
		die "apt-get not found; install these packages by hand: ${MISSING[*]}"
	log "installing: ${MISSING[*]}"
	# Services are not started by the install (PostgreSQL is started below,
	# Mosquitto is started by the tests that need it). In a container
	# without systemd and without a policy-rc.d, maintainer scripts would try
	# to start them through init scripts; a temporary policy-rc.d that denies
	# every start (exit 101, as in Docker's Debian images) keeps the install
	# from failing on that. It is removed again afterwards.
	POLICY=/usr/sbin/policy-rc.d
	if [[ ! -d /run/systemd/system && ! -e $POLICY ]]; then
		as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $POLICY && chmod 755 $POLICY"
		trap 'as_root rm -f "$POLICY"' EXIT
	fi
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y --no-install-recommends "${MISSING[@]}"
	mapfile -t STILL < <(missing_packages)
	((${#STILL[@]} == 0)) || die "still missing after apt-get install: ${STILL[*]}"
fi

if [[ -n $GO_PROBLEM ]]; then
	log "$GO_PROBLEM"
	install_go
fi

# The store tests need a running PostgreSQL with their role and database.
bash deploy/scripts/postgres.sh

log "done"
