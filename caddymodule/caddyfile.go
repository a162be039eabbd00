package caddymodule

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

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
//			replay_concurrency <n>                    # default 64 events in flight; per service one at a time
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
		opt := d.Val()
		switch opt {
		case "base_path":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			h.BasePath = v
		case "operations":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("operations needs at least one operation: %s", normalize.OperationNames())
			}
			for _, name := range args {
				if _, ok := normalize.ParseOperation(name); !ok {
					return d.Errf("operations: unknown operation %q; the operations are %s", name, normalize.OperationNames())
				}
			}
			h.Operations = append(h.Operations, args...)
		case "business_attributes", "business_attribute", "attribute_values", "business_attributes_from":
			if err := unmarshalAttrOption(d, &h.BusinessAttributes, &h.BusinessAttribute, &h.AttributeValues, &h.BusinessAttributesFrom); err != nil {
				return err
			}
		case "tenant":
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
			if !t.hasTables() {
				return d.Errf("tenant %s has no tables: give it business_attributes, attribute_values or business_attributes_from", t.IDs[0])
			}
			h.Tenants = append(h.Tenants, t)
		case "unknown_names", "invalid_utf8", "errors":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			var allowed []string
			switch opt {
			case "unknown_names":
				h.UnknownNames, allowed = v, []string{"reject", "pass"}
			case "invalid_utf8":
				h.InvalidUTF8, allowed = v, []string{"replace", "reject"}
			default:
				h.Errors, allowed = v, []string{"genesys", "caddy"}
			}
			if err := oneOf(opt, v, allowed...); err != nil {
				return d.Err(err.Error())
			}
		case "case_insensitive_names":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.CaseInsensitiveNames = true
		case "fill_defaults":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.FillDefaults = true
		case "health":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.Health = true
		case "max_body":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			n, err := parseSize(v)
			if err != nil {
				return d.Errf("max_body: %v", err)
			}
			if n == 0 {
				return d.Errf("max_body must be more than 0")
			}
			h.MaxBody = n
		case "max_depth":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return d.Errf("max_depth must be a positive whole number, got %q", v)
			}
			h.MaxDepth = n
		case "local", "forward":
			if set := h.sinkName(); set != "" {
				return d.Errf("only one sink may be configured: %s is already set", set)
			}
			if h.Shadow != nil {
				return d.Errf("%s cannot be combined with shadow: in shadow mode the call goes on down the route unchanged", opt)
			}
			var err error
			if opt == "local" {
				err = h.unmarshalLocal(d)
			} else {
				err = h.unmarshalForward(d)
			}
			if err != nil {
				return err
			}
		case "shadow":
			if err := h.unmarshalShadow(d); err != nil {
				return err
			}
		default:
			return d.Errf("unknown ucs option %q", opt)
		}
	}
	return nil
}

func oneArg(d *caddyfile.Dispenser) (string, error) {
	opt := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s needs a value", opt)
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s takes one value, got another: %q", opt, d.Val())
	}
	return v, nil
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
		args := d.RemainingArgs()
		if len(args) != 2 {
			return d.Errf("business_attribute needs a field and an attribute name, e.g. business_attribute media_type MediaType")
		}
		if *mapping == nil {
			*mapping = map[string]string{}
		}
		(*mapping)[args[0]] = args[1]
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
		opt := d.Val()
		switch opt {
		case "refresh", "timeout":
			v, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return nil, d.Errf("business_attributes_from %s: %v", opt, err)
			}
			if opt == "refresh" {
				if dur < minAttributesRefresh {
					return nil, d.Errf("business_attributes_from refresh must be at least 1s, got %s", v)
				}
				f.Refresh = caddy.Duration(dur)
			} else {
				if dur <= 0 {
					return nil, d.Errf("business_attributes_from timeout must be positive, got %s", v)
				}
				f.Timeout = caddy.Duration(dur)
			}
		case "cache":
			v, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			f.Cache = v
		case "header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Errf("business_attributes_from header needs a name and a value, e.g. header Authorization \"Basic {env.UCS_AUTH}\"")
			}
			if f.Headers == nil {
				f.Headers = map[string][]string{}
			}
			f.Headers[args[0]] = append(f.Headers[args[0]], args[1])
		default:
			ok, err := unmarshalTLSOption(d, "business_attributes_from", &f.TLS)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, d.Errf("business_attributes_from: unknown option %q; the options are refresh, cache, timeout, header, %s", opt, tlsOptionNames)
			}
		}
	}
	if err := f.check(""); err != nil {
		return nil, d.Err(err.Error())
	}
	return f, nil
}

