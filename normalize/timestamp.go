package normalize

import "time"

// The canonical timestamp is YYYY-MM-DDTHH:mm:ss.SSSZ in UTC: what Context
// Services documents for the timestamp field. Everything here works on
// milliseconds since the Unix epoch with a hand-written civil-calendar
// conversion, because time.Parse allocates and the hot path must not.

const (
	canonicalTimestampLen = len("2006-01-02T15:04:05.000Z")
	msPerSecond           = 1000
	msPerMinute           = 60 * msPerSecond
	msPerHour             = 60 * msPerMinute
	msPerDay              = 24 * msPerHour

	// epochSecondsBelow separates epoch seconds from epoch milliseconds: a
	// number below 10^10 is seconds (up to 2286-11-20), from 10^10 on it is
	// milliseconds (from 1970-04-26). No real event is stamped in early 1970,
	// and IVR scripts often send Unix seconds.
	epochSecondsBelow = 10_000_000_000
)

// minTimestampMs and maxTimestampMs bound what the four-digit year of the
// canonical form can show: 0000-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z.
var (
	minTimestampMs = daysFromCivil(0, 1, 1) * msPerDay
	maxTimestampMs = daysFromCivil(10000, 1, 1)*msPerDay - 1
)

// timestampForms is shown in every KindTimestamp message so that a client
// developer sees what would have been accepted.
const timestampForms = "accepted forms: 2006-01-02T15:04:05.000Z (canonical), RFC 3339 with an offset " +
	"or without a fraction (2006-01-02T15:04:05+01:00, 2006-01-02T15:04:05Z), a space instead of T, " +
	"no zone (taken as UTC), epoch milliseconds or seconds (a number or a decimal string)"

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date (Howard Hinnant's algorithm: branch-free, exact for any year).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := z
	if era < 0 {
		era -= 146096
	}
	era /= 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

func isLeap(y int64) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(y, m int64) int64 {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// appendCanonicalTimestamp appends ms (within minTimestampMs..maxTimestampMs)
// as "YYYY-MM-DDTHH:mm:ss.SSSZ" without the quotes.
func appendCanonicalTimestamp(dst []byte, ms int64) []byte {
	days := ms / msPerDay
	rem := ms % msPerDay
	if rem < 0 {
		days--
		rem += msPerDay
	}
	y, mo, d := civilFromDays(days)
	var b [canonicalTimestampLen]byte
	put := func(i, width int, v int64) {
		for j := i + width - 1; j >= i; j-- {
			b[j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, 4, y)
	b[4] = '-'
	put(5, 2, mo)
	b[7] = '-'
	put(8, 2, d)
	b[10] = 'T'
	put(11, 2, rem/msPerHour)
	b[13] = ':'
	put(14, 2, rem/msPerMinute%60)
	b[16] = ':'
	put(17, 2, rem/msPerSecond%60)
	b[19] = '.'
	put(20, 3, rem%msPerSecond)
	b[23] = 'Z'
	return append(dst, b[:]...)
}

// timeToMs truncates t to milliseconds since the epoch, clamped to what the
// canonical form can show (a receive clock is never outside it in practice).
func timeToMs(t time.Time) int64 {
	ms := t.UnixMilli()
	if ms < minTimestampMs {
		return minTimestampMs
	}
	if ms > maxTimestampMs {
		return maxTimestampMs
	}
	return ms
}

// digits parses exactly n ASCII digits at b[i:].
func digits(b []byte, i, n int) (int64, bool) {
	if i+n > len(b) {
		return 0, false
	}
	var v int64
	for _, c := range b[i : i+n] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// parseEpoch reads an all-digit epoch value: seconds below 10^10, else ms.
func parseEpoch(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if v < epochSecondsBelow {
		v *= msPerSecond
	}
	if v > maxTimestampMs {
		return 0, false
	}
	return v, true
}

// parseTimestamp parses the decoded text of a timestamp (surrounding white
// space already trimmed). canonical reports that b is already exactly the
// canonical form, so that no repair is counted and the bytes are kept.
//
// Grammar: YYYY-MM-DD (T|t|space) HH:MM:SS [(.|,) digits] [space] [zone],
// zone = Z | z | UTC | GMT | (+|-)HH[[:]MM]; or an all-digit epoch.
// Fraction digits after the third are truncated, never rounded up; no zone
// means UTC; second 60 (a leap second) is rejected, like Java's Instant.
func parseTimestamp(b []byte) (ms int64, canonical, ok bool) {
	if len(b) > 0 && b[0] >= '0' && b[0] <= '9' && (len(b) < 5 || b[4] != '-') {
		ms, ok = parseEpoch(b)
		return ms, false, ok
	}
	if len(b) < len("2006-01-02T15:04:05") {
		return 0, false, false
	}
	y, ok1 := digits(b, 0, 4)
	mo, ok2 := digits(b, 5, 2)
	d, ok3 := digits(b, 8, 2)
	h, ok4 := digits(b, 11, 2)
	mi, ok5 := digits(b, 14, 2)
	s, ok6 := digits(b, 17, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		b[4] != '-' || b[7] != '-' || b[13] != ':' || b[16] != ':' {
		return 0, false, false
	}
	switch b[10] {
	case 'T', 't', ' ':
	default:
		return 0, false, false
	}
	if mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || s > 59 {
		return 0, false, false
	}
	i := 19
	var frac int64
	if i < len(b) && (b[i] == '.' || b[i] == ',') {
		i++
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if i-start < 3 {
				frac = frac*10 + int64(b[i]-'0')
			}
			i++
		}
		n := i - start
		if n == 0 {
			return 0, false, false
		}
		for ; n < 3; n++ {
			frac *= 10
		}
	}
	fracEnd := i
	if i < len(b) && b[i] == ' ' {
		i++
	}
	var offset int64
	zulu := false
	rest := b[i:]
	switch {
	case len(rest) == 0:
		if i != fracEnd { // a trailing space with no zone after it
			return 0, false, false
		}
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
		zulu = true
	case len(rest) == 3 && (string(rest) == "UTC" || string(rest) == "GMT"):
	case rest[0] == '+' || rest[0] == '-':
		oh, okh := digits(rest, 1, 2)
		var om int64
		okm := true
		switch len(rest) {
		case 3:
		case 5:
			om, okm = digits(rest, 3, 2)
		case 6:
			if rest[3] != ':' {
				return 0, false, false
			}
			om, okm = digits(rest, 4, 2)
		default:
			return 0, false, false
		}
		if !okh || !okm || oh > 23 || om > 59 {
			return 0, false, false
		}
		offset = oh*msPerHour + om*msPerMinute
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false, false
	}
	ms = daysFromCivil(y, mo, d)*msPerDay + h*msPerHour + mi*msPerMinute + s*msPerSecond + frac - offset
	if ms < minTimestampMs || ms > maxTimestampMs {
		return 0, false, false
	}
	canonical = zulu && len(b) == canonicalTimestampLen && b[10] == 'T' && b[19] == '.' && b[23] == 'Z'
	return ms, canonical, true
}
