package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReplacedBodyIsFramedForReverseProxy(t *testing.T) {
	buf := []byte(`{"a":1}`)
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{a: 1}"))
	r.TransferEncoding = []string{"chunked"}
	r.Header.Set("Transfer-Encoding", "chunked")
	r.Header.Set("Content-Encoding", "gzip")
	r.Header.Set("Content-Type", "text/plain; charset=latin1")

	lease := replaceBody(r, &buf)
	defer lease.release()

	body, err := io.ReadAll(r.Body)
	require.NoError(t, err)
	assert.Equal(t, `{"a":1}`, string(body))
	again, err := r.GetBody()
	require.NoError(t, err)
	body, err = io.ReadAll(again)
	require.NoError(t, err)
	assert.Equal(t, `{"a":1}`, string(body))
	assert.Equal(t, int64(7), r.ContentLength)
	assert.Equal(t, "7", r.Header.Get("Content-Length"))
	assert.Equal(t, "application/json;charset=UTF-8", r.Header.Get("Content-Type"))
	assert.Empty(t, r.TransferEncoding)
	assert.Empty(t, r.Header.Get("Transfer-Encoding"))
	assert.Empty(t, r.Header.Get("Content-Encoding"))
}

// The transport may still be writing a request body after RoundTrip
// returned: the pooled buffer goes back only when the handler and every
// reader are done with it.
func TestReplacedBodyBufferIsFreedOnlyWhenEveryReaderIsDone(t *testing.T) {
	buf := []byte(`{}`)
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	lease := replaceBody(r, &buf)
	retry, err := r.GetBody()
	require.NoError(t, err)

	steps := []struct {
		name string
		do   func()
		refs int32
	}{
		{"handler returns", lease.release, 2},
		{"transport closes the body", func() { r.Body.Close() }, 1},
		{"a second close changes nothing", func() { r.Body.Close() }, 1},
		{"the retry body closes", func() { retry.Close() }, 0},
	}
	assert.Equal(t, int32(3), lease.refs.Load())
	for _, s := range steps {
		s.do()
		assert.Equal(t, s.refs, lease.refs.Load(), s.name)
	}
}
