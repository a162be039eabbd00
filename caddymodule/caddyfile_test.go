package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// adaptRoute wraps the handlers of one site block in the JSON the Caddyfile
// adapter produces for `:8080 { … }`.
func adaptRoute(handlers string) string {
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(`{"apps":{"http":{"servers":{"srv0":{"listen":[":8080"],"routes":[{"handle":[`+handlers+`]}]}}}}}`)); err != nil {
		panic(err)
	}
	return compact.String()
}

func TestCaddyfileAdaptsToTheModuleJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		caddyfile string
		json      string
	}{
		{
			"bare directive takes every default",
			":8080 {\n\tucs\n}",
			adaptRoute(`{"handler": "ucs"}`),
		},
		{
			"every option",
			`:8080 {
	ucs {
		base_path /cs
		business_attributes a.json b.json
		business_attributes c.json
		business_attribute media_type Media
		attribute_values disposition {
			resolved 2101
			"not resolved" 2102
		}
		unknown_names pass
		case_insensitive_names
		fill_defaults
		max_body 2MiB
		max_depth 10
		invalid_utf8 reject
		errors caddy
		health
		local data/events.jsonl {
			fsync off
			max_size 10MB
			keep 3
		}
	}
}`,
			adaptRoute(`{
				"attribute_values": {"disposition": {"not resolved": 2102, "resolved": 2101}},
				"base_path": "/cs",
				"business_attribute": {"media_type": "Media"},
				"business_attributes": ["a.json", "b.json", "c.json"],
				"case_insensitive_names": true,
				"errors": "caddy",
				"fill_defaults": true,
				"handler": "ucs",
				"health": true,
				"invalid_utf8": "reject",
				"local": {"fsync": "off", "keep": 3, "max_size": 10000000, "path": "data/events.jsonl"},
				"max_body": 2097152,
				"max_depth": 10,
				"unknown_names": "pass"
			}`),
		},
		{
			"forward with every option",
			`:8080 {
	ucs {
		forward http://ucs1:8080 https://ucs2.example.com/cs-prefix {
			timeout 2s
			spool data/spool
			max_spool 512MiB
			dead_letter data/rejected.jsonl
			replay_concurrency 128
			replay_backoff 100ms 1m
			max_attempts 5
			max_retry_age 30m
		}
	}
}`,
			adaptRoute(`{
				"forward": {
					"dead_letter": "data/rejected.jsonl",
					"max_attempts": 5,
					"max_retry_age": 1800000000000,
					"max_spool": 536870912,
					"replay_backoff": {"max": 60000000000, "min": 100000000},
					"replay_concurrency": 128,
					"spool": "data/spool",
					"timeout": 2000000000,
					"urls": ["http://ucs1:8080", "https://ucs2.example.com/cs-prefix"]
				},
				"handler": "ucs"
			}`),
		},
		{
			"replay_concurrency auto with a max",
			`:8080 {
	ucs {
		forward http://ucs1:8080 {
			spool data/spool
			replay_concurrency auto 64
		}
	}
}`,
			adaptRoute(`{
				"forward": {"replay_concurrency_max": 64, "spool": "data/spool", "urls": ["http://ucs1:8080"]},
				"handler": "ucs"
			}`),
		},
		{
			"replay_concurrency auto is the default, written out",
			`:8080 {
	ucs {
		forward http://ucs1:8080 {
			spool data/spool
			replay_concurrency auto
		}
	}
}`,
			adaptRoute(`{
				"forward": {"spool": "data/spool", "urls": ["http://ucs1:8080"]},
				"handler": "ucs"
			}`),
		},
		{
			"follow_symlinks in the local and forward blocks",
			`:8080 {
	ucs {
		local data/events.jsonl {
			follow_symlinks
		}
	}
	ucs {
		forward http://ucs1:8080 {
			spool data/spool
			follow_symlinks
		}
	}
}`,
			adaptRoute(`{"handler": "ucs", "local": {"follow_symlinks": true, "path": "data/events.jsonl"}},
				{"forward": {"follow_symlinks": true, "spool": "data/spool", "urls": ["http://ucs1:8080"]}, "handler": "ucs"}`),
		},
		{
			"forward without a block",
			":8080 {\n\tucs {\n\t\tforward http://ucs1:8080\n\t}\n}",
			adaptRoute(`{"forward": {"urls": ["http://ucs1:8080"]}, "handler": "ucs"}`),
		},
		{
			"operations and Genesys [business-attributes] keys",
			`:8080 {
	ucs {
		operations task.start task.end
		business_attribute Task.type TaskType
		business_attribute *.media_type Channel
		attribute_values State.type {
			menu 3
		}
	}
}`,
			adaptRoute(`{"attribute_values": {"State.type": {"menu": 3}},
				"business_attribute": {"*.media_type": "Channel", "Task.type": "TaskType"},
				"handler": "ucs", "operations": ["task.start", "task.end"]}`),
		},
		{
			"business_attributes_from and tenants",
			`:8080 {
	ucs {
		business_attributes_from http://ucs:8080 {
			refresh 1m
			cache data/attrs.json
			timeout 3s
			header Authorization "Basic {env.UCS_AUTH}"
			header X-Trace a
			header X-Trace b
		}
		tenant 101 Acme {
			business_attributes acme.json
			business_attribute Task.type AcmeTaskType
			attribute_values media_type {
				email 7003
			}
			business_attributes_from https://ucs2/prefix
		}
		tenant 202 {
			attribute_values disposition {
				resolved 8101
			}
		}
	}
}`,
			adaptRoute(`{
				"business_attributes_from": {"cache": "data/attrs.json", "headers": {"Authorization": ["Basic {env.UCS_AUTH}"], "X-Trace": ["a", "b"]},
					"refresh": 60000000000, "timeout": 3000000000, "url": "http://ucs:8080"},
				"handler": "ucs",
				"tenants": [
					{"attribute_values": {"media_type": {"email": 7003}}, "business_attribute": {"Task.type": "AcmeTaskType"},
					 "business_attributes": ["acme.json"], "business_attributes_from": {"url": "https://ucs2/prefix"}, "ids": ["101", "Acme"]},
					{"attribute_values": {"disposition": {"resolved": 8101}}, "ids": ["202"]}
				]}`),
		},
		{
			"ordered before respond and reverse_proxy without an order line",
			":8080 {\n\treverse_proxy localhost:9000\n\tucs\n\trequest_header X-A b\n}",
			adaptRoute(`{"handler": "headers", "request": {"set": {"X-A": ["b"]}}},
				{"handler": "ucs"},
				{"handler": "reverse_proxy", "upstreams": [{"dial": "localhost:9000"}]}`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assertAdapts(t, tt.caddyfile, tt.json) })
	}
}

