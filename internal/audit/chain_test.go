package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeLog appends n records to a new log and returns its path.
func writeLog(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := l.Append(Record{Event: EventAttempt, Job: "j", Target: fmt.Sprintf("t-%03d", i+1), Attempt: 1, Outcome: OutcomeSuccess}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func writeLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// offsetOf returns the byte offset of line i (from 0) in lines.
func offsetOf(lines [][]byte, i int) int64 {
	var off int64
	for _, l := range lines[:i] {
		off += int64(len(l))
	}
	return off
}

var hashMember = regexp.MustCompile(`,"hash":"([0-9a-f]{64})"\}$`)

// TestChainDefinition recomputes the chain from the bytes on disk with the
// definition of the package doc, independently of the package's code.
func TestChainDefinition(t *testing.T) {
	path := writeLog(t, 3)
	l, err := Open(path) // a second session continues the chain
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(Record{Event: EventReload, Detail: "second session"}); err != nil {
		t.Fatal(err)
	}
	seq, tail := l.Tail()
	l.Close()

	var prev, logID string
	for i, line := range readLines(t, path) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		m := hashMember.FindSubmatchIndex(line)
		if m == nil {
			t.Fatalf("line %d does not end in a hash member: %s", i+1, line)
		}
		written := string(line[m[2]:m[3]])
		unsealed := append(append([]byte{}, line[:m[0]]...), '}')
		sum := sha256.Sum256(unsealed)
		if got := hex.EncodeToString(sum[:]); got != written {
			t.Errorf("line %d: hash %s; sha256 of the line without it is %s", i+1, written, got)
		}
		var w struct {
			LogID string `json:"log_id"`
			Seq   uint64 `json:"seq"`
			Prev  string `json:"prev"`
			Hash  string `json:"hash"`
		}
		if err := json.Unmarshal(line, &w); err != nil {
			t.Fatal(err)
		}
		if w.Seq != uint64(i+1) {
			t.Errorf("line %d: seq %d", i+1, w.Seq)
		}
		if i == 0 {
			if len(w.LogID) != 32 {
				t.Fatalf("first record log_id = %q; want 32 hex digits", w.LogID)
			}
			logID = w.LogID
			g := sha256.Sum256([]byte("scheduler-audit-genesis:" + logID))
			prev = hex.EncodeToString(g[:])
		} else if w.LogID != "" {
			t.Errorf("line %d carries log_id %q; only the first should", i+1, w.LogID)
		}
		if w.Prev != prev {
			t.Errorf("line %d: prev %s; want %s", i+1, w.Prev, prev)
		}
		prev = written
	}
	if seq != 4 || tail != prev {
		t.Errorf("Tail() = %d, %s; want 4, %s", seq, tail, prev)
	}
	recs, err := ReadAll(path)
	if err != nil {
		t.Fatal(err)
	}
	if recs[0].LogID != logID || recs[3].Seq != 4 || recs[3].Hash != tail || recs[3].Prev != recs[2].Hash {
		t.Errorf("ReadAll chain fields = %+v", recs)
	}
	rep, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 4 || rep.FirstSeq != 1 || rep.LastSeq != 4 || rep.LastHash != tail || rep.LogID != logID || len(rep.Files) != 1 {
		t.Errorf("Verify = %+v", rep)
	}
}

func TestAppendIgnoresCallerChainFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	if err := l.Append(Record{Event: EventReload, Seq: 99, Prev: "x", Hash: "y", LogID: "z"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(path); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestTornTail(t *testing.T) {
	tests := []struct {
		name string
		tail func(last []byte) []byte // what a crash left after three good lines
	}{
		{"half a line", func(last []byte) []byte { return last[:len(last)/2] }},
		{"all but the newline", func(last []byte) []byte { return last[:len(last)-1] }},
		{"zeros from a lost page", func([]byte) []byte { return make([]byte, 300) }},
		{"invalid json with newline", func(last []byte) []byte { return append(last[:40:40], '\n') }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeLog(t, 4)
			lines := readLines(t, path)
			good, last := lines[:3], lines[3]
			writeLines(t, path, append(good, tc.tail(last)))
			tornOff := offsetOf(lines, 3)

			_, err := Verify(path)
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Kind != KindTorn || ce.Offset != tornOff || ce.File != path {
				t.Fatalf("Verify before Open = %v; want torn at offset %d", err, tornOff)
			}

			l, err := Open(path)
			if err != nil {
				t.Fatalf("Open = %v; want the torn line cut off", err)
			}
			defer l.Close()
			if msg := l.Recovered(); !strings.Contains(msg, fmt.Sprintf("offset %d", tornOff)) || !strings.Contains(msg, path) {
				t.Errorf("Recovered() = %q; want the file and offset %d", msg, tornOff)
			}
			// The cut is audited: seq 4 is the repair record.
			if seq, _ := l.Tail(); seq != 4 {
				t.Errorf("Tail seq after recovery = %d; want 4", seq)
			}
			if err := l.Append(Record{Event: EventReload, Detail: "after crash"}); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(path)
			if err != nil {
				t.Fatalf("Verify after recovery: %v", err)
			}
			if rep.Records != 5 || rep.LastSeq != 5 {
				t.Errorf("Verify = %d records up to seq %d; want 5, 5", rep.Records, rep.LastSeq)
			}
			recs, _ := ReadAll(path)
			if recs[3].Event != EventRepair || !strings.Contains(recs[3].Detail, fmt.Sprintf("offset %d", tornOff)) {
				t.Errorf("record 4 = %+v; want the repair record naming offset %d", recs[3], tornOff)
			}
			if recs[4].Detail != "after crash" || recs[4].Seq != 5 {
				t.Errorf("record 5 = %+v; want the new record with seq 5", recs[4])
			}
		})
	}
}

func TestCleanOpenRecoversNothing(t *testing.T) {
	path := writeLog(t, 2)
	l := mustOpen(t, path)
	if msg := l.Recovered(); msg != "" {
		t.Errorf("Recovered() = %q; want empty", msg)
	}
}

// TestDamage edits a 6-record log in the ways an accident or an attacker
// would and checks that Open refuses and Verify names the first problem.
func TestDamage(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(lines [][]byte) [][]byte
		line     int    // 0-based index of the line the problem is reported at
		kind     string // for Verify and Open
		wantSeq  uint64
		wantText string
	}{
		{
			name: "flipped byte in a value",
			edit: func(ls [][]byte) [][]byte {
				ls[2] = bytes.Replace(ls[2], []byte("t-003"), []byte("t-00X"), 1)
				return ls
			},
			line: 2, kind: KindEdited, wantSeq: 3, wantText: "seq 3 was edited",
		},
		{
			name: "flipped byte breaks the json",
			edit: func(ls [][]byte) [][]byte {
				ls[2] = bytes.Replace(ls[2], []byte(`"job":`), []byte(`"job";`), 1)
				return ls
			},
			line: 2, kind: KindMalformed, wantText: "not a JSON record",
		},
		{
			name: "edited and hash recomputed",
			edit: func(ls [][]byte) [][]byte {
				var r Record
				_ = json.Unmarshal(ls[2], &r)
				r.Outcome = OutcomeFailure
				body, _ := json.Marshal(Record{Time: r.Time, Event: r.Event, Job: r.Job, Target: r.Target, Attempt: r.Attempt, Outcome: r.Outcome})
				ls[2], _ = seal(nil, body, r.Seq, r.Prev, "")
				return ls
			},
			line: 3, kind: KindBrokenLink, wantSeq: 4, wantText: "does not link to seq 3",
		},
		{
			name: "deleted line",
			edit: func(ls [][]byte) [][]byte { return append(ls[:2:2], ls[3:]...) },
			line: 2, kind: KindDeleted, wantSeq: 4, wantText: "seq 2 is followed by seq 4",
		},
		{
			name: "swapped lines",
			edit: func(ls [][]byte) [][]byte {
				ls[2], ls[3] = ls[3], ls[2]
				return ls
			},
			line: 2, kind: KindReordered, wantSeq: 4, wantText: "seq 4 comes before seq 3",
		},
		{
			name: "duplicated line",
			edit: func(ls [][]byte) [][]byte {
				return append(ls[:3:3], append([][]byte{ls[2]}, ls[3:]...)...)
			},
			line: 3, kind: KindReordered, wantSeq: 3, wantText: "seq 3 appears twice",
		},
		{
			name: "first line deleted",
			edit: func(ls [][]byte) [][]byte { return ls[1:] },
			line: 0, kind: KindDeleted, wantSeq: 2, wantText: "starts at seq 2",
		},
		{
			name: "line without chain",
			edit: func(ls [][]byte) [][]byte {
				ls[1] = []byte(`{"time":"","event":"reload"}` + "\n")
				return ls
			},
			line: 1, kind: KindMalformed, wantText: "no seq and hash chain",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeLog(t, 6)
			lines := tc.edit(readLines(t, path))
			writeLines(t, path, lines)
			wantOff := offsetOf(lines, tc.line)

			_, err := Verify(path)
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Verify = %v; want a *CorruptError", err)
			}
			if ce.Kind != tc.kind || ce.File != path || ce.Offset != wantOff || ce.Line != tc.line+1 ||
				(tc.wantSeq != 0 && ce.Seq != tc.wantSeq) || !strings.Contains(ce.Msg, tc.wantText) {
				t.Errorf("Verify = %+v\nwant kind %s, offset %d, line %d, seq %d, text %q", ce, tc.kind, wantOff, tc.line+1, tc.wantSeq, tc.wantText)
			}

			// The first line's deletion is not damage Open can see: the
			// start of the log may have been archived.
			if tc.name == "first line deleted" {
				return
			}
			_, err = Open(path)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v; want it to refuse a damaged log", err)
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, fmt.Sprintf("offset %d", wantOff)) {
				t.Errorf("Open error %q does not name the file and offset %d", msg, wantOff)
			}
		})
	}
}

