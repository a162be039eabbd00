package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// eventCase is one row of an event type's table: one field rule, input
// beside expected output; err, when set, is the expected error's kind and
// want is then a fragment of its message.
type eventCase struct {
	name string
	in   string
	want string
	err  ErrorKind
}

// runEventCases runs the rows of one operation with the test tables.
func runEventCases(t *testing.T, op Operation, opts Options, tests []eventCase) {
	t.Helper()
	n := newTestNormalizer(t, opts)
	for _, tt := range tests {
		t.Run(op.String()+"/"+tt.name, func(t *testing.T) {
			out, err := n.Event(op, []byte("kept:"), []byte(tt.in), receivedAt, nil)
			if tt.err != 0 {
				var e *Error
				require.True(t, errors.As(err, &e), "want an error, got %q", out)
				assert.Equal(t, tt.err, e.Kind)
				assert.Contains(t, e.Msg, tt.want)
				assert.Equal(t, "kept:", string(out), "dst unchanged on error")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, strings.TrimPrefix(string(out), "kept:"))
			assert.True(t, json.Valid(out[len("kept:"):]))
		})
	}
}

// commonCases are the rules every event shares; the timestamp is the
// same row in every table.
func commonCases(withStamp string) []eventCase {
	return []eventCase{
		{"session_id: a number becomes its text", `{"session_id":12345}`, `{"session_id":"12345",` + withStamp + `}`, 0},
		{"session_id: over 32 characters is refused", `{"session_id":"` + strings.Repeat("s", 33) + `"}`, `"session_id" is 33 characters long; the limit is 32`, KindFieldTooLong},
		{"interaction_id: a bare id stays its text", `{interaction_id: 0000CSS0FXZUP6UR}`, `{"interaction_id":"0000CSS0FXZUP6UR",` + withStamp + `}`, 0},
		{"interaction_id: over 50 characters is refused", `{"interaction_id":"` + strings.Repeat("i", 51) + `"}`, `the limit is 50`, KindFieldTooLong},
		{"application_id: a decimal string becomes the integer", `{"application_id":"40"}`, `{"application_id":40,` + withStamp + `}`, 0},
		{"resource_id: anything else is refused", `{"resource_id":"x"}`, `"resource_id" must be an integer`, KindFieldType},
		{"application_type: a name becomes its dbid", `{"application_type":"gvp"}`, `{"application_type":3001,` + withStamp + `}`, 0},
		{"resource_type: a name becomes its dbid", `{"resource_type":"ivr"}`, `{"resource_type":4001,` + withStamp + `}`, 0},
		{"media_type: a name becomes its dbid", `{"media_type":"email"}`, `{"media_type":1003,` + withStamp + `}`, 0},
		{"media_type: an unknown name is refused", `{"media_type":"pigeon"}`, `media_type "pigeon" is not a value of business attribute MediaType`, KindUnknownName},
		{"timestamp: another form becomes canonical", `{"timestamp":"2024-01-02 03:04:05+01:00"}`, `{"timestamp":"2024-01-02T02:04:05.000Z"}`, 0},
		{"timestamp: missing is added", `{"x":1}`, `{"x":1,` + withStamp + `}`, 0},
		{"attached data is untouched", `{"Survey":{"media_type":"x","session_id":1},"price":25 000}`, `{"Survey":{"media_type":"x","session_id":1},"price":25000,` + withStamp + `}`, 0},
	}
}

func endCases() []eventCase {
	return []eventCase{
		{"disposition: a name becomes its dbid", `{"disposition":"resolved"}`, `{"disposition":2101,` + fixedStamp + `}`, 0},
		{"disposition_desc: a number becomes its text", `{"disposition_desc":200}`, `{"disposition_desc":"200",` + fixedStamp + `}`, 0},
		{"disposition_desc: over 64 characters is refused", `{"disposition_desc":"` + strings.Repeat("d", 65) + `"}`, `the limit is 64`, KindFieldTooLong},
	}
}

