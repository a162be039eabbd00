package caddymodule

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTenantsAreMappedByTheirHeader(t *testing.T) {
	acme := newFakeUCS(t, metadata(map[string]int64{"email": 1003}, map[string]int64{"resolved": 2101}))
	globex := newFakeUCS(t, metadata(map[string]int64{"email": 7003}, map[string]int64{"resolved": 7101}))
	rec := newRecorder(t)
	dir := t.TempDir()
	tenants := fmt.Sprintf(`
		tenant 101 Acme {
			business_attributes_from %s {
				cache %s
			}
		}
		tenant 202 {
			business_attributes_from %s {
				cache %s
			}
			business_attribute Task.disposition DispositionCode
		}`, acme.srv.URL, filepath.Join(dir, "a.json"), globex.srv.URL, filepath.Join(dir, "g.json"))
	tester := startCaddy(t, fmt.Sprintf(`
	ucs {
		%s
	}
	reverse_proxy %s`, tenants, rec.addr()))
	body := []byte(`{"media_type":"email","disposition":"resolved"}`)

	acme.mu.Lock()
	assert.Equal(t, "101", acme.tenants[0], "the tenant's fetch names its first id")
	acme.mu.Unlock()
	globex.mu.Lock()
	assert.Equal(t, "202", globex.tenants[0])
	globex.mu.Unlock()

	for _, c := range []struct{ id, want string }{
		{"101", `"media_type":1003,"disposition":2101`},
		{"Acme", `"media_type":1003,"disposition":2101`},
		{"ACME", `"media_type":1003,"disposition":2101`},
		{"202", `"media_type":7003,"disposition":7101`},
	} {
		resp, b := post(t, tester, taskEndURL, body, "ContactCenterId", c.id)
		require.Equal(t, 204, resp.StatusCode, "%s: %s", c.id, b)
		assert.Contains(t, string(rec.lastBody()), c.want, c.id)
	}
	// No top-level tables: no header or an unknown tenant is a 400.
	for _, hdr := range [][]string{nil, {"ContactCenterId", "303"}} {
		resp, b := post(t, tester, taskEndURL, body, hdr...)
		assert.Equal(t, 400, resp.StatusCode)
		assert.Contains(t, string(b), exInvalidTenant)
		assert.Contains(t, string(b), "ContactCenterId")
	}

	// With top-level tables, those serve the rest.
	tester = startCaddy(t, fmt.Sprintf(`
	header {
		defer
		X-Tenant "{http.ucs.tenant}"
	}
	ucs {
		business_attributes %s
		%s
	}
	reverse_proxy %s`, attrsFile, tenants, rec.addr()))
	for _, hdr := range [][]string{nil, {"ContactCenterId", "303"}} {
		resp, b := post(t, tester, taskEndURL, body, hdr...)
		require.Equal(t, 204, resp.StatusCode, string(b))
		assert.Contains(t, string(rec.lastBody()), `"media_type":1003,"disposition":2101`)
		assert.Empty(t, resp.Header.Get("X-Tenant"))
	}
	resp, _ := post(t, tester, taskEndURL, body, "ContactCenterId", "202")
	require.Equal(t, 204, resp.StatusCode)
	assert.Contains(t, string(rec.lastBody()), `"media_type":7003`)
	assert.Equal(t, "202", resp.Header.Get("X-Tenant"))
	resp, _ = post(t, tester, taskEndURL, body, "ContactCenterId", "acme")
	assert.Equal(t, "101", resp.Header.Get("X-Tenant"), "{http.ucs.tenant} is the tenant's first id")
}

// TestSourcesMerge: fetched attributes replace a file's attribute of the
// same name; inline values replace the key's values.
func TestSourcesMerge(t *testing.T) {
	ucs := newFakeUCS(t, metadata(map[string]int64{"email": 9003}, map[string]int64{"resolved": 9101}))
	ctx, cancel := newTestContext(t)
	defer cancel()
	h := &Handler{
		BusinessAttributes:     []string{attrsFile}, // MediaType email 1003, … and TaskType
		BusinessAttributesFrom: &AttributesFrom{URL: ucs.srv.URL, Cache: filepath.Join(t.TempDir(), "c.json")},
		AttributeValues:        map[string]map[string]int64{"disposition": {"resolved": 5101}},
	}
	require.NoError(t, h.Provision(ctx))
	defer func() { _ = h.Cleanup() }()
	tables := h.top.norm.Load().Options().Attributes
	id, ok := tables.Lookup("media_type", "email", false)
	assert.True(t, ok)
	assert.Equal(t, int64(9003), id, "fetched over file")
	id, _ = tables.Lookup("disposition", "resolved", false)
	assert.Equal(t, int64(5101), id, "inline over fetched")
	_, ok = tables.Lookup("media_type", "voice", false)
	assert.False(t, ok, "the fetched attribute replaces the file's whole attribute")
	assert.Equal(t, "TaskType", tables.Attribute("task_type"), "file attributes the UCS did not send stay")
	assert.Equal(t, tenantHeaderKey, http.CanonicalHeaderKey(tenantHeader))
}
