package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// receivedAt is the injected receive time of every test; its canonical
// form is fixedStamp.
var receivedAt = time.Date(2026, 11, 26, 12, 0, 0, 123456000, time.UTC)

const fixedStamp = `"timestamp":"2026-11-26T12:00:00.123Z"`

// taskEndCase is one row: input beside expected output and the repairs
// expected (by kind, with counts).
type taskEndCase struct {
	name    string
	in      string
	want    string
	repairs map[RepairKind]int
}

func newTestNormalizer(t testing.TB, opts Options) *Normalizer {
	t.Helper()
	n, err := New(opts)
	require.NoError(t, err)
	return n
}

// runTaskEndCases runs rows with one Normalizer and checks that the output
// is the expected strict JSON and that the field repairs are as listed.
func runTaskEndCases(t *testing.T, opts Options, tests []taskEndCase) {
	t.Helper()
	n := newTestNormalizer(t, opts)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rep Report
			prefix := []byte("kept:")
			out, err := n.TaskEnd(prefix, []byte(tt.in), receivedAt, &rep)
			require.NoError(t, err)
			require.True(t, bytes.HasPrefix(out, prefix), "dst is appended to")
			assert.Equal(t, tt.want, string(out[len(prefix):]))
			assert.True(t, json.Valid(out[len(prefix):]))
			for k := RepairTimestampAdded; k < NumRepairKinds; k++ {
				assert.Equal(t, tt.repairs[k], rep.Counts[k], "repairs of kind %s", k)
			}
		})
	}
}

func TestStringFieldsKeepStringsAndTurnNumbersIntoTheirText(t *testing.T) {
	runTaskEndCases(t, Options{}, []taskEndCase{
		{"string kept", `{"session_id":"9C3E0F0B-1"}`, `{"session_id":"9C3E0F0B-1",` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"integer becomes its text", `{"session_id":12345}`, `{"session_id":"12345",` + fixedStamp + `}`,
			map[RepairKind]int{RepairNumberToString: 1, RepairTimestampAdded: 1}},
		{"number keeps its exact text", `{"interaction_id":-1.50e3}`, `{"interaction_id":"-1.50e3",` + fixedStamp + `}`,
			map[RepairKind]int{RepairNumberToString: 1, RepairTimestampAdded: 1}},
		{"64-bit id never passes through float", `{"interaction_id":12345678901234567890123}`, `{"interaction_id":"12345678901234567890123",` + fixedStamp + `}`,
			map[RepairKind]int{RepairNumberToString: 1, RepairTimestampAdded: 1}},
		{"null kept", `{"disposition_desc":null}`, `{"disposition_desc":null,` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"session_id of exactly 32 characters", `{"session_id":"` + strings.Repeat("x", 32) + `"}`,
			`{"session_id":"` + strings.Repeat("x", 32) + `",` + fixedStamp + `}`, map[RepairKind]int{RepairTimestampAdded: 1}},
		{"interaction_id of exactly 50 characters", `{"interaction_id":"` + strings.Repeat("x", 50) + `"}`,
			`{"interaction_id":"` + strings.Repeat("x", 50) + `",` + fixedStamp + `}`, map[RepairKind]int{RepairTimestampAdded: 1}},
		{"disposition_desc counts characters, not bytes", `{"disposition_desc":"` + strings.Repeat("é", 64) + `"}`,
			`{"disposition_desc":"` + strings.Repeat("é", 64) + `",` + fixedStamp + `}`, map[RepairKind]int{RepairTimestampAdded: 1}},
		{"an escape is one character", `{"session_id":"` + strings.Repeat(`\"`, 31) + `\ud83d\ude00"}`,
			`{"session_id":"` + strings.Repeat(`\"`, 31) + `\ud83d\ude00",` + fixedStamp + `}`, map[RepairKind]int{RepairTimestampAdded: 1}},
	})
}

