package caddymodule

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTheCompleteTaskCallMatchesOnThePathAsTheUCSCleansIt(t *testing.T) {
	h := &Handler{servicesPfx: DefaultBasePath + "/services/", baseSegs: baseSegments(DefaultBasePath)}
	tests := []struct {
		method, path string
		sid, tid     string
		ok           bool
		rewritten    bool
		encoded      string
	}{
		{"POST", "/genesys/1/cs/services/42/tasks/7/end", "42", "7", true, false, ""},
		{"POST", "/genesys/1/cs/services/a_b/tasks/x/end", "a_b", "x", true, false, ""}, // matched, then refused as bad ids
		{"POST", "//genesys/1/cs/services/42/tasks/7/end", "42", "7", true, true, ""},
		{"POST", "/genesys//1/cs/services/42/tasks//7/end", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/x/../services/42/tasks/7/end", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/./services/42/tasks/7/./end", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end;jsessionid=1", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/services/42;a=b/tasks/7/end", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end/", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/services/%34%32/tasks/7/end", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/%2e%2e/7/end", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/services/42%2Ftasks%2F7/end", "42", "7", true, true, "service_id"},
		{"POST", "/genesys/1/cs/services/42/tasks/7%2fend", "42", "7", true, true, "task_id"},
		{"POST", "/genesys%2F1/cs/services/42/tasks/7/end", "42", "7", true, true, "path"},
		{"POST", "/genesys/1/cs/services//tasks//end", "", "", false, false, ""},
		{"GET", "/genesys/1/cs/services/42/tasks/7/end", "", "", false, false, ""},
		{"GET", "//genesys/1/cs/services/42/tasks/7/end", "", "", false, false, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/start", "", "", false, false, ""},
		{"POST", "/genesys/1/cs/services/42/end", "", "", false, false, ""},
		{"POST", "/genesys/1/cs/services/42/states/7/end", "", "", false, false, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end/x", "", "", false, false, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end/x/..", "42", "7", true, true, ""},
		{"POST", "/genesys/2/cs/services/42/tasks/7/end", "", "", false, false, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end//", "42", "7", true, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			m := h.match(httptest.NewRequest(tt.method, tt.path, nil))
			assert.Equal(t, tt.ok, m.ok)
			assert.Equal(t, tt.sid, m.sid)
			assert.Equal(t, tt.tid, m.tid)
			assert.Equal(t, tt.rewritten, m.rewritten)
			assert.Equal(t, tt.encoded, m.encodedSlash)
		})
	}
}
