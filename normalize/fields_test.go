package normalize

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeysAreMatchedAfterDecodingEscapes(t *testing.T) {
	tests := []struct {
		raw  string
		want string // "" for attached data
	}{
		{`timestamp`, "timestamp"},
		{`\u0074imestamp`, "timestamp"},
		{`media\u005ftype`, "media_type"},
		{`Timestamp`, ""},
		{`timestamp `, ""},
		{`session_id\u0000`, ""},
		{`application_type_x`, ""},
		{`\u0061\u0070\u0070\u006c\u0069\u0063\u0061\u0074\u0069\u006f\u006e\u005f\u0074\u0079\u0070\u0065`, "application_type"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			i := taskEndFields.matchKey([]byte(tt.raw))
			if tt.want == "" {
				assert.Equal(t, -1, i)
				return
			}
			require.GreaterOrEqual(t, i, 0)
			assert.Equal(t, tt.want, taskEndFields.rules[i].name)
		})
	}
}

func TestStringLengthCountsDecodedCharacters(t *testing.T) {
	tests := []struct {
		raw  string
		want int
	}{
		{``, 0},
		{`abc`, 3},
		{`é€😀`, 3},
		{`\n\t\"\\\/`, 5},
		{`\u00e9`, 1},
		{`\ud83d\ude00`, 1}, // a surrogate pair is one character
		{`\ud83d\u0041`, 2}, // a lone high surrogate, then A
		{`a\\u0041`, 7},     // an escaped backslash, then plain text
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, runeCount([]byte(tt.raw)), tt.raw)
	}
}

func TestUnescapeDecodesIntoAFixedBuffer(t *testing.T) {
	tests := []struct {
		raw  string
		want string
		ok   bool
	}{
		{`plain`, "plain", true},
		{`a\"b\\c\/d\b\f\n\r\t`, "a\"b\\c/d\b\f\n\r\t", true},
		{`\u00e9\ud83d\ude00`, "é😀", true},
		{`\ud83d`, "\uFFFD", true},
		{`\udc00x`, "\uFFFDx", true},
		{`0123456789abcdefX`, "", false}, // longer than the buffer
	}
	for _, tt := range tests {
		var buf [16]byte
		got, ok := unescapeString(buf[:0], []byte(tt.raw))
		assert.Equal(t, tt.ok, ok, tt.raw)
		if tt.ok {
			assert.Equal(t, tt.want, string(got), tt.raw)
		}
	}
}

func TestIntegersParseWithSignAndLeadingZeros(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		res  intResult
	}{
		{"0", 0, intOK},
		{"-0", 0, intOK},
		{"+40", 40, intOK},
		{"007", 7, intOK},
		{"9223372036854775807", 9223372036854775807, intOK},
		{"-9223372036854775808", -9223372036854775808, intOK},
		{"9223372036854775808", 0, intOverflow},
		{"-9223372036854775809", 0, intOverflow},
		{"123456789012345678901234567890", 0, intOverflow},
		{"", 0, intSyntax},
		{"-", 0, intSyntax},
		{"1 000", 0, intSyntax},
		{"0x1F", 0, intSyntax},
		{"1.0", 0, intSyntax},
	}
	for _, tt := range tests {
		v, res := parseInteger([]byte(tt.in))
		assert.Equal(t, tt.res, res, tt.in)
		assert.Equal(t, tt.want, v, tt.in)
	}
}
