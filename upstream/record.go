package upstream

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// receivedAtLayout is the SPEC's canonical timestamp, YYYY-MM-DDTHH:mm:ss.SSSZ in UTC.
const receivedAtLayout = "2006-01-02T15:04:05.000Z"

// RecordIDs names the event of a journal line: the operation and the ids of its path.
type RecordIDs struct {
	Operation string // the operation's name, e.g. "task.end", "state.end", "service.end"
	ServiceID string // as in the path
	// IDName is the name of the path's other id, "task_id" or "state_id", written with ID;
	// "" for none (service.end).
	IDName string
	ID     int64
}

// TaskEndIDs are the ids of a Complete Task call.
func TaskEndIDs(serviceID string, taskID int64) RecordIDs {
	return RecordIDs{Operation: "task.end", ServiceID: serviceID, IDName: "task_id", ID: taskID}
}

// AppendEventRecord appends the journal line for one event, without the newline:
//
//	{"received_at":"<canonical UTC ms>","operation":"task.end","service_id":"<service id>","task_id":<int>,"event":<event>}
//
// with "state_id" instead of "task_id" for state.end, and neither for service.end. event must
// already be strict compact JSON; it is copied as is. receivedAt is written in UTC, truncated to
// the millisecond.
func AppendEventRecord(dst []byte, receivedAt time.Time, ids RecordIDs, event []byte) []byte {
	dst = append(dst, `{"received_at":"`...)
	dst = receivedAt.UTC().AppendFormat(dst, receivedAtLayout)
	dst = append(dst, `","operation":`...)
	dst = appendJSONString(dst, ids.Operation)
	dst = append(dst, `,"service_id":`...)
	dst = appendJSONString(dst, ids.ServiceID)
	if ids.IDName != "" {
		dst = append(dst, ',')
		dst = appendJSONString(dst, ids.IDName)
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, ids.ID, 10)
	}
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