func TestIntegerFieldsTurnDecimalStringsIntoIntegers(t *testing.T) {
	runTaskEndCases(t, Options{}, []taskEndCase{
		{"integer kept", `{"application_id":40}`, `{"application_id":40,` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"decimal string becomes the integer", `{"resource_id":"12"}`, `{"resource_id":12,` + fixedStamp + `}`,
			map[RepairKind]int{RepairStringToInteger: 1, RepairTimestampAdded: 1}},
		{"surrounding spaces trimmed", `{"resource_id":" 12 "}`, `{"resource_id":12,` + fixedStamp + `}`,
			map[RepairKind]int{RepairStringToInteger: 1, RepairTimestampAdded: 1}},
		{"leading zeros read as decimal", `{"application_id":"007"}`, `{"application_id":7,` + fixedStamp + `}`,
			map[RepairKind]int{RepairStringToInteger: 1, RepairTimestampAdded: 1}},
		{"negative string", `{"application_id":"-5"}`, `{"application_id":-5,` + fixedStamp + `}`,
			map[RepairKind]int{RepairStringToInteger: 1, RepairTimestampAdded: 1}},
		{"negative number kept", `{"resource_id":-5}`, `{"resource_id":-5,` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"null kept", `{"state_id":null}`, `{"state_id":null,` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"largest 64-bit id", `{"resource_id":9223372036854775807}`, `{"resource_id":9223372036854775807,` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"smallest 64-bit id as a string", `{"resource_id":"-9223372036854775808"}`, `{"resource_id":-9223372036854775808,` + fixedStamp + `}`,
			map[RepairKind]int{RepairStringToInteger: 1, RepairTimestampAdded: 1}},
		{"largest state_id", `{"state_id":2147483647}`, `{"state_id":2147483647,` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"smallest state_id as a string", `{"state_id":"-2147483648"}`, `{"state_id":-2147483648,` + fixedStamp + `}`,
			map[RepairKind]int{RepairStringToInteger: 1, RepairTimestampAdded: 1}},
	})
}

func TestAttributeNamesBecomeTheirIDs(t *testing.T) {
	tables := loadTestTables(t)
	runTaskEndCases(t, Options{Attributes: tables}, []taskEndCase{
		{"name becomes its dbid", `{"media_type":"email"}`, `{"media_type":1003,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeName: 1, RepairTimestampAdded: 1}},
		{"name with a space", `{"task_type":"customer info"}`, `{"task_type":5001,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeName: 1, RepairTimestampAdded: 1}},
		{"name with an escape", `{"disposition":"resolv\u0065d"}`, `{"disposition":2101,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeName: 1, RepairTimestampAdded: 1}},
		{"a numeric-string dbid of the file", `{"media_type":"sms"}`, `{"media_type":1021,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeName: 1, RepairTimestampAdded: 1}},
		{"an ID is kept", `{"media_type":1003}`, `{"media_type":1003,` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"an ID the table does not list is kept", `{"media_type":9999}`, `{"media_type":9999,` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"a decimal string is an ID", `{"resource_type":" 4002"}`, `{"resource_type":4002,` + fixedStamp + `}`,
			map[RepairKind]int{RepairStringToInteger: 1, RepairTimestampAdded: 1}},
		{"null kept", `{"disposition":null}`, `{"disposition":null,` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"all five fields", `{"application_type":"gvp","resource_type":"ivr","media_type":"voice","disposition":"abandoned","task_type":"bill payment"}`,
			`{"application_type":3001,"resource_type":4001,"media_type":1001,"disposition":2103,"task_type":5003,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeName: 5, RepairTimestampAdded: 1}},
		{"the same name in attached data is not mapped", `{"x":{"media_type":"email"},"media_type":"email"}`,
			`{"x":{"media_type":"email"},"media_type":1003,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeName: 1, RepairTimestampAdded: 1}},
	})
}

func TestCaseInsensitiveNamesMatchIgnoringCase(t *testing.T) {
	runTaskEndCases(t, Options{Attributes: loadTestTables(t), CaseInsensitive: true}, []taskEndCase{
		{"upper case", `{"media_type":"EMAIL"}`, `{"media_type":1003,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeName: 1, RepairTimestampAdded: 1}},
		{"surrounding white space", `{"task_type":" Customer Info "}`, `{"task_type":5001,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeName: 1, RepairTimestampAdded: 1}},
	})
}

