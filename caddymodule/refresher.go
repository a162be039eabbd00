package caddymodule

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/normalize"
	"github.com/ucsedge/caddy-ucs/upstream"
)

// Defaults of business_attributes_from.
const (
	DefaultAttributesRefresh = 5 * time.Minute
	DefaultAttributesTimeout = 10 * time.Second
	minAttributesRefresh     = time.Second
	metadataPath             = "/genesys/1/cs/metadata/business-attributes"
	tenantHeader             = "ContactCenterId"
	tenantHeaderKey          = "Contactcenterid" // its canonical form, the key in http.Header
)

// AttributesFrom fetches the business-attribute tables from a Context
// Services (`GET <url>/genesys/1/cs/metadata/business-attributes`) at
// provision and then in the background.
type AttributesFrom struct {
	// URL is the UCS base URL, http(s)://host[:port][/prefix]. Required.
	URL string `json:"url,omitempty"`

	// Refresh is the interval between two fetches; at least 1s.
	// Default: 5m.
	Refresh caddy.Duration `json:"refresh,omitempty"`

	// Cache is the file the last good answer is kept in, used when the UCS
	// cannot be reached at provision. Default:
	// `<Caddy data dir>/ucs/attributes-<hash of the URL (and tenant)>.json`.
	Cache string `json:"cache,omitempty"`

	// Timeout bounds one fetch. Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Headers are sent on every fetch (e.g. Authorization); values may use
	// `{env.*}` placeholders. Default: none.
	Headers map[string][]string `json:"headers,omitempty"`

	// TLS configures the connection to an https URL as the forward sink's
	// `tls` does (reverse_proxy's transport `tls` object). Needs an https
	// URL. Default: the system's trusted roots, no client certificate.
	TLS *reverseproxy.TLSConfig `json:"tls,omitempty"`

	tlsConfig *tls.Config // built from TLS by Handler.provisionAttributesTLS
}

// check rejects what no default fixes, naming the option.
func (a *AttributesFrom) check(where string) error {
	if _, err := parseBaseURL(a.URL); err != nil { // the forward sink's rule for a UCS base URL
		return fmt.Errorf("ucs: %sbusiness_attributes_from: %q is not an http(s) base URL", where, a.URL)
	}
	if a.Refresh != 0 && time.Duration(a.Refresh) < minAttributesRefresh {
		return fmt.Errorf("ucs: %sbusiness_attributes_from %s: refresh must be at least 1s, got %s", where, a.URL, time.Duration(a.Refresh))
	}
	if a.Timeout < 0 {
		return fmt.Errorf("ucs: %sbusiness_attributes_from %s: timeout must not be negative", where, a.URL)
	}
	return needsHTTPS(a.TLS, where+"business_attributes_from "+a.URL, a.URL)
}

// attributesLogger is the refreshers' logger: Caddy's default logger, as a
// refresher outlives the config that started it. Tests replace it.
var attributesLogger = func() *zap.Logger { return caddy.Log().Named("http.handlers.ucs.attributes") }

// refreshers holds one refresher per URL, tenant and fetch options across
// config reloads.
var refreshers = caddy.NewUsagePool()

// liveRefreshers backs the age gauge.
var liveRefreshers sync.Map // *refresher → struct{}

type snapshot struct {
	attrs         []normalize.Attribute
	at            time.Time
	etag, lastMod string
}

// refresher fetches one UCS's (one tenant's) business attributes.
type refresher struct {
	url, tenant string
	headers     http.Header
	every       time.Duration
	timeout     time.Duration
	cache       string
	client      *http.Client
	logger      *zap.Logger

	cur      atomic.Pointer[snapshot]
	lastCold atomic.Int64 // unix nanos of the last early refresh

	mu     sync.Mutex // serialises fetches and guards subs
	subs   map[int]func([]normalize.Attribute)
	nextID int

	// The refresher fetches when a config is provisioned (so `caddy
	// validate` checks the URL) but writes its cache file and refreshes in
	// the background only once a config using it starts (see start):
	// validating writes no file.
	running  sync.Once // starts loop, or (Destruct first) closes done
	unsaved  []byte    // an answer fetched before start, for the cache; guarded by mu
	canWrite bool      // start was called: fetch writes the cache; guarded by mu

	stop   chan struct{}
	done   chan struct{}
	ctx    context.Context // cancelled by Destruct: a fetch in flight stops
	cancel context.CancelFunc
}

func refresherKey(from *AttributesFrom, tenant string) string {
	names := make([]string, 0, len(from.Headers))
	for k := range from.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%s\x00%s\x00%d\x00%d\x00%s\x00%s", from.URL, tenant, from.Refresh, from.Timeout, from.Cache, tlsIdentity(from.TLS))
	for _, k := range names {
		fmt.Fprintf(&b, "\x00%s=%s", k, strings.Join(from.Headers[k], "\x01"))
	}
	return b.String()
}

