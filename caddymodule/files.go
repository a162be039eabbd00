package caddymodule

import (
	"errors"
	"fmt"
	"io/fs"
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
	if !errors.Is(err, upstream.ErrDirLocked) && errors.As(err, &pe) && filepath.Base(pe.Path) == filepath.Base(upstream.SpoolPath("", upstream.SpoolLock)) {
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
// apart; naming it explicitly is allowed. Both paths are compared with the
// links of their existing parts resolved: a dead letter reached through a
// link to the spool directory is inside it all the same, follow_symlinks
// or not. Without follow_symlinks, the directory holding the spool or the
// dead letter must not be a link either.
func (f *ForwardSink) checkDeadLetter() error {
	if f.Spool == "" {
		return nil
	}
	if f.DeadLetter != "" {
		if err := f.checkDeadLetterOutside(); err != nil {
			return err
		}
	}
	if f.FollowSymlinks {
		return nil
	}
	for _, o := range []struct{ option, path string }{{"spool", f.Spool}, {"dead_letter", f.DeadLetter}} {
		if o.path == "" {
			continue
		}
		if dir, ok := symlinkedParent(o.path); ok {
			return fmt.Errorf("ucs: forward %s %q: its directory %q is a symbolic link, which is refused "+
				"(follow_symlinks in the forward block allows it)", o.option, o.path, dir)
		}
	}
	return nil
}

func (f *ForwardSink) checkDeadLetterOutside() error {
	spool, err := resolvePath(f.Spool)
	if err != nil {
		return nil // provisioning reports it
	}
	dl, err := resolvePath(f.DeadLetter)
	if err != nil || dl == upstream.SpoolPath(spool, upstream.SpoolDeadLetter) {
		return nil
	}
	rel, err := filepath.Rel(spool, dl)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil
	}
	through := ""
	absDL, _ := filepath.Abs(f.DeadLetter)
	absSpool, _ := filepath.Abs(f.Spool)
	if absDL != dl || absSpool != spool {
		through = fmt.Sprintf(" (through a symbolic link: it is %q, in %q)", dl, spool)
	}
	return fmt.Errorf("ucs: forward dead_letter %q is inside the spool directory %q%s, whose files the spool owns "+
		"(its record files are read back as events at every start): name a file outside it, "+
		"or leave dead_letter out for the default <spool>/dead-letter.jsonl", f.DeadLetter, f.Spool, through)
}

// resolvePath is p made absolute, with the symbolic links of its longest
// existing prefix resolved (a link to a file not created yet included) and
// the rest as written.
func resolvePath(p string) (string, error) { return resolveLinks(p, 0) }

// maxLinkHops bounds resolveLinks' hops through links to missing targets,
// as the kernel bounds a lookup's.
const maxLinkHops = 40

func resolveLinks(p string, hops int) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	for dir := abs; ; {
		fi, err := os.Lstat(dir)
		if err == nil {
			real, err := filepath.EvalSymlinks(dir)
			if errors.Is(err, fs.ErrNotExist) && fi.Mode()&os.ModeSymlink != 0 && hops < maxLinkHops {
				// A link to what does not exist yet: where it will be created.
				var target string
				if target, err = os.Readlink(dir); err == nil {
					if !filepath.IsAbs(target) {
						target = filepath.Join(filepath.Dir(dir), target)
					}
					real, err = resolveLinks(target, hops+1)
				}
			}
			if err != nil {
				return "", err
			}
			return filepath.Join(append([]string{real}, rest...)...), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return abs, nil
		}
		rest = append([]string{filepath.Base(dir)}, rest...)
		dir = parent
	}
}

// symlinkedParent reports the directory holding p when it is a symbolic
// link.
func symlinkedParent(p string) (string, bool) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", false
	}
	dir := filepath.Dir(abs)
	fi, err := os.Lstat(dir)
	return dir, err == nil && fi.Mode()&os.ModeSymlink != 0
}
