package caddymodule

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/ucsedge/caddy-ucs/normalize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("ucs", parseCaddyfile)
	// After request_header, so after basic_auth/forward_auth (a local sink
	// never answers before authentication) and before respond/reverse_proxy.
	httpcaddyfile.RegisterDirectiveOrder("ucs", httpcaddyfile.After, "request_header")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	ucs [<matcher>] {
//		base_path              <path>                 # default /genesys/1/cs
//		operations             <name>...              # default all: service.start service.end state.start state.end
//		                                              # state.transition task.start task.end service.associate extension.update
//		business_attributes    <file>...              # Genesys metadata JSON; may repeat
//		business_attribute     <key> <AttributeName>  # Task.type, Service.media_type, *.disposition, …
//		                                              # (a bare field name is its Task.* key); overrides the defaults
//		attribute_values       <key> {                # inline table; may repeat
//			<name> <dbid>
//		}
//		business_attributes_from <base URL> {         # GET <base URL>/genesys/1/cs/metadata/business-attributes
//			refresh <duration>                        # default 5m, at least 1s
//			cache   <file>                            # default <Caddy data dir>/ucs/attributes-<hash>.json
//			timeout <duration>                        # default 10s
//			header  <name> <value>                    # may repeat; {env.*} placeholders
//			tls_trusted_ca_certs <pem files...>       # TLS to an https URL, as reverse_proxy's transport:
//			tls_client_auth <cert file> <key file>    # default: the system's roots, no client certificate,
//			tls_server_name <name>                    # the URL's host as the name
//			tls_insecure_skip_verify                  # testing only; warned about at start
//		}
//		tenant <ContactCenterId>... {                 # may repeat; chosen by the ContactCenterId header
//			business_attributes …                     # the four table options above
//			business_attribute …
//			attribute_values …
//			business_attributes_from …
//		}
//		unknown_names          reject|pass            # default reject
//		case_insensitive_names                        # opt-in
//		fill_defaults                                 # opt-in
//		max_body               <size>                 # default 1MiB
//		max_depth              <n>                    # default 64
//		invalid_utf8           replace|reject         # default replace
//		errors                 genesys|caddy          # default genesys
//		health                                        # opt-in: GET {base_path}/ucs/health for load balancers
//
//		# at most one sink; with none, the rewritten request goes on down the route
//		local <path> {
//			fsync    always|off                       # default always
//			max_size <size>                           # default 100MiB
//			keep     <n>                              # default 10
//			follow_symlinks                           # opt-in: the file may be a link
//		}
//		forward <base URL>... {                       # http(s)://host[:port][/prefix], tried in order
//			timeout     <duration>                    # default 10s, the whole exchange
//			spool       <dir>                         # enables store and forward
//			max_spool   <size>                        # default 1GiB; when full: 503
//			dead_letter <file>                        # default <spool>/dead-letter.jsonl; not inside the spool
//			replay_concurrency auto [<max>]|<n>       # default auto 256: follows the UCS; <n> pins it; per service one at a time
//			replay_backoff <min> <max>                # default 250ms 30s
//			max_attempts  <n>                         # default 10 non-final answers, then dead letter
//			max_retry_age <duration>                  # default 1h after the first non-final answer
//			follow_symlinks                           # opt-in: spool and files may be links
//			tls_trusted_ca_certs <pem files...>       # the same TLS options as business_attributes_from
//			tls_client_auth <cert file> <key file>
//			tls_server_name <name>
//			tls_insecure_skip_verify
//		}
//
//		# or report-only: every call goes on down the route as it arrived
//		shadow {                                      # not with local or forward
//			journal    <path>                         # default none: metrics and warnings only
//			sample     <percent>%                     # default 1%: share of ordinary calls recorded
//			max_record <size>                         # default 64KiB: longer bodies are cut in a record
//			max_size   <size>                         # default 100MiB
//			keep       <n>                            # default 10
//		}
//	}
//
// Sizes are a number with an optional unit: B, KB, KiB, MB, MiB, GB, GiB
// (any case; KB = 1000, KiB = 1024). Durations are Caddy's (`500ms`,
// `10s`, `1m`).
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		if err := h.unmarshalOption(d); err != nil {
			return err
		}
		// The checks Provision runs, here with this option's line: what
		// passes the parser passes Provision's checks, and no check is
		// written twice.
		if err := h.checkOptions(); err != nil {
			return d.Err(strings.TrimPrefix(err.Error(), "ucs: "))
		}
	}
	return nil
}

