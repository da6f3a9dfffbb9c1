#!/usr/bin/env bash
# go vet, then the tests: with the race detector for packages that do not
# depend on gocv, without it for those that do (the race detector doubles the
# cgo C++ compile time of OpenCV). Called by `make test` and `make test-short`.
#
#   deploy/scripts/go-check.sh            vet + tests, one summary line at the end
#   deploy/scripts/go-check.sh --list     only print "race PKG" / "plain PKG" lines
#
# Environment: GO (default go), GOTESTFLAGS (extra go test flags, e.g. -v or
# -run X), TEST_TIMEOUT (default 15m), XL_TEST_VIDEO (found when unset).
set -euo pipefail

cd "$(dirname "$0")/../.."

GO=${GO:-go}
TEST_TIMEOUT=${TEST_TIMEOUT:-15m}
GOCV=gocv.io/x/gocv

case ":$PATH:" in
	*:/usr/local/go/bin:*) ;;
	*) [[ -d /usr/local/go/bin ]] && PATH="/usr/local/go/bin:$PATH" ;;
esac

# Prints "race PKG" or "plain PKG" for every package of the module. With
# -test, the deps of each test binary (PKG.test) are listed too, so a package
# whose tests (and only its tests) import gocv also counts as depending on it.
classify() {
	"$GO" list -e -test -f '{{.ImportPath}} {{join .Deps " "}}' ./... | awk -v gocv="$GOCV" '
		$2 ~ /^\[/ { next }  # test variants "p [p.test]": the p.test line covers them
		{
			p = $1; sub(/\.test$/, "", p)
			if (!(p in dep)) { dep[p] = 0; order[n++] = p }
			if ($1 == gocv) dep[p] = 1
			for (i = 2; i <= NF; i++) if ($i == gocv) { dep[p] = 1; break }
		}
		END { for (i = 0; i < n; i++) print (dep[order[i]] ? "plain" : "race"), order[i] }'
}

if [[ ${1:-} == --list ]]; then
	classify
	exit 0
fi

if [[ -z ${XL_TEST_VIDEO:-} ]]; then
	for v in ../shared/media/vtest.avi /usr/share/doc/opencv-doc/examples/data/vtest.avi; do
		if [[ -f $v ]]; then
			XL_TEST_VIDEO="$(cd "$(dirname "$v")" && pwd)/$(basename "$v")"
			export XL_TEST_VIDEO
			break
		fi
	done
fi
echo "test video: ${XL_TEST_VIDEO:-none found (tests that need it look for it themselves)}"

start=$SECONDS
failed=()

echo "== go vet ./..."
if ! "$GO" vet ./...; then
	failed+=(vet)
fi

if ! LIST=$(classify); then
	echo "go-check: go list failed" >&2
	exit 1
fi
mapfile -t RACE < <(awk '$1 == "race" { print $2 }' <<<"$LIST")
mapfile -t PLAIN < <(awk '$1 == "plain" { print $2 }' <<<"$LIST")
if ((${#RACE[@]} + ${#PLAIN[@]} == 0)); then
	echo "go-check: go list found no packages" >&2
	exit 1
fi

# shellcheck disable=SC2086 # GOTESTFLAGS is a list of flags
if ((${#RACE[@]})); then
	echo "== go test -race (${#RACE[@]} packages without gocv)"
	if ! "$GO" test -race -count=1 -timeout "$TEST_TIMEOUT" ${GOTESTFLAGS:-} "${RACE[@]}"; then
		failed+=("race tests")
	fi
fi
# shellcheck disable=SC2086
if ((${#PLAIN[@]})); then
	echo "== go test (${#PLAIN[@]} packages using gocv, no race detector)"
	if ! "$GO" test -count=1 -timeout "$TEST_TIMEOUT" ${GOTESTFLAGS:-} "${PLAIN[@]}"; then
		failed+=("gocv tests")
	fi
fi

# gocv's matprofile counts open Mats: the detector and tracker tests, a
# replay of the whole pipeline, and decoded pictures (the decoder's and an
# RTSP source's) must leave none (gocvtest.CheckMats).
# shellcheck disable=SC2086
if ((${#PLAIN[@]})); then
	echo "== go test -tags matprofile (no leaked gocv Mats)"
	if ! "$GO" test -count=1 -tags matprofile -timeout "$TEST_TIMEOUT" ${GOTESTFLAGS:-} ./agent/internal/detect ./agent/internal/track ||
		! "$GO" test -count=1 -tags matprofile -timeout "$TEST_TIMEOUT" -run 'LeavesNoMats' ${GOTESTFLAGS:-} ./agent/internal/replay ||
		! "$GO" test -count=1 -tags matprofile -timeout "$TEST_TIMEOUT" -run 'Picture|DecodesOnly' ${GOTESTFLAGS:-} ./agent/internal/decode ./agent/internal/source; then
		failed+=("matprofile")
	fi
fi

took=$((SECONDS - start))
if ((${#failed[@]})); then
	what=$(printf '%s, ' "${failed[@]}")
	printf '== test: FAIL (%s) — %d race + %d gocv packages, %dm%02ds\n' \
		"${what%, }" "${#RACE[@]}" "${#PLAIN[@]}" $((took / 60)) $((took % 60))
	exit 1
fi
printf '== test: OK — vet clean, %d packages with -race, %d gocv packages without, %dm%02ds\n' \
	"${#RACE[@]}" "${#PLAIN[@]}" $((took / 60)) $((took % 60))
