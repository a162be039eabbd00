package caddymodule

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func deflated(t *testing.T, b []byte, zlibWrapped bool) []byte {
	var buf bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	if zlibWrapped {
		w = zlib.NewWriter(&buf)
	} else {
		fw, err := flate.NewWriter(&buf, flate.DefaultCompression)
		require.NoError(t, err)
		w = fw
	}
	_, err := w.Write(b)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func TestReadBodyDecodesCodingsAndCharsets(t *testing.T) {
	t.Parallel()
	const text = `{"name":"José"}`
	tests := []struct {
		name   string
		body   []byte
		header map[string]string
		want   string
	}{
		{"plain", []byte(text), nil, text},
		{"identity coding", []byte(text), map[string]string{"Content-Encoding": "identity"}, text},
		{"gzip", gzipped(t, []byte(text)), map[string]string{"Content-Encoding": "gzip"}, text},
		{"x-gzip, any case", gzipped(t, []byte(text)), map[string]string{"Content-Encoding": "X-GZIP"}, text},
		{"deflate as zlib", deflated(t, []byte(text), true), map[string]string{"Content-Encoding": "deflate"}, text},
		{"deflate raw", deflated(t, []byte(text), false), map[string]string{"Content-Encoding": "deflate"}, text},
		{"latin1", []byte("{\"name\":\"Jos\xe9\"}"), map[string]string{"Content-Type": "application/json; charset=latin1"}, text},
		{"windows-1252 euro and quotes", []byte("\x80 \x93q\x94 \x81"), map[string]string{"Content-Type": "text/plain;charset=\"windows-1252\""}, "€ “q” \u0081"},
		{"gzip of latin1", gzipped(t, []byte("\xe9")), map[string]string{"Content-Encoding": "gzip", "Content-Type": "application/json; charset=ISO-8859-1"}, "é"},
		{"unparsable content type is ignored", []byte(text), map[string]string{"Content-Type": "json; charset"}, text},
		{"us-ascii", []byte(text), map[string]string{"Content-Type": "application/json; charset=us-ascii"}, text},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(tt.body))
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			var buf []byte
			rerr := readBody(httptest.NewRecorder(), r, 1<<10, &buf)
			require.Nil(t, rerr)
			assert.Equal(t, tt.want, string(buf))
		})
	}
}

func TestReadBodyRefusals(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("a"), 101)
	tests := []struct {
		name   string
		body   []byte
		header map[string]string
		status int
		reason string
	}{
		{"one byte over the limit", big, nil, 413, "too_large"},
		{"gzip decoding to more than the limit", gzipped(t, big), map[string]string{"Content-Encoding": "gzip"}, 413, "too_large"},
		{"deflate decoding to more than the limit", deflated(t, big, true), map[string]string{"Content-Encoding": "deflate"}, 413, "too_large"},
		{"latin1 growing past the limit when transcoded", bytes.Repeat([]byte{0xe9}, 60), map[string]string{"Content-Type": "text/plain; charset=latin1"}, 413, "too_large"},
		{"brotli", []byte("x"), map[string]string{"Content-Encoding": "br"}, 415, "unsupported_encoding"},
		{"two codings", []byte("x"), map[string]string{"Content-Encoding": "gzip, gzip"}, 415, "unsupported_encoding"},
		{"corrupt gzip", []byte("xxxxxxxxxxxxxxxxxxxxxxx"), map[string]string{"Content-Encoding": "gzip"}, 415, "bad_encoding"},
		{"truncated gzip", gzipped(t, []byte("hello"))[:15], map[string]string{"Content-Encoding": "gzip"}, 415, "bad_encoding"},
		{"utf-16", []byte("x"), map[string]string{"Content-Type": "application/json; charset=utf-16le"}, 415, "unsupported_charset"},
		{"shift_jis", []byte("x"), map[string]string{"Content-Type": "text/plain; charset=Shift_JIS"}, 415, "unsupported_charset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(tt.body))
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			var buf []byte
			rerr := readBody(httptest.NewRecorder(), r, 100, &buf)
			require.NotNil(t, rerr)
			assert.Equal(t, tt.status, rerr.status)
			assert.Equal(t, tt.reason, rerr.reason)
		})
	}
}

func TestServiceIDRule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id string
		ok bool
	}{
		{"42", true},
		{"9223372036854775807", true},
		{"9223372036854775808", false},
		{"383-f9a62aec-e6f2-45cb-aa01-0d9404f905bd", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{"a_b", false},
		{"a.b", false},
		{"é", false},
		{"-1", true}, // opaque: [A-Za-z0-9-]
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			assert.Equal(t, tt.ok, checkServiceID(tt.id) == nil)
		})
	}
}

func TestTaskIDRule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"7", 7, true},
		{"007", 7, true},
		{"2147483647", 2147483647, true},
		{"2147483648", 0, false},
		{"99999999999999999999999", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1e3", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, rerr := parseID32("task_id", tt.id)
			assert.Equal(t, tt.ok, rerr == nil)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestErrorBodyIsValidJSONForAnyMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		msg  string
		want string
	}{
		{"plain", `{"message":"plain","exception":"X"}`},
		{"quote \" and \\ and \x00 and é", `{"message":"quote \" and \\ and \u0000 and é","exception":"X"}`},
	}
	for _, tt := range tests {
		got := appendErrorBody(nil, &requestError{exception: "X", msg: tt.msg})
		assert.Equal(t, tt.want, string(got))
	}
}

// FuzzWindows1252 checks the transcoder's guarantee: any input becomes
// valid UTF-8 with one rune per input byte, and ASCII is unchanged.
func FuzzWindows1252(f *testing.F) {
	f.Add([]byte("{\"a\":\"Jos\xe9\"}"))
	f.Add([]byte("\x80\x81\x9f\xa0\xff"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out := appendWindows1252(nil, in)
		require.True(t, utf8.Valid(out))
		require.Equal(t, len(in), utf8.RuneCount(out))
		if isASCII(in) {
			require.Equal(t, string(in), string(out))
		}
	})
}

// FuzzServiceID checks the path-id rules against their definition.
func FuzzServiceID(f *testing.F) {
	for _, s := range []string{"42", "383-f9a62aec", "", "a_b", "9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ok := checkServiceID(s) == nil
		opaque := len(s) >= 1 && len(s) <= 128 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == ""
		allDigits := s != "" && strings.Trim(s, "0123456789") == ""
		if allDigits {
			_, err := strconv.ParseInt(s, 10, 64)
			require.Equal(t, opaque && err == nil, ok, "%q", s)
		} else {
			require.Equal(t, opaque, ok, "%q", s)
		}
	})
}
