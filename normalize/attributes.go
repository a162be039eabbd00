package normalize

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Attribute is one Business Attribute as Context Services'
// GET /genesys/1/cs/metadata/business-attributes returns it. Other keys of
// that response (map_name, cv_attributes, the attribute's own dbid) are
// ignored.
type Attribute struct {
	Name        string
	DisplayName string
	Description string
	Values      []AttributeValue
	// Source names where the attribute was read from (a file path) for
	// error messages; empty when it was parsed from memory.
	Source string
}

// AttributeValue is one Business Attribute Value: Name is what clients
// send, DBID what the server expects.
type AttributeValue struct {
	Name        string
	DisplayName string
	Description string
	DBID        int64
	// Default marks the value that fills an omitted field with
	// fill_defaults. Genesys' JSON documents no such flag: it is read from
	// "default": true or "is_default": true on the value.
	Default bool
}

// AttributeFields lists the business-attribute fields of a Task End Event,
// in the order their defaults are appended. In a mapping or an inline table
// these names stand for the Task.* keys (media_type is Task.media_type,
// task_type is Task.type), as the business_attribute option always had it.
var AttributeFields = [...]string{"application_type", "resource_type", "media_type", "disposition", "task_type"}

// Resources are the resources of Genesys' [business-attributes] keys
// (<Resource>.<attribute>): an operation on a service, a state or a task
// reads the tables of its resource.
var Resources = [...]string{"Service", "State", "Task"}

const (
	resService = iota
	resState
	resTask
	numResources
)

// attributeSlots are the attribute part of the keys; "type" is the
// resource's own type field (service_type, state_type, task_type).
var attributeSlots = [...]string{"application_type", "resource_type", "media_type", "disposition", "type"}

const (
	slotApplicationType = iota
	slotResourceType
	slotMediaType
	slotDisposition
	slotType
	numSlots
)

// numAttributeKeys is the number of <Resource>.<attribute> keys.
const numAttributeKeys = numResources * numSlots

// attributeKey is the flat index of a <Resource>.<attribute> key.
func attributeKey(res, slot int) int { return res*numSlots + slot }

// attributeKeyName is the key's Genesys spelling, e.g. "Task.type".
func attributeKeyName(k int) string {
	return Resources[k/numSlots] + "." + attributeSlots[k%numSlots]
}

// DefaultMapping returns the defaults of Genesys' own test configuration
// for the [business-attributes] section: which Business Attribute backs
// which key. "*." stands for every resource.
func DefaultMapping() map[string]string {
	return map[string]string{
		"*.application_type": "ApplicationType",
		"*.resource_type":    "ResourceType",
		"*.media_type":       "MediaType",
		"*.disposition":      "DispositionCode",
		"Service.type":       "ServiceType",
		"State.type":         "StateType",
		"Task.type":          "TaskType",
	}
}

