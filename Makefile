# Xueliang (xl): edge agent, camera simulator and command centre.
# `make` or `make help` lists the targets.

GO       ?= go
FUZZTIME ?= 30s
FUZZPARALLEL ?= 1
# Minimizing a new input (default 60s) would eat the whole FUZZTIME of the
# slower targets (configurations, routing): keep it short.
FUZZMINTIME ?= 2s
# Packages with fuzz targets (make fuzz runs each target in them).
FUZZ_PKGS := ./internal/wire ./internal/config ./central/internal/app ./central/internal/routing \
	./central/internal/web ./agent/internal/rtsp ./agent/internal/app
BIN      := bin
CMDS     := ./central/cmd/xl-central ./agent/cmd/xl-agent ./agent/cmd/xl-camsim ./agent/cmd/xl-loadgen

# Go from the official tarball (what deploy/scripts/deps.sh installs).
ifeq ($(findstring /usr/local/go/bin,$(PATH)),)
export PATH := /usr/local/go/bin:$(PATH)
endif

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
VPKG    := github.com/xueliang/xl/internal/version
LDFLAGS := -X $(VPKG).Version=$(VERSION) -X $(VPKG).Commit=$(COMMIT)

# Test video for tests and benchmarks (they also look for it themselves).
XL_TEST_VIDEO ?= $(abspath $(firstword $(wildcard \
	../shared/media/vtest.avi \
	/usr/share/doc/opencv-doc/examples/data/vtest.avi)))
ifneq ($(XL_TEST_VIDEO),)
export XL_TEST_VIDEO
endif

# Go files for gofmt. GO_TRACKED: tracked by git (make fmt). GO_ALL: tracked
# or new and not ignored (make lint); every .go file when this is no checkout.
GO_TRACKED := $(wildcard $(shell git ls-files '*.go' 2>/dev/null))
GO_ALL     := $(wildcard $(shell git ls-files -co --exclude-standard '*.go' 2>/dev/null || \
	find . -name '*.go' -not -path './.git/*'))

.DEFAULT_GOAL := help
.PHONY: help deps build test test-short demo bench scale faults fuzz sec lint fmt clean

help: ## show this list
	@echo "Usage: make TARGET [GO=go] [FUZZTIME=30s]"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z-]*:.*## / { printf "  %-11s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

deps: ## install missing Debian packages (and Go if too old): deploy/scripts/deps.sh
	@bash deploy/scripts/deps.sh

build: ## build xl-central, xl-agent, xl-camsim and xl-loadgen into bin/
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ $(CMDS)
	@echo "built $(VERSION) ($(COMMIT)): $(BIN)/xl-central $(BIN)/xl-agent $(BIN)/xl-camsim $(BIN)/xl-loadgen"

test: deps test-short ## deps, build, vet, tests (-race except packages using gocv)

test-short: build ## like test, without deps
	@GO="$(GO)" XL_BIN_DIR="$(CURDIR)/$(BIN)" bash deploy/scripts/go-check.sh

demo: deps build ## run central, camsim and agent locally until Ctrl-C (DEMO_DURATION=s to stop)
	@bash deploy/demo/demo.sh

bench: deps build ## run the benchmarks (numbers, with same-run baselines)
	XL_BIN_DIR="$(CURDIR)/$(BIN)" $(GO) test -run '^$$' -bench . -benchmem -timeout 30m $$($(GO) list ./... | grep -v /internal/e2e)
	XL_BIN_DIR="$(CURDIR)/$(BIN)" $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 20m ./internal/e2e

scale: deps build ## scale runs: Mosquitto, PostgreSQL, 1-3 centrals, xl-loadgen at 10k-100k cameras (docs/scale.md; ~15 min)
	XL_BIN_DIR="$(CURDIR)/$(BIN)" $(GO) run ./deploy/scale

faults: deps build ## fault suite as root, ~20 min (XL_FAULT_PARTITION=10m): deploy/scripts/faults.sh
	@GO="$(GO)" XL_BIN_DIR="$(CURDIR)/$(BIN)" bash deploy/scripts/faults.sh

fuzz: ## run every fuzz target in FUZZ_PKGS for FUZZTIME each (default 30s), one worker
	@set -e; for pkg in $(FUZZ_PKGS); do \
		for target in $$($(GO) test $$pkg -list '^Fuzz' | grep '^Fuzz'); do \
			echo "== $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test $$pkg -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) \
				-fuzzminimizetime $(FUZZMINTIME) -parallel $(FUZZPARALLEL); \
		done; \
	done

# Security scanners at exact versions, installed into bin/tools (needs the
# network: the module proxy, and vuln.go.dev for govulncheck's database).
# gosec's excluded rules are the ones whose every finding docs/security.md
# explains; single findings elsewhere carry a #nosec with the reason.
GOSEC_VERSION       := v2.30.0
GOVULNCHECK_VERSION := v1.9.0
GOSEC_EXCLUDE       := G104,G115,G202,G204,G304,G703
TOOLS               := $(CURDIR)/$(BIN)/tools

sec: ## install gosec and govulncheck (pinned) and run both over ./... (network; see docs/security.md)
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install github.com/securego/gosec/v2/cmd/gosec@$(GOSEC_VERSION)
	GOBIN=$(TOOLS) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)
	$(TOOLS)/gosec -quiet -exclude-generated -exclude=$(GOSEC_EXCLUDE) ./...
	$(TOOLS)/govulncheck ./...

lint: ## gofmt must have nothing to say; go vet
	@files="$$($(if $(GO_ALL),gofmt -l $(GO_ALL)))"; \
	if [ -n "$$files" ]; then \
		echo "gofmt: these files need formatting (make fmt):"; \
		echo "$$files" | sed 's/^/  /'; \
		exit 1; \
	fi
	$(GO) vet ./...

fmt: ## gofmt -w the tracked Go files
	@$(if $(GO_TRACKED),gofmt -l -w $(GO_TRACKED),echo "no tracked Go files")

clean: ## remove bin/, data/ and .demo/
	rm -rf $(BIN) data .demo
