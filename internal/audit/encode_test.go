package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// reflectJSON is how Record.MarshalJSON encoded a record before
// appendJSON: encoding/json on the wire struct. appendJSON must write the
// same bytes, or existing logs' lines would not be the lines new code
// writes for the same facts.
func reflectJSON(r Record) []byte {
	b, err := json.Marshal(wire{
		Time:       formatTime(r.Time.UTC()),
		Event:      r.Event,
		Job:        r.Job,
		RunID:      r.RunID,
		Scheduled:  formatTime(r.Scheduled),
		Action:     r.Action,
		Account:    r.Account,
		Target:     r.Target,
		Attempt:    r.Attempt,
		Outcome:    r.Outcome,
		HTTPStatus: r.HTTPStatus,
		VendorCode: r.VendorCode,
		RequestID:  r.RequestID,
		Error:      r.Error,
		DurationMS: r.DurationMS,
		Detail:     r.Detail,
		Node:       r.Node,
		LogID:      r.LogID,
		Seq:        r.Seq,
		Prev:       r.Prev,
		Hash:       r.Hash,
	})
	if err != nil {
		panic(err)
	}
	return b
}

// formatTime is how the wire struct held a time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

// encodeStrings are the texts that need care in JSON: quotes, escapes,
// HTML, control characters, non-ASCII, invalid UTF-8, JavaScript line
// separators, and plain ones.
var encodeStrings = []string{
	"", "a", "notebooks-on", "notebooks-on@2026-11-25T08:00:00Z", "6fa459ea-ee8a-3ca4-894e-db77e160355e",
	`say "hi"`, `back\slash`, "<script>", "a&b", "x>y", "tab\there", "nl\nline", "cr\r", "\b\f", "\x00\x01\x1f", "\x7f",
	"héllo", "日本語", "emoji 🙂", "\xff\xfe", "bad \xc3 utf8", "\u2028\u2029", "~!@#$%^*()_+-=[]{}|;:',./?`",
	"queued 1.2s for account sandbox (concurrency 64, rate 4/s)",
}

func randomRecord(rng *rand.Rand) Record {
	str := func() string {
		if rng.IntN(3) == 0 {
			return ""
		}
		s := encodeStrings[rng.IntN(len(encodeStrings))]
		if rng.IntN(4) == 0 {
			s += encodeStrings[rng.IntN(len(encodeStrings))]
		}
		return s
	}
	zones := []*time.Location{time.UTC, time.FixedZone("CET", 3600), time.FixedZone("", -9*3600-30*60), time.Local}
	tm := func() time.Time {
		switch rng.IntN(5) {
		case 0:
			return time.Time{}
		case 1:
			return time.Unix(rng.Int64N(4e9), 0).In(zones[rng.IntN(len(zones))])
		default:
			return time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(zones[rng.IntN(len(zones))])
		}
	}
	num := func() int64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return -rng.Int64N(1000)
		default:
			return rng.Int64N(1 << 40)
		}
	}
	return Record{
		Time: tm(), Event: str(), Job: str(), RunID: str(), Scheduled: tm(), Action: str(), Account: str(),
		Target: str(), Attempt: int(num()), Outcome: str(), HTTPStatus: int(num()), VendorCode: str(),
		RequestID: str(), Error: str(), DurationMS: num(), Detail: str(), Node: str(), LogID: str(),
		Seq: uint64(rng.Int64N(3)) * rng.Uint64(), Prev: str(), Hash: str(),
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	far := time.FixedZone("", -(23*3600 + 59*60))
	extreme := Record{Time: time.Unix(1<<62, 999999999).In(far), Scheduled: time.Unix(-1<<62, 1).In(far),
		Attempt: -1 << 63, HTTPStatus: -1 << 63, DurationMS: -1 << 63, Seq: 1<<64 - 1}
	recs := []Record{{}, fullRecord(), extreme}
	for range 20000 {
		recs = append(recs, randomRecord(rng))
	}
	for _, r := range recs {
		want := reflectJSON(r)
		got, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("json.Marshal(%#v)\n got %s\nwant %s", r, got, want)
		}
		if got := r.appendJSON([]byte("prefix")); !bytes.Equal(got[len("prefix"):], want) {
			t.Fatalf("appendJSON(%#v)\n got %s\nwant %s", r, got, want)
		}
		if n := r.maxSize(); len(want) > n {
			t.Fatalf("maxSize = %d < %d bytes of %s", n, len(want), want)
		}
		var back Record
		if r.Time.Year() > 9999 { // written, but not read back (RFC 3339 years have 4 digits)
			continue
		}
		if err := json.Unmarshal(want, &back); err != nil {
			t.Fatalf("%s: %v", want, err)
		}
	}
}

