package normalize

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const businessAttributesFile = "../testdata/business-attributes.json"

// loadTestTables builds the tables of the repository's metadata file.
func loadTestTables(t testing.TB) *Tables {
	t.Helper()
	attrs, err := LoadAttributesFile(businessAttributesFile)
	require.NoError(t, err)
	tables, err := NewTables(TableConfig{Attributes: attrs})
	require.NoError(t, err)
	return tables
}

func TestTablesConfigErrors(t *testing.T) {
	fromFile := []Attribute{{Name: "MediaType", Source: "a.json", Values: []AttributeValue{{Name: "voice", DBID: 1001}}}}
	tests := []struct {
		name string
		cfg  TableConfig
		want string
	}{
		{"mapping for an unknown field", TableConfig{Attributes: fromFile, Mapping: map[string]string{"foo": "Bar"}},
			"business_attribute: unknown field foo; known fields: application_type, resource_type, media_type, disposition, task_type"},
		{"inline values for an unknown field", TableConfig{Inline: map[string][]AttributeValue{"media": {{Name: "x", DBID: 1}}}},
			"attribute_values: unknown field media; known fields:"},
		{"explicitly mapped attribute not loaded", TableConfig{Attributes: fromFile, Mapping: map[string]string{"media_type": "Media"}},
			"business_attribute media_type Media: attribute Media is not in the loaded business attributes (loaded: MediaType)"},
		{"attribute defined twice", TableConfig{Attributes: append(fromFile, Attribute{Name: "MediaType", Source: "b.json"})},
			"business attribute MediaType is defined twice (a.json and b.json)"},
		{"duplicate inline names", TableConfig{Inline: map[string][]AttributeValue{"media_type": {{Name: "x", DBID: 1}, {Name: "x", DBID: 2}}}},
			`attribute_values media_type: value name "x" appears twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTables(tt.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestTablesCoverTheFieldsTheirAttributesBack(t *testing.T) {
	media := Attribute{Name: "MediaType", Values: []AttributeValue{{Name: "voice", DBID: 1001}}}
	media2 := Attribute{Name: "Channel", Values: []AttributeValue{{Name: "voice", DBID: 7}}}
	tests := []struct {
		name   string
		cfg    TableConfig
		field  string
		lookup string
		want   int64
		covers []string
	}{
		{"default mapping", TableConfig{Attributes: []Attribute{media}}, "media_type", "voice", 1001, []string{"media_type"}},
		{"explicit mapping overrides the default", TableConfig{Attributes: []Attribute{media, media2}, Mapping: map[string]string{"media_type": "Channel"}},
			"media_type", "voice", 7, []string{"media_type"}},
		{"inline values win over files", TableConfig{Attributes: []Attribute{media}, Inline: map[string][]AttributeValue{"media_type": {{Name: "voice", DBID: 9}}}},
			"media_type", "voice", 9, []string{"media_type"}},
		{"inline values need no file", TableConfig{Inline: map[string][]AttributeValue{"task_type": {{Name: "survey", DBID: 12}}}},
			"task_type", "survey", 12, []string{"task_type"}},
		{"an explicit mapping to a missing attribute is fine with inline values", TableConfig{Mapping: map[string]string{"task_type": "Kinds"},
			Inline: map[string][]AttributeValue{"task_type": {{Name: "survey", DBID: 12}}}}, "task_type", "survey", 12, []string{"task_type"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tables, err := NewTables(tt.cfg)
			require.NoError(t, err)
			id, ok := tables.Lookup(tt.field, tt.lookup, false)
			require.True(t, ok)
			assert.Equal(t, tt.want, id)
			for _, f := range AttributeFields {
				assert.Equal(t, contains(tt.covers, f), tables.Covers(f), f)
			}
		})
	}
	var none *Tables
	assert.False(t, none.Covers("media_type"))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestCaseInsensitiveLookupIgnoresCaseAndSurroundingSpace(t *testing.T) {
	tables, err := NewTables(TableConfig{Inline: map[string][]AttributeValue{"media_type": {
		{Name: "email", DBID: 1003}, {Name: "Voice", DBID: 1001}, {Name: "SMS", DBID: 1021}, {Name: "sms", DBID: 1022},
		{Name: "Ärger", DBID: 1030},
	}}})
	require.NoError(t, err)
	tests := []struct {
		name            string
		caseInsensitive bool
		want            int64
		found           bool
	}{
		{"email", false, 1003, true},
		{"EMAIL", false, 0, false},
		{"EMAIL", true, 1003, true},
		{" Email\t", true, 1003, true},
		{"voice", true, 1001, true},
		{"ärger", true, 1030, true},
		{"SMS", true, 1021, true}, // exact match first
		{"sms", true, 1022, true},
		{"Sms", true, 0, false}, // SMS and sms collide ignoring case: neither is guessed
		{"fax", true, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, ok := tables.Lookup("media_type", tt.name, tt.caseInsensitive)
			assert.Equal(t, tt.found, ok)
			assert.Equal(t, tt.want, id)
		})
	}
}

func TestTableLookupDoesNotAllocate(t *testing.T) {
	tables := loadTestTables(t)
	tb := tables.byKey[attributeKey(resTask, slotMediaType)]
	exact, folded := []byte("email"), []byte(" EMail ")
	allocs := testing.AllocsPerRun(100, func() {
		_, ok1 := tb.lookup(exact, true)
		_, ok2 := tb.lookup(folded, true)
		if !ok1 || !ok2 {
			panic("lookup failed")
		}
	})
	assert.Zero(t, allocs)
}

func TestTablesNameTheAttributeBehindEachField(t *testing.T) {
	tables, err := NewTables(TableConfig{
		Attributes: []Attribute{{Name: "Channel", Values: []AttributeValue{{Name: "voice", DBID: 7}}}},
		Mapping:    map[string]string{"media_type": "Channel"},
		Inline:     map[string][]AttributeValue{"task_type": {{Name: "survey", DBID: 12}}},
	})
	require.NoError(t, err)
	tests := []struct{ field, want string }{
		{"media_type", "Channel"},
		{"task_type", "TaskType"}, // inline values keep the default attribute name for messages
		{"disposition", ""},       // no table
		{"bogus", ""},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tables.Attribute(tt.field), tt.field)
	}
}

func TestTablesTakeTheGenesysResourceKeys(t *testing.T) {
	channel := Attribute{Name: "Channel", Values: []AttributeValue{{Name: "voice", DBID: 7}}}
	kinds := Attribute{Name: "Kinds", Values: []AttributeValue{{Name: "survey", DBID: 12}}}
	tests := []struct {
		name    string
		cfg     TableConfig
		key     string
		want    string // attribute backing key; "" for no table
		wantErr string
	}{
		{"Task.type maps the task's type", TableConfig{Attributes: []Attribute{kinds}, Mapping: map[string]string{"Task.type": "Kinds"}}, "Task.type", "Kinds", ""},
		{"task_type is Task.type", TableConfig{Attributes: []Attribute{kinds}, Mapping: map[string]string{"task_type": "Kinds"}}, "Task.type", "Kinds", ""},
		{"media_type is Task.media_type only", TableConfig{Attributes: []Attribute{channel}, Mapping: map[string]string{"media_type": "Channel"}}, "Service.media_type", "", ""},
		{"*.media_type maps every resource", TableConfig{Attributes: []Attribute{channel}, Mapping: map[string]string{"*.media_type": "Channel"}}, "State.media_type", "Channel", ""},
		{"a resource key overrides *", TableConfig{Attributes: []Attribute{channel, {Name: "MediaType"}}, Mapping: map[string]string{"*.media_type": "Channel", "Service.media_type": "MediaType"}}, "Service.media_type", "MediaType", ""},
		{"the default maps Service.type to ServiceType", TableConfig{Attributes: []Attribute{{Name: "ServiceType"}}}, "Service.type", "ServiceType", ""},
		{"the default maps State.disposition to DispositionCode", TableConfig{Attributes: []Attribute{{Name: "DispositionCode"}}}, "State.disposition", "DispositionCode", ""},
		{"inline values take a resource key", TableConfig{Inline: map[string][]AttributeValue{"State.type": {{Name: "menu", DBID: 3}}}}, "State.type", "StateType", ""},
		{"an unknown resource is an error", TableConfig{Mapping: map[string]string{"Customer.type": "X"}}, "", "",
			"business_attribute: unknown field Customer.type; known fields: application_type, resource_type, media_type, disposition, task_type (the Task.* keys), or <Resource>.<attribute>"},
		{"an unknown attribute is an error", TableConfig{Inline: map[string][]AttributeValue{"Task.colour": nil}}, "", "", "attribute_values: unknown field Task.colour"},
		{"two spellings of one key are an error", TableConfig{Attributes: []Attribute{channel}, Mapping: map[string]string{"media_type": "Channel", "Task.media_type": "Channel"}}, "", "",
			"business_attribute: Task.media_type and media_type both name Task.media_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tables, err := NewTables(tt.cfg)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, tables.Attribute(tt.key))
		})
	}
}

func TestSizesNameOnlyTheAttributesBackingAKey(t *testing.T) {
	attrs := []Attribute{
		{Name: "MediaType", Values: []AttributeValue{{Name: "voice", DBID: 1}, {Name: "email", DBID: 2}}},
		{Name: "DispositionCode", Values: []AttributeValue{{Name: "resolved", DBID: 3}}},
		{Name: "Unmapped", Values: []AttributeValue{{Name: "x", DBID: 4}}},
	}
	tables, err := NewTables(TableConfig{
		Attributes: attrs,
		// Task.disposition's inline table is larger than the attribute's.
		Inline: map[string][]AttributeValue{"Task.disposition": {{Name: "a", DBID: 5}, {Name: "b", DBID: 6}, {Name: "c", DBID: 7}}},
	})
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"MediaType": 2, "DispositionCode": 3}, tables.Sizes())
	assert.Nil(t, (*Tables)(nil).Sizes())
}
