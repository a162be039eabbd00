package caddymodule

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Buffers live in package-level pools: a pool field in the module struct
// would be copied by CaddyModule's value receiver (go vet: copylocks).
var (
	bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
	outPool  = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
)

// maxPooledCap keeps one huge body from pinning its buffer in the pool forever.
const maxPooledCap = 4 << 20

func putBuf(pool *sync.Pool, p *[]byte) {
	if cap(*p) > maxPooledCap {
		return
	}
	*p = (*p)[:0]
	pool.Put(p)
}

// readBody reads the request body once into *buf, decoding its content
// coding and transcoding a declared legacy charset to UTF-8. limit bounds the
// decoded size, so a small compressed bomb is refused after limit+1 bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, buf *[]byte) *requestError {
	body := r.Body
	if body == nil {
		body = http.NoBody
	}
	coding := contentCoding(r.Header)
	// The wire size is bounded too, so a client cannot stream forever.
	wireMax := wireLimit(limit, coding)
	if r.ContentLength > wireMax {
		// Refused before the first read: net/http answers a client that
		// sent `Expect: 100-continue` with 100 at that read, inviting a
		// body that could only be refused. The connection closes after
		// the answer: the server would otherwise read the unread body (and
		// invite it) to reuse the connection, as Caddy's body wrappers hide
		// from it that nothing was read.
		w.Header().Set("Connection", "close")
		return errTooLarge(limit)
	}
	src := io.Reader(http.MaxBytesReader(w, body, wireMax))
	// A decoder reports a body cut short on the wire as a truncated stream:
	// wire tells the two apart, so a client that sent less than it announced
	// gets 400 body_read, not 415.
	var wire *wireReader
	switch coding {
	case "", "identity":
	case "gzip", "x-gzip":
		wire = &wireReader{r: src}
		zr, err := gzip.NewReader(wire)
		if err != nil {
			return decodeError(coding, err, wire, limit)
		}
		defer zr.Close()
		src = zr
	case "deflate":
		// HTTP's "deflate" is zlib-wrapped (RFC 9110), but many clients send raw
		// DEFLATE: accept both, telling them apart by the zlib header.
		wire = &wireReader{r: src}
		br := bufio.NewReader(wire)
		if hdr, err := br.Peek(2); err == nil && isZlibHeader(hdr) {
			zr, err := zlib.NewReader(br)
			if err != nil {
				return decodeError(coding, err, wire, limit)
			}
			defer zr.Close()
			src = zr
		} else {
			fr := flate.NewReader(br)
			defer fr.Close()
			src = fr
		}
	default:
		return errUnsupportedMedia("unsupported_encoding",
			"Content-Encoding "+quoteHeader(coding)+" is not supported; use gzip, deflate or none")
	}
	legacy, rerr := declaredCharset(r.Header.Get("Content-Type"))
	if rerr != nil {
		return rerr
	}

	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := src.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > limit {
			*buf = b
			return errTooLarge(limit)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			*buf = b
			if wire == nil {
				if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
					return errTooLarge(limit)
				}
				return errBodyRead(err)
			}
			return decodeError(coding, err, wire, limit)
		}
	}
	*buf = b
	if legacy && !isASCII(b) {
		t := bodyPool.Get().(*[]byte)
		tb := appendWindows1252((*t)[:0], b)
		*t = b // hand the old buffer back to the pool through t
		putBuf(&bodyPool, t)
		*buf = tb
		if int64(len(tb)) > limit {
			return errTooLarge(limit)
		}
	}
	return nil
}

// contentCoding is the request's Content-Encoding, lower case.
func contentCoding(h http.Header) string {
	return strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding")))
}

// wireLimit bounds the body's size on the wire too, so a client cannot
// stream forever. A coded body gets slack for the coding's overhead on
// incompressible data (the decoded bound, limit, is the one that matters).
func wireLimit(limit int64, coding string) int64 {
	if coding != "" && coding != "identity" {
		return limit + limit/8 + 1024
	}
	return limit
}

// wireReader keeps the error of the body as it comes off the connection,
// under a decoder.
type wireReader struct {
	r   io.Reader
	err error
}

func (w *wireReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if err != nil && err != io.EOF {
		w.err = err
	}
	return n, err
}

