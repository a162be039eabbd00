package caddymodule

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// The files the sinks write: where they may be, and how they are opened.
// Journal, spool and dead-letter files are opened without following a
// symbolic link (the log truncates a torn tail, which through a link would
// cut the file it points to), unless follow_symlinks is set; they are
// created 0600 in directories created 0700 (spooled events carry the
// callers' Authorization).

// sinkFS is the file system a sink's files are opened on: the test hook
// when set, else the operating system's, following links only when the
// operator opted in.
func sinkFS(hook upstream.FileSystem, followSymlinks bool) upstream.FileSystem {
	switch {
	case hook != nil:
		return hook
	case followSymlinks:
		return upstream.OSFileSystemFollowingSymlinks()
	}
	return nil // upstream's default: the operating system's, refusing links
}

// checkNotSymlink refuses a spool directory that is a symbolic link.
func checkNotSymlink(dir string) error {
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return &os.PathError{Op: "open", Path: dir, Err: upstream.ErrSymlink}
	}
	return nil
}

// symlinkHint adds the option that allows links to an error about one.
func symlinkHint(err error, block string) error {
	if errors.Is(err, upstream.ErrSymlink) {
		return fmt.Errorf("%w (follow_symlinks in the %s block allows it)", err, block)
	}
	return err
}

// spoolOpenError words a failure to open the spool. OpenSpool reports
// every failure to take the directory's lock as "in use by another spool",
// which is true only of upstream.ErrDirLocked: a lock file that cannot be
// created (permission denied, a read-only file system) says so instead.
func spoolOpenError(err error) error {
	var pe *os.PathError
	if !errors.Is(err, upstream.ErrDirLocked) && errors.As(err, &pe) && filepath.Base(pe.Path) == ".lock" {
		return fmt.Errorf("cannot create or lock the spool directory's lock file: %w", pe)
	}
	return symlinkHint(err, "forward")
}

// checkDeadLetter refuses an explicit dead_letter inside the spool
// directory. The spool owns the files there: its records (`spool.jsonl`,
// `spool-<time>.jsonl`) are read back as events at every start, its cursor
// (`cursor*.jsonl`) and `.lock` are its state, so a dead letter among them
// could be replayed, or overwrite them. The default,
// `<spool>/dead-letter.jsonl`, is the one file inside that the spool keeps
// apart; naming it explicitly is allowed.
func (f *ForwardSink) checkDeadLetter() error {
	if f.Spool == "" || f.DeadLetter == "" {
		return nil
	}
	spool, err := filepath.Abs(f.Spool)
	if err != nil {
		return nil // provisioning reports it
	}
	dl, err := filepath.Abs(f.DeadLetter)
	if err != nil || dl == filepath.Join(spool, "dead-letter.jsonl") {
		return nil
	}
	rel, err := filepath.Rel(spool, dl)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil
	}
	return fmt.Errorf("ucs: forward dead_letter %q is inside the spool directory %q, whose files the spool owns "+
		"(its record files are read back as events at every start): name a file outside it, "+
		"or leave dead_letter out for the default <spool>/dead-letter.jsonl", f.DeadLetter, f.Spool)
}
