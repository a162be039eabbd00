package upstream

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// receivedAtLayout is the SPEC's canonical timestamp, YYYY-MM-DDTHH:mm:ss.SSSZ in UTC.
const receivedAtLayout = "2006-01-02T15:04:05.000Z"

// AppendEventRecord appends the journal line for one event, without the newline:
//
//	{"received_at":"<canonical UTC ms>","service_id":"<service id>","task_id":<int>,"event":<event>}
//
// event must already be strict compact JSON; it is copied as is. receivedAt is written in UTC,
// truncated to the millisecond.
func AppendEventRecord(dst []byte, receivedAt time.Time, serviceID string, taskID int64, event []byte) []byte {
	dst = append(dst, `{"received_at":"`...)
	dst = receivedAt.UTC().AppendFormat(dst, receivedAtLayout)
	dst = append(dst, `","service_id":`...)
	dst = appendJSONString(dst, serviceID)
	dst = append(dst, `,"task_id":`...)
	dst = strconv.AppendInt(dst, taskID, 10)
	dst = append(dst, `,"event":`...)
	dst = append(dst, event...)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. The service id is validated upstream to
// [A-Za-z0-9-] or a decimal, so escaping is a safety net: quotes, backslashes and control
// characters are escaped, and invalid UTF-8 becomes U+FFFD so the line stays valid JSON.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, needing no escape
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, `\n`...)
		case '\r':
			dst = append(dst, `\r`...)
		case '\t':
			dst = append(dst, `\t`...)
		case '\b':
			dst = append(dst, `\b`...)
		case '\f':
			dst = append(dst, `\f`...)
		default:
			dst = append(dst, `\u00`...)
			dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