// resolveKey returns the flat indexes a mapping or inline key stands for:
// <Resource>.<attribute>, *.<attribute> (every resource), or a Task End
// field name (the Task.* key; service_type and state_type too).
func resolveKey(key string) []int {
	if res, slot, ok := strings.Cut(key, "."); ok {
		s := indexOf(attributeSlots[:], slot)
		if s < 0 {
			return nil
		}
		if res == "*" {
			return []int{attributeKey(resService, s), attributeKey(resState, s), attributeKey(resTask, s)}
		}
		if r := indexOf(Resources[:], res); r >= 0 {
			return []int{attributeKey(r, s)}
		}
		return nil
	}
	switch key {
	case "service_type":
		return []int{attributeKey(resService, slotType)}
	case "state_type":
		return []int{attributeKey(resState, slotType)}
	case "task_type":
		return []int{attributeKey(resTask, slotType)}
	}
	if s := indexOf(attributeSlots[:slotType], key); s >= 0 {
		return []int{attributeKey(resTask, s)}
	}
	return nil
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// Keys returns every <Resource>.<attribute> key, e.g. Task.type, in a
// fixed order.
func Keys() []string {
	out := make([]string, numAttributeKeys)
	for k := range out {
		out[k] = attributeKeyName(k)
	}
	return out
}

// knownKeys lists the keys a mapping accepts, for messages.
func knownKeys() string {
	return strings.Join(AttributeFields[:], ", ") + " (the Task.* keys), or <Resource>.<attribute> with Resource one of " +
		strings.Join(Resources[:], ", ") + " or * (every resource) and attribute one of " + strings.Join(attributeSlots[:], ", ") +
		", e.g. Task.type, Service.media_type"
}

// TableConfig describes where each key's names come from.
type TableConfig struct {
	// Attributes are the Business Attributes loaded from files (or from the
	// upstream's metadata endpoint).
	Attributes []Attribute
	// Mapping maps a key (Task.type, *.media_type, or a Task End field
	// name) to an attribute name; it overrides DefaultMapping per key, a
	// <Resource>.<attribute> key overriding a *.<attribute> one. A mapped
	// attribute must be in Attributes unless Inline covers the key.
	Mapping map[string]string
	// Inline holds values given in the config per key (Caddyfile
	// attribute_values); they replace the attribute's values from files.
	Inline map[string][]AttributeValue
}

// maxNameLen bounds the names a table can hold, so that lookups can fold
// the input into a stack buffer; longer input simply matches nothing.
const maxNameLen = 256

// maxKnownListed is how many names an unknown-name message lists.
const maxKnownListed = 6

// table is one key's name → dbid index. It is immutable after NewTables.
type table struct {
	attribute string // the Business Attribute name, for messages
	exact     map[string]int64
	// folded indexes lower-cased, trimmed names; a folded form shared by
	// two values is left out, so such names only match exactly.
	folded     map[string]int64
	known      string // "voice, email, …" for messages
	def        int64
	hasDefault bool
}

// Tables holds the business-attribute tables of every <Resource>.<attribute>
// key. It is immutable and safe for concurrent use; a nil *Tables covers no
// key.
type Tables struct {
	byKey [numAttributeKeys]*table
}

// table returns the table of a flat key index, nil when none is configured.
func (t *Tables) table(k int) *table {
	if t == nil {
		return nil
	}
	return t.byKey[k]
}

// tableOf returns the table of one key (Task.type, or a Task End field).
func (t *Tables) tableOf(key string) *table {
	ks := resolveKey(key)
	if len(ks) != 1 {
		return nil
	}
	return t.table(ks[0])
}

// Covers reports whether a table is configured for key: Task.type,
// Service.media_type, …, or a Task End field name (its Task.* key).
func (t *Tables) Covers(key string) bool { return t.tableOf(key) != nil }

// Attribute returns the Business Attribute name backing key's table, or
// "" when no table covers key.
func (t *Tables) Attribute(key string) string {
	if tb := t.tableOf(key); tb != nil {
		return tb.attribute
	}
	return ""
}

// Sizes returns the name of each Business Attribute that backs a key's
// table (a configured or default mapping, never a name only the loaded
// metadata holds) and the number of names in its largest table; nil for no
// table.
func (t *Tables) Sizes() map[string]int {
	if t == nil {
		return nil
	}
	var sizes map[string]int
	for _, tb := range t.byKey {
		if tb == nil {
			continue
		}
		if sizes == nil {
			sizes = map[string]int{}
		}
		sizes[tb.attribute] = max(sizes[tb.attribute], len(tb.exact))
	}
	return sizes
}

// Lookup returns the dbid for name in key's table (exact match, then,
// with caseInsensitive, ignoring case and surrounding white space).
func (t *Tables) Lookup(key, name string, caseInsensitive bool) (int64, bool) {
	tb := t.tableOf(key)
	if tb == nil {
		return 0, false
	}
	return tb.lookup([]byte(name), caseInsensitive)
}

// lookup does not allocate: m[string(b)] is a non-allocating map access,
// and the folded form is built in a stack buffer.
func (tb *table) lookup(name []byte, caseInsensitive bool) (int64, bool) {
	if id, ok := tb.exact[string(name)]; ok {
		return id, true
	}
	if !caseInsensitive || len(tb.folded) == 0 {
		return 0, false
	}
	var buf [maxNameLen]byte
	f, ok := foldName(buf[:0], name)
	if !ok {
		return 0, false
	}
	id, ok := tb.folded[string(f)]
	return id, ok
}

// foldName appends name trimmed of surrounding white space and lower-cased
// rune by rune to dst, failing rather than growing dst past its capacity
// (so a stack buffer stays on the stack).
func foldName(dst, name []byte) ([]byte, bool) {
	name = bytes.TrimFunc(name, unicode.IsSpace)
	for len(name) > 0 {
		c := name[0]
		if c < utf8.RuneSelf {
			if len(dst) == cap(dst) {
				return dst, false
			}
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
			name = name[1:]
			continue
		}
		r, size := utf8.DecodeRune(name)
		r = unicode.ToLower(r)
		if len(dst)+utf8.RuneLen(r) > cap(dst) || utf8.RuneLen(r) < 0 {
			return dst, false
		}
		dst = utf8.AppendRune(dst, r)
		name = name[size:]
	}
	return dst, true
}

// NewTables builds the per-key tables. A key gets a table from its inline
// values, else from the attribute its mapping (or the default mapping)
// names; a default mapping whose attribute is not loaded leaves the key
// without a table, an explicit one is an error.
func NewTables(cfg TableConfig) (*Tables, error) {
	mapping, mappedBy, err := resolveKeys("business_attribute", cfg.Mapping)
	if err != nil {
		return nil, err
	}
	inline, inlineBy, err := resolveKeys("attribute_values", cfg.Inline)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*Attribute, len(cfg.Attributes))
	for i := range cfg.Attributes {
		a := &cfg.Attributes[i]
		if prev, dup := byName[a.Name]; dup {
			return nil, fmt.Errorf("business attribute %s is defined twice (%s and %s)", a.Name, sourceName(prev.Source), sourceName(a.Source))
		}
		byName[a.Name] = a
	}
	defaults, _, _ := resolveKeys("", DefaultMapping())
	t := &Tables{}
	for k := range numAttributeKeys {
		attrName, explicit := mapping[k]
		if !explicit {
			attrName = defaults[k]
		}
		var values []AttributeValue
		where := ""
		if in, ok := inline[k]; ok {
			values, where = in, "attribute_values "+inlineBy[k]
		} else if a, ok := byName[attrName]; ok {
			values, where = a.Values, "business attribute "+attrName+" ("+sourceName(a.Source)+")"
		} else if explicit {
			return nil, fmt.Errorf("business_attribute %s %s: attribute %s is not in the loaded business attributes (loaded: %s)",
				mappedBy[k], attrName, attrName, loadedNames(cfg.Attributes))
		} else {
			continue
		}
		tb, err := newTable(attrName, values)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		t.byKey[k] = tb
	}
	return t, nil
}

