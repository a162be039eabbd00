package normalize

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fastjson"
)

// strictMember and looseMember are one event-like member each; bodies are
// built by repeating them up to a size, so every size has the same mix.
const strictMember = `"attr_%d": {"id": 12345678901234567, "name": "customer info \u00e9", "ok": true, "tags": ["a", "b"], "n": -1.5e3, "none": null}`
const looseMember = `attr_%d: {id: 0000CSS0FXZUP6UR, 'name': 'customer info', ok: True, tags: [a, b,], n: 25 000, // note
none: None}`

func benchBody(member string, size int) []byte {
	var b bytes.Buffer
	b.WriteString("{\n")
	for i := 0; b.Len() < size-len(member)-8; i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		b.Write(bytes.Replace([]byte(member), []byte("%d"), []byte(strconv.Itoa(i)), 1))
	}
	b.WriteString("\n}")
	return b.Bytes()
}

func benchValue(b *testing.B, body []byte) {
	n, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	var rep Report
	dst, err := n.Value(nil, body, &rep)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rep.Reset()
		dst, err = n.Value(dst[:0], body, &rep)
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValueStrict(b *testing.B) {
	benchValue(b, benchBody(strictMember, 1<<10))
}

func BenchmarkValueLoose(b *testing.B) {
	benchValue(b, benchBody(looseMember, 1<<10))
}

// The ns/byte goal compares these sizes with each other.
func BenchmarkValueStrictSize(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		b.Run(strconv.Itoa(size), func(b *testing.B) { benchValue(b, benchBody(strictMember, size)) })
	}
}

func BenchmarkValueLooseSize(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		b.Run(strconv.Itoa(size), func(b *testing.B) { benchValue(b, benchBody(looseMember, size)) })
	}
}

// Baselines on the same strict 1 KiB body, in the same process.
func BenchmarkValueBaselineFastjson(b *testing.B) {
	benchFastjson(b, benchBody(strictMember, 1<<10))
}

func BenchmarkValueBaselineEncodingJSON(b *testing.B) {
	benchEncodingJSON(b, benchBody(strictMember, 1<<10))
}

// BenchmarkValueRatio runs Value and the fastjson and encoding/json
// baselines interleaved in blocks on the same body, so the reported ratios
// hold even on a busy machine: x_fastjson is Value's time over fastjson
// Parse+MarshalTo of the strict body; x_encjson is encoding/json's time
// (Unmarshal into any + Marshal of the strict body) over Value's.
func BenchmarkValueRatio(b *testing.B) {
	strict := benchBody(strictMember, 1<<10)
	for _, c := range []struct {
		name string
		body []byte
	}{{"strict", strict}, {"loose", benchBody(looseMember, 1<<10)}} {
		b.Run(c.name, func(b *testing.B) {
			n, err := New(Options{})
			if err != nil {
				b.Fatal(err)
			}
			var p fastjson.Parser
			var dst, fdst []byte
			var tv, tf, te time.Duration
			const block = 64
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				for range block {
					if dst, err = n.Value(dst[:0], c.body, nil); err != nil {
						b.Fatal(err)
					}
				}
				t1 := time.Now()
				for range block {
					fdst = fastjsonRoundTrip(b, &p, fdst, strict)
				}
				t2 := time.Now()
				encodingJSONRoundTrip(b, strict)
				t3 := time.Now()
				tv += t1.Sub(t0)
				tf += t2.Sub(t1)
				te += t3.Sub(t2) * block
			}
			b.ReportMetric(float64(tv)/float64(tf), "x_fastjson")
			b.ReportMetric(float64(te)/float64(tv), "x_encjson")
		})
	}
}