// unmarshalOption parses one option of the ucs block, the dispenser on its
// name.
func (h *Handler) unmarshalOption(d *caddyfile.Dispenser) error {
	var err error
	switch opt := d.Val(); opt {
	case "base_path":
		h.BasePath, err = oneArg(d)
	case "operations":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.Errf("operations needs at least one operation: %s", normalize.OperationNames())
		}
		h.Operations = append(h.Operations, args...)
	case "business_attributes", "business_attribute", "attribute_values", "business_attributes_from":
		return unmarshalAttrOption(d, &h.BusinessAttributes, &h.BusinessAttribute, &h.AttributeValues, &h.BusinessAttributesFrom)
	case "tenant":
		return h.unmarshalTenant(d)
	case "unknown_names":
		h.UnknownNames, err = oneArg(d)
	case "invalid_utf8":
		h.InvalidUTF8, err = oneArg(d)
	case "errors":
		h.Errors, err = oneArg(d)
	case "case_insensitive_names":
		h.CaseInsensitiveNames, err = true, noArgs(d)
	case "fill_defaults":
		h.FillDefaults, err = true, noArgs(d)
	case "health":
		h.Health, err = true, noArgs(d)
	case "max_body":
		h.MaxBody, err = sizeArg(d, "max_body")
	case "max_depth":
		h.MaxDepth, err = positiveIntArg(d, "max_depth")
	case "local", "forward":
		if set := h.sinkName(); set != "" {
			return d.Errf("only one sink may be configured: %s is already set", set)
		}
		if h.Shadow != nil {
			return d.Errf("%s cannot be combined with shadow: in shadow mode the call goes on down the route unchanged", opt)
		}
		if opt == "local" {
			return h.unmarshalLocal(d)
		}
		return h.unmarshalForward(d)
	case "shadow":
		return h.unmarshalShadow(d)
	default:
		return d.Errf("unknown ucs option %q", opt)
	}
	return err
}

func (h *Handler) unmarshalTenant(d *caddyfile.Dispenser) error {
	t := &Tenant{IDs: d.RemainingArgs()}
	if len(t.IDs) == 0 {
		return d.Errf("tenant needs at least one ContactCenterId (a tenant DBID or name)")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "business_attributes", "business_attribute", "attribute_values", "business_attributes_from":
			if err := unmarshalAttrOption(d, &t.BusinessAttributes, &t.BusinessAttribute, &t.AttributeValues, &t.BusinessAttributesFrom); err != nil {
				return err
			}
		default:
			return d.Errf("tenant %s: unknown option %q; a tenant takes business_attributes, business_attribute, attribute_values and business_attributes_from", t.IDs[0], d.Val())
		}
	}
	h.Tenants = append(h.Tenants, t)
	return nil
}

// The value shapes of the options: each reads the option's one value and
// names the option in its error.

// oneArg is the option's one value.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	opt := d.Val()
	var v string
	if d.AllArgs(&v) {
		return v, nil
	}
	if d.NextArg() { // AllArgs stopped before a second value
		return "", d.Errf("%s takes one value, got another: %q", opt, d.Val())
	}
	return "", d.Errf("%s needs a value", opt)
}

// noArgs refuses a value on a flag option.
func noArgs(d *caddyfile.Dispenser) error {
	if !d.AllArgs() {
		return d.ArgErr()
	}
	return nil
}

// sizeArg is a size of more than 0 bytes (see parseSize).
func sizeArg(d *caddyfile.Dispenser, name string) (int64, error) {
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := parseSize(v)
	if err != nil {
		return 0, d.Errf("%s: %v", name, err)
	}
	if n == 0 {
		return 0, d.Errf("%s must be more than 0", name)
	}
	return n, nil
}

// positiveIntArg is a whole number of at least 1.
func positiveIntArg(d *caddyfile.Dispenser, name string) (int, error) {
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, d.Errf("%s must be a positive whole number, got %q", name, v)
	}
	return n, nil
}

// replayConcurrencyArgs reads `replay_concurrency auto [<max>]` (fixed 0)
// or `replay_concurrency <n>` (max 0).
func replayConcurrencyArgs(d *caddyfile.Dispenser) (fixed, max int, err error) {
	if fixed, max, err = parseReplayConcurrency(d.RemainingArgs()); err != nil {
		return 0, 0, d.Errf("forward replay_concurrency %v", err)
	}
	return fixed, max, nil
}

