package caddymodule

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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
//		business_attributes    <file>...              # Genesys metadata JSON; may repeat
//		business_attribute     <field> <AttributeName> # field → attribute, overrides the Task.* defaults
//		attribute_values       <field> {              # inline table; may repeat
//			<name> <dbid>
//		}
//		unknown_names          reject|pass            # default reject
//		case_insensitive_names                        # opt-in
//		fill_defaults                                 # opt-in
//		max_body               <size>                 # default 1MiB
//		max_depth              <n>                    # default 64
//		invalid_utf8           replace|reject         # default replace
//		errors                 genesys|caddy          # default genesys
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
//			follow_symlinks                           # opt-in: spool and files may be links
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
		case "business_attributes":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("business_attributes needs at least one file")
			}
			h.BusinessAttributes = append(h.BusinessAttributes, args...)
		case "business_attribute":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("business_attribute needs a field and an attribute name, e.g. business_attribute media_type MediaType")
			}
			if h.BusinessAttribute == nil {
				h.BusinessAttribute = map[string]string{}
			}
			h.BusinessAttribute[args[0]] = args[1]
		case "attribute_values":
			if err := h.unmarshalAttributeValues(d); err != nil {
				return err
			}
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
			var err error
			if opt == "local" {
				err = h.unmarshalLocal(d)
			} else {
				err = h.unmarshalForward(d)
			}
			if err != nil {
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

func (h *Handler) unmarshalAttributeValues(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Errf("attribute_values needs a field, e.g. attribute_values media_type { email 1003 }")
	}
	field := d.Val()
	if d.NextArg() {
		return d.Errf("attribute_values takes one field before its block, got another: %q", d.Val())
	}
	if h.AttributeValues == nil {
		h.AttributeValues = map[string]map[string]int64{}
	}
	values := h.AttributeValues[field]
	if values == nil {
		values = map[string]int64{}
		h.AttributeValues[field] = values
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
	for _, u := range f.URLs {
		if _, err := parseBaseURL(u); err != nil {
			return d.Errf("forward: %v", err)
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt == "follow_symlinks" {
			if d.NextArg() {
				return d.ArgErr()
			}
			f.FollowSymlinks = true
			continue
		}
		switch opt {
		case "timeout", "spool", "max_spool", "dead_letter":
		default:
			return d.Errf("unknown forward option %q", opt)
		}
		v, err := oneArg(d)
		if err != nil {
			return err
		}
		switch opt {
		case "timeout":
			t, err := caddy.ParseDuration(v)
			if err != nil || t <= 0 {
				return d.Errf("forward timeout must be a positive duration such as 10s, got %q", v)
			}
			f.Timeout = caddy.Duration(t)
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
		}
	}
	if f.Spool == "" && f.MaxSpool != 0 {
		return d.Errf("forward max_spool needs spool <dir>")
	}
	if f.Spool == "" && f.DeadLetter != "" {
		return d.Errf("forward dead_letter needs spool <dir>")
	}
	h.Forward = f
	return nil
}

// sizeUnits are the units parseSize accepts (lower case). Caddy parses
// sizes with go-humanize, which is not a dependency this module may take on
// directly, so this is the small subset operators write.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1000, "kb": 1000, "kib": 1 << 10,
	"m": 1000 * 1000, "mb": 1000 * 1000, "mib": 1 << 20,
	"g": 1000 * 1000 * 1000, "gb": 1000 * 1000 * 1000, "gib": 1 << 30,
}

// parseSize parses "1048576", "1MiB", "512 KB", "1.5mb" into bytes.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("%q is not a size (a number with an optional unit B, KB, KiB, MB, MiB, GB or GiB)", s)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > (1<<62)/mult {
			return 0, fmt.Errorf("%q is too large", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	if f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(f * float64(mult)), nil
}

// Interface guard.
var _ caddyfile.Unmarshaler = (*Handler)(nil)
