//go:build unix

package caddymodule

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/unprivileged"
)

func TestAnUnwritableSpoolDirectoryIsReportedAsPermissionDenied(t *testing.T) {
	if !unprivileged.Run(t) {
		return
	}
	dir := filepath.Join(t.TempDir(), "spool")
	require.NoError(t, os.Mkdir(dir, 0o500)) // readable, not writable
	ctx, cancel := newTestContext(t)
	defer cancel()
	h := &Handler{Forward: &ForwardSink{URLs: []string{"http://127.0.0.1:1"}, Spool: dir}}

	err := h.Provision(ctx)

	require.Error(t, err)
	assert.Contains(t, err.Error(), "permission denied")
	assert.NotContains(t, err.Error(), "in use by another spool")
	_ = h.Cleanup()
}

func TestSinkPathsThatAreSymlinksAreRefusedUnlessFollowed(t *testing.T) {
	dir := t.TempDir()
	realFile, realDir := filepath.Join(dir, "real.jsonl"), filepath.Join(dir, "real-spool")
	require.NoError(t, os.WriteFile(realFile, nil, 0o600))
	require.NoError(t, os.Mkdir(realDir, 0o700))
	linkFile, linkDir := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "spool")
	require.NoError(t, os.Symlink(realFile, linkFile))
	require.NoError(t, os.Symlink(realDir, linkDir))
	tests := []struct {
		name string
		h    *Handler
		err  string // "" when it opens
	}{
		{"a journal file that is a link", &Handler{Local: &LocalSink{Path: linkFile}},
			"it is a symbolic link, which is refused (follow_symlinks in the local block allows it)"},
		{"a journal file that is a link, followed", &Handler{Local: &LocalSink{Path: linkFile, FollowSymlinks: true}}, ""},
		{"a spool directory that is a link", &Handler{Forward: &ForwardSink{URLs: []string{"http://127.0.0.1:1"}, Spool: linkDir}},
			"it is a symbolic link, which is refused (follow_symlinks in the forward block allows it)"},
		{"a dead letter that is a link", &Handler{Forward: &ForwardSink{URLs: []string{"http://127.0.0.1:1"}, Spool: realDir, DeadLetter: linkFile}},
			"it is a symbolic link, which is refused (follow_symlinks in the forward block allows it)"},
		{"a spool directory that is a link, followed",
			&Handler{Forward: &ForwardSink{URLs: []string{"http://127.0.0.1:1"}, Spool: linkDir, FollowSymlinks: true}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := newTestContext(t)
			defer cancel()

			err := tt.h.Provision(ctx)
			provisioned := err == nil
			if provisioned {
				err = startUCS(t, ctx) // the files are opened when the config starts
			}
			defer tt.h.Cleanup()
			// A journal or spool directory that is a link is refused by
			// provisioning, so by `caddy validate` too; a dead-letter file
			// that is one only when it is opened.
			if tt.err != "" && (tt.h.Local != nil || tt.h.Forward.DeadLetter == "") {
				assert.False(t, provisioned, "refused while provisioning")
			}

			if tt.err == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}

func TestADeadLetterReachedThroughALinkIsStillInsideTheSpool(t *testing.T) {
	if testing.Short() {
		t.Skip("provisions Caddy's http app")
	}
	dir := t.TempDir()
	realSpool, linkSpool := filepath.Join(dir, "realsp"), filepath.Join(dir, "linksp")
	require.NoError(t, os.Mkdir(realSpool, 0o700))
	require.NoError(t, os.Symlink(realSpool, linkSpool))
	realOut, linkOut := filepath.Join(dir, "out"), filepath.Join(dir, "linkout")
	require.NoError(t, os.Mkdir(realOut, 0o700))
	require.NoError(t, os.Symlink(realOut, linkOut))
	linkToRecord := filepath.Join(dir, "dl.jsonl")
	require.NoError(t, os.Symlink(filepath.Join(realSpool, "spool.jsonl"), linkToRecord))
	const overlap, linkedDir = "is inside the spool directory", "is a symbolic link, which is refused (follow_symlinks in the forward block allows it)"
	tests := []struct {
		name              string
		spool, deadLetter string
		followSymlinks    bool
		err               string // "" when accepted
	}{
		{"a record file named through a link to the spool", realSpool, filepath.Join(linkSpool, "spool-20261202T000000.000Z.jsonl"), false, overlap},
		{"a record file named through a link to the spool, links followed", realSpool, filepath.Join(linkSpool, "spool-20261202T000000.000Z.jsonl"), true, overlap},
		{"a dead letter that is a link to a record file, links followed", realSpool, linkToRecord, true, overlap},
		{"the spool named through a link, the dead letter plainly inside", linkSpool, filepath.Join(realSpool, "cursor.jsonl"), true, overlap},
		{"a dead letter in a linked directory outside the spool", realSpool, filepath.Join(linkOut, "dl.jsonl"), false, linkedDir},
		{"a dead letter in a linked directory outside the spool, links followed", realSpool, filepath.Join(linkOut, "dl.jsonl"), true, ""},
		{"a spool in a linked directory", filepath.Join(linkOut, "spool"), filepath.Join(realOut, "dl.jsonl"), false, linkedDir},
		{"a spool in a linked directory, links followed", filepath.Join(linkOut, "spool"), filepath.Join(realOut, "dl.jsonl"), true, ""},
		{"the default dead letter named through plain paths", realSpool, filepath.Join(realSpool, "dead-letter.jsonl"), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			follow := ""
			if tt.followSymlinks {
				follow = "\n\t\t\tfollow_symlinks"
			}
			_, _, adaptErr := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(fmt.Sprintf(`:8080 {
	ucs {
		forward http://127.0.0.1:1 {
			spool %s
			dead_letter %s%s
		}
	}
}`, tt.spool, tt.deadLetter, follow)), nil)
			cfgJSON := fmt.Sprintf(`{"apps":{"http":{"servers":{"srv0":{"listen":[":8080"],"routes":[{"handle":[`+
				`{"handler":"ucs","forward":{"urls":["http://127.0.0.1:1"],"spool":%q,"dead_letter":%q,"follow_symlinks":%t}}]}]}}}}}`,
				tt.spool, tt.deadLetter, tt.followSymlinks)
			var cfg caddy.Config
			require.NoError(t, json.Unmarshal([]byte(cfgJSON), &cfg))

			err := caddy.Validate(&cfg)

			if tt.err == "" {
				assert.NoError(t, adaptErr)
				assert.NoError(t, err)
				return
			}
			require.Error(t, adaptErr, "the Caddyfile is refused while adapting")
			assert.Contains(t, adaptErr.Error(), tt.err)
			require.Error(t, err, "caddy validate refuses the JSON config")
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}
