package caddymodule

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGenesysCompleteTaskExampleReachesTheUCSStrict posts the Genesys documentation's own Complete
// Task example, byte for byte, to the documented path through ucs and reverse_proxy: the caller
// gets the documented 204 and the UCS receives the strict form in testdata, byte for byte but for
// the timestamp, which is the gateway's receive time.
func TestGenesysCompleteTaskExampleReachesTheUCSStrict(t *testing.T) {
	rec := newRecorder(t)
	tester := startCaddy(t, "ucs {\nbusiness_attributes "+attrsFile+"\n}\nreverse_proxy "+rec.addr())
	body, err := os.ReadFile("../testdata/genesys-complete-task.json")
	require.NoError(t, err)
	golden, err := os.ReadFile("../testdata/genesys-complete-task.strict.json")
	require.NoError(t, err)

	resp, answer := post(t, tester, caddyURL+"/genesys/1/cs/services/95/tasks/3/end", body,
		"Content-Type", "application/json")
	require.Equal(t, http.StatusNoContent, resp.StatusCode, "%s", answer)
	assert.Empty(t, answer)

	rec.mu.Lock()
	got := rec.body
	rec.mu.Unlock()
	var gotEvent, wantEvent struct {
		Timestamp string `json:"timestamp"`
	}
	require.NoError(t, json.Unmarshal(got, &gotEvent))
	require.NoError(t, json.Unmarshal(golden, &wantEvent))
	assert.Equal(t, testNow.Format("2006-01-02T15:04:05.000Z"), gotEvent.Timestamp, "the receive time, canonical UTC ms")
	// Byte for byte, key order included, once the receive time is the golden's.
	assert.Equal(t, strings.TrimSuffix(string(golden), "\n"),
		strings.Replace(string(got), gotEvent.Timestamp, wantEvent.Timestamp, 1))
}

// TestGenesysStartTaskExampleReachesTheUCSStrictAndItsAnswerComesBack posts the loose Start Task
// body of the README (the documentation's `"task_type":customer info`, `"price":25 000`) through
// ucs and reverse_proxy: the UCS receives the golden strict form and its 201 with the new task id
// comes back unchanged.
func TestGenesysStartTaskExampleReachesTheUCSStrictAndItsAnswerComesBack(t *testing.T) {
	ucs := newUCSServer(t)
	ucs.set(func(u *ucsServer) {
		u.answer = func(seenRequest) (int, http.Header, string) {
			return http.StatusCreated, http.Header{"Content-Type": {"application/json"}}, `{"task_id":8}`
		}
	})
	tester := startCaddy(t, "ucs {\nbusiness_attributes "+attrsFile+"\n}\nreverse_proxy "+strings.TrimPrefix(ucs.url(), "http://"))
	body, err := os.ReadFile("../normalize/testdata/golden/events/task.start-genesys-example.in.json")
	require.NoError(t, err)
	golden, err := os.ReadFile("../normalize/testdata/golden/events/task.start-genesys-example.out.json")
	require.NoError(t, err)

	resp, answer := post(t, tester, caddyURL+"/genesys/1/cs/services/95/tasks/start", body)
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, `{"task_id":8}`, string(answer))
	got := last(t, ucs)
	assert.Equal(t, "/genesys/1/cs/services/95/tasks/start", got.path)
	// The golden's timestamp is the normalize tests' receive time; here it is the gateway's.
	want := strings.Replace(strings.TrimSuffix(string(golden), "\n"), "2026-11-26T12:00:00.123Z", testNow.Format("2006-01-02T15:04:05.000Z"), 1)
	assert.Equal(t, want, got.body)
}