// defaultCachePath is <data dir>/ucs/attributes-<hash>.json; the hash is of
// the URL, and of the tenant when there is one.
func defaultCachePath(u, tenant string) string {
	in := u
	if tenant != "" {
		in += "\x00" + tenant
	}
	sum := sha256.Sum256([]byte(in))
	return filepath.Join(caddy.AppDataDir(), "ucs", "attributes-"+hex.EncodeToString(sum[:8])+".json")
}

func acquireRefresher(from *AttributesFrom, tenant string) (*refresher, string, error) {
	key := refresherKey(from, tenant)
	v, _, err := refreshers.LoadOrNew(key, func() (caddy.Destructor, error) {
		return startRefresher(from, tenant)
	})
	if err != nil {
		return nil, "", err
	}
	return v.(*refresher), key, nil
}

func startRefresher(from *AttributesFrom, tenant string) (*refresher, error) {
	r := newRefresher(from, tenant)
	if r.cache == "" {
		r.cache = defaultCachePath(from.URL, tenant)
	}
	if _, err := r.fetch(); err != nil {
		snap, cerr := r.loadCache()
		if cerr != nil {
			return nil, fmt.Errorf("ucs: business_attributes_from %s: cannot fetch the business attributes (%v) and no usable cache %s (%v)",
				r.endpoint(), err, r.cache, cerr)
		}
		r.cur.Store(snap)
		r.logger.Warn("the UCS cannot be reached; using the cached business attributes",
			zap.String("url", r.endpoint()), zap.String("tenant", tenant), zap.String("cache", r.cache),
			zap.Duration("cache_age", time.Since(snap.at).Round(time.Second)), zap.Error(err))
	}
	liveRefreshers.Store(r, struct{}{})
	return r, nil
}

// start is called when a config using the refresher starts: the answer
// fetched at provision goes to the cache, and the background refresh runs.
func (r *refresher) start() {
	r.mu.Lock()
	if !r.canWrite {
		r.canWrite = true
		if r.unsaved != nil && r.cache != "" {
			r.saveCache(r.unsaved)
		}
		r.unsaved = nil
	}
	r.mu.Unlock()
	r.running.Do(func() { go r.loop() })
}