func TestServiceStartFieldRules(t *testing.T) {
	opts := Options{Attributes: loadTestTables(t)}
	runEventCases(t, OpServiceStart, opts, commonCases(fixedStamp))
	runEventCases(t, OpServiceStart, opts, []eventCase{
		{"customer_id: a number becomes its text", `{"customer_id":4711}`, `{"customer_id":"4711",` + fixedStamp + `}`, 0},
		{"customer_id: has no length limit", `{"customer_id":"` + strings.Repeat("c", 100) + `"}`, `{"customer_id":"` + strings.Repeat("c", 100) + `",` + fixedStamp + `}`, 0},
		{"contact_key: a bare word becomes a string", `{contact_key: ab-12}`, `{"contact_key":"ab-12",` + fixedStamp + `}`, 0},
		{"contact_key: an object is refused", `{"contact_key":{}}`, `"contact_key" must be a string, got an object`, KindFieldType},
		{"service_type: a name becomes its dbid (Service.type)", `{"service_type":"sales"}`, `{"service_type":6002,` + fixedStamp + `}`, 0},
		{"service_type: an unknown name is refused", `{"service_type":"x"}`, `is not a value of business attribute ServiceType`, KindUnknownName},
		{"the Genesys example's mistakes are repaired", `{"service_type":customer service,"price":25 000}`, `{"service_type":6001,"price":25000,` + fixedStamp + `}`, 0},
		{"task_type is attached data here", `{"task_type":"zz"}`, `{"task_type":"zz",` + fixedStamp + `}`, 0},
		{"the top level must be an object", `[1]`, `the Service Start Event must be a JSON object, got an array`, KindNotObject},
	})
}

func TestServiceEndFieldRules(t *testing.T) {
	opts := Options{Attributes: loadTestTables(t)}
	runEventCases(t, OpServiceEnd, opts, commonCases(fixedStamp))
	runEventCases(t, OpServiceEnd, opts, endCases())
	runEventCases(t, OpServiceEnd, opts, []eventCase{
		{"service_type is attached data here", `{"service_type":"zz"}`, `{"service_type":"zz",` + fixedStamp + `}`, 0},
	})
}

func TestStateStartFieldRules(t *testing.T) {
	opts := Options{Attributes: loadTestTables(t)}
	runEventCases(t, OpStateStart, opts, commonCases(fixedStamp))
	runEventCases(t, OpStateStart, opts, []eventCase{
		{"state_type: a name becomes its dbid (State.type)", `{"state_type":"self service"}`, `{"state_type":7002,` + fixedStamp + `}`, 0},
		{"previous_state_id: a decimal string becomes the integer", `{"previous_state_id":"12"}`, `{"previous_state_id":12,` + fixedStamp + `}`, 0},
		{"previous_state_id: must fit 32 bits", `{"previous_state_id":2147483648}`, `does not fit a signed 32-bit integer`, KindFieldRange},
	})
}

func TestStateEndFieldRules(t *testing.T) {
	opts := Options{Attributes: loadTestTables(t)}
	runEventCases(t, OpStateEnd, opts, commonCases(fixedStamp))
	runEventCases(t, OpStateEnd, opts, endCases())
}

func TestTaskStartFieldRules(t *testing.T) {
	opts := Options{Attributes: loadTestTables(t)}
	runEventCases(t, OpTaskStart, opts, commonCases(fixedStamp))
	runEventCases(t, OpTaskStart, opts, []eventCase{
		{"state_id: a decimal string becomes the integer", `{"state_id":" 24 "}`, `{"state_id":24,` + fixedStamp + `}`, 0},
		{"state_id: must fit 32 bits", `{"state_id":"99999999999"}`, `does not fit a signed 32-bit integer`, KindFieldRange},
		{"task_type: a bare name becomes its dbid (Task.type)", `{"task_type":customer info}`, `{"task_type":5001,` + fixedStamp + `}`, 0},
		{"est_duration: a decimal string becomes the integer", `{"est_duration":"300"}`, `{"est_duration":300,` + fixedStamp + `}`, 0},
		{"est_duration: a fraction is refused", `{"est_duration":1.5}`, `"est_duration" must be an integer`, KindFieldType},
		{"disposition is attached data here", `{"disposition":"zz"}`, `{"disposition":"zz",` + fixedStamp + `}`, 0},
	})
}

func TestTaskEndFieldRulesThroughEvent(t *testing.T) {
	opts := Options{Attributes: loadTestTables(t)}
	runEventCases(t, OpTaskEnd, opts, commonCases(fixedStamp))
	runEventCases(t, OpTaskEnd, opts, endCases())
	runEventCases(t, OpTaskEnd, opts, []eventCase{
		{"state_id: a decimal string becomes the integer", `{"state_id":"24"}`, `{"state_id":24,` + fixedStamp + `}`, 0},
		{"task_type: if sent, a name becomes its dbid", `{"task_type":"bill payment"}`, `{"task_type":5003,` + fixedStamp + `}`, 0},
	})
}

