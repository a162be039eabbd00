package caddymodule

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/ucsedge/caddy-ucs/normalize"
	"github.com/ucsedge/caddy-ucs/upstream"
)

// Exception names in the error bodies, as the Context Services 8.5 server
// names its own ("exception" member of the error body).
const (
	exInvalidJSON          = "InvalidJsonException"
	exInvalidField         = "InvalidFieldException"
	exInvalidAttribute     = "InvalidBusinessAttributeException"
	exInvalidParameter     = "InvalidParameterException"
	exInvalidTenant        = "InvalidTenantException"
	exPayloadTooLarge      = "PayloadTooLargeException"
	exUnsupportedMediaType = "UnsupportedMediaTypeException"
	exStorage              = "StorageException"
	exUpstreamUnavailable  = "UpstreamUnavailableException"
)

// requestError is every failure the handler answers itself: a status, the
// exception name of the Genesys error body, a bounded reason (a metric
// label) and the message (which never quotes attached data beyond the
// normaliser's own message).
type requestError struct {
	status    int
	exception string
	reason    string
	msg       string
	cause     error
}

func (e *requestError) Error() string { return e.msg }
func (e *requestError) Unwrap() error { return e.cause }

// normalizeErrorTable maps each normaliser error kind to its status and
// exception: one table, so the error table of docs/repairs.md is this table.
var normalizeErrorTable = map[normalize.ErrorKind]struct {
	status    int
	exception string
}{
	normalize.KindSyntax:         {http.StatusBadRequest, exInvalidJSON},
	normalize.KindTruncated:      {http.StatusBadRequest, exInvalidJSON},
	normalize.KindMultipleValues: {http.StatusBadRequest, exInvalidJSON},
	normalize.KindTooDeep:        {http.StatusBadRequest, exInvalidJSON},
	normalize.KindInvalidUTF8:    {http.StatusBadRequest, exInvalidJSON},
	normalize.KindNotObject:      {http.StatusBadRequest, exInvalidJSON},
	normalize.KindFieldType:      {http.StatusBadRequest, exInvalidField},
	normalize.KindFieldTooLong:   {http.StatusBadRequest, exInvalidField},
	normalize.KindFieldRange:     {http.StatusBadRequest, exInvalidField},
	normalize.KindTimestamp:      {http.StatusBadRequest, exInvalidField},
	normalize.KindUnknownName:    {http.StatusBadRequest, exInvalidAttribute},
}

// errFromNormalize wraps a TaskEnd error. A kind missing from the table (a
// kind added to normalize later) is still a client error about the JSON.
func errFromNormalize(err error) *requestError {
	var ne *normalize.Error
	if !errors.As(err, &ne) {
		return &requestError{http.StatusBadRequest, exInvalidJSON, "invalid_json", err.Error(), err}
	}
	row, ok := normalizeErrorTable[ne.Kind]
	if !ok {
		row.status, row.exception = http.StatusBadRequest, exInvalidJSON
	}
	return &requestError{row.status, row.exception, ne.Kind.String(), ne.Error(), err}
}

// errUnknownTenant refuses a request whose ContactCenterId header names no
// configured tenant (or is missing) when there are no top-level tables.
func errUnknownTenant(id string) *requestError {
	msg := "the ContactCenterId header is missing and no default business attributes are configured"
	if id != "" {
		if len(id) > 64 {
			id = id[:64] + "…"
		}
		msg = "the ContactCenterId header names an unknown tenant " + strconv.Quote(id)
	}
	return &requestError{http.StatusBadRequest, exInvalidTenant, "invalid_tenant", msg, nil}
}

func errBadServiceID(why string) *requestError {
	return &requestError{http.StatusBadRequest, exInvalidParameter, "bad_service_id", "service_id " + why, nil}
}

// errBadID refuses a 32-bit id of the path (name is task_id or state_id,
// also the reason's suffix: a bounded label).
func errBadID(name, why string) *requestError {
	return &requestError{http.StatusBadRequest, exInvalidParameter, "bad_" + name, name + " " + why, nil}
}