func TestExpectTail(t *testing.T) {
	path := writeLog(t, 5)
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	seq, hash := l.Tail()
	l.Close()
	recs, _ := ReadAll(path)
	lines := readLines(t, path)

	tests := []struct {
		name     string
		lines    [][]byte
		opts     Options
		wantText string // "" means Open succeeds
	}{
		{"tail matches", lines, Options{ExpectSeq: seq, ExpectHash: hash}, ""},
		{"log ahead of the state", lines, Options{ExpectSeq: 3, ExpectHash: recs[2].Hash}, ""},
		{"two records cut off", lines[:3], Options{ExpectSeq: 5, ExpectHash: hash},
			"audit log ends at seq 3 but run state recorded seq 5: records were deleted"},
		{"everything cut off", nil, Options{ExpectSeq: 5}, "ends at seq 0 but run state recorded seq 5"},
		{"rewritten tail", lines, Options{ExpectSeq: 5, ExpectHash: recs[1].Hash}, "the log was rewritten"},
		{"rewritten middle", lines, Options{ExpectSeq: 3, ExpectHash: recs[1].Hash}, "record seq 3 has hash"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			writeLines(t, path, tc.lines)
			if _, err := Verify(path); err != nil {
				t.Fatalf("Verify = %v; the chain itself is intact", err)
			}
			l, err := OpenWith(path, tc.opts)
			if tc.wantText == "" {
				if err != nil {
					t.Fatalf("OpenWith = %v; want success", err)
				}
				l.Close()
				return
			}
			if err == nil {
				l.Close()
				t.Fatal("OpenWith succeeded; want an error")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("OpenWith = %v; want %q", err, tc.wantText)
			}
		})
	}
}

