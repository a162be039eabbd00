package caddymodule

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/testport"
)

// BenchmarkForwardSink compares the two ways to deliver an event to
// Context Services, in one Caddy, against one upstream, in the same run:
// the forward sink (the handler posts the event itself) and ucs with no sink
// followed by reverse_proxy. Each op is one Complete Task call with the seed
// body (loose JSON with business-attribute names) from a client with
// kept-alive connections, through Caddy to an upstream answering 204.
func BenchmarkForwardSink(b *testing.B) {
	seed, err := os.ReadFile(seedFile)
	require.NoError(b, err)
	ucs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer ucs.Close()

	ports := map[string]int{"forward": testport.Free(b), "reverse_proxy": testport.Free(b)}
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %s
}
http://127.0.0.1:%d {
	ucs {
		business_attributes %s
		forward %s
	}
}
http://127.0.0.1:%d {
	ucs {
		business_attributes %s
	}
	reverse_proxy %s
}
`, b.TempDir(), ports["forward"], attrsFile, ucs.URL, ports["reverse_proxy"], attrsFile, strings.TrimPrefix(ucs.URL, "http://"))
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	require.NoError(b, err, "%v", warnings)
	require.NoError(b, caddy.Load(cfgJSON, true))
	defer func() { _ = caddy.Stop() }()

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	for _, sink := range []string{"forward", "reverse_proxy"} {
		// "sink=…" names let benchstat put the two side by side: -col /sink.
		b.Run("sink="+sink, func(b *testing.B) {
			url := fmt.Sprintf("http://127.0.0.1:%d/genesys/1/cs/services/42/tasks/7/end", ports[sink])
			b.SetBytes(int64(len(seed)))
			b.SetParallelism(8) // 16 concurrent callers on 2 cores
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Post(url, "application/json", bytes.NewReader(seed))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusNoContent {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