// decodeError classifies a failure to read a coded body: the body over
// max_body (413), the body cut short or failing on the wire (400
// body_read), or bytes the decoder cannot decode (415 bad_encoding).
func decodeError(coding string, err error, wire *wireReader, limit int64) *requestError {
	if wire.err != nil {
		err = wire.err
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return errTooLarge(limit)
	}
	if wire.err != nil {
		return errBodyRead(err)
	}
	// The wire was fine: the decoder refused the bytes (a corrupt or
	// truncated stream).
	return errUnsupportedMedia("bad_encoding", "the "+coding+" body cannot be decoded: "+err.Error())
}

func isZlibHeader(h []byte) bool {
	return h[0]&0x0f == 8 && (uint16(h[0])<<8|uint16(h[1]))%31 == 0
}

// declaredCharset reports whether Content-Type declares a legacy Windows
// charset to transcode; a charset other than those and UTF-8 (or its ASCII
// subset) is a 415. No Content-Type or no charset means UTF-8, as RFC 8259
// says for JSON.
func declaredCharset(contentType string) (legacy bool, rerr *requestError) {
	cs, found := charsetParam(contentType)
	if !found || strings.EqualFold(cs, "utf-8") { // the common case, without ToLower's copy
		return false, nil
	}
	switch strings.ToLower(cs) {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return false, nil
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "windows-1252", "cp1252", "x-cp1252":
		return true, nil
	}
	return false, errUnsupportedMedia("unsupported_charset",
		"charset "+quoteHeader(strings.ToLower(cs))+" is not supported; use UTF-8, ISO-8859-1 or windows-1252")
}

// charsetParam finds the charset parameter of a Content-Type without
// mime.ParseMediaType, which allocates a map on every request. Parameters
// are `; name=value` or `; name="value"`; a malformed one is skipped, since
// legacy clients send odd Content-Types and the body is checked anyway.
func charsetParam(ct string) (string, bool) {
	_, params, _ := strings.Cut(ct, ";")
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, value, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "charset") {
			continue
		}
		value = strings.TrimSpace(value)
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		return strings.TrimSpace(value), true
	}
	return "", false
}

// quoteHeader shortens and quotes a header value for an error message.
func quoteHeader(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// windows1252High maps bytes 0x80..0x9F. ISO-8859-1 and latin1 labels are
// decoded as windows-1252 too, as the WHATWG Encoding Standard does: clients
// that say latin1 mean the Windows code page, and 0x80..0x9F as C1 controls
// is never what they sent. The five unassigned bytes map to the C1 control
// of the same value (also WHATWG).
var windows1252High = [32]rune{
	0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
	0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
}

// appendWindows1252 appends src, decoded as windows-1252, to dst as UTF-8.
func appendWindows1252(dst, src []byte) []byte {
	for _, c := range src {
		switch {
		case c < 0x80:
			dst = append(dst, c)
		case c < 0xA0:
			dst = utf8.AppendRune(dst, windows1252High[c-0x80])
		default:
			dst = utf8.AppendRune(dst, rune(c))
		}
	}
	return dst
}

// bodyLease hands the pooled output buffer back only when nothing can read
// it any more: the handler after next returns, and every reader of it once
// closed. net/http's transport may still be writing a request body after
// RoundTrip returned, so "after next returns" alone is not enough. A reader
// never closed (a handler that ignores the body) leaves the buffer to the GC.
type bodyLease struct {
	buf  *[]byte
	refs atomic.Int32
	body leasedReader // the first reader, allocated with the lease
}

func (l *bodyLease) release() {
	if l.refs.Add(-1) == 0 {
		putBuf(&outPool, l.buf)
	}
}

type leasedReader struct {
	bytes.Reader
	lease  *bodyLease
	closed atomic.Bool
}

func (r *leasedReader) Close() error {
	if r.closed.CompareAndSwap(false, true) {
		r.lease.release()
	}
	return nil
}

// replaceBody makes *buf the request body for the rest of the route, with
// the framing headers reverse_proxy relies on.
func replaceBody(r *http.Request, buf *[]byte) *bodyLease {
	l := &bodyLease{buf: buf}
	l.refs.Store(2) // the handler and the first reader
	l.body.Reset(*buf)
	l.body.lease = l
	r.Body = &l.body
	r.GetBody = func() (io.ReadCloser, error) {
		l.refs.Add(1)
		nr := &leasedReader{lease: l}
		nr.Reset(*buf)
		return nr, nil
	}
	r.ContentLength = int64(len(*buf))
	r.TransferEncoding = nil
	hdr := r.Header
	hdr.Set("Content-Length", strconv.Itoa(len(*buf)))
	hdr.Set("Content-Type", contentTypeJSONUTF8)
	hdr.Del("Transfer-Encoding")
	hdr.Del("Content-Encoding")
	return l
}
