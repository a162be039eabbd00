package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestShadowBlockAdaptsToTheModuleJSON(t *testing.T) {
	assertAdapts(t, `:8080 {
	ucs {
		shadow {
			journal /var/lib/caddy/ucs-shadow.jsonl
			sample 5%
			max_record 64KiB
			max_size 10MiB
			keep 3
		}
	}
	reverse_proxy ucs1:8080
}`, `{"apps":{"http":{"servers":{"srv0":{"listen":[":8080"],"routes":[{"handle":[
		{"handler":"ucs","shadow":{"journal":"/var/lib/caddy/ucs-shadow.jsonl","keep":3,"max_record":65536,"max_size":10485760,"sample":0.05}},
		{"handler":"reverse_proxy","upstreams":[{"dial":"ucs1:8080"}]}]}]}}}}}`)
}

func TestShadowShareParses(t *testing.T) {
	tests := []struct {
		in   string
		want float64
	}{{"5%", 0.05}, {"0.5%", 0.005}, {"100%", 1}, {"0%", 0}, {"0.25", 0.25}, {"1", 1}}
	for _, tt := range tests {
		got, err := parseShare(tt.in)
		require.NoError(t, err, tt.in)
		assert.InDelta(t, tt.want, got, 1e-12, tt.in)
	}
}

func TestShadowCaddyfileErrorsNameTheOption(t *testing.T) {
	tests := []struct {
		name, input, err string
	}{
		{"unknown option", "ucs {\n shadow {\n  fsync off\n }\n}", `unknown shadow option "fsync"; the options are journal, sample, max_record, max_size and keep`},
		{"sample over 100%", "ucs {\n shadow {\n  sample 150%\n }\n}", `shadow sample: "150%" is not a share`},
		{"sample not a number", "ucs {\n shadow {\n  sample some\n }\n}", `shadow sample: "some" is not a share`},
		{"max_record zero", "ucs {\n shadow {\n  max_record 0\n }\n}", "shadow max_record must be more than 0"},
		{"max_size not a size", "ucs {\n shadow {\n  max_size big\n }\n}", `shadow max_size: "big" is not a size`},
		{"keep zero", "ucs {\n shadow {\n  keep 0\n }\n}", `shadow keep must be a positive whole number, got "0"`},
		{"journal without a path", "ucs {\n shadow {\n  journal\n }\n}", "journal needs a value"},
		{"an argument", "ucs {\n shadow on\n}", "wrong argument count"},
		{"twice", "ucs {\n shadow\n shadow\n}", "shadow is already set"},
		{"after forward", "ucs {\n forward http://ucs:8080\n shadow\n}", "shadow cannot be combined with forward"},
		{"before local", "ucs {\n shadow\n local a.jsonl\n}", "local cannot be combined with shadow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := new(Handler)
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}

func TestShadowJSONConfigErrorsNameTheOption(t *testing.T) {
	share := func(f float64) *float64 { return &f }
	tests := []struct {
		name string
		h    Handler
		err  string
	}{
		{"with local", Handler{Shadow: &ShadowMode{}, Local: &LocalSink{Path: "x"}}, "shadow cannot be combined with local"},
		{"with forward", Handler{Shadow: &ShadowMode{}, Forward: &ForwardSink{URLs: []string{"http://a"}}}, "shadow cannot be combined with forward"},
		{"sample over 1", Handler{Shadow: &ShadowMode{Sample: share(5)}}, "shadow sample must be between 0 and 1"},
		{"negative sample", Handler{Shadow: &ShadowMode{Sample: share(-0.1)}}, "shadow sample must be between 0 and 1"},
		{"negative keep", Handler{Shadow: &ShadowMode{Keep: -1}}, "shadow max_record, max_size and keep must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := newTestContext(t)
			defer cancel()
			err := tt.h.Provision(ctx)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}
