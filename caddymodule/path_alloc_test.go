//go:build !race

package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMatchingACleanPathAllocatesNothing(t *testing.T) {
	h := &Handler{BasePath: DefaultBasePath, basePfx: DefaultBasePath + "/", baseSegs: baseSegments(DefaultBasePath), ops: parseOperations(nil)}
	for _, r := range []*http.Request{
		httptest.NewRequest("POST", "/genesys/1/cs/services/42/tasks/7/end", nil),
		httptest.NewRequest("POST", "/genesys/1/cs/services/start", nil),
		httptest.NewRequest("PUT", "/genesys/1/cs/services/42/tasks/7/extensions/Survey/merge", nil),
		httptest.NewRequest("POST", "/genesys/1/cs/services/42/states/3/end", nil),
	} {
		allocs := testing.AllocsPerRun(100, func() { _ = h.match(r) })
		assert.Zero(t, allocs, r.URL.Path)
	}
}

func TestPickingATenantAllocatesNothing(t *testing.T) {
	h := &Handler{BusinessAttributes: []string{attrsFile}, Tenants: []*Tenant{
		{IDs: []string{"101", "Acme"}, BusinessAttributes: []string{attrsFile}},
		{IDs: []string{"202"}, AttributeValues: map[string]map[string]int64{"media_type": {"email": 7003}}},
	}}
	require.NoError(t, h.buildSets())
	defer h.releaseSets()
	for _, id := range []string{"101", "ACME", "202", "303", ""} {
		r := httptest.NewRequest("POST", "/genesys/1/cs/services/42/tasks/7/end", nil)
		if id != "" {
			r.Header.Set("ContactCenterId", id)
		}
		allocs := testing.AllocsPerRun(100, func() { _ = h.tenantSet(r).norm.Load() })
		assert.Zero(t, allocs, id)
	}
}
