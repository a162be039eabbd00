package caddymodule

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// rewindBody is a request body the benchmark rewinds instead of reallocating.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// BenchmarkServeHTTPNextSink measures the handler alone with the next sink:
// read, normalise (the seed body: loose JSON with business-attribute names)
// and replace the body; the next handler reads and closes it.
func BenchmarkServeHTTPNextSink(b *testing.B) {
	for _, body := range e2eBodies(b) {
		b.Run(body.name, func(b *testing.B) {
			benchServeHTTP(b, &Handler{BusinessAttributes: []string{attrsFile}}, body.body)
		})
	}
}

// benchServeHTTP runs h on seed, as BenchmarkServeHTTPNextSink says.
func benchServeHTTP(b *testing.B, h *Handler, seed []byte) {
	ctx, cancel := newTestContext(b)
	defer cancel()
	require.NoError(b, h.Provision(ctx))
	defer h.Cleanup()
	// Caddy's default level is INFO: the per-request debug line is not built.
	h.logger = zap.NewNop()

	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		_, err := io.Copy(io.Discard, r.Body)
		r.Body.Close()
		w.WriteHeader(http.StatusNoContent)
		return err
	})
	repl := caddy.NewReplacer()
	req := httptest.NewRequest(http.MethodPost, "/genesys/1/cs/services/42/tasks/7/end", nil)
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
	body := &rewindBody{}
	w := httptest.NewRecorder()

	b.SetBytes(int64(len(seed)))
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(seed)
		req.Body = body
		req.ContentLength = int64(len(seed))
		if err := h.ServeHTTP(w, req, next); err != nil {
			b.Fatal(err)
		}
	}
}
