package normalize

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// The official benchmarks: each runs TaskEnd (/ucs) beside its baselines in
// the same process, fastjson Parse+MarshalTo with a reused Parser and
// buffer (/fastjson) and encoding/json Unmarshal into any + Marshal
// (/encoding_json), on the strict form of the same document (the baselines
// cannot read loose JSON).

// strictBody is a ~1 KiB strict Task End Event with two attribute names
// and a canonical timestamp.
func strictBody() []byte {
	var b strings.Builder
	b.WriteString(`{"interaction_id":"0000CSS0FXZUP6UR","session_id":"9C3E0F0B-1","application_type":3001,` +
		`"application_id":40,"resource_type":4001,"resource_id":12,"media_type":"email","disposition":"resolved",` +
		`"disposition_desc":"Customer identified","task_type":5001,"timestamp":"2026-11-26T11:59:58.250Z"`)
	for i := 0; b.Len() < 1000; i++ {
		b.WriteString(`,"attached_` + strconv.Itoa(i) + `":{"car_type":"sedan","price":25000,"options":["gps","heated seats"],"ok":true}`)
	}
	b.WriteString(`}`)
	return []byte(b.String())
}

// attachedBody is a strict body whose attached data grows to size bytes.
func attachedBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"session_id":"9C3E0F0B-1","media_type":1001,"timestamp":"2026-11-26T11:59:58.250Z","attached":{`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"customer_` + strconv.Itoa(i) + `":{"name":"Jane \"JJ\" Doe","account":"00` + strconv.Itoa(100000+i) +
			`","balance":1234.56,"history":[{"date":"2026-11-0` + strconv.Itoa(i%9+1) + `","amount":-25,"memo":"caf\u00e9 {braces} [brackets]"}],"vip":false,"note":null}`)
	}
	b.WriteString(`}}`)
	return []byte(b.String())
}

// looseBody has the loose shape of legacy clients, repeated to size bytes:
// bare words, grouped numbers, single quotes, unquoted keys, comments,
// Python literals, trailing commas.
func looseBody(size int) []byte {
	var b strings.Builder
	b.WriteString("{\n  \"interaction_id\":0000CSS0FXZUP6UR,\n  'session_id':'9C3E0F0B-1',\n  application_type:gvp,\n" +
		"  \"media_type\":\"voice\",\n  \"task_type\":customer info,\n")
	for i := 0; b.Len() < size; i++ {
		n := strconv.Itoa(i)
		b.WriteString("  car_type_" + n + ": sedan, // the customer's car\n" +
			"  'price_" + n + "': 25 000,\n" +
			"  \"options_" + n + "\": ['gps', heated seats, True, None,],\n" +
			"  \"account_" + n + "\": 0000CSS0FXZUP6UR # legacy id\n")
	}
	b.WriteString("}\n")
	return []byte(b.String())
}

func benchTables(b *testing.B) *Tables {
	attrs, err := LoadAttributesFile(businessAttributesFile)
	if err != nil {
		b.Fatal(err)
	}
	t, err := NewTables(TableConfig{Attributes: attrs})
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// benchTaskEnd runs /ucs on body and the baselines on strict, the strict
// form of the same document.
func benchTaskEnd(b *testing.B, body, strict []byte) {
	benchEvent(b, OpTaskEnd, body, strict)
}

// benchEvent is benchTaskEnd for any operation's event type.
func benchEvent(b *testing.B, op Operation, body, strict []byte) {
	n, err := New(Options{Attributes: benchTables(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ucs", func(b *testing.B) {
		var rep Report
		dst := make([]byte, 0, 2*len(body))
		if _, err := n.Event(op, dst, body, receivedAt, &rep); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			rep.Reset()
			dst, _ = n.Event(op, dst[:0], body, receivedAt, &rep)
		}
	})
	b.Run("fastjson", func(b *testing.B) { benchFastjson(b, strict) })
	b.Run("encoding_json", func(b *testing.B) { benchEncodingJSON(b, strict) })
}

// benchFastjson is the fastjson baseline: Parse + MarshalTo of the strict
// body into a reused buffer.
func benchFastjson(b *testing.B, strict []byte) {
	var p fastjson.Parser
	dst := make([]byte, 0, 2*len(strict))
	b.SetBytes(int64(len(strict)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		dst = fastjsonRoundTrip(b, &p, dst, strict)
	}
}

// benchEncodingJSON is the naive baseline: encoding/json Unmarshal into
// any + Marshal of the strict body.
func benchEncodingJSON(b *testing.B, strict []byte) {
	b.SetBytes(int64(len(strict)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		encodingJSONRoundTrip(b, strict)
	}
}

func fastjsonRoundTrip(tb testing.TB, p *fastjson.Parser, dst, strict []byte) []byte {
	v, err := p.ParseBytes(strict)
	if err != nil {
		tb.Fatal(err)
	}
	return v.MarshalTo(dst[:0])
}

func encodingJSONRoundTrip(tb testing.TB, strict []byte) {
	var v any
	if err := json.Unmarshal(strict, &v); err != nil {
		tb.Fatal(err)
	}
	if _, err := json.Marshal(v); err != nil {
		tb.Fatal(err)
	}
}

func BenchmarkStrictTaskEnd(b *testing.B) {
	body := strictBody()
	benchTaskEnd(b, body, body)
}

func BenchmarkLooseTaskEnd(b *testing.B) {
	body, err := os.ReadFile("../testdata/ivr-task-end.json")
	if err != nil {
		b.Fatal(err)
	}
	strict, err := os.ReadFile("../testdata/ivr-task-end.strict.json")
	if err != nil {
		b.Fatal(err)
	}
	benchTaskEnd(b, body, strict)
}

// BenchmarkLooseTaskStart is the Genesys Start Task example's loose shape
// (bare words, a grouped price) beside the baselines on its strict form.
func BenchmarkLooseTaskStart(b *testing.B) {
	body, err := os.ReadFile("testdata/golden/events/task.start-genesys-example.in.json")
	if err != nil {
		b.Fatal(err)
	}
	strict, err := os.ReadFile("testdata/golden/events/task.start-genesys-example.out.json")
	if err != nil {
		b.Fatal(err)
	}
	benchEvent(b, OpTaskStart, body, strict)
}

func BenchmarkLargeAttachedData(b *testing.B) {
	body := attachedBody(256 << 10)
	benchTaskEnd(b, body, body)
}

// BenchmarkLooseScaling compares ns/byte of one loose shape at two sizes.
func BenchmarkLooseScaling(b *testing.B) {
	n, err := New(Options{Attributes: benchTables(b)})
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []struct {
		name string
		n    int
	}{{"64KiB", 64 << 10}, {"1MiB", 1 << 20}} {
		body := looseBody(size.n)
		b.Run(size.name, func(b *testing.B) {
			var rep Report
			dst, err := n.TaskEnd(nil, body, receivedAt, &rep)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rep.Reset()
				dst, _ = n.TaskEnd(dst[:0], body, receivedAt, &rep)
			}
		})
	}
}