// appendN appends n records with a payload that makes lines about 400
// bytes long.
func appendN(t testing.TB, l *Log, from, n int) {
	t.Helper()
	for i := range n {
		r := Record{Event: EventAttempt, Job: "j", Target: fmt.Sprintf("t-%04d", from+i), Error: strings.Repeat("e", 100)}
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	const maxBytes = 1500 // three or four records per file
	l, err := OpenWith(path, Options{MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 1, 20)
	l.Close()
	// A restart continues the chain in the live file and across rotation.
	l, err = OpenWith(path, Options{MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 21, 5)
	seq, hash := l.Tail()
	l.Close()

	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("Files = %v; want at least 3 rotated files and the live one", files)
	}
	for i, f := range files[:len(files)-1] {
		if want := fmt.Sprintf("%s.%d", path, i+1); f != want {
			t.Errorf("file %d = %s; want %s", i, f, want)
		}
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxBytes || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %d bytes, mode %v; want at most %d, 0600", f, fi.Size(), fi.Mode().Perm(), maxBytes)
		}
	}
	rep, err := Verify(path)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Records != 25 || rep.LastSeq != seq || rep.LastHash != hash || len(rep.Files) != len(files) {
		t.Errorf("Verify = %+v; want 25 records in %d files ending at %d %s", rep, len(files), seq, hash)
	}
	// The first record of each rotated-to file links to the old file's last.
	first := readLines(t, files[1])[0]
	last := readLines(t, files[0])
	var a, b Record
	_ = json.Unmarshal(first, &a)
	_ = json.Unmarshal(last[len(last)-1], &b)
	if a.Prev != b.Hash || a.Seq != b.Seq+1 {
		t.Errorf("%s starts with seq %d prev %s; want seq %d prev %s", files[1], a.Seq, a.Prev, b.Seq+1, b.Hash)
	}

	t.Run("link across rotation broken", func(t *testing.T) {
		// Swap the first record of file 2 with the one of a fresh log.
		lines := readLines(t, files[1])
		other := readLines(t, writeLog(t, 1))
		saved := bytes.Clone(bytes.Join(lines, nil))
		lines[0] = other[0]
		writeLines(t, files[1], lines)
		defer os.WriteFile(files[1], saved, 0o600)
		_, err := Verify(path)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.File != files[1] || ce.Offset != 0 {
			t.Errorf("Verify = %v; want a problem at the start of %s", err, files[1])
		}
	})

	t.Run("middle file deleted", func(t *testing.T) {
		saved, _ := os.ReadFile(files[1])
		os.Remove(files[1])
		defer os.WriteFile(files[1], saved, 0o600)
		_, err := Verify(path)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Kind != KindMissingFile || ce.File != files[2] || !strings.Contains(ce.Msg, files[1]+" missing") {
			t.Errorf("Verify = %v; want %s reported missing", err, files[1])
		}
	})

	t.Run("crash between rename and create", func(t *testing.T) {
		next := fmt.Sprintf("%s.%d", path, len(files))
		if err := os.Rename(path, next); err != nil {
			t.Fatal(err)
		}
		l, err := OpenWith(path, Options{MaxBytes: maxBytes})
		if err != nil {
			t.Fatal(err)
		}
		if s, _ := l.Tail(); s != seq {
			t.Errorf("Tail after the crash = %d; want %d from %s", s, seq, next)
		}
		appendN(t, l, 26, 1)
		l.Close()
		if rep, err := Verify(path); err != nil || rep.Records != 26 {
			t.Errorf("Verify = %+v, %v; want 26 records", rep, err)
		}
	})
}

func TestRotationKeep(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := OpenWith(path, Options{MaxBytes: 1000, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 1, 20)
	l.Close()
	files, _ := Files(path)
	if len(files) != 3 {
		t.Fatalf("Files = %v; want 2 rotated and the live file", files)
	}
	_, err = Verify(path)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Kind != KindMissingFile || !strings.Contains(ce.Msg, path+".1") {
		t.Errorf("Verify of a pruned log = %v; want the removed files reported", err)
	}
}

func TestRotationDisabled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := OpenWith(path, Options{MaxBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 1, 10)
	l.Close()
	if files, _ := Files(path); len(files) != 1 {
		t.Errorf("Files = %v; want only the live file", files)
	}
}

// TestConcurrentChain appends from 16 goroutines through two Logs on one
// path (as the daemon and `scheduler trigger` do from two processes) with
// rotation, and checks the result is one valid chain.
func TestConcurrentChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	opts := Options{MaxBytes: 8 << 10}
	// One Log per file (a second is refused: TestOneWriter), many
	// goroutines appending through it.
	a, err := OpenWith(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 16, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() { appendN(t, a, w*1000, each) })
	}
	wg.Wait()
	sa, _ := a.Tail()
	a.Close()
	rep, err := Verify(path)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Records != writers*each || sa != rep.LastSeq {
		t.Errorf("Verify = %d records, last seq %d; want %d, %d", rep.Records, rep.LastSeq, writers*each, sa)
	}
	if len(rep.Files) < 3 {
		t.Errorf("files = %d; want rotation to have happened", len(rep.Files))
	}
}

// TestLogrotateMove checks that a log moved away under a running Log (by
// logrotate or another process's rotation) is followed without Reopen.
func TestLogrotateMove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	appendN(t, l, 1, 2)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 3, 2)
	if rep, err := Verify(path); err != nil || rep.Records != 4 || len(rep.Files) != 2 {
		t.Errorf("Verify = %+v, %v; want 4 records in 2 files", rep, err)
	}
}

func TestVerifyNoLog(t *testing.T) {
	_, err := Verify(filepath.Join(t.TempDir(), "none.jsonl"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Verify of a missing log = %v; want ErrNotExist", err)
	}
}

// BenchmarkAppendChain measures group-committed appends with the chain: one
// writer, then 16 writers at once.
func BenchmarkAppendChain(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l := mustOpen(b, filepath.Join(b.TempDir(), "audit.jsonl"))
			r := benchRecord()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			per := (b.N + writers - 1) / writers
			for range writers {
				wg.Go(func() {
					for range per {
						if err := l.Append(r); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(per*writers)/time.Since(start).Seconds(), "records/s")
		})
	}
}
