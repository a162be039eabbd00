package normalize

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAttributesParseFromOneObjectOrAList(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Attribute
	}{
		{"one object", `{"name":"MediaType","dbid":"121","map_name":false,"values":[{"name":"email","dbid":1003,"display_name":"E-mail"}]}`,
			[]Attribute{{Name: "MediaType", Values: []AttributeValue{{Name: "email", DisplayName: "E-mail", DBID: 1003}}}}},
		{"a list", `[{"name":"A","values":[{"name":"x","dbid":1}]},{"name":"B","values":[]}]`,
			[]Attribute{{Name: "A", Values: []AttributeValue{{Name: "x", DBID: 1}}}, {Name: "B", Values: []AttributeValue{}}}},
		{"numeric-string dbid", `{"name":"A","values":[{"name":"x","dbid":" 1021 "}]}`,
			[]Attribute{{Name: "A", Values: []AttributeValue{{Name: "x", DBID: 1021}}}}},
		{"default flag", `{"name":"A","values":[{"name":"x","dbid":1,"default":true},{"name":"y","dbid":2}]}`,
			[]Attribute{{Name: "A", Values: []AttributeValue{{Name: "x", DBID: 1, Default: true}, {Name: "y", DBID: 2}}}}},
		{"is_default flag", `{"name":"A","values":[{"name":"x","dbid":1},{"name":"y","dbid":2,"is_default":true}]}`,
			[]Attribute{{Name: "A", Values: []AttributeValue{{Name: "x", DBID: 1}, {Name: "y", DBID: 2, Default: true}}}}},
		{"largest dbid", `{"name":"A","values":[{"name":"x","dbid":9223372036854775807}]}`,
			[]Attribute{{Name: "A", Values: []AttributeValue{{Name: "x", DBID: 9223372036854775807}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAttributes([]byte(tt.in))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestAttributesFileOfGenesysShapeLoads(t *testing.T) {
	attrs, err := LoadAttributesFile(businessAttributesFile)
	require.NoError(t, err)
	require.Len(t, attrs, 7)
	assert.Equal(t, "MediaType", attrs[0].Name)
	assert.Equal(t, businessAttributesFile, attrs[0].Source)
	assert.Equal(t, AttributeValue{Name: "sms", DisplayName: "SMS", Description: "Media SMS", DBID: 1021}, attrs[0].Values[4])
	assert.True(t, attrs[0].Values[0].Default)
}

func TestBadAttributesFileErrorNamesTheFileAndTheProblem(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string
	}{
		{"not JSON", `MediaType: voice=1001`, "not JSON"},
		{"broken JSON", `[{"name":"A",]`, "not a JSON list"},
		{"empty", ``, "empty business attributes document"},
		{"duplicate value names", `{"name":"MediaType","values":[{"name":"email","dbid":1},{"name":"email","dbid":2}]}`,
			`attribute MediaType: value name "email" appears twice`},
		{"non-numeric dbid", `{"name":"MediaType","values":[{"name":"email","dbid":"x12"}]}`,
			`attribute MediaType, value "email": dbid "x12" is not a decimal integer`},
		{"fractional dbid", `{"name":"MediaType","values":[{"name":"email","dbid":1.5}]}`,
			`dbid 1.5 is not a decimal integer`},
		{"out-of-range dbid", `{"name":"MediaType","values":[{"name":"email","dbid":9223372036854775808}]}`,
			`dbid 9223372036854775808 does not fit a signed 64-bit integer`},
		{"missing dbid", `{"name":"MediaType","values":[{"name":"email"}]}`, "dbid is missing"},
		{"value without a name", `{"name":"MediaType","values":[{"dbid":1}]}`, "a value (dbid 1) has no name"},
		{"attribute without a name", `[{"values":[]}]`, "attribute #1 has no name"},
		{"two defaults", `{"name":"MediaType","values":[{"name":"a","dbid":1,"default":true},{"name":"b","dbid":2,"is_default":true}]}`,
			`values "a" and "b" are both flagged as the default`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "attrs.json")
			require.NoError(t, os.WriteFile(path, []byte(tt.content), 0o600))
			_, err := LoadAttributesFile(path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), path)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestMissingAttributesFileErrorNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.json")
	_, err := LoadAttributesFile(path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), path)
}
