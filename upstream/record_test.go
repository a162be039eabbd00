package upstream

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEventRecordHasExactBytes(t *testing.T) {
	at := time.Date(2026, 11, 26, 20, 15, 0, 123_987_000, time.UTC)
	paris := time.FixedZone("CET", 3600)
	tests := []struct {
		name       string
		receivedAt time.Time
		serviceID  string
		taskID     int64
		event      string
		want       string
	}{
		{"numeric service id", at, "1234567890", 42, `{"media_type":1003}`,
			`{"received_at":"2026-11-26T20:15:00.123Z","operation":"task.end","service_id":"1234567890","task_id":42,"event":{"media_type":1003}}`},
		{"opaque service id", at, "383-f9a62aec-e6f2-45cb-aa01-0d9404f905bd", 2147483647, `{}`,
			`{"received_at":"2026-11-26T20:15:00.123Z","operation":"task.end","service_id":"383-f9a62aec-e6f2-45cb-aa01-0d9404f905bd","task_id":2147483647,"event":{}}`},
		{"time in another zone is written in UTC", at.In(paris), "1", 0, `{}`,
			`{"received_at":"2026-11-26T20:15:00.123Z","operation":"task.end","service_id":"1","task_id":0,"event":{}}`},
		{"whole second keeps three digits", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "1", 7, `{}`,
			`{"received_at":"2026-01-02T03:04:05.000Z","operation":"task.end","service_id":"1","task_id":7,"event":{}}`},
		{"quote and backslash escaped", at, `a"b\c`, 1, `{}`,
			`{"received_at":"2026-11-26T20:15:00.123Z","operation":"task.end","service_id":"a\"b\\c","task_id":1,"event":{}}`},
		{"control characters escaped", at, "a\nb\tc\x01\x1f\r\b\f", 1, `{}`,
			`{"received_at":"2026-11-26T20:15:00.123Z","operation":"task.end","service_id":"a\nb\tc\u0001\u001f\r\b\f","task_id":1,"event":{}}`},
		{"non-ASCII kept, invalid UTF-8 replaced", at, "é\xffü", 1, `{}`,
			`{"received_at":"2026-11-26T20:15:00.123Z","operation":"task.end","service_id":"é\ufffdü","task_id":1,"event":{}}`},
		{"event copied as is", at, "1", 1, `{"a":[1,2,{"b":null}],"c":"\u00e9"}`,
			`{"received_at":"2026-11-26T20:15:00.123Z","operation":"task.end","service_id":"1","task_id":1,"event":{"a":[1,2,{"b":null}],"c":"\u00e9"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("kept:")
			got := AppendEventRecord(prefix, tt.receivedAt, TaskEndIDs(tt.serviceID, tt.taskID), []byte(tt.event))
			assert.Equal(t, "kept:"+tt.want, string(got))
			assert.True(t, json.Valid(got[len(prefix):]))
		})
	}
}

func TestEventRecordAllocatesNothingWithRoom(t *testing.T) {
	buf := make([]byte, 0, 256)
	at := time.Now()
	event := []byte(`{"media_type":1003}`)
	allocs := testing.AllocsPerRun(100, func() {
		buf = AppendEventRecord(buf[:0], at, TaskEndIDs("383-f9a62aec", 42), event)
	})
	assert.Zero(t, allocs)
}

func TestEventRecordNamesTheOperationAndItsIDs(t *testing.T) {
	at := time.Date(2026, 11, 26, 20, 15, 0, 123e6, time.UTC)
	tests := []struct {
		name string
		ids  RecordIDs
		want string
	}{
		{"task.end carries task_id", TaskEndIDs("42", 7),
			`{"received_at":"2026-11-26T20:15:00.123Z","operation":"task.end","service_id":"42","task_id":7,"event":{}}`},
		{"state.end carries state_id", RecordIDs{Operation: "state.end", ServiceID: "42", IDName: "state_id", ID: 3},
			`{"received_at":"2026-11-26T20:15:00.123Z","operation":"state.end","service_id":"42","state_id":3,"event":{}}`},
		{"service.end carries neither", RecordIDs{Operation: "service.end", ServiceID: "42"},
			`{"received_at":"2026-11-26T20:15:00.123Z","operation":"service.end","service_id":"42","event":{}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, string(AppendEventRecord(nil, at, tt.ids, []byte(`{}`))))
		})
	}
}

// FuzzEventRecord checks that any service id gives one valid JSON line whose service_id decodes to
// the id, with each invalid UTF-8 byte as U+FFFD.
func FuzzEventRecord(f *testing.F) {
	f.Add("383-f9a62aec-e6f2-45cb-aa01-0d9404f905bd", int64(1))
	f.Add("a\"b\\c\n\x00\x7f", int64(-1))
	f.Add("é\xff\xc3\u2028", int64(9223372036854775807))
	f.Fuzz(func(t *testing.T, serviceID string, taskID int64) {
		line := AppendEventRecord(nil, time.Unix(0, 0), TaskEndIDs(serviceID, taskID), []byte(`{"a":1}`))
		require.NotContains(t, string(line), "\n")
		var got struct {
			ServiceID string          `json:"service_id"`
			TaskID    int64           `json:"task_id"`
			Event     json.RawMessage `json:"event"`
		}
		require.NoError(t, json.Unmarshal(line, &got), "%q", line)
		var want []rune
		for _, r := range serviceID { // ranging yields U+FFFD for each invalid byte
			want = append(want, r)
		}
		assert.Equal(t, string(want), got.ServiceID)
		assert.Equal(t, taskID, got.TaskID)
		assert.JSONEq(t, `{"a":1}`, string(got.Event))
	})
}