func TestStateTransitionFieldRules(t *testing.T) {
	opts := Options{Attributes: loadTestTables(t)}
	runEventCases(t, OpStateTransition, opts, commonCases(fixedStamp))
	runEventCases(t, OpStateTransition, opts, []eventCase{
		{"from.state_id: a decimal string becomes the integer", `{"from":{"state_id":"3"}}`, `{"from":{"state_id":3},` + fixedStamp + `}`, 0},
		{"from.state_id: must fit 32 bits", `{"from":{"state_id":4294967296}}`, `does not fit a signed 32-bit integer`, KindFieldRange},
		{"from.disposition: a name becomes its dbid (State.disposition)", `{from: {disposition: transferred}}`, `{"from":{"disposition":2102},` + fixedStamp + `}`, 0},
		{"from.disposition_desc: over 64 characters is refused", `{"from":{"disposition_desc":"` + strings.Repeat("d", 65) + `"}}`, `the limit is 64`, KindFieldTooLong},
		{"to.state_type: a name becomes its dbid (State.type)", `{"to":{"state_type":"identification"}}`, `{"to":{"state_type":7001},` + fixedStamp + `}`, 0},
		{"to.est_duration: a decimal string becomes the integer", `{"to":{"est_duration":"60"}}`, `{"to":{"est_duration":60},` + fixedStamp + `}`, 0},
		{"the rules stay inside their object", `{"from":{"state_type":"x","timestamp":"y"},"to":{"state_id":"z"}}`, `{"from":{"state_type":"x","timestamp":"y"},"to":{"state_id":"z"},` + fixedStamp + `}`, 0},
		{"from must be an object", `{"from":[1]}`, `"from" must be an object, got an array`, KindFieldType},
		{"null objects are kept", `{"from":null,"to":null}`, `{"from":null,"to":null,` + fixedStamp + `}`, 0},
		{"both objects, with attached data kept in place",
			`{'from': {'state_id': 3, 'disposition': 'resolved', note: ok,}, 'to': {'state_type': 'self service', 'est_duration': 25 000}, 'timestamp': 1732623600123}`,
			`{"from":{"state_id":3,"disposition":2101,"note":"ok"},"to":{"state_type":7002,"est_duration":25000},"timestamp":"2024-11-26T12:20:00.123Z"}`, 0},
	})
}

func TestServiceAssociateFieldRules(t *testing.T) {
	opts := Options{Attributes: loadTestTables(t), FillDefaults: true}
	runEventCases(t, OpServiceAssociate, opts, []eventCase{
		{"an empty body gets only the timestamp", ``, `{` + fixedStamp + `}`, 0},
		{"customer_id: a number becomes its text", `{"customer_id":4711}`, `{"customer_id":"4711",` + fixedStamp + `}`, 0},
		{"service_type: a name becomes its dbid, no default is filled", `{"service_type":"sales"}`, `{"service_type":6002,` + fixedStamp + `}`, 0},
		{"media_type: no default is filled either", `{"a":1}`, `{"a":1,` + fixedStamp + `}`, 0},
	})
}

func TestExtensionUpdatesAreRepairedWithoutFieldRules(t *testing.T) {
	runEventCases(t, OpExtensionUpdate, Options{Attributes: loadTestTables(t)}, []eventCase{
		{"an object: repaired, no timestamp, names kept", `{media_type: email, 'price': 25 000, timestamp: null,}`, `{"media_type":"email","price":25000,"timestamp":null}`, 0},
		{"an array: repaired", `[{a: 1}, {a: True}]`, `[{"a":1},{"a":true}]`, 0},
		{"an empty body is refused: the body is the data", ``, `the body is empty`, KindSyntax},
		{"a comment-only body is refused", "// nothing\n/* at all */ ", `the body is empty`, KindSyntax},
		{"a string is refused", `"x"`, `an extension is a JSON object or array, got a string`, KindNotObject},
		{"cut off is refused", `[{"a":1}`, ``, KindTruncated},
	})
}

func TestFillDefaultsWorksPerResource(t *testing.T) {
	tables := loadTestTables(t) // MediaType: voice (1001); ServiceType: customer service (6001)
	opts := Options{Attributes: tables, FillDefaults: true}
	runEventCases(t, OpServiceStart, opts, []eventCase{
		{"a Start Service without service_type gets the default", `{"a":1}`, `{"a":1,"media_type":1001,"service_type":6001,` + fixedStamp + `}`, 0},
		{"a service_type sent is kept", `{"service_type":"sales"}`, `{"service_type":6002,"media_type":1001,` + fixedStamp + `}`, 0},
	})
	runEventCases(t, OpStateStart, opts, []eventCase{
		{"StateType has no default: nothing but media_type", `{}`, `{"media_type":1001,` + fixedStamp + `}`, 0},
	})
	runEventCases(t, OpTaskEnd, opts, []eventCase{
		{"Task End is filled as before", `{}`, `{"media_type":1001,` + fixedStamp + `}`, 0},
	})
	noServiceDefault, err := NewTables(TableConfig{Inline: map[string][]AttributeValue{
		"Task.type": {{Name: "survey", DBID: 12, Default: true}},
	}})
	require.NoError(t, err)
	runEventCases(t, OpServiceStart, Options{Attributes: noServiceDefault, FillDefaults: true}, []eventCase{
		{"a Task.type default does not fill a service", `{}`, `{` + fixedStamp + `}`, 0},
	})
	runEventCases(t, OpTaskStart, Options{Attributes: noServiceDefault, FillDefaults: true}, []eventCase{
		{"it fills a task", `{}`, `{"task_type":12,` + fixedStamp + `}`, 0},
	})
}