func unmarshalAttributeValues(d *caddyfile.Dispenser, all *map[string]map[string]int64) error {
	if !d.NextArg() {
		return d.Errf("attribute_values needs a field, e.g. attribute_values media_type { email 1003 }")
	}
	field := d.Val()
	if d.NextArg() {
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
		if !d.NextArg() {
			return d.Errf("attribute_values %s: %q needs a dbid", field, name)
		}
		id, err := strconv.ParseInt(d.Val(), 10, 64)
		if err != nil {
			return d.Errf("attribute_values %s: the dbid of %q must be an integer, got %q", field, name, d.Val())
		}
		if d.NextArg() {
			return d.Errf("attribute_values %s: %q takes one dbid, got another: %q", field, name, d.Val())
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
		opt := d.Val()
		switch opt {
		case "fsync":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			if err := oneOf("local fsync", v, "always", "off"); err != nil {
				return d.Err(err.Error())
			}
			l.Fsync = v
		case "max_size":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			n, err := parseSize(v)
			if err != nil || n == 0 {
				if err == nil {
					err = fmt.Errorf("must be more than 0")
				}
				return d.Errf("local max_size: %v", err)
			}
			l.MaxSize = n
		case "keep":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return d.Errf("local keep must be a positive whole number, got %q", v)
			}
			l.Keep = n
		case "follow_symlinks":
			if d.NextArg() {
				return d.ArgErr()
			}
			l.FollowSymlinks = true
		default:
			return d.Errf("unknown local option %q", opt)
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
		opt := d.Val()
		if ok, err := unmarshalTLSOption(d, "forward", &f.TLS); ok {
			if err != nil {
				return err
			}
			continue
		}
		if opt == "replay_backoff" {
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("forward replay_backoff needs two durations, <min> <max>, e.g. replay_backoff 250ms 30s")
			}
			var b [2]time.Duration
			for i, a := range args {
				t, err := caddy.ParseDuration(a)
				if err != nil || t <= 0 {
					return d.Errf("forward replay_backoff must be two positive durations such as 250ms 30s, got %q", a)
				}
				b[i] = t
			}
			f.ReplayBackoff = &Backoff{Min: caddy.Duration(b[0]), Max: caddy.Duration(b[1])}
			continue
		}
		if opt == "follow_symlinks" {
			if d.NextArg() {
				return d.ArgErr()
			}
			f.FollowSymlinks = true
			continue
		}
		switch opt {
		case "timeout", "spool", "max_spool", "dead_letter", "replay_concurrency", "max_attempts", "max_retry_age":
		default:
			return d.Errf("unknown forward option %q", opt)
		}
		v, err := oneArg(d)
		if err != nil {
			return err
		}
		switch opt {
		case "timeout", "max_retry_age":
			t, err := caddy.ParseDuration(v)
			if err != nil || t <= 0 {
				return d.Errf("forward %s must be a positive duration such as 10s, got %q", opt, v)
			}
			if opt == "timeout" {
				f.Timeout = caddy.Duration(t)
			} else {
				f.MaxRetryAge = caddy.Duration(t)
			}
		case "spool":
			f.Spool = v
		case "max_spool":
			n, err := parseSize(v)
			if err != nil || n == 0 {
				if err == nil {
					err = fmt.Errorf("must be more than 0")
				}
				return d.Errf("forward max_spool: %v", err)
			}
			f.MaxSpool = n
		case "dead_letter":
			f.DeadLetter = v
		case "replay_concurrency", "max_attempts":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return d.Errf("forward %s must be a positive whole number, got %q", opt, v)
			}
			if opt == "replay_concurrency" {
				f.ReplayConcurrency = n
			} else {
				f.MaxAttempts = n
			}
		}
	}
	// The same checks as the JSON config, with this line's position.
	if err := f.check(); err != nil {
		return d.Err(strings.TrimPrefix(err.Error(), "ucs: "))
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