func TestUnknownNamesPassUnchangedWhenConfigured(t *testing.T) {
	n := newTestNormalizer(t, Options{Attributes: loadTestTables(t), UnknownNames: UnknownPass})
	var rep Report
	out, err := n.TaskEnd(nil, []byte(`{"media_type":"fax2","disposition":"resolved"}`), receivedAt, &rep)
	require.NoError(t, err)
	assert.Equal(t, `{"media_type":"fax2","disposition":2101,`+fixedStamp+`}`, string(out))
	require.Equal(t, 1, rep.NumMisses)
	assert.Equal(t, "media_type", rep.Misses[0].Field)
	assert.Equal(t, "fax2", string(rep.Misses[0].Name))
}

func TestFieldsWithoutATableAreForwarded(t *testing.T) {
	mediaOnly, err := NewTables(TableConfig{Inline: map[string][]AttributeValue{"media_type": {{Name: "voice", DBID: 1001}}}})
	require.NoError(t, err)
	tests := []struct {
		name   string
		tables *Tables
	}{
		{"no tables at all", nil},
		{"a table for another field", mediaOnly},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNormalizer(t, Options{Attributes: tt.tables})
			out, err := n.TaskEnd(nil, []byte(`{"application_type":"gvp"}`), receivedAt, nil)
			require.NoError(t, err)
			assert.Equal(t, `{"application_type":"gvp",`+fixedStamp+`}`, string(out))
		})
	}
}

