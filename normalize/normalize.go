// Package normalize turns what legacy clients send to Genesys Context
// Services' service-event calls (Complete Task and the others of the
// service-event API) into strict, canonical JSON.
//
// It has two layers. Value is the general layer: any loose JSON value in,
// compact strict RFC 8259 JSON out (or a typed *Error). Event (and TaskEnd,
// its Complete Task case) is the event layer on top of it: the top level
// must be an object, and the event type's field rules (string and integer
// fields, business-attribute names → IDs, the canonical millisecond UTC
// timestamp) are applied to its members.
//
// The guarantee, which the fuzz targets check: the output is always strict
// JSON that encoding/json accepts (or the call fails with an *Error saying
// where); strict input keeps its meaning exactly (the same values, the same
// number text, the same key order; duplicate keys aside); normalising the
// output again changes nothing; and a repair never invents a member or an
// element the input did not write, nor turns the input's structure into
// text.
//
// The package knows nothing of HTTP or Caddy.
package normalize

import (
	"errors"
	"time"
)

// DefaultMaxDepth is the nesting limit when Options.MaxDepth is 0.
const DefaultMaxDepth = 64

// UTF8Policy says what happens to invalid UTF-8 in the input.
type UTF8Policy uint8

const (
	// UTF8Replace replaces each invalid sequence with U+FFFD (the default).
	UTF8Replace UTF8Policy = iota
	// UTF8Reject rejects the body with KindInvalidUTF8.
	UTF8Reject
)

// UnknownPolicy says what happens to a business-attribute name that the
// field's table does not list.
type UnknownPolicy uint8

const (
	// UnknownReject rejects the body with KindUnknownName (the default where
	// a table covers the field).
	UnknownReject UnknownPolicy = iota
	// UnknownPass forwards the name unchanged; the server then validates it.
	UnknownPass
)

// Options configures a Normalizer. The zero value is usable: depth 64,
// invalid UTF-8 replaced, no business-attribute tables.
type Options struct {
	// MaxDepth bounds nesting of objects and arrays; 0 means DefaultMaxDepth.
	MaxDepth int
	// InvalidUTF8 is the policy for invalid UTF-8.
	InvalidUTF8 UTF8Policy
	// Attributes maps business-attribute field values from names to dbids;
	// nil means no table: names are forwarded unchanged.
	Attributes *Tables
	// UnknownNames is the policy for names a table does not list.
	UnknownNames UnknownPolicy
	// CaseInsensitive also matches names ignoring case and surrounding
	// white space (after an exact match failed).
	CaseInsensitive bool
	// FillDefaults fills an omitted business-attribute field with the value
	// the table flags as the attribute's default.
	FillDefaults bool
}

// Normalizer holds the immutable configuration. It is built once per
// config and is safe for concurrent use; per-call scratch state is pooled.
type Normalizer struct {
	opts Options
}

// New returns a Normalizer for opts.
func New(opts Options) (*Normalizer, error) {
	if opts.MaxDepth < 0 {
		return nil, errors.New("max_depth must be positive")
	}
	if opts.MaxDepth == 0 {
		opts.MaxDepth = DefaultMaxDepth
	}
	return &Normalizer{opts: opts}, nil
}

// Options returns the options the Normalizer was built with (defaults filled).
func (n *Normalizer) Options() Options { return n.opts }

// Value normalises any loose JSON value in src to compact strict JSON,
// appended to dst. Repairs are counted in rep, which may be nil. On error
// dst is returned unchanged (up to its length) and err is an *Error.
func (n *Normalizer) Value(dst, src []byte, rep *Report) ([]byte, error) {
	return n.value(dst, src, rep)
}

// TaskEnd normalises a Task End Event body: Value, then the top level must
// be an object and the field rules apply. receivedAt is the time the call
// was received (injected, so tests are deterministic); it fills a missing
// timestamp. Output is appended to dst; on error err is an *Error.
func (n *Normalizer) TaskEnd(dst, src []byte, receivedAt time.Time, rep *Report) ([]byte, error) {
	return n.event(OpTaskEnd, dst, src, receivedAt, rep)
}

// Event normalises the body of one operation: Value, then that event
// type's field rules (the top level must be an object), or for an
// extension update only Value (an object or an array, no rules, no
// timestamp, and an empty body is a KindSyntax error where the events make
// it {}). receivedAt, dst, rep and the error are as for TaskEnd.
func (n *Normalizer) Event(op Operation, dst, src []byte, receivedAt time.Time, rep *Report) ([]byte, error) {
	return n.event(op, dst, src, receivedAt, rep)
}
