package caddymodule

import (
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// warnOtherSpools warns, when a spool directory is opened, about every
// other directory under the same parent that holds spool record files
// that may be undelivered and that no spool of this process replays: most
// often the directory an earlier configuration named, before a restart.
// Nothing replays such a directory until a config names it again.
func warnOtherSpools(dir string, logger *zap.Logger) {
	parent := filepath.Dir(dir)
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		other := filepath.Join(parent, e.Name())
		if other == dir || spools.isOpen(other) {
			continue
		}
		if files := pendingSpoolFiles(other); len(files) > 0 {
			logger.Warn("another spool directory beside the configured one holds record files that may hold "+
				"undelivered events, and no config replays it (judged conservatively from the files' sizes and its cursor); "+
				"name it as a spool again to deliver them",
				zap.String("dir", other), zap.String("configured", dir), zap.Strings("files", files))
		}
	}
}

// pendingSpoolFiles lists the non-empty spool record files of dir
// (`spool.jsonl`, `spool-<time>.jsonl`), or nothing when its cursor shows
// all were delivered: the cursor's last position is the end of
// `spool.jsonl` and no rotated record file is left. Anything it cannot
// read counts as pending.
func pendingSpoolFiles(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var files []string
	active, rotated := int64(-1), false
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !upstream.IsSpoolRecordFile(name) {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() == 0 {
			continue
		}
		files = append(files, name)
		if name == filepath.Base(upstream.SpoolPath(dir, upstream.SpoolRecords)) {
			active = fi.Size()
		} else {
			rotated = true
		}
	}
	if len(files) == 0 || rotated || active < 0 {
		return files
	}
	if off, ok := upstream.SpoolActiveOffset(dir); ok && off == active {
		return nil
	}
	return files
}