func TestFillDefaultsAppendsOmittedAttributeFields(t *testing.T) {
	tables := loadTestTables(t) // MediaType flags voice (1001) as its default
	runTaskEndCases(t, Options{Attributes: tables, FillDefaults: true}, []taskEndCase{
		{"omitted field appended before the timestamp", `{"a":1}`, `{"a":1,"media_type":1001,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeDefault: 1, RepairTimestampAdded: 1}},
		{"present field kept", `{"media_type":"email"}`, `{"media_type":1003,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeName: 1, RepairTimestampAdded: 1}},
		{"null is present, not omitted", `{"media_type":null}`, `{"media_type":null,` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"empty object", `{}`, `{"media_type":1001,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeDefault: 1, RepairTimestampAdded: 1}},
	})
	runTaskEndCases(t, Options{Attributes: tables}, []taskEndCase{
		{"without fill_defaults nothing is added", `{"a":1}`, `{"a":1,` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
	})
}

func TestTimestampIsAddedOrMadeCanonical(t *testing.T) {
	runTaskEndCases(t, Options{}, []taskEndCase{
		{"missing: appended as the last member", `{"a":1,"b":[2]}`, `{"a":1,"b":[2],` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"missing from an empty object", `{}`, `{` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"null: set in place", `{"timestamp":null,"a":1}`, `{` + fixedStamp + `,"a":1}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"empty: set in place", `{"timestamp":"","a":1}`, `{` + fixedStamp + `,"a":1}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"blank: set in place", `{"timestamp":"  "}`, `{` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"canonical kept without a repair", `{"timestamp":"2024-01-02T03:04:05.678Z"}`, `{"timestamp":"2024-01-02T03:04:05.678Z"}`, nil},
		{"RFC 3339 with offset rewritten", `{"timestamp":"2024-01-02T03:04:05+01:00"}`, `{"timestamp":"2024-01-02T02:04:05.000Z"}`,
			map[RepairKind]int{RepairTimestampRewritten: 1}},
		{"microseconds truncated", `{"timestamp":"2024-01-02 03:04:05.678999"}`, `{"timestamp":"2024-01-02T03:04:05.678Z"}`,
			map[RepairKind]int{RepairTimestampRewritten: 1}},
		{"surrounding spaces trimmed", `{"timestamp":" 2024-01-02T03:04:05.678Z "}`, `{"timestamp":"2024-01-02T03:04:05.678Z"}`,
			map[RepairKind]int{RepairTimestampRewritten: 1}},
		{"epoch milliseconds number", `{"timestamp":1732623600123}`, `{"timestamp":"2024-11-26T12:20:00.123Z"}`,
			map[RepairKind]int{RepairTimestampRewritten: 1}},
		{"epoch milliseconds string", `{"timestamp":"1732623600123"}`, `{"timestamp":"2024-11-26T12:20:00.123Z"}`,
			map[RepairKind]int{RepairTimestampRewritten: 1}},
		{"epoch seconds number", `{"timestamp":1732623600}`, `{"timestamp":"2024-11-26T12:20:00.000Z"}`,
			map[RepairKind]int{RepairTimestampRewritten: 1}},
		{"escaped key is the timestamp", `{"\u0074imestamp":"2024-01-02T03:04:05.678Z"}`, `{"timestamp":"2024-01-02T03:04:05.678Z"}`, nil},
	})
}

func TestAttachedDataIsCopiedByteForByte(t *testing.T) {
	tables := loadTestTables(t)
	runTaskEndCases(t, Options{Attributes: tables}, []taskEndCase{
		{"every JSON type, key order kept",
			`{"z":1,"car_type":"sedan","price":25000.50,"n":null,"t":true,"arr":[1,"a",{"b":[]}],"s":"q\"}]{[","e":{},"timestamp":"2024-01-02T03:04:05.678Z"}`,
			`{"z":1,"car_type":"sedan","price":25000.50,"n":null,"t":true,"arr":[1,"a",{"b":[]}],"s":"q\"}]{[","e":{},"timestamp":"2024-01-02T03:04:05.678Z"}`, nil},
		{"field names nested in attached data are attached data",
			`{"data":{"session_id":{"x":1},"state_id":"abc","timestamp":"later"},"list":[{"media_type":"nope"}]}`,
			`{"data":{"session_id":{"x":1},"state_id":"abc","timestamp":"later"},"list":[{"media_type":"nope"}],` + fixedStamp + `}`,
			map[RepairKind]int{RepairTimestampAdded: 1}},
		{"a key with a trailing backslash escape", `{"k\\":"v\\","media_type":"chat"}`, `{"k\\":"v\\","media_type":1006,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeName: 1, RepairTimestampAdded: 1}},
	})
}

func TestFieldRuleErrorsNameTheField(t *testing.T) {
	tables := loadTestTables(t)
	tests := []struct {
		name  string
		in    string
		kind  ErrorKind
		field string
		msg   string
	}{
		{"session_id object", `{"session_id":{"a":1}}`, KindFieldType, "session_id", `"session_id" must be a string, got an object`},
		{"interaction_id array", `{"interaction_id":[1]}`, KindFieldType, "interaction_id", `"interaction_id" must be a string, got an array`},
		{"disposition_desc boolean", `{"disposition_desc":true}`, KindFieldType, "disposition_desc", `got a boolean (true)`},
		{"session_id too long", `{"session_id":"` + strings.Repeat("x", 33) + `"}`, KindFieldTooLong, "session_id", `"session_id" is 33 characters long; the limit is 32`},
		{"interaction_id too long", `{"interaction_id":"` + strings.Repeat("ü", 51) + `"}`, KindFieldTooLong, "interaction_id", `is 51 characters long; the limit is 50`},
		{"disposition_desc too long", `{"disposition_desc":"` + strings.Repeat("x", 65) + `"}`, KindFieldTooLong, "disposition_desc", `the limit is 64`},
		{"long number for a string field", `{"session_id":` + strings.Repeat("9", 33) + `}`, KindFieldTooLong, "session_id", `is 33 characters long`},
		{"application_id fraction", `{"application_id":1.5}`, KindFieldType, "application_id", `"application_id" must be an integer, got 1.5`},
		{"application_id exponent", `{"application_id":1e3}`, KindFieldType, "application_id", `got 1e3`},
		{"resource_id word", `{"resource_id":"abc"}`, KindFieldType, "resource_id", `"resource_id" must be an integer, got "abc"`},
		{"resource_id empty string", `{"resource_id":""}`, KindFieldType, "resource_id", `got ""`},
		{"resource_id decimal string with fraction", `{"resource_id":"1.0"}`, KindFieldType, "resource_id", `got "1.0"`},
		{"state_id object", `{"state_id":{}}`, KindFieldType, "state_id", `got an object`},
		{"state_id boolean", `{"state_id":false}`, KindFieldType, "state_id", `got a boolean (false)`},
		{"application_id over 64 bits", `{"application_id":9223372036854775808}`, KindFieldRange, "application_id",
			`"application_id" 9223372036854775808 does not fit a signed 64-bit integer (-9223372036854775808 to 9223372036854775807)`},
		{"resource_id string over 64 bits", `{"resource_id":"-9223372036854775809"}`, KindFieldRange, "resource_id", `does not fit a signed 64-bit integer`},
		{"state_id over 32 bits", `{"state_id":2147483648}`, KindFieldRange, "state_id",
			`"state_id" 2147483648 does not fit a signed 32-bit integer (-2147483648 to 2147483647)`},
		{"state_id string under 32 bits", `{"state_id":"-2147483649"}`, KindFieldRange, "state_id", `signed 32-bit`},
		{"attribute ID fraction", `{"media_type":1003.5}`, KindFieldType, "media_type", `"media_type" must be an integer, got 1003.5`},
		{"attribute ID over 64 bits", `{"media_type":"99999999999999999999"}`, KindFieldRange, "media_type", `signed 64-bit`},
		{"attribute object", `{"media_type":{"name":"email"}}`, KindFieldType, "media_type", `must be a business attribute value name or ID, got an object`},
		{"unknown name", `{"media_type":"fax2"}`, KindUnknownName, "media_type",
			`media_type "fax2" is not a value of business attribute MediaType; known values: voice, email, chat, fax, sms`},
		{"case differs without case_insensitive", `{"media_type":"EMAIL"}`, KindUnknownName, "media_type", `"EMAIL" is not a value`},
		{"unparseable timestamp", `{"timestamp":"yesterday"}`, KindTimestamp, "timestamp", `"timestamp" "yesterday" is not a time; accepted forms:`},
		{"impossible date", `{"timestamp":"2023-02-29T00:00:00Z"}`, KindTimestamp, "timestamp", `is not a time`},
		{"negative epoch", `{"timestamp":-1}`, KindTimestamp, "timestamp", `"timestamp" -1 is not a time`},
		{"fractional epoch", `{"timestamp":1732623600.5}`, KindTimestamp, "timestamp", `is not a time`},
		{"boolean timestamp", `{"timestamp":true}`, KindTimestamp, "timestamp", `is not a time`},
		{"object timestamp", `{"timestamp":{}}`, KindTimestamp, "timestamp", `is not a time`},
		{"top level array", `[1,2]`, KindNotObject, "", "the Task End Event must be a JSON object, got an array"},
		{"top level string", `"x"`, KindNotObject, "", "got a string"},
		{"top level number", `12`, KindNotObject, "", "got a number"},
		{"top level null", `null`, KindNotObject, "", "got null"},
		{"top level boolean", `true`, KindNotObject, "", "got a boolean"},
	}
	n := newTestNormalizer(t, Options{Attributes: tables})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("kept")
			out, err := n.TaskEnd(dst, []byte(tt.in), receivedAt, nil)
			var e *Error
			require.True(t, errors.As(err, &e), "want *Error, got %v", err)
			assert.Equal(t, tt.kind, e.Kind)
			assert.Equal(t, tt.field, e.Field)
			assert.Contains(t, e.Msg, tt.msg)
			assert.Equal(t, "kept", string(out), "dst is returned unchanged")
		})
	}
}

func TestFieldErrorsPointAtTheValueInTheInput(t *testing.T) {
	tests := []struct {
		in         string
		offset     int
		line, col  int
		fieldInErr string
	}{
		{"{\n  \"a\": {\"state_id\": 1},\n  \"state_id\": \"x\"\n}", 40, 3, 15, "state_id"},
		{"{\"my_state_id\":1,\"state_id\":true}", 28, 1, 29, "state_id"},
	}
	n := newTestNormalizer(t, Options{})
	for _, tt := range tests {
		_, err := n.TaskEnd(nil, []byte(tt.in), receivedAt, nil)
		var e *Error
		require.True(t, errors.As(err, &e))
		// The top-level key is found, not the nested one or a longer name.
		assert.Equal(t, tt.fieldInErr, e.Field)
		assert.Equal(t, [3]int{tt.offset, tt.line, tt.col}, [3]int{e.Offset, e.Line, e.Column}, tt.in)
	}
}

// TestGoldenBodies runs every normalize/testdata/golden/*.in.json through
// TaskEnd with the repository's metadata file and compares with *.out.json
// (one trailing newline of the expected file is ignored).
func TestGoldenBodies(t *testing.T) {
	n := newTestNormalizer(t, Options{Attributes: loadTestTables(t)})
	n8 := eachGoldenPair(t, "testdata/golden/*.in.json", func(t *testing.T, in, want []byte) {
		out, err := n.TaskEnd(nil, in, receivedAt, nil)
		require.NoError(t, err)
		assert.Equal(t, string(bytes.TrimSuffix(want, []byte("\n"))), string(out))
		again, err := n.TaskEnd(nil, out, receivedAt, nil)
		require.NoError(t, err)
		assert.Equal(t, string(out), string(again), "normalising the output changes nothing")
	})
	assert.GreaterOrEqual(t, n8, 8)
}

// eachGoldenPair runs check, as a subtest named after the file, on every
// input that glob (a pattern of *.in.json files) finds and the *.out.json
// beside it, and returns how many pairs it ran.
func eachGoldenPair(t *testing.T, glob string, check func(t *testing.T, in, want []byte)) int {
	t.Helper()
	ins, err := filepath.Glob(glob)
	require.NoError(t, err)
	require.NotEmpty(t, ins)
	for _, inPath := range ins {
		t.Run(strings.TrimSuffix(filepath.Base(inPath), ".in.json"), func(t *testing.T) {
			in, err := os.ReadFile(inPath)
			require.NoError(t, err)
			want, err := os.ReadFile(strings.TrimSuffix(inPath, ".in.json") + ".out.json")
			require.NoError(t, err)
			check(t, in, want)
		})
	}
	return len(ins)
}

func TestDuplicateTopLevelFieldsApplyTheRuleToTheLastValueAtTheFirstPosition(t *testing.T) {
	runTaskEndCases(t, Options{Attributes: loadTestTables(t)}, []taskEndCase{
		{"an earlier bad value is replaced before the rule sees it",
			`{"state_id":"x","a":1,"state_id":"5"}`, `{"state_id":5,"a":1,` + fixedStamp + `}`,
			map[RepairKind]int{RepairStringToInteger: 1, RepairTimestampAdded: 1}},
		{"a shorter attached value moves the fields after it",
			`{"a":[1,2,3,4,5],"media_type":"email","a":0,"timestamp":null}`,
			`{"a":0,"media_type":1003,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeName: 1, RepairTimestampAdded: 1}},
		{"a longer field value moves the fields after it",
			`{"session_id":1,"x":{"y":2},"session_id":"abcdefgh","resource_id":"12"}`,
			`{"session_id":"abcdefgh","x":{"y":2},"resource_id":12,` + fixedStamp + `}`,
			map[RepairKind]int{RepairStringToInteger: 1, RepairTimestampAdded: 1}},
		{"a duplicate inside attached data leaves the top level alone",
			`{"x":{"k":1,"k":[2]},"media_type":"voice"}`,
			`{"x":{"k":[2]},"media_type":1001,` + fixedStamp + `}`,
			map[RepairKind]int{RepairAttributeName: 1, RepairTimestampAdded: 1}},
	})
}

func TestFieldRepairsPointAtTheValueUsed(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		field string
		value string // the input text the listed repair must point at; "" for offset 0
	}{
		{"quoted key", `{"resource_id": "12"}`, "resource_id", `"12"`},
		{"nested key of the same name first", `{"a": {"resource_id": "9"}, "resource_id": "12"}`, "resource_id", `"12"`},
		{"bare key", `{resource_id: '12'}`, "resource_id", `'12'`},
		{"single-quoted key", `{'session_id': 12345}`, "session_id", `12345`},
		{"typographic quotes", `{“application_id”: "40"}`, "application_id", `"40"`},
		{"duplicate key: the last value is the one used", `{"resource_id": "1", "x": 0, "resource_id": "12"}`, "resource_id", `"12"`},
		// The key is not in the input literally, so the search for it finds nothing.
		{"escaped key", `{"resource_\u0069d": "12"}`, "resource_id", ""},
		{"rewritten timestamp", `{"timestamp": 1764158400123}`, "timestamp", `1764158400123`},
	}
	n := newTestNormalizer(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rep Report
			_, err := n.TaskEnd(nil, []byte(tt.in), receivedAt, &rep)
			require.NoError(t, err)
			var found bool
			for _, r := range rep.First[:rep.NumListed] {
				if r.Field != tt.field {
					continue
				}
				found = true
				if tt.value == "" {
					assert.Zero(t, r.Offset)
					continue
				}
				assert.Equal(t, tt.value, tt.in[r.Offset:r.Offset+len(tt.value)], "repair %s", r.Kind)
			}
			assert.True(t, found, "a repair of %s is listed", tt.field)
		})
	}
}
