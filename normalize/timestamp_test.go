package normalize

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTimestampFormsBecomeCanonical(t *testing.T) {
	tests := []struct {
		in        string
		want      string
		canonical bool
	}{
		{"2024-01-02T03:04:05.678Z", "2024-01-02T03:04:05.678Z", true},
		{"2024-01-02T03:04:05Z", "2024-01-02T03:04:05.000Z", false},
		{"2024-01-02T03:04:05.6Z", "2024-01-02T03:04:05.600Z", false},
		{"2024-01-02T03:04:05.67Z", "2024-01-02T03:04:05.670Z", false},
		{"2024-01-02T03:04:05.678999Z", "2024-01-02T03:04:05.678Z", false},    // µs truncated, not rounded
		{"2024-01-02T03:04:05.999999999Z", "2024-01-02T03:04:05.999Z", false}, // ns truncated, not rounded
		{"2024-01-02T03:04:05.678+01:00", "2024-01-02T02:04:05.678Z", false},  // offset
		{"2024-01-02T03:04:05-05:30", "2024-01-02T08:34:05.000Z", false},      // negative offset
		{"2024-01-02T00:30:00+0100", "2024-01-01T23:30:00.000Z", false},       // offset without colon, day back
		{"2024-12-31T23:30:00-01", "2025-01-01T00:30:00.000Z", false},         // hour-only offset, year on
		{"2024-01-02 03:04:05.678Z", "2024-01-02T03:04:05.678Z", false},       // space instead of T
		{"2024-01-02t03:04:05.678z", "2024-01-02T03:04:05.678Z", false},       // lower-case t and z
		{"2024-01-02 03:04:05", "2024-01-02T03:04:05.000Z", false},            // no zone: UTC
		{"2024-01-02T03:04:05", "2024-01-02T03:04:05.000Z", false},            // no zone: UTC
		{"2024-01-02 03:04:05.123 +02:00", "2024-01-02T01:04:05.123Z", false}, // space before the offset
		{"2024-01-02 03:04:05 UTC", "2024-01-02T03:04:05.000Z", false},        // UTC suffix
		{"2024-01-02 03:04:05,250 GMT", "2024-01-02T03:04:05.250Z", false},    // comma fraction
		{"2024-02-29T12:00:00Z", "2024-02-29T12:00:00.000Z", false},           // leap day
		{"2000-02-29T00:00:00.000Z", "2000-02-29T00:00:00.000Z", true},        // 400-year leap day
		{"1732623600123", "2024-11-26T12:20:00.123Z", false},                  // epoch milliseconds
		{"1732623600", "2024-11-26T12:20:00.000Z", false},                     // epoch seconds (< 10^10)
		{"0", "1970-01-01T00:00:00.000Z", false},                              // the epoch
		{"10000000000", "1970-04-26T17:46:40.000Z", false},                    // 10^10: milliseconds
		{"253402300799999", "9999-12-31T23:59:59.999Z", false},                // the last canonical ms
		{"0000-01-01T00:00:00.000Z", "0000-01-01T00:00:00.000Z", true},        // the first canonical ms
		{"9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999Z", false},    // truncation stays in range
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ms, canonical, ok := parseTimestamp([]byte(tt.in))
			require.True(t, ok)
			assert.Equal(t, tt.want, string(appendCanonicalTimestamp(nil, ms)))
			assert.Equal(t, tt.canonical, canonical)
		})
	}
}

func TestTimestampRejectsWhatIsNotATime(t *testing.T) {
	for _, in := range []string{
		"yesterday",
		"2024-01-02",                // a date alone
		"2024-13-02T03:04:05Z",      // month 13
		"2023-02-29T03:04:05Z",      // not a leap year
		"2024-04-31T03:04:05Z",      // April has 30 days
		"2024-01-02T24:00:00Z",      // hour 24
		"2024-01-02T03:60:00Z",      // minute 60
		"2024-01-02T03:04:60Z",      // leap second
		"2024-01-02T03:04:05.Z",     // empty fraction
		"2024-01-02T03:04:05+25:00", // offset hour 25
		"2024-01-02T03:04:05+01:60", // offset minute 60
		"2024-01-02T03:04:05+1",     // one-digit offset
		"2024-01-02T03:04:05 ",      // trailing space, no zone
		"2024-01-02T03:04:05ZZ",     // junk after the zone
		"2024-01-02X03:04:05Z",      // wrong separator
		"2024/01/02T03:04:05Z",      // slashes
		"0000-01-01T00:30:00+01:00", // before year 0
		"9999-12-31T23:30:00-01:00", // after year 9999
		"253402300800000",           // one ms after 9999
		"12345678901234567890",      // too many digits
		"17326236001.5",             // fraction in an epoch
		"２０２４-01-02T03:04:05Z",      // full-width digits
	} {
		t.Run(in, func(t *testing.T) {
			_, _, ok := parseTimestamp([]byte(in))
			assert.False(t, ok)
		})
	}
}

func TestCivilCalendarMatchesTimePackage(t *testing.T) {
	// Every 97th day over 0000..9999 and the days around the epoch.
	for days := daysFromCivil(0, 1, 1); days <= daysFromCivil(9999, 12, 31); days += 97 {
		want := time.Unix(days*86400, 0).UTC()
		y, m, d := civilFromDays(days)
		require.Equal(t, [3]int64{int64(want.Year()), int64(want.Month()), int64(want.Day())}, [3]int64{y, m, d}, "day %d", days)
		require.Equal(t, days, daysFromCivil(y, m, d))
	}
}

func TestReceiveTimeIsTruncatedToMilliseconds(t *testing.T) {
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 26, 12, 0, 0, 123999999, time.UTC), "2026-11-26T12:00:00.123Z"},
		{time.Date(2026, 11, 26, 13, 0, 0, 5000000, time.FixedZone("CET", 3600)), "2026-11-26T12:00:00.005Z"},
		{time.Date(1969, 12, 31, 23, 59, 59, 999000000, time.UTC), "1969-12-31T23:59:59.999Z"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, string(appendCanonicalTimestamp(nil, timeToMs(tt.in))))
	}
}