// parseReplayConcurrency reads the values of replay_concurrency: auto,
// auto <max>, or a fixed number.
func parseReplayConcurrency(args []string) (fixed, max int, err error) {
	auto := len(args) > 0 && args[0] == "auto"
	switch {
	case len(args) == 0 || len(args) > 2 || len(args) == 2 && !auto:
		return 0, 0, fmt.Errorf("needs auto, auto <max> or a fixed number, e.g. replay_concurrency auto 256; got %q", strings.Join(args, " "))
	case auto && len(args) == 1:
		return 0, 0, nil
	case auto:
		if max, err = strconv.Atoi(args[1]); err != nil || max < 1 {
			return 0, 0, fmt.Errorf("auto's max must be a positive whole number, got %q", args[1])
		}
		return 0, max, nil
	}
	if fixed, err = strconv.Atoi(args[0]); err != nil || fixed < 1 {
		return 0, 0, fmt.Errorf("must be auto or a positive whole number, got %q", args[0])
	}
	return fixed, 0, nil
}

// shareArg is a share of calls: a percentage such as 5% or a fraction from 0 to 1 (see parseShare).
func shareArg(d *caddyfile.Dispenser, name string) (float64, error) {
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	f, err := parseShare(v)
	if err != nil {
		return 0, d.Errf("%s: %v", name, err)
	}
	return f, nil
}

// durationArg is a positive Caddy duration.
func durationArg(d *caddyfile.Dispenser, name string) (caddy.Duration, error) {
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	return parsePositiveDuration(d, name, v)
}

func parsePositiveDuration(d *caddyfile.Dispenser, name, v string) (caddy.Duration, error) {
	t, err := caddy.ParseDuration(v)
	if err != nil || t <= 0 {
		return 0, d.Errf("%s must be a positive duration such as 10s, got %q", name, v)
	}
	return caddy.Duration(t), nil
}

// unmarshalAttrOption parses one of the table options (at the top level or
// in a tenant block) into the given fields.
func unmarshalAttrOption(d *caddyfile.Dispenser, files *[]string, mapping *map[string]string,
	values *map[string]map[string]int64, from **AttributesFrom) error {
	switch d.Val() {
	case "business_attributes":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.Errf("business_attributes needs at least one file")
		}
		*files = append(*files, args...)
	case "business_attribute":
		var field, attr string
		if !d.AllArgs(&field, &attr) {
			return d.Errf("business_attribute needs a field and an attribute name, e.g. business_attribute media_type MediaType")
		}
		if *mapping == nil {
			*mapping = map[string]string{}
		}
		(*mapping)[field] = attr
	case "attribute_values":
		return unmarshalAttributeValues(d, values)
	case "business_attributes_from":
		if *from != nil {
			return d.Errf("business_attributes_from is already set to %s", (*from).URL)
		}
		f, err := unmarshalAttributesFrom(d)
		if err != nil {
			return err
		}
		*from = f
	}
	return nil
}

