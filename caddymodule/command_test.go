package caddymodule

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/normalize"
)

const seedFile = "../testdata/ivr-task-end.json"

func TestNormalizeCommandPrintsTheStrictBodyAndItsRepairs(t *testing.T) {
	t.Parallel()
	seed, err := os.ReadFile(seedFile)
	require.NoError(t, err)
	n, err := normalize.New(normalize.Options{Attributes: attributeTables(t)})
	require.NoError(t, err)
	var rep normalize.Report
	want, err := n.TaskEnd(nil, seed, testNow, &rep)
	require.NoError(t, err)
	require.Positive(t, rep.NumListed)

	var stdout, stderr bytes.Buffer
	code := runNormalize(normalizeFlags{attributes: []string{attrsFile}, now: testNow.Format("2006-01-02T15:04:05.999Z07:00")},
		seedFile, nil, &stdout, &stderr)

	assert.Equal(t, 0, code, stderr.String())
	assert.Equal(t, string(want)+"\n", stdout.String())
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	require.GreaterOrEqual(t, len(lines), rep.NumListed)
	for i := range rep.NumListed {
		line, col := normalize.Position(seed, rep.First[i].Offset)
		assert.Contains(t, lines[i], "repair "+rep.First[i].Kind.String()+" at "+strconv.Itoa(line)+":"+strconv.Itoa(col))
	}
}

func TestNormalizeCommandReadsStdin(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := runNormalize(normalizeFlags{now: "2026-03-04T05:06:07.891Z"}, "-", strings.NewReader(`{"a":1,"timestamp":null}`), &stdout, &stderr)
	assert.Equal(t, 0, code, stderr.String())
	assert.Equal(t, string(strictOf(t, normalize.Options{}, `{"a":1,"timestamp":null}`))+"\n", stdout.String())
}

func TestNormalizeCommandDryRunsAnyEventType(t *testing.T) {
	t.Parallel()
	n, err := normalize.New(normalize.Options{Attributes: attributeTables(t)})
	require.NoError(t, err)
	tests := []struct {
		operation string
		body      string
	}{
		{"state.start", `{state_type: identification, previous_state_id: "7"}`},
		{"service.start", `{service_type: sales, customer_id: 4711}`},
		{"state.transition", `{from: {state_id: "3"}, to: {state_type: self service}}`},
		{"extension.update", `[{a: True}]`},
	}
	for _, tt := range tests {
		t.Run(tt.operation, func(t *testing.T) {
			op, ok := normalize.ParseOperation(tt.operation)
			require.True(t, ok)
			want, err := n.Event(op, nil, []byte(tt.body), testNow, nil)
			require.NoError(t, err)
			var stdout, stderr bytes.Buffer
			code := runNormalize(normalizeFlags{operation: tt.operation, attributes: []string{attrsFile}, now: "2026-03-04T05:06:07.891Z"},
				"-", strings.NewReader(tt.body), &stdout, &stderr)
			assert.Equal(t, 0, code, stderr.String())
			assert.Equal(t, string(want)+"\n", stdout.String())
		})
	}
	var stdout, stderr bytes.Buffer
	code := runNormalize(normalizeFlags{operation: "state.begin"}, "-", strings.NewReader(`{}`), &stdout, &stderr)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr.String(), `--operation: unknown operation "state.begin"; the operations are service.start, `)
}

func TestNormalizeCommandExitsWithStatus1OnABodyTheServerRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name  string
		body  string
		flags normalizeFlags
		err   string
	}{
		{"truncated", `{"a": [1`, normalizeFlags{}, "400 InvalidJsonException: " + normalizeError(t, normalize.Options{}, `{"a": [1`)},
		{"not an object", `"x"`, normalizeFlags{}, "400 InvalidJsonException: " + normalizeError(t, normalize.Options{}, `"x"`)},
		{"unknown name", `{"media_type":"pigeon"}`, normalizeFlags{attributes: []string{attrsFile}},
			"400 InvalidBusinessAttributeException: " + normalizeError(t, normalize.Options{Attributes: attributeTables(t)}, `{"media_type":"pigeon"}`)},
		{"too deep", `{"a":[[[1]]]}`, normalizeFlags{maxDepth: 2},
			"400 InvalidJsonException: " + normalizeError(t, normalize.Options{MaxDepth: 2}, `{"a":[[[1]]]}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".json")
			require.NoError(t, os.WriteFile(path, []byte(tt.body), 0o600))
			var stdout, stderr bytes.Buffer
			code := runNormalize(tt.flags, path, nil, &stdout, &stderr)
			assert.Equal(t, 1, code)
			assert.Empty(t, stdout.String())
			assert.Equal(t, tt.err+"\n", stderr.String())
		})
	}
}

func TestNormalizeCommandExitsWithStatus2OnAUsageError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		flags normalizeFlags
		input string
		err   string
	}{
		{"missing file", normalizeFlags{}, "no/such.json", "no such file"},
		{"bad --now", normalizeFlags{now: "yesterday"}, seedFile, "--now"},
		{"bad --unknown-names", normalizeFlags{unknownNames: "drop"}, seedFile, "unknown_names must be one of"},
		{"attributes file missing", normalizeFlags{attributes: []string{"no/such.json"}}, seedFile, "business_attributes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, 2, runNormalize(tt.flags, tt.input, nil, &stdout, &stderr))
			assert.Contains(t, stderr.String(), tt.err)
		})
	}
}

func TestUCSCommandsHandTheirExitStatusToCaddyInsteadOfExiting(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.json"), filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(good, []byte(`{a: 1}`), 0o600))
	require.NoError(t, os.WriteFile(bad, []byte(`[`), 0o600))
	tests := []struct {
		name string
		args []string
		err  string // "" for success
	}{
		{"a body the server accepts", []string{"--now", "2026-03-04T05:06:07Z", good}, ""},
		{"a body the server would refuse exits 1 with a logged error", []string{bad}, "the body would be refused"},
		{"a usage error exits 2", []string{"--operation", "state.begin", bad}, "exiting with status 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newNormalizeCommand()
			var stdout, stderr bytes.Buffer
			c.SetOut(&stdout)
			c.SetErr(&stderr)
			c.SetArgs(tt.args)

			err := c.Execute()

			if tt.err == "" {
				require.NoError(t, err, stderr.String())
				assert.False(t, c.SilenceErrors)
				return
			}
			require.Error(t, err)
			assert.Equal(t, tt.err, err.Error())
			assert.True(t, c.SilenceErrors, "the run has said why on stderr; cobra adds nothing")
			assert.NotEmpty(t, stderr.String())
		})
	}
}
