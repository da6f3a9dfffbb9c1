package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"

	"github.com/xueliang/xl/agent/internal/pipeline"
)

// Reloadable are the settings of each camera that a reload applies while
// the camera streams; every other change is refused.
var reloadable = []string{"zones", "scenarios", "site", "grid_code", "geo", "timezone"}

// ReloadResult is what a reload did.
type ReloadResult struct {
	ConfigVersion   string // of the file now in force
	PreviousVersion string
	Changed         bool // false: the file had not changed
}

// ErrReloadRefused wraps a reload that would change settings that need a
// restart.
var ErrReloadRefused = errors.New("reload refused")

// Reload reads the configuration file again and applies the zones and
// scenarios of every camera (and its site, grid code, position and time
// zone) without dropping any stream. A file that does not load, or that
// changes anything else, is refused with the reason and nothing changes.
func (a *Agent) Reload() (ReloadResult, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	old := a.config()
	res := ReloadResult{ConfigVersion: old.Version, PreviousVersion: old.Version}
	cfg, err := LoadConfig(a.path)
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrReloadRefused, err)
	}
	if keys := fixedChanges(old, cfg); len(keys) > 0 {
		return res, fmt.Errorf("%w: these settings cannot change while the agent runs (restart xl-agent to apply them): %s",
			ErrReloadRefused, strings.Join(keys, ", "))
	}
	if cfg.Version == old.Version {
		return res, nil
	}
	// Check every camera before changing any.
	var errs []error
	pcs := make(map[string]pipeline.Config, len(a.cameras))
	for i, cam := range a.cameras {
		pc, err := pipelineConfig(cfg, cfg.Cameras[i], a.det)
		if err == nil {
			err = cam.CheckReload(pc)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pcs[cam.ID()] = pc
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("%w: %w", ErrReloadRefused, err)
	}
	for _, cam := range a.cameras {
		if err := cam.Reload(pcs[cam.ID()]); err != nil {
			// Checked above; only a programming error gets here.
			errs = append(errs, err)
		}
	}
	a.cfgMu.Lock()
	a.cfg = cfg
	a.cfgMu.Unlock()
	a.pub.RefreshStatus() // the status carries the config version
	res.ConfigVersion, res.Changed = cfg.Version, true
	a.log.Info("configuration reloaded", "config_version", cfg.Version, "previous", old.Version)
	return res, errors.Join(errs...)
}

// fixedChanges lists the keys that differ between two configurations,
// other than the reloadable ones, as they are written in the file.
func fixedChanges(old, cfg *Config) []string {
	var keys []string
	if len(old.Cameras) != len(cfg.Cameras) {
		keys = append(keys, fmt.Sprintf("cameras (%d → %d cameras)", len(old.Cameras), len(cfg.Cameras)))
	}
	diff(reflect.ValueOf(*old), reflect.ValueOf(*cfg), "", &keys)
	return keys
}

// diff walks two values of one type and appends the keys (mapstructure
// names) where they differ. Lists of different length are one key.
func diff(a, b reflect.Value, key string, out *[]string) {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				*out = append(*out, key)
			}
			return
		}
		diff(a.Elem(), b.Elem(), key, out)
	case reflect.Struct:
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if strings.HasPrefix(key, "cameras[") && strings.Count(key, ".") == 0 && isReloadable(name) {
				continue
			}
			sub := name
			if key != "" {
				sub = key + "." + name
			}
			diff(a.Field(i), b.Field(i), sub, out)
		}
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			if key != "cameras" { // reported once above
				*out = append(*out, key)
			}
			return
		}
		if a.Kind() == reflect.Slice && a.Type().Elem().Kind() != reflect.Struct {
			if !reflect.DeepEqual(a.Interface(), b.Interface()) {
				*out = append(*out, key)
			}
			return
		}
		for i := range a.Len() {
			diff(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", key, i), out)
		}
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, key)
		}
	}
}

func isReloadable(name string) bool {
	for _, r := range reloadable {
		if r == name {
			return true
		}
	}
	return false
}

// hupReloader reloads the configuration on SIGHUP. It listens from New on,
// so a SIGHUP during start-up is not the default (fatal) action.
type hupReloader struct {
	a   *Agent
	sig chan os.Signal
}

func newHUPReloader(a *Agent) *hupReloader {
	h := &hupReloader{a: a, sig: make(chan os.Signal, 1)}
	signal.Notify(h.sig, syscall.SIGHUP)
	return h
}

func (h *hupReloader) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.sig:
			res, err := h.a.Reload()
			switch {
			case err != nil:
				h.a.log.Error("SIGHUP: configuration not reloaded", "err", err)
			case !res.Changed:
				h.a.log.Info("SIGHUP: configuration unchanged", "config_version", res.ConfigVersion)
			}
		}
	}
}

func (h *hupReloader) Close() error {
	signal.Stop(h.sig)
	return nil
}
