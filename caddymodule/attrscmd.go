package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/ucsedge/caddy-ucs/normalize"
)

// attributesFlags are the options of `caddy ucs attributes`.
type attributesFlags struct {
	from    string
	headers []string
	tenant  string
	mapping []string
	timeout time.Duration
	tls     tlsFlags
}

func newAttributesCommand() *cobra.Command {
	var f attributesFlags
	c := &cobra.Command{
		Use:   "attributes --from <base URL> [--header 'Name: value']... [--tenant <ContactCenterId>] [--map <key>=<Attribute>]... [--ca <pem>]... [--cert <pem> --key <pem>] [--server-name <name>]",
		Short: "Print the business-attribute tables a gateway would build from a UCS",
		Args:  cobra.NoArgs,
	}
	c.RunE = runCommand(c, "the UCS or its answer failed", func(caddycmd.Flags) int {
		return runAttributes(f, c.OutOrStdout(), c.ErrOrStderr())
	})
	fl := c.Flags()
	fl.StringVar(&f.from, "from", "", "the UCS base URL (GET <URL>/genesys/1/cs/metadata/business-attributes)")
	fl.StringArrayVar(&f.headers, "header", nil, "a header to send, 'Name: value' ({env.*} placeholders); may repeat")
	fl.StringVar(&f.tenant, "tenant", "", "the tenant: sent as ContactCenterId")
	fl.StringArrayVar(&f.mapping, "map", nil, "a business_attribute mapping, <key>=<Attribute> (e.g. Task.type=TaskType); may repeat")
	fl.DurationVar(&f.timeout, "timeout", DefaultAttributesTimeout, "the fetch's time limit")
	f.tls.register(c)
	return c
}

// runAttributes fetches the metadata and prints the tables; it returns the
// exit status (1: the UCS or its answer failed, 2: usage).
func runAttributes(f attributesFlags, stdout, stderr io.Writer) int {
	from := &AttributesFrom{URL: f.from, Timeout: caddy.Duration(f.timeout)}
	for _, h := range f.headers {
		name, value, err := parseHeaderFlag(h)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		if from.Headers == nil {
			from.Headers = map[string][]string{}
		}
		from.Headers[name] = append(from.Headers[name], value)
	}
	var err error
	if from.tlsConfig, err = f.tls.build(f.from); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := from.check(""); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	mapping := map[string]string{}
	for _, m := range f.mapping {
		k, v, ok := strings.Cut(m, "=")
		if !ok || k == "" || v == "" {
			fmt.Fprintf(stderr, "--map %q: want <key>=<Attribute>\n", m)
			return 2
		}
		mapping[k] = v
	}
	r := newRefresher(from, f.tenant) // no cache file: nothing written
	if _, err := r.fetch(); err != nil {
		fmt.Fprintf(stderr, "ucs: %s: %v\n", r.endpoint(), err)
		return 1
	}
	attrs := r.cur.Load().attrs
	tables, err := normalize.NewTables(normalize.TableConfig{Attributes: attrs, Mapping: mapping})
	if err != nil {
		fmt.Fprintln(stderr, "ucs:", err)
		return 1
	}
	printTables(stdout, attrs, tables)
	return 0
}

// printTables prints each attribute, the keys it backs and its values.
func printTables(w io.Writer, attrs []normalize.Attribute, tables *normalize.Tables) {
	keysOf := map[string][]string{}
	var unmapped []string
	for _, k := range normalize.Keys() {
		if a := tables.Attribute(k); a != "" {
			keysOf[a] = append(keysOf[a], k)
		} else {
			unmapped = append(unmapped, k)
		}
	}
	sorted := append([]normalize.Attribute(nil), attrs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, a := range sorted {
		keys := "not mapped to any key"
		if ks := keysOf[a.Name]; len(ks) > 0 {
			keys = "← " + strings.Join(ks, ", ")
		}
		fmt.Fprintf(tw, "%s (%d values) %s\n", a.Name, len(a.Values), keys)
		for _, v := range a.Values {
			def := ""
			if v.Default {
				def = "default"
			}
			fmt.Fprintf(tw, "  %q\t%d\t%s\n", v.Name, v.DBID, def)
		}
	}
	_ = tw.Flush()
	if len(unmapped) > 0 {
		fmt.Fprintf(w, "keys without a table (names forwarded unchanged): %s\n", strings.Join(unmapped, ", "))
	}
}

// tenantNormalizer picks a normaliser as a request with ContactCenterId:
// tenant would get; an error says why none.
func (h *Handler) tenantNormalizer(tenant string) (*normalize.Normalizer, error) {
	r := &http.Request{Header: http.Header{}}
	if tenant != "" {
		r.Header.Set(tenantHeader, tenant)
	}
	s := h.tenantSet(r)
	if s == nil {
		e := errUnknownTenant(tenant)
		return nil, fmt.Errorf("%d %s: %s", e.status, e.exception, e.msg)
	}
	return s.norm.Load(), nil
}
