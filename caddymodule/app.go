package caddymodule

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `ucs` app. It owns the files the ucs handlers of a config
// write: the local journals, and the spools with their directory locks and
// replay workers. A handler registers what it needs while it is
// provisioned; the app opens it in Start and gives it back in Stop.
// `caddy validate` provisions a config but never starts it, so validating
// the config of a running Caddy takes no lock and creates no file.
//
// The handlers add the app to their config by themselves: it has no
// options, and a config never needs to name it.
//
// Caddy provisions a config's modules one at a time and calls Start and
// Stop from one goroutine, so the app needs no lock.
type App struct {
	logger   *zap.Logger
	handlers []*Handler          // registered, in provisioning order
	spoolOf  map[string]*Handler // spool directory → the handler using it
	started  []*Handler          // the handlers whose sinks Start opened
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "ucs",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets the app up; it opens nothing.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.spoolOf = map[string]*Handler{}
	return nil
}

// appOf returns the ucs app of the handler's config, adding it to the
// config if needed (which makes Caddy start it with the config).
func appOf(ctx caddy.Context) (*App, error) {
	v, err := ctx.App("ucs")
	if err != nil {
		return nil, fmt.Errorf("ucs: loading the ucs app: %w", err)
	}
	return v.(*App), nil
}

// register records h's sinks for Start. Two handlers of one config on one
// spool directory would interleave two streams of events with different
// upstreams in one replay: that is refused here, so `caddy validate`
// reports it.
func (a *App) register(h *Handler) error {
	if h.spoolKey != "" {
		if _, taken := a.spoolOf[h.spoolKey]; taken {
			return fmt.Errorf("ucs: forward spool %q: the directory is already the spool of another forward sink in this config; each needs its own", h.Forward.Spool)
		}
		a.spoolOf[h.spoolKey] = h
	}
	for _, o := range a.handlers {
		// A shadow journal and a local journal on one file would be two
		// writers; the shadow handler checks the running configs' journals.
		if (h.journalKey != "" && o.shadow.key == h.journalKey) || (h.shadow.key != "" && o.journalKey == h.shadow.key) {
			return fmt.Errorf("ucs: %s is both the local journal of a ucs handler and the shadow journal of another", cmp.Or(h.journalKey, h.shadow.key))
		}
		// One file has one set of options: two handlers of a config that
		// disagree would take turns reopening it.
		if h.journalKey != "" && o.journalKey == h.journalKey && !sameJournalOptions(o.journalOpts, h.journalOpts) {
			return fmt.Errorf("ucs: local %q: another ucs handler of this config names the same journal with other fsync, max_size or keep", h.Local.Path)
		}
	}
	a.handlers = append(a.handlers, h)
	return nil
}

// Start opens (or shares with the config still running) every registered
// journal and spool. If one cannot be opened, those already opened are
// given back and the config fails to start.
func (a *App) Start() error {
	for _, h := range a.handlers {
		if err := h.openSinks(); err != nil {
			for _, o := range a.started {
				_ = o.closeSinks()
			}
			a.started = nil
			return err
		}
		a.started = append(a.started, h)
		h.logStartup()
	}
	return nil
}

// Stop gives back this config's use of the journals and spools. Requests
// of the config still finishing keep them open, and a config loaded in its
// place already shares them (see sinkStore).
func (a *App) Stop() error {
	var errs []error
	for _, h := range a.started {
		errs = append(errs, h.closeSinks())
	}
	a.started = nil
	return errors.Join(errs...)
}

// checkWritableDir checks, without creating anything, that dir can be
// created or written to: its nearest existing ancestor (dir itself when it
// exists) must be a directory this process can write to and enter. option
// names the directive in the error.
func checkWritableDir(option, dir string) error {
	d := dir
	for {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("ucs: %s: %s is not a directory", option, d)
			}
			if err := canWrite(d, true); err != nil {
				return fmt.Errorf("ucs: %s: directory %s is not writable by this process: %w", option, d, err)
			}
			return nil
		}
		// ENOTDIR: a part of the path is a file; the walk up finds it.
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("ucs: %s: %w", option, err)
		}
		parent := filepath.Dir(d)
		if parent == d {
			return fmt.Errorf("ucs: %s: no part of %s exists", option, dir)
		}
		d = parent
	}
}

// checkWritableFile checks, without creating anything, that the file at
// path can be created or appended to.
func checkWritableFile(option, path string) error {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("ucs: %s: %s is a directory", option, path)
	case err == nil:
		// ENOENT here: the running journal rotated the file away between the
		// two calls (a reload under load); then the directory decides.
		if err := canWrite(path, false); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("ucs: %s: %s is not writable by this process: %w", option, path, err)
		}
	case !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("ucs: %s: %w", option, err)
	}
	return checkWritableDir(option, filepath.Dir(path))
}

// warnRelative warns that a relative path resolves against the working
// directory, which is / under systemd unless WorkingDirectory says otherwise.
func warnRelative(logger *zap.Logger, option, path, abs string) {
	if filepath.IsAbs(path) {
		return
	}
	logger.Warn("a relative path resolves against the working directory of the process, which differs under systemd; give an absolute path",
		zap.String("option", option), zap.String("path", path), zap.String("resolved", abs))
}

// Interface guards.
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
