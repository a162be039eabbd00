//go:build !race

package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
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