// errEncodedDelimiter refuses a call's path with an encoded slash (%2F)
// or semicolon (%3B) in an id (where is "service_id", "task_id",
// "state_id" or "customer_id") or elsewhere ("path"): an id cannot contain
// either, and a servlet container would map the decoded path to another
// resource (cutting `e1;x` to `e1`) or refuse it.
func errEncodedDelimiter(where, encoded string) *requestError {
	char, name, reason := "/", "slash", "encoded_slash"
	if encoded == "%3B" {
		char, name, reason = ";", "semicolon", "encoded_semicolon"
	}
	msg := where + " cannot contain '" + char + "': the path holds an encoded " + name + " (" + encoded + ")"
	if where == "path" {
		msg = "the path holds an encoded " + name + " (" + encoded + "), which no Context Services path has"
	}
	return &requestError{http.StatusBadRequest, exInvalidParameter, reason, msg, nil}
}

func errTooLarge(limit int64) *requestError {
	return &requestError{http.StatusRequestEntityTooLarge, exPayloadTooLarge, "too_large",
		"the request body is larger than max_body (" + strconv.FormatInt(limit, 10) + " bytes after decoding)", nil}
}

func errUnsupportedMedia(reason, msg string) *requestError {
	return &requestError{http.StatusUnsupportedMediaType, exUnsupportedMediaType, reason, msg, nil}
}

func errBodyRead(err error) *requestError {
	msg := "the request body could not be read: " + err.Error()
	if errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "the request body ended before the length it announced (Content-Length or chunked framing): a truncated event is not accepted"
	}
	return &requestError{http.StatusBadRequest, exInvalidJSON, "body_read", msg, err}
}

func errStorage(err error) *requestError {
	msg := "the event could not be stored"
	var se *upstream.StorageError
	if errors.As(err, &se) {
		// Op and the cause (e.g. "no space left on device") help the caller; the path is ours.
		msg += ": " + se.Op + ": " + se.Err.Error()
	}
	return &requestError{http.StatusServiceUnavailable, exStorage, "storage", msg, err}
}

// errUpstreamUnavailable is an event no upstream took (no spool): none
// could be reached, or the last one answered status (502, 503 or 504).
func errUpstreamUnavailable(status int, err error) *requestError {
	msg := "the upstream Context Services could not be reached"
	if status != 0 {
		msg = "the upstream Context Services answered " + strconv.Itoa(status)
	}
	return &requestError{http.StatusBadGateway, exUpstreamUnavailable, "upstream_unavailable", msg + "; the event was not delivered", err}
}

func errUpstreamTimeout(timeout time.Duration, err error) *requestError {
	return &requestError{http.StatusGatewayTimeout, exUpstreamUnavailable, "upstream_timeout",
		"the upstream Context Services did not answer within " + timeout.String() + "; the event may not have been delivered", err}
}

// errUpstreamAnswerTooLarge: the event reached the upstream, but its
// answer cannot be relayed.
func errUpstreamAnswerTooLarge(e *upstream.ResponseTooLargeError, err error) *requestError {
	return &requestError{http.StatusBadGateway, exUpstreamUnavailable, "upstream_answer_too_large",
		"the upstream Context Services answered " + strconv.Itoa(e.Status) + " with a body over " +
			strconv.FormatInt(e.Limit, 10) + " bytes, which is not relayed", err}
}

// errSpoolFull tells the client to retry: the event is neither delivered
// nor stored.
func errSpoolFull(limit int64) *requestError {
	return &requestError{http.StatusServiceUnavailable, exUpstreamUnavailable, "spool_full",
		"the upstream Context Services is unavailable and the spool is full (max_spool " +
			strconv.FormatInt(limit, 10) + " bytes); the event was not stored, try again later", upstream.ErrSpoolFull}
}

// errClientGone is the answer nobody reads: the caller went away (or the
// server is shutting down) before the upstream answered.
func errClientGone(err error) *requestError {
	return &requestError{http.StatusBadGateway, exUpstreamUnavailable, "client_gone",
		"the request ended before the upstream Context Services answered", err}
}

// appendErrorBody appends {"message":…,"exception":…}, the shape of the
// Context Services server's error bodies.
func appendErrorBody(dst []byte, e *requestError) []byte {
	dst = append(dst, `{"message":`...)
	// json.Marshal of a string cannot fail; the error path may allocate.
	msg, _ := json.Marshal(e.msg)
	dst = append(dst, msg...)
	dst = append(dst, `,"exception":"`...)
	dst = append(dst, e.exception...)
	return append(dst, `"}`...)
}
