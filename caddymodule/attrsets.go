package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/normalize"
)

// Tenant is the business-attribute configuration of one Context Services
// tenant, chosen by the request's ContactCenterId header.
type Tenant struct {
	// IDs are the ContactCenterId values (tenant DBIDs or names) of the
	// tenant, matched exactly and also ignoring case. Required; the first
	// is sent on the tenant's metadata fetch.
	IDs []string `json:"ids,omitempty"`

	// BusinessAttributes are metadata files, as the handler's option.
	BusinessAttributes []string `json:"business_attributes,omitempty"`

	// BusinessAttribute is the tenant's key → attribute mapping, as the
	// handler's option (Genesys' business-attributes.<tenant> section).
	BusinessAttribute map[string]string `json:"business_attribute,omitempty"`

	// AttributeValues are the tenant's inline tables, as the handler's.
	AttributeValues map[string]map[string]int64 `json:"attribute_values,omitempty"`

	// BusinessAttributesFrom fetches the tenant's tables from a UCS,
	// sending `ContactCenterId: <first id>`.
	BusinessAttributesFrom *AttributesFrom `json:"business_attributes_from,omitempty"`
}

func (t *Tenant) hasTables() bool {
	return len(t.BusinessAttributes) > 0 || len(t.AttributeValues) > 0 || t.BusinessAttributesFrom != nil
}

// attrSet is one set of tables: the top level or a tenant. Requests read
// norm once; the refresher swaps it.
type attrSet struct {
	tenant  string // first id; "" at the top level
	files   []normalize.Attribute
	mapping map[string]string
	inline  map[string][]normalize.AttributeValue
	opts    normalize.Options // without Attributes
	from    *refresher
	fromKey string
	subID   int
	norm    atomic.Pointer[normalize.Normalizer]
	logger  *zap.Logger
}

// build makes a normaliser from the files, the fetched attributes (which
// replace a file's attribute of the same name) and the inline values
// (which replace the key's values).
func (s *attrSet) build(fetched []normalize.Attribute) (*normalize.Normalizer, error) {
	opts := s.opts
	if len(s.files) > 0 || len(s.inline) > 0 || fetched != nil {
		attrs := mergeAttributes(s.files, fetched)
		t, err := normalize.NewTables(normalize.TableConfig{Attributes: attrs, Mapping: s.mapping, Inline: s.inline})
		if err != nil {
			return nil, fmt.Errorf("ucs: %w", err)
		}
		opts.Attributes = t
	}
	n, err := normalize.New(opts)
	if err != nil {
		return nil, fmt.Errorf("ucs: %w", err)
	}
	return n, nil
}

func mergeAttributes(files, fetched []normalize.Attribute) []normalize.Attribute {
	if len(fetched) == 0 {
		return files
	}
	got := make(map[string]bool, len(fetched))
	for _, a := range fetched {
		got[a.Name] = true
	}
	out := make([]normalize.Attribute, 0, len(files)+len(fetched))
	for _, a := range files {
		if !got[a.Name] {
			out = append(out, a)
		}
	}
	return append(out, fetched...)
}

// newAttrSet loads the files and inline values, and acquires the refresher.
func newAttrSet(tenant string, files []string, mapping map[string]string, values map[string]map[string]int64,
	from *AttributesFrom, opts normalize.Options, logger *zap.Logger) (*attrSet, error) {
	s := &attrSet{tenant: tenant, mapping: mapping, opts: opts, logger: logger}
	for _, f := range files {
		a, err := normalize.LoadAttributesFile(f)
		if err != nil {
			return nil, fmt.Errorf("ucs: business_attributes %q: %w", f, err)
		}
		s.files = append(s.files, a...)
	}
	if len(values) > 0 {
		s.inline = make(map[string][]normalize.AttributeValue, len(values))
		for field, vs := range values {
			for name, id := range vs {
				s.inline[field] = append(s.inline[field], normalize.AttributeValue{Name: name, DBID: id})
			}
		}
	}
	if from == nil {
		n, err := s.build(nil)
		if err != nil {
			return nil, err
		}
		s.store(n)
		return s, nil
	}
	r, key, err := acquireRefresher(from, tenant)
	if err != nil {
		return nil, err
	}
	s.from, s.fromKey = r, key
	// Subscribe first, then build from the current snapshot, both under the
	// refresher's lock: no refresh can slip in between.
	r.mu.Lock()
	n, err := s.build(r.cur.Load().attrs)
	if err == nil {
		s.store(n)
		s.subID = r.subscribeLocked(s.rebuild)
	}
	r.mu.Unlock()
	if err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

// rebuild is called by the refresher (under its lock) with new attributes.
func (s *attrSet) rebuild(attrs []normalize.Attribute) {
	n, err := s.build(attrs)
	if err != nil {
		s.logger.Warn("refreshed business attributes do not fit the config; keeping the last good tables",
			zap.String("tenant", s.tenant), zap.Error(err))
		return
	}
	s.store(n)
}

// store swaps in a new normaliser and its attribute_values series.
func (s *attrSet) store(n *normalize.Normalizer) {
	s.norm.Store(n)
	attributeValueSeries.publish(s, n.Options().Attributes.Sizes())
}

func (s *attrSet) release() {
	if s == nil {
		return
	}
	if s.from != nil {
		// Unsubscribed first: no rebuild publishes after the series go.
		s.from.unsubscribe(s.subID)
		_, _ = refreshers.Delete(s.fromKey)
		s.from = nil
	}
	attributeValueSeries.publish(s, nil)
}

// buildSets loads (or fetches) the top-level and the tenants' tables and
// builds their normalisers (also used by the `caddy ucs` commands, so both
// apply the same rules). releaseSets undoes it.
func (h *Handler) buildSets() error {
	logger := h.logger
	if logger == nil {
		logger = zap.NewNop()
	}
	opts := h.normalizeOptions()
	var err error
	h.top, err = newAttrSet("", h.BusinessAttributes, h.BusinessAttribute, h.AttributeValues, h.BusinessAttributesFrom, opts, logger)
	if err != nil {
		return err
	}
	h.topHasTables = len(h.BusinessAttributes) > 0 || len(h.AttributeValues) > 0 || h.BusinessAttributesFrom != nil
	h.tenants = nil
	h.tenantByID = map[string]*attrSet{}
	for _, t := range h.Tenants {
		s, err := newAttrSet(t.IDs[0], t.BusinessAttributes, t.BusinessAttribute, t.AttributeValues, t.BusinessAttributesFrom, opts, logger)
		if err != nil {
			return fmt.Errorf("tenant %s: %w", t.IDs[0], err)
		}
		h.tenants = append(h.tenants, s)
		for _, id := range t.IDs {
			h.tenantByID[id] = s
		}
	}
	return nil
}

func (h *Handler) releaseSets() {
	h.top.release()
	for _, s := range h.tenants {
		s.release()
	}
}

// tenantSet picks the tables of a request: its tenant's, else the top
// level's; nil when the request names no tenant and there are no top-level
// tables. No allocation.
func (h *Handler) tenantSet(r *http.Request) *attrSet {
	if len(h.tenants) == 0 {
		return h.top
	}
	id := ""
	if v := r.Header[tenantHeaderKey]; len(v) > 0 {
		id = v[0]
	}
	if id != "" {
		if s, ok := h.tenantByID[id]; ok {
			return s
		}
		for i, t := range h.Tenants {
			for _, tid := range t.IDs {
				if strings.EqualFold(tid, strings.TrimSpace(id)) {
					return h.tenants[i]
				}
			}
		}
	}
	if h.topHasTables {
		return h.top
	}
	return nil
}