// resolveKeys turns a config map keyed by mapping keys into one keyed by
// flat key index, a <Resource>.<attribute> key winning over a
// *.<attribute> one; by names the config key each index came from. Two
// spellings of one key (media_type and Task.media_type) are an error.
func resolveKeys[V any](option string, in map[string]V) (out map[int]V, by map[int]string, err error) {
	out, by = map[int]V{}, map[int]string{}
	keys := make([]string, 0, len(in))
	for key := range in {
		keys = append(keys, key)
	}
	// Wildcards first, so that the keys naming one resource override them;
	// sorted, so that the error for two spellings is always the same.
	sort.Slice(keys, func(i, j int) bool {
		wi, wj := strings.HasPrefix(keys[i], "*."), strings.HasPrefix(keys[j], "*.")
		if wi != wj {
			return wi
		}
		return keys[i] < keys[j]
	})
	wild := map[int]bool{}
	for _, key := range keys {
		ks := resolveKey(key)
		if ks == nil {
			return nil, nil, fmt.Errorf("%s: unknown field %s; known fields: %s", option, key, knownKeys())
		}
		for _, k := range ks {
			if prev, dup := by[k]; dup && !wild[k] {
				return nil, nil, fmt.Errorf("%s: %s and %s both name %s", option, prev, key, attributeKeyName(k))
			}
			wild[k] = strings.HasPrefix(key, "*.")
			out[k], by[k] = in[key], key
		}
	}
	return out, by, nil
}

func sourceName(s string) string {
	if s == "" {
		return "in memory"
	}
	return s
}

func loadedNames(attrs []Attribute) string {
	if len(attrs) == 0 {
		return "none"
	}
	names := make([]string, len(attrs))
	for i, a := range attrs {
		names[i] = a.Name
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// newTable indexes values; names are checked again here because inline
// values do not pass through ParseAttributes.
func newTable(attribute string, values []AttributeValue) (*table, error) {
	if err := checkValues(values); err != nil {
		return nil, err
	}
	tb := &table{
		attribute: attribute,
		exact:     make(map[string]int64, len(values)),
		folded:    make(map[string]int64, len(values)),
	}
	ambiguous := map[string]bool{}
	var known []string
	for _, v := range values {
		tb.exact[v.Name] = v.DBID
		if len(known) < maxKnownListed {
			known = append(known, v.Name)
		}
		if v.Default {
			tb.def, tb.hasDefault = v.DBID, true
		}
		var buf [maxNameLen]byte
		f, ok := foldName(buf[:0], []byte(v.Name))
		if !ok {
			continue
		}
		key := string(f)
		if _, seen := tb.folded[key]; seen || ambiguous[key] {
			// Two names equal ignoring case: neither wins, so a
			// case-insensitive match never picks one arbitrarily.
			delete(tb.folded, key)
			ambiguous[key] = true
			continue
		}
		tb.folded[key] = v.DBID
	}
	tb.known = strings.Join(known, ", ")
	if len(values) > maxKnownListed {
		tb.known += ", …"
	}
	if len(values) == 0 {
		tb.known = "none"
	}
	return tb, nil
}

// checkValues rejects what would make a table ambiguous: empty, over-long
// or duplicate names, and more than one default.
func checkValues(values []AttributeValue) error {
	seen := make(map[string]bool, len(values))
	def := ""
	for _, v := range values {
		switch {
		case v.Name == "":
			return fmt.Errorf("a value (dbid %d) has no name", v.DBID)
		case len(v.Name) > maxNameLen:
			return fmt.Errorf("value name %.40q… is longer than %d bytes", v.Name, maxNameLen)
		case !utf8.ValidString(v.Name):
			return fmt.Errorf("value name %q is not valid UTF-8", v.Name)
		case seen[v.Name]:
			return fmt.Errorf("value name %q appears twice", v.Name)
		}
		seen[v.Name] = true
		if v.Default {
			if def != "" {
				return fmt.Errorf("values %q and %q are both flagged as the default", def, v.Name)
			}
			def = v.Name
		}
	}
	return nil
}