// assertAdapts checks that caddyfile adapts to the JSON config wantJSON.
func assertAdapts(t *testing.T, caddyfile, wantJSON string) {
	t.Helper()
	// AssertAdapt compares text: lay the expected JSON out as the adapter does.
	var want bytes.Buffer
	require.NoError(t, json.Indent(&want, []byte(wantJSON), "", "\t"))
	caddytest.AssertAdapt(t, caddyfile, "caddyfile", want.String())
}

func TestCaddyfileErrorsNameTheOption(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		input string
		err   string
	}{
		{"unknown option", "ucs {\n  spool x\n}", `unknown ucs option "spool"`},
		{"unknown operation", "ucs {\n  operations task.end task.finish\n}",
			`operations: unknown operation "task.finish"; the operations are service.start, service.end, state.start, state.end, state.transition, task.start, task.end, service.associate, extension.update`},
		{"operations without a name", "ucs {\n  operations\n}", "operations needs at least one operation: service.start, "},
		{"two sinks", "ucs {\n  local a.jsonl\n  local b.jsonl\n}", "only one sink may be configured: local is already set"},
		{"local and forward", "ucs {\n  local a.jsonl\n  forward http://ucs:8080\n}", "only one sink may be configured: local is already set"},
		{"forward and local", "ucs {\n  forward http://ucs:8080\n  local a.jsonl\n}", "only one sink may be configured: forward is already set"},
		{"two forwards", "ucs {\n  forward http://a:8080\n  forward http://b:8080\n}", "only one sink may be configured: forward is already set"},
		{"forward without a URL", "ucs {\n  forward\n}", "forward needs at least one upstream base URL"},
		{"forward URL without a scheme", "ucs {\n  forward ucs1:8080\n}", `forward: "ucs1:8080" is not an http or https base URL with a host`},
		{"forward URL of another scheme", "ucs {\n  forward ftp://ucs1\n}", `forward: "ftp://ucs1" is not an http or https base URL`},
		{"forward URL without a host", "ucs {\n  forward http://\n}", `forward: "http://" is not an http or https base URL with a host`},
		{"forward second URL bad", "ucs {\n  forward http://a:1 http://b:2#x\n}", `forward: "http://b:2#x" is not an http or https base URL`},
		{"forward unknown option", "ucs {\n  forward http://a {\n    retries 3\n  }\n}", `unknown forward option "retries"`},
		{"forward bad timeout", "ucs {\n  forward http://a {\n    timeout soon\n  }\n}", `forward timeout must be a positive duration such as 10s, got "soon"`},
		{"forward zero timeout", "ucs {\n  forward http://a {\n    timeout 0s\n  }\n}", `forward timeout must be a positive duration`},
		{"forward timeout without value", "ucs {\n  forward http://a {\n    timeout\n  }\n}", "timeout needs a value"},
		{"forward bad max_spool", "ucs {\n  forward http://a {\n    spool s\n    max_spool huge\n  }\n}", `forward max_spool: "huge" is not a size`},
		{"forward zero max_spool", "ucs {\n  forward http://a {\n    spool s\n    max_spool 0\n  }\n}", "forward max_spool must be more than 0"},
		{"forward max_spool without spool", "ucs {\n  forward http://a {\n    max_spool 1GiB\n  }\n}", "forward max_spool needs spool <dir>"},
		{"forward dead_letter without spool", "ucs {\n  forward http://a {\n    dead_letter d.jsonl\n  }\n}", "forward dead_letter needs spool <dir>"},
		{"forward replay_backoff with one value", "ucs {\n  forward http://a {\n    spool s\n    replay_backoff 1s\n  }\n}", "forward replay_backoff needs two durations"},
		{"forward replay_backoff min over max", "ucs {\n  forward http://a {\n    spool s\n    replay_backoff 2s 1s\n  }\n}", "forward replay_backoff needs 0 <= min <= max"},
		{"forward zero replay_concurrency", "ucs {\n  forward http://a {\n    spool s\n    replay_concurrency 0\n  }\n}", "forward replay_concurrency must be auto or a positive whole number"},
		{"forward replay_concurrency without a value", "ucs {\n  forward http://a {\n    spool s\n    replay_concurrency\n  }\n}", "forward replay_concurrency needs auto, auto <max> or a fixed number"},
		{"forward replay_concurrency with a max but not auto", "ucs {\n  forward http://a {\n    spool s\n    replay_concurrency 8 16\n  }\n}", "forward replay_concurrency needs auto, auto <max> or a fixed number"},
		{"forward replay_concurrency auto with a zero max", "ucs {\n  forward http://a {\n    spool s\n    replay_concurrency auto 0\n  }\n}", "forward replay_concurrency auto's max must be a positive whole number"},
		{"forward replay_concurrency auto max without spool", "ucs {\n  forward http://a {\n    replay_concurrency auto 8\n  }\n}", "need spool <dir>"},
		{"forward bad max_attempts", "ucs {\n  forward http://a {\n    spool s\n    max_attempts many\n  }\n}", "forward max_attempts must be a positive whole number"},
		{"forward bad max_retry_age", "ucs {\n  forward http://a {\n    spool s\n    max_retry_age soon\n  }\n}", "forward max_retry_age must be a positive duration"},
		{"forward replay option without spool", "ucs {\n  forward http://a {\n    replay_concurrency 8\n  }\n}", "need spool <dir>"},
		{"forward spool with two dirs", "ucs {\n  forward http://a {\n    spool a b\n  }\n}", `spool takes one value, got another: "b"`},
		{"argument on the directive", "ucs extra", "wrong argument count"},
		{"size that does not parse", "ucs {\n  max_body lots\n}", `max_body: "lots" is not a size`},
		{"size zero", "ucs {\n  max_body 0\n}", "max_body must be more than 0"},
		{"unknown unit", "ucs {\n  max_body 5parsecs\n}", `max_body: "5parsecs" is not a size`},
		{"negative depth", "ucs {\n  max_depth -1\n}", `max_depth must be a positive whole number, got "-1"`},
		{"bad unknown_names", "ucs {\n  unknown_names drop\n}", `unknown_names must be one of reject, pass, got "drop"`},
		{"bad invalid_utf8", "ucs {\n  invalid_utf8 keep\n}", `invalid_utf8 must be one of replace, reject, got "keep"`},
		{"bad errors", "ucs {\n  errors json\n}", `errors must be one of genesys, caddy, got "json"`},
		{"option without its value", "ucs {\n  base_path\n}", "base_path needs a value"},
		{"option with two values", "ucs {\n  base_path /a /b\n}", `base_path takes one value, got another: "/b"`},
		{"business_attribute needs two values", "ucs {\n  business_attribute media_type\n}", "business_attribute needs a field and an attribute name"},
		{"business_attributes needs a file", "ucs {\n  business_attributes\n}", "business_attributes needs at least one file"},
		{"attribute_values needs a field", "ucs {\n  attribute_values\n}", "attribute_values needs a field"},
		{"attribute_values dbid not a number", "ucs {\n  attribute_values media_type {\n    email x\n  }\n}", `attribute_values media_type: the dbid of "email" must be an integer, got "x"`},
		{"attribute_values name twice", "ucs {\n  attribute_values media_type {\n    email 1\n    email 2\n  }\n}", `attribute_values media_type: "email" is listed twice`},
		{"attribute_values empty block", "ucs {\n  attribute_values media_type\n}", "attribute_values media_type: the block lists no values"},
		{"flag with a value", "ucs {\n  fill_defaults yes\n}", "wrong argument count"},
		{"attributes_from without a URL", "ucs {\n  business_attributes_from\n}", "business_attributes_from needs the UCS base URL"},
		{"attributes_from bad URL", "ucs {\n  business_attributes_from ucs:8080\n}", `business_attributes_from: "ucs:8080" is not an http(s) base URL`},
		{"attributes_from refresh under 1s", "ucs {\n  business_attributes_from http://ucs {\n    refresh 500ms\n  }\n}", "refresh must be at least 1s, got 500ms"},
		{"attributes_from bad timeout", "ucs {\n  business_attributes_from http://ucs {\n    timeout 0s\n  }\n}", "business_attributes_from timeout must be a positive duration"},
		{"attributes_from header with one value", "ucs {\n  business_attributes_from http://ucs {\n    header Authorization\n  }\n}", "header needs a name and a value"},
		{"attributes_from unknown option", "ucs {\n  business_attributes_from http://ucs {\n    every 1m\n  }\n}", `business_attributes_from: unknown option "every"`},
		{"attributes_from twice", "ucs {\n  business_attributes_from http://a\n  business_attributes_from http://b\n}", "business_attributes_from is already set to http://a"},
		{"tenant without an id", "ucs {\n  tenant {\n    business_attributes a.json\n  }\n}", "tenant needs at least one ContactCenterId"},
		{"tenant without tables", "ucs {\n  tenant 101 {\n    business_attribute Task.type TT\n  }\n}", "tenant 101: has no tables"},
		{"tenant unknown option", "ucs {\n  tenant 101 {\n    local a.jsonl\n  }\n}", `tenant 101: unknown option "local"`},
		{"local without a path", "ucs {\n  local\n}", "local needs a file path"},
		{"local unknown option", "ucs {\n  local a.jsonl {\n    rotate daily\n  }\n}", `unknown local option "rotate"`},
		{"local bad fsync", "ucs {\n  local a.jsonl {\n    fsync sometimes\n  }\n}", `local fsync must be one of always, off, got "sometimes"`},
		{"local bad max_size", "ucs {\n  local a.jsonl {\n    max_size big\n  }\n}", `local max_size: "big" is not a size`},
		{"a check of Provision names the option's line", "ucs {\n  max_depth 3\n  unknown_names drop\n}", `unknown_names must be one of reject, pass, got "drop", at Testfile:3`},
		{"a check of Provision names the line of the block's end", "ucs {\n  forward http://a {\n    dead_letter d.jsonl\n  }\n}", "forward dead_letter needs spool <dir>, at Testfile:4"},
		{"local bad keep", "ucs {\n  local a.jsonl {\n    keep 0\n  }\n}", `local keep must be a positive whole number, got "0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}

func TestJSONConfigErrorsNameTheOption(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		h    Handler
		err  string
	}{
		{"relative base path", Handler{BasePath: "cs"}, `base_path "cs" must start with /`},
		{"unknown operation", Handler{Operations: []string{"task.end", "Task.End"}}, `operations: unknown operation "Task.End"; the operations are service.start, `},
		{"unknown business-attribute key", Handler{BusinessAttributes: []string{attrsFile}, BusinessAttribute: map[string]string{"Customer.type": "TaskType"}},
			"business_attribute: unknown field Customer.type; known fields: "},
		{"negative max_body", Handler{MaxBody: -1}, "max_body must not be negative"},
		{"negative max_depth", Handler{MaxDepth: -2}, "max_depth must not be negative"},
		{"bad enum", Handler{UnknownNames: "Reject"}, `unknown_names must be one of reject, pass, got "Reject"`},
		{"local without path", Handler{Local: &LocalSink{}}, "local needs a file path"},
		{"local negative keep", Handler{Local: &LocalSink{Path: "x", Keep: -1}}, "local keep must not be negative"},
		{"local negative max_size", Handler{Local: &LocalSink{Path: "x", MaxSize: -1}}, "local max_size must not be negative"},
		{"local bad fsync", Handler{Local: &LocalSink{Path: "x", Fsync: "never"}}, `local fsync must be one of always, off, got "never"`},
		{"local and forward", Handler{Local: &LocalSink{Path: "x"}, Forward: &ForwardSink{URLs: []string{"http://a"}}}, "only one sink may be configured: local and forward are both set"},
		{"forward without URLs", Handler{Forward: &ForwardSink{}}, "forward needs at least one upstream base URL"},
		{"forward bad URL", Handler{Forward: &ForwardSink{URLs: []string{"http://a", "a:80"}}}, `forward: "a:80" is not an http or https base URL`},
		{"forward negative timeout", Handler{Forward: &ForwardSink{URLs: []string{"http://a"}, Timeout: -1}}, "forward timeout must not be negative"},
		{"forward negative max_spool", Handler{Forward: &ForwardSink{URLs: []string{"http://a"}, Spool: "s", MaxSpool: -1}}, "forward max_spool must not be negative"},
		{"forward max_spool without spool", Handler{Forward: &ForwardSink{URLs: []string{"http://a"}, MaxSpool: 10}}, "forward max_spool needs spool <dir>"},
		{"forward dead_letter without spool", Handler{Forward: &ForwardSink{URLs: []string{"http://a"}, DeadLetter: "d"}}, "forward dead_letter needs spool <dir>"},
		{"forward negative replay_concurrency", Handler{Forward: &ForwardSink{URLs: []string{"http://a"}, Spool: "s", ReplayConcurrency: -1}}, "forward replay_concurrency must not be negative"},
		{"forward negative replay_concurrency_max", Handler{Forward: &ForwardSink{URLs: []string{"http://a"}, Spool: "s", ReplayConcurrencyMax: -1}}, "forward replay_concurrency_max must not be negative"},
		{"forward fixed replay_concurrency and auto's max", Handler{Forward: &ForwardSink{URLs: []string{"http://a"}, Spool: "s", ReplayConcurrency: 8, ReplayConcurrencyMax: 16}}, "forward replay_concurrency is either a fixed number (8) or auto with a max (16), not both"},
		{"forward replay_backoff min over max", Handler{Forward: &ForwardSink{URLs: []string{"http://a"}, Spool: "s", ReplayBackoff: &Backoff{Min: caddy.Duration(time.Second), Max: caddy.Duration(time.Millisecond)}}}, "forward replay_backoff needs 0 <= min <= max"},
		{"forward max_attempts without spool", Handler{Forward: &ForwardSink{URLs: []string{"http://a"}, MaxAttempts: 3}}, "need spool <dir>"},
		{"attributes_from bad URL", Handler{BusinessAttributesFrom: &AttributesFrom{URL: "ucs:80"}}, `business_attributes_from: "ucs:80" is not an http(s) base URL`},
		{"attributes_from refresh under 1s", Handler{BusinessAttributesFrom: &AttributesFrom{URL: "http://ucs", Refresh: caddy.Duration(time.Millisecond)}}, "refresh must be at least 1s"},
		{"attributes_from negative timeout", Handler{BusinessAttributesFrom: &AttributesFrom{URL: "http://ucs", Timeout: -1}}, "timeout must not be negative"},
		{"tenant without ids", Handler{Tenants: []*Tenant{{AttributeValues: map[string]map[string]int64{"media_type": {"a": 1}}}}}, "tenant #1 needs at least one ContactCenterId"},
		{"tenant without tables", Handler{Tenants: []*Tenant{{IDs: []string{"101"}}}}, "tenant 101: has no tables"},
		{"tenant ids clash", Handler{Tenants: []*Tenant{{IDs: []string{"Acme"}, BusinessAttributes: []string{attrsFile}}, {IDs: []string{"ACME"}, BusinessAttributes: []string{attrsFile}}}}, `ContactCenterId "ACME" is empty or names another tenant too`},
		{"tenant bad URL", Handler{Tenants: []*Tenant{{IDs: []string{"101"}, BusinessAttributesFrom: &AttributesFrom{URL: "ftp://x"}}}}, `tenant 101: business_attributes_from: "ftp://x" is not an http(s) base URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := newTestContext(t)
			defer cancel()
			err := tt.h.Provision(ctx) // the checks come before anything is opened
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}

func TestTablesThatDoNotLoadFailProvisioning(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		h    Handler
		err  string
	}{
		{"missing file", Handler{BusinessAttributes: []string{"no/such/file.json"}}, `business_attributes "no/such/file.json"`},
		{"unknown field mapped", Handler{BusinessAttributes: []string{attrsFile}, BusinessAttribute: map[string]string{"colour": "Colour"}}, "business_attribute"},
		{"attribute not loaded", Handler{BusinessAttributes: []string{attrsFile}, BusinessAttribute: map[string]string{"media_type": "Nope"}}, "Nope"},
		{"inline table for an unknown field", Handler{AttributeValues: map[string]map[string]int64{"colour": {"red": 1}}}, "attribute_values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.h.buildSets()
			tt.h.releaseSets()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}

func TestSizesParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
	}{
		{"1048576", 1 << 20},
		{"1MiB", 1 << 20},
		{"1mib", 1 << 20},
		{"1MB", 1_000_000},
		{"512 KB", 512_000},
		{"64KiB", 64 << 10},
		{"2GiB", 2 << 30},
		{"1.5MiB", 3 << 19},
		{"100B", 100},
		{"10k", 10_000},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestSizesThatDoNotParseAreRefused(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "MiB", "-1", "1 2", "1.2.3KB", "1 parsec", "99999999999999999999", "9999999999GiB"} {
		t.Run(in, func(t *testing.T) {
			_, err := parseSize(in)
			assert.Error(t, err)
		})
	}
}

func TestValidateRefusesAnExplicitDeadLetterInsideTheSpool(t *testing.T) {
	if testing.Short() {
		t.Skip("provisions Caddy's http app")
	}
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	tests := []struct {
		name       string
		deadLetter string
		refused    bool
	}{
		{"the spool's record file", filepath.Join(spool, "spool.jsonl"), true},
		{"the spool's cursor", filepath.Join(spool, "cursor.jsonl"), true},
		{"any other file inside the spool", filepath.Join(spool, "sub", "rejected.jsonl"), true},
		{"the default named explicitly", filepath.Join(spool, "dead-letter.jsonl"), false},
		{"a file outside the spool", filepath.Join(dir, "dead-letter.jsonl"), false},
		{"a sibling directory sharing the spool's name as a prefix", filepath.Join(dir, "spool-rejected", "dl.jsonl"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The Caddyfile refuses it while adapting, naming the line.
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(fmt.Sprintf(`:8080 {
	ucs {
		forward http://127.0.0.1:1 {
			spool %s
			dead_letter %s
		}
	}
}`, spool, tt.deadLetter)), nil)
			if tt.refused {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "is inside the spool directory")
				assert.Contains(t, err.Error(), "Caddyfile:6")
			} else {
				require.NoError(t, err)
			}
			// A JSON config is refused by caddy validate.
			cfgJSON := fmt.Sprintf(`{"apps":{"http":{"servers":{"srv0":{"listen":[":8080"],"routes":[{"handle":[`+
				`{"handler":"ucs","forward":{"urls":["http://127.0.0.1:1"],"spool":%q,"dead_letter":%q}}]}]}}}}}`, spool, tt.deadLetter)
			var cfg caddy.Config
			require.NoError(t, json.Unmarshal([]byte(cfgJSON), &cfg))

			err = caddy.Validate(&cfg)

			if !tt.refused {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), fmt.Sprintf("forward dead_letter %q is inside the spool directory %q", tt.deadLetter, spool))
		})
	}
}