func TestOperationsAreNamedAsInTheConfig(t *testing.T) {
	for op := range NumOperations {
		got, ok := ParseOperation(op.String())
		require.True(t, ok, op.String())
		assert.Equal(t, op, got)
	}
	_, ok := ParseOperation("task.finish")
	assert.False(t, ok)
	assert.Equal(t, "service.start, service.end, state.start, state.end, state.transition, task.start, task.end, service.associate, extension.update", OperationNames())
	assert.Equal(t, []bool{false, true, false, true, false, false, true, false, false},
		[]bool{OpServiceStart.IsEnd(), OpServiceEnd.IsEnd(), OpStateStart.IsEnd(), OpStateEnd.IsEnd(), OpStateTransition.IsEnd(),
			OpTaskStart.IsEnd(), OpTaskEnd.IsEnd(), OpServiceAssociate.IsEnd(), OpExtensionUpdate.IsEnd()})
}

// updateGolden rewrites the golden .out.json files of the event types from
// the current output (review the diff before committing it).
var updateGolden = flag.Bool("update", false, "rewrite testdata/golden/events/*.out.json")

// TestGoldenEventBodies runs every testdata/golden/events/<operation>*.in.json
// through Event with the repository's metadata file and compares with its
// .out.json: one pair at least per operation.
func TestGoldenEventBodies(t *testing.T) {
	ins, err := filepath.Glob("testdata/golden/events/*.in.json")
	require.NoError(t, err)
	n := newTestNormalizer(t, Options{Attributes: loadTestTables(t)})
	covered := map[Operation]bool{}
	for _, inPath := range ins {
		name := strings.TrimSuffix(filepath.Base(inPath), ".in.json")
		opName, _, _ := strings.Cut(name, "-")
		op, ok := ParseOperation(opName)
		require.True(t, ok, "%s does not start with an operation name", inPath)
		covered[op] = true
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(inPath)
			require.NoError(t, err)
			outPath := strings.TrimSuffix(inPath, ".in.json") + ".out.json"
			out, err := n.Event(op, nil, in, receivedAt, nil)
			require.NoError(t, err)
			if *updateGolden {
				require.NoError(t, os.WriteFile(outPath, append(out, '\n'), 0o644))
			}
			want, err := os.ReadFile(outPath)
			require.NoError(t, err)
			assert.Equal(t, string(bytes.TrimSuffix(want, []byte("\n"))), string(out))
			again, err := n.Event(op, nil, out, receivedAt, nil)
			require.NoError(t, err)
			assert.Equal(t, string(out), string(again), "normalising the output changes nothing")
		})
	}
	for op := range NumOperations {
		assert.True(t, covered[op], "no golden pair for %s", op)
	}
}

func TestAnEmptyBodyIsAnEmptyEventForEveryOperationButExtensionUpdate(t *testing.T) {
	n := newTestNormalizer(t, Options{})
	// Every event but an extension update is an object whose fields are
	// optional: an empty one is that event with only the receive time.
	want := `{` + fixedStamp + `}`
	for op := range NumOperations {
		for _, body := range []string{"", " \r\n\t", "# nothing\n", "/* nothing */"} {
			t.Run(op.String()+"/"+body, func(t *testing.T) {
				var rep Report
				out, err := n.Event(op, nil, []byte(body), receivedAt, &rep)
				if op == OpExtensionUpdate {
					var e *Error
					require.ErrorAs(t, err, &e)
					assert.Equal(t, KindSyntax, e.Kind)
					assert.Equal(t, "the body is empty (nothing but white space and comments)", e.Msg)
					return
				}
				require.NoError(t, err)
				assert.Equal(t, want, string(out))
				assert.Equal(t, 1, rep.Counts[RepairEmptyBody], "counted as the empty_body repair")
			})
		}
	}
}