// newRefresher sets a refresher up without fetching; with no cache file
// configured it writes none (the `caddy ucs attributes` command).
func newRefresher(from *AttributesFrom, tenant string) *refresher {
	r := &refresher{
		url:     strings.TrimRight(from.URL, "/"),
		tenant:  tenant,
		headers: http.Header{},
		every:   time.Duration(from.Refresh),
		timeout: time.Duration(from.Timeout),
		cache:   from.Cache,
		logger:  attributesLogger(),
		subs:    map[int]func([]normalize.Attribute){},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if r.every == 0 {
		r.every = DefaultAttributesRefresh
	}
	if r.timeout == 0 {
		r.timeout = DefaultAttributesTimeout
	}
	repl := caddy.NewReplacer()
	for k, vs := range from.Headers {
		for _, v := range vs {
			r.headers.Add(k, repl.ReplaceAll(v, ""))
		}
	}
	if tenant != "" {
		r.headers.Set(tenantHeader, tenant)
	}
	r.client = &http.Client{
		Timeout:   r.timeout,
		Transport: transportWith(from.tlsConfig),
		// The fetch carries the operator's headers (Authorization, API
		// keys) to the URL the operator named and nowhere else: a redirect
		// is not followed but fails the fetch (see fetch), as the forward
		// sink's do.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return r
}

func (r *refresher) endpoint() string { return r.url + metadataPath }

// Destruct stops the background refresh (caddy.Destructor).
func (r *refresher) Destruct() error {
	r.cancel()
	r.running.Do(func() { close(r.done) }) // never started: no loop to wait for
	close(r.stop)
	<-r.done
	liveRefreshers.Delete(r)
	return nil
}

func (r *refresher) subscribeLocked(f func([]normalize.Attribute)) int {
	r.nextID++
	r.subs[r.nextID] = f
	return r.nextID
}

func (r *refresher) unsubscribe(id int) {
	r.mu.Lock()
	delete(r.subs, id)
	r.mu.Unlock()
}

// loop refreshes every r.every; after a failure it retries with backoff
// (1s doubling, at most r.every).
func (r *refresher) loop() {
	defer close(r.done)
	wait, backoff := r.every, time.Second
	for {
		t := time.NewTimer(wait)
		select {
		case <-r.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if _, err := r.refresh(); err != nil {
			r.logger.Warn("refreshing the business attributes failed; keeping the last good tables",
				zap.String("url", r.endpoint()), zap.String("tenant", r.tenant), zap.Duration("retry_in", backoff), zap.Error(err))
			wait = backoff
			backoff = min(backoff*2, r.every)
			continue
		}
		wait, backoff = r.every, time.Second
	}
}

// refresh fetches and, on a new answer, hands it to the subscribers.
func (r *refresher) refresh() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed, err := r.fetch()
	if err != nil || !changed {
		return changed, err
	}
	attrs := r.cur.Load().attrs
	for _, f := range r.subs {
		f(attrs)
	}
	return true, nil
}

// cold is an early refresh for an unknown name, at most one per every/10;
// it reports whether the tables may have changed since the request read
// them. A request that loses the race waits for the refresh in flight.
func (r *refresher) cold() bool {
	nowNs := time.Now().UnixNano()
	last := r.lastCold.Load()
	if nowNs-last < int64(r.every/10) || !r.lastCold.CompareAndSwap(last, nowNs) {
		if nowNs-last < int64(time.Second) {
			// A refresh started a moment ago may still be in flight.
			r.mu.Lock()
			//lint:ignore SA2001 waiting for the fetch in flight is the point
			r.mu.Unlock()
			return true
		}
		return false
	}
	changed, err := r.refresh()
	if err != nil {
		r.logger.Warn("early refresh of the business attributes failed", zap.String("url", r.endpoint()),
			zap.String("tenant", r.tenant), zap.Error(err))
	}
	return changed
}

// fetch GETs the metadata; on a new, valid answer it stores the snapshot
// and rewrites the cache. Called with r.mu held (or before the refresher is
// shared).
func (r *refresher) fetch() (changed bool, err error) {
	defer func() {
		switch {
		case err != nil:
			attributeRefreshError.Inc()
		case changed:
			attributeRefreshOK.Inc()
		default:
			attributeRefreshNotModified.Inc()
		}
	}()
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.endpoint(), nil)
	if err != nil {
		return false, err
	}
	req.Header = r.headers.Clone()
	req.Header.Set("Accept", "application/json")
	prev := r.cur.Load()
	if prev != nil {
		if prev.etag != "" {
			req.Header.Set("If-None-Match", prev.etag)
		}
		if prev.lastMod != "" {
			req.Header.Set("If-Modified-Since", prev.lastMod)
		}
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return false, withTLSCause(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && prev != nil {
		next := *prev
		next.at = time.Now()
		r.cur.Store(&next)
		return false, nil
	}
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode/100 == 3 {
		return false, fmt.Errorf("GET %s: status %s redirects to %q, which is not followed (the fetch's headers go only to the configured URL): configure the URL the UCS should be read from",
			r.endpoint(), resp.Status, loc)
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: status %s", r.endpoint(), resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return false, fmt.Errorf("GET %s: reading the answer: %w", r.endpoint(), err)
	}
	attrs, err := normalize.ParseAttributes(body)
	if err == nil && len(attrs) == 0 {
		err = errors.New("the answer lists no business attributes")
	}
	if err != nil {
		return false, fmt.Errorf("GET %s: %w", r.endpoint(), err)
	}
	for i := range attrs {
		attrs[i].Source = r.endpoint()
	}
	r.cur.Store(&snapshot{attrs: attrs, at: time.Now(), etag: resp.Header.Get("ETag"), lastMod: resp.Header.Get("Last-Modified")})
	switch {
	case r.cache == "":
	case r.canWrite:
		r.saveCache(body)
	default:
		r.unsaved = body
	}
	return true, nil
}

// saveCache writes the cache file, warning when it cannot.
func (r *refresher) saveCache(body []byte) {
	if err := writeCache(r.cache, body); err != nil {
		r.logger.Warn("cannot write the business attributes cache", zap.String("cache", r.cache), zap.Error(err))
	}
}

func (r *refresher) loadCache() (*snapshot, error) {
	fi, err := os.Stat(r.cache)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(r.cache)
	if err != nil {
		return nil, err
	}
	attrs, err := normalize.ParseAttributes(data)
	if err != nil {
		return nil, err
	}
	for i := range attrs {
		attrs[i].Source = r.cache
	}
	return &snapshot{attrs: attrs, at: fi.ModTime()}, nil
}

// writeCache writes the cache file atomically, creating its directory.
func writeCache(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return upstream.WriteFileAtomic(path, data)
}

// tablesAge is the age of the oldest live refresher's tables, in seconds.
func tablesAge() float64 {
	var age float64
	liveRefreshers.Range(func(k, _ any) bool {
		if s := k.(*refresher).cur.Load(); s != nil {
			age = max(age, time.Since(s.at).Seconds())
		}
		return true
	})
	return age
}