func unmarshalAttributesFrom(d *caddyfile.Dispenser) (*AttributesFrom, error) {
	f := &AttributesFrom{}
	if !d.NextArg() {
		return nil, d.Errf("business_attributes_from needs the UCS base URL, e.g. business_attributes_from http://ucs:8080")
	}
	f.URL = d.Val()
	if d.NextArg() {
		return nil, d.Errf("business_attributes_from takes one base URL, got another: %q", d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "refresh":
			f.Refresh, err = durationArg(d, "business_attributes_from refresh")
		case "timeout":
			f.Timeout, err = durationArg(d, "business_attributes_from timeout")
		case "cache":
			f.Cache, err = oneArg(d)
		case "header":
			var name, value string
			if !d.AllArgs(&name, &value) {
				return nil, d.Errf("business_attributes_from header needs a name and a value, e.g. header Authorization \"Basic {env.UCS_AUTH}\"")
			}
			if f.Headers == nil {
				f.Headers = map[string][]string{}
			}
			f.Headers[name] = append(f.Headers[name], value)
		default:
			ok, err := unmarshalTLSOption(d, "business_attributes_from", &f.TLS)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, d.Errf("business_attributes_from: unknown option %q; the options are refresh, cache, timeout, header, %s", opt, tlsOptionNames)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

func unmarshalAttributeValues(d *caddyfile.Dispenser, all *map[string]map[string]int64) error {
	var field string
	if !d.AllArgs(&field) {
		if field == "" {
			return d.Errf("attribute_values needs a field, e.g. attribute_values media_type { email 1003 }")
		}
		d.NextArg()
		return d.Errf("attribute_values takes one field before its block, got another: %q", d.Val())
	}
	if *all == nil {
		*all = map[string]map[string]int64{}
	}
	values := (*all)[field]
	if values == nil {
		values = map[string]int64{}
		(*all)[field] = values
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		dbid, err := oneArg(d)
		if err != nil {
			return d.Errf("attribute_values %s: %q takes one dbid", field, name)
		}
		id, err := strconv.ParseInt(dbid, 10, 64)
		if err != nil {
			return d.Errf("attribute_values %s: the dbid of %q must be an integer, got %q", field, name, dbid)
		}
		if _, dup := values[name]; dup {
			return d.Errf("attribute_values %s: %q is listed twice", field, name)
		}
		values[name] = id
	}
	if len(values) == 0 {
		return d.Errf("attribute_values %s: the block lists no values", field)
	}
	return nil
}

func (h *Handler) unmarshalLocal(d *caddyfile.Dispenser) error {
	l := new(LocalSink)
	if !d.NextArg() {
		return d.Errf("local needs a file path")
	}
	l.Path = d.Val()
	if d.NextArg() {
		return d.Errf("local takes one file path, got another: %q", d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "fsync":
			l.Fsync, err = oneArg(d)
		case "max_size":
			l.MaxSize, err = sizeArg(d, "local max_size")
		case "keep":
			l.Keep, err = positiveIntArg(d, "local keep")
		case "follow_symlinks":
			l.FollowSymlinks, err = true, noArgs(d)
		default:
			return d.Errf("unknown local option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	h.Local = l
	return nil
}

// sinkName is the sink configured so far, "" for none.
func (h *Handler) sinkName() string {
	switch {
	case h.Local != nil:
		return "local"
	case h.Forward != nil:
		return "forward"
	}
	return ""
}

func (h *Handler) unmarshalForward(d *caddyfile.Dispenser) error {
	f := new(ForwardSink)
	f.URLs = d.RemainingArgs()
	if len(f.URLs) == 0 {
		return d.Errf("forward needs at least one upstream base URL, e.g. forward http://ucs.example.com:8080")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if ok, err := unmarshalTLSOption(d, "forward", &f.TLS); ok {
			if err != nil {
				return err
			}
			continue
		}
		var err error
		switch opt := d.Val(); opt {
		case "timeout":
			f.Timeout, err = durationArg(d, "forward timeout")
		case "max_retry_age":
			f.MaxRetryAge, err = durationArg(d, "forward max_retry_age")
		case "spool":
			f.Spool, err = oneArg(d)
		case "max_spool":
			f.MaxSpool, err = sizeArg(d, "forward max_spool")
		case "dead_letter":
			f.DeadLetter, err = oneArg(d)
		case "replay_concurrency":
			f.ReplayConcurrency, f.ReplayConcurrencyMax, err = replayConcurrencyArgs(d)
		case "max_attempts":
			f.MaxAttempts, err = positiveIntArg(d, "forward max_attempts")
		case "replay_backoff":
			var lo, hi string
			if !d.AllArgs(&lo, &hi) {
				return d.Errf("forward replay_backoff needs two durations, <min> <max>, e.g. replay_backoff 250ms 30s")
			}
			b := new(Backoff)
			if b.Min, err = parsePositiveDuration(d, "forward replay_backoff min", lo); err == nil {
				b.Max, err = parsePositiveDuration(d, "forward replay_backoff max", hi)
			}
			f.ReplayBackoff = b
		case "follow_symlinks":
			f.FollowSymlinks, err = true, noArgs(d)
		default:
			return d.Errf("unknown forward option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	h.Forward = f
	return nil
}

// parseSize reads a size as Caddy's request_body max_size does, with
// go-humanize ("1048576", "1MiB", "512 KB", "1.5mb"), bounded to int64.
func parseSize(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (a number with an optional unit such as KB, KiB, MB, MiB, GB or GiB): %w", s, err)
	}
	if n > math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(n), nil
}

// Interface guard.
var _ caddyfile.Unmarshaler = (*Handler)(nil)