func FuzzAppendJSON(f *testing.F) {
	for _, s := range encodeStrings {
		f.Add(s, int64(0), int64(0))
	}
	f.Fuzz(func(t *testing.T, s string, sec, nsec int64) {
		r := Record{Event: s, Target: strings.Repeat(s, 2), Detail: s, Error: s,
			Time: time.Unix(sec, nsec), Scheduled: time.Unix(sec, nsec).In(time.FixedZone("z", 5400))}
		if got, want := r.appendJSON(nil), reflectJSON(r); !bytes.Equal(got, want) {
			t.Fatalf("appendJSON(%#v)\n got %s\nwant %s", r, got, want)
		}
	})
}

func BenchmarkRecordEncode(b *testing.B) {
	r := fullRecord()
	b.Run("appendJSON", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = r.appendJSON(buf[:0])
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = reflectJSON(r)
		}
	})
}

func TestSealedSize(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var bodies [][]byte
	for range 50 {
		r := randomRecord(rng)
		r.LogID, r.Seq, r.Prev, r.Hash = "", 0, "", ""
		bodies = append(bodies, r.appendJSON(nil))
	}
	for _, start := range []uint64{0, 1, 8, 9, 98, 999, 123456} {
		seq, hash := start, ""
		if start > 0 {
			hash = strings.Repeat("a", 64)
		}
		want := sealedSize(len(bodies), func(i int) []byte { return bodies[i] }, seq, len(hash))
		var upper int
		for _, b := range bodies {
			upper += len(b)
		}
		if bound := int64(upper + len(bodies)*sealedMax + len(hash)); want > bound {
			t.Errorf("from seq %d: sealedSize = %d, more than the bound %d", start, want, bound)
		}
		var buf []byte
		for _, b := range bodies {
			seq++
			prev, logID := hash, ""
			if seq == 1 {
				logID = newLogID()
				prev = Genesis(logID)
			}
			buf, hash = seal(buf, b, seq, prev, logID)
		}
		if int64(len(buf)) != want {
			t.Errorf("from seq %d: sealedSize = %d, seal wrote %d bytes", start, want, len(buf))
		}
	}
}

// BenchmarkAppendBatchIntent is a fire's intent on 10 000 targets: one
// batch, with a subscriber (the daemon's observe hub) as in the daemon.
func BenchmarkAppendBatchIntent(b *testing.B) {
	l := mustOpen(b, b.TempDir()+"/audit.jsonl")
	l.Subscribe(func([]Record, error) {})
	rs := make([]Record, 10000)
	for i := range rs {
		rs[i] = Record{Time: time.Now(), Event: EventRun, Job: "burst", RunID: "burst@2026-12-06T04:51:24Z",
			Scheduled: time.Date(2026, 12, 6, 4, 51, 24, 0, time.UTC), Action: "dataforest.app.start", Account: "bench",
			Target: "app-burst-" + strconv.Itoa(i), Detail: "intent; idempotent"}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.AppendBatch(rs); err != nil {
			b.Fatal(err)
		}
	}
}
