package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const mib = 1 << 20

func bigObject(members int, dupEvery int) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i := 0; i < members; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		k := i
		if dupEvery > 0 && i%dupEvery == dupEvery-1 {
			k = i - 1 // repeat the previous key
		}
		b.WriteString(`"k` + strconv.Itoa(k) + `":` + strconv.Itoa(i))
	}
	b.WriteByte('}')
	return b.Bytes()
}

// Each adversarial input must give a result or a typed error; that the
// test finishes at all under go test is the check that the scan stays
// linear (no timing is asserted).
func TestAdversarialInputGivesResultOrTypedError(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	words := append(append([]byte("["), bytes.Repeat([]byte("a,"), 100000)...), 'a', ']')
	rows := []struct {
		name string
		in   []byte
		kind ErrorKind // 0: must succeed
	}{
		{"1 MiB of [", bytes.Repeat([]byte("["), mib), KindTooDeep},
		{"1 MiB of {\"a\":", bytes.Repeat([]byte(`{"a":`), mib/5), KindTooDeep},
		{"1 MiB of { with bare keys", bytes.Repeat([]byte(`{a:`), mib/3), KindTooDeep},
		{"backslashes in a string", append(append([]byte(`"`), bytes.Repeat([]byte(`\`), mib)...), '"'), 0},
		{"odd backslashes in a string", append(append([]byte(`"`), bytes.Repeat([]byte(`\`), mib-1)...), '"'), KindTruncated},
		{"backslashes outside a string", bytes.Repeat([]byte(`\`), mib), 0},
		{"100000 members", bigObject(100000, 0), 0},
		{"100000 members, every other one a duplicate", bigObject(100000, 2), 0},
		{"100000 members, all the same key", bytes.Join([][]byte{[]byte("{"), bytes.Repeat([]byte(`"a":1,`), 100000), []byte(`"a":2}`)}, nil), 0},
		{"100000 bare words", words, 0},
		{"100000 bare words on lines", bytes.Repeat([]byte("a\n"), 100000), KindMultipleValues},
		{"100000 numbers on one line in an array", append(append([]byte("["), bytes.Repeat([]byte("1 "), 100000)...), ']'), 0},
		{"1 MiB bare word", append(append([]byte(`{"a":`), bytes.Repeat([]byte("x "), mib/2)...), '}'), 0},
		{"1 MiB of comments", bytes.Repeat([]byte("/**/"), mib/4), 0},
		{"unterminated comment openers", bytes.Repeat([]byte("/* "), mib/3), KindTruncated},
		{"1 MiB of quotes", bytes.Repeat([]byte(`"`), mib), KindMultipleValues},
		{"1 MiB of commas in an array", append([]byte("[1"), bytes.Repeat([]byte(","), mib)...), KindSyntax},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			out, err := n.Value(nil, row.in, nil)
			if row.kind == 0 {
				require.NoError(t, err)
				assert.True(t, json.Valid(out))
				return
			}
			var e *Error
			require.True(t, errors.As(err, &e), "want a typed error, got %v", err)
			assert.Equal(t, row.kind, e.Kind)
		})
	}
}

func TestHundredThousandDuplicatesKeepFirstPositions(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	var rep Report
	out, err := n.Value(nil, bigObject(100000, 2), &rep)
	require.NoError(t, err)
	assert.Equal(t, 50000, rep.Counts[RepairDuplicateKey])
	// Members k0,k0 → k0 keeps position 0 with value 1.
	assert.True(t, bytes.HasPrefix(out, []byte(`{"k0":1,"k2":3,"k4":5,`)), "%.40s", out)
	assert.True(t, bytes.HasSuffix(out, []byte(`,"k99998":99999}`)), "%s", out[len(out)-40:])
}
