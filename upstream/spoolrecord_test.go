package upstream

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSpoolRecordHasExactBytesAndRoundTrips(t *testing.T) {
	at := time.Date(2026, 11, 26, 20, 15, 0, 123456789, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		o    outbound
		want string
	}{
		{"JSON body embedded as is",
			outbound{method: "POST", path: "/genesys/1/cs/services/1/tasks/2/end", rawQuery: "a=1",
				header: http.Header{"Content-Type": {"application/json;charset=UTF-8"}, "Authorization": {"Basic eA=="}},
				body:   []byte(`{"n":1,"x":"é"}`)},
			`{"accepted_at":"2026-11-26T19:15:00.123Z","lane":"","method":"POST","path":"/genesys/1/cs/services/1/tasks/2/end","query":"a=1",` +
				`"header":{"Authorization":["Basic eA=="],"Content-Type":["application/json;charset=UTF-8"]},"body":{"n":1,"x":"é"}}`},
		{"repeated header values kept in order",
			outbound{method: "POST", path: "/p", header: http.Header{"X-A": {"2", "1"}}, body: []byte(`[]`)},
			`{"accepted_at":"2026-11-26T19:15:00.123Z","lane":"","method":"POST","path":"/p","query":"","header":{"X-A":["2","1"]},"body":[]}`},
		{"body that is not JSON kept as base64",
			outbound{method: "POST", path: "/p", header: http.Header{}, body: []byte("not json\n")},
			`{"accepted_at":"2026-11-26T19:15:00.123Z","lane":"","method":"POST","path":"/p","query":"","header":{},"body_base64":"bm90IGpzb24K"}`},
		{"multi-line JSON body kept as base64, so the record stays one line",
			outbound{method: "POST", path: "/p", header: http.Header{}, body: []byte("{\n}")},
			`{"accepted_at":"2026-11-26T19:15:00.123Z","lane":"","method":"POST","path":"/p","query":"","header":{},"body_base64":"ewp9"}`},
		{"JSON body with surrounding space kept as base64",
			outbound{method: "POST", path: "/p", header: http.Header{}, body: []byte(" 1")},
			`{"accepted_at":"2026-11-26T19:15:00.123Z","lane":"","method":"POST","path":"/p","query":"","header":{},"body_base64":"IDE="}`},
		{"lane and method kept",
			outbound{method: "PUT", lane: "383-f9a6", path: "/p", header: http.Header{}, body: []byte(`{}`)},
			`{"accepted_at":"2026-11-26T19:15:00.123Z","lane":"383-f9a6","method":"PUT","path":"/p","query":"","header":{},"body":{}}`},
		{"header value in Latin-1 kept byte for byte as base64",
			outbound{method: "POST", path: "/p", header: http.Header{"Groupid": {"ok", "gr\xfcppe"}}, body: []byte(`{}`)},
			`{"accepted_at":"2026-11-26T19:15:00.123Z","lane":"","method":"POST","path":"/p","query":"",` +
				`"header":{"Groupid":["ok",{"base64":"Z3L8cHBl"}]},"body":{}}`},
		{"query and path that are not UTF-8 kept as base64",
			outbound{method: "POST", path: "/p\xe9", rawQuery: "q=gr\xfc", header: http.Header{}, body: []byte(`{}`)},
			`{"accepted_at":"2026-11-26T19:15:00.123Z","lane":"","method":"POST","path_base64":"L3Dp","query_base64":"cT1ncvw=",` +
				`"header":{},"body":{}}`},
		{"empty body",
			outbound{method: "POST", path: "/p", header: http.Header{}, body: []byte{}},
			`{"accepted_at":"2026-11-26T19:15:00.123Z","lane":"","method":"POST","path":"/p","query":"","header":{},"body_base64":""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := appendSpoolRecord(nil, at, tt.o)
			assert.Equal(t, tt.want, string(line))
			got, err := decodeSpoolRecord(line)
			require.NoError(t, err)
			assert.Equal(t, tt.o, got)
		})
	}
}

func TestUnreadableSpoolRecordIsAnError(t *testing.T) {
	for _, line := range []string{``, `{`, `{"path":""}`, `[1]`, `{"path":"/p","header":{"A":"not a list"}}`} {
		_, err := decodeSpoolRecord([]byte(line))
		assert.ErrorContains(t, err, "unreadable spool record", line)
	}
}

// validUTF8 replaces each byte that is not part of valid UTF-8 with U+FFFD, as appendJSONString does
// for header names (which Go's server only accepts as tokens anyway).
func validUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// FuzzSpoolRecord checks that every record is one line of valid JSON that decodes back to the same
// request byte for byte: path, query, header values and body (header names, which Go's server only
// accepts as ASCII tokens, get U+FFFD per bad byte).
func FuzzSpoolRecord(f *testing.F) {
	f.Add("/genesys/1/cs/services/1/tasks/2/end", "a=1", "Authorization", "Basic eA==", []byte(`{"n":1}`))
	f.Add("/p", "", "X-Odd\"key", "line\nbreak\x00", []byte("{\n\"a\":1}"))
	f.Add("/\xff", "q=\u2028", "K", "\xc3", []byte(`"s"`))
	f.Fuzz(func(t *testing.T, path, query, key, value string, body []byte) {
		if path == "" {
			return // never spooled: the handler always has a path
		}
		o := outbound{method: "POST", path: path, rawQuery: query, header: http.Header{key: {value, "2"}}, body: body, lane: "42"}
		line := appendSpoolRecord(nil, time.Unix(0, 0), o)
		if bytes.IndexByte(line, '\n') >= 0 || !json.Valid(line) {
			t.Fatalf("record is not one line of JSON: %q", line)
		}
		got, err := decodeSpoolRecord(line)
		if err != nil {
			t.Fatalf("decode %q: %v", line, err)
		}
		want := outbound{method: "POST", path: path, rawQuery: query,
			header: http.Header{validUTF8(key): {value, "2"}}, body: body, lane: "42"}
		if want.body == nil {
			want.body = []byte{}
		}
		assert.Equal(t, want, got)
	})
}
