package audit

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeTailLog appends n attempt records, ten at a time, to a log at path rotating past
// maxBytes, record i with Job "j<i>", and returns the files.
func writeTailLog(t *testing.T, path string, n int, maxBytes int64) []string {
	t.Helper()
	l, err := OpenWith(path, Options{MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	var batch []Record
	for i := 1; i <= n; i++ {
		batch = append(batch, Record{Time: at.Add(time.Duration(i) * time.Second), Event: EventAttempt, Job: "j" + strconv.Itoa(i), Outcome: OutcomeSuccess})
		if len(batch) == 10 || i == n {
			if err := l.AppendBatch(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// seqs runs Newest and returns the seqs it handed out, in order.
func seqs(t *testing.T, path string, maxBytes int64, stopAfter int) ([]uint64, TailRead) {
	t.Helper()
	var got []uint64
	tr, err := Newest(path, maxBytes, func(r Record) bool {
		got = append(got, r.Seq)
		return stopAfter == 0 || len(got) < stopAfter
	})
	if err != nil {
		t.Fatalf("Newest: %v", err)
	}
	return got, tr
}

func TestNewestAcrossRotatedFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	files := writeTailLog(t, path, 300, 8<<10)
	if len(files) < 4 {
		t.Fatalf("%d files; want the log rotated several times", len(files))
	}
	var size int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}

	got, tr := seqs(t, path, 1<<30, 0)
	if len(got) != 300 || tr.Records != 300 || tr.Files != len(files) || tr.Bytes != size || tr.Stopped || tr.Skipped != 0 {
		t.Fatalf("whole log: %d records, %+v; want 300 records from %d files, %d bytes", len(got), tr, len(files), size)
	}
	for i, s := range got {
		if s != uint64(300-i) {
			t.Fatalf("record %d has seq %d; want %d (newest first, across files)", i, s, 300-i)
		}
	}

	// Stopping early reads the live file's tail only.
	got, tr = seqs(t, path, 1<<30, 5)
	if len(got) != 5 || got[0] != 300 || got[4] != 296 || !tr.Stopped || tr.Files != 1 {
		t.Errorf("stop after 5: %v, %+v; want seqs 300..296 from the live file", got, tr)
	}

	// The byte budget bounds what is read: here the live file and one
	// rotated file (each smaller than a read).
	live, _ := os.Stat(path)
	got, tr = seqs(t, path, live.Size()+1, 0)
	prev, _ := os.Stat(files[len(files)-2])
	if tr.Files != 2 || tr.Bytes != live.Size()+prev.Size() || tr.Stopped || len(got) == 0 || got[0] != 300 {
		t.Errorf("budget of the live file + 1 byte: %+v, %d records; want 2 files read whole", tr, len(got))
	}
}

// TestNewestBigFileReadsItsTailOnly: a file much larger than the budget
// is read from its end, one chunk at a time.
func TestNewestBigFileReadsItsTailOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	writeTailLog(t, path, 3000, -1)
	fi, _ := os.Stat(path)
	got, tr := seqs(t, path, 1, 0)
	if tr.Bytes != tailChunk || tr.Bytes >= fi.Size() || len(got) == 0 || got[0] != 3000 {
		t.Fatalf("budget 1 byte of a %d-byte file: %+v; want one chunk of %d bytes, newest first", fi.Size(), tr, tailChunk)
	}
	for i, s := range got {
		if s != uint64(3000-i) {
			t.Fatalf("record %d has seq %d; want %d", i, s, 3000-i)
		}
	}
}

// TestNewestSkipsWhatIsNotARecord: a torn last line (longer than a read),
// a damaged line and a line longer than a read.
func TestNewestSkipsWhatIsNotARecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := OpenWith(path, Options{MaxBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", tailChunk+100)
	for _, r := range []Record{
		{Event: EventAttempt, Job: "a", Outcome: OutcomeSuccess},
		{Event: EventAttempt, Job: "b", Outcome: OutcomeFailure, Detail: long},
		{Event: EventAttempt, Job: "c", Outcome: OutcomeSuccess},
	} {
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("{\"damaged\n" + `{"time":"` + strings.Repeat("y", tailChunk*2)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	var jobs []string
	tr, err := Newest(path, 1<<30, func(r Record) bool { jobs = append(jobs, r.Job); return true })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(jobs, ",") != "c,b,a" || tr.Skipped != 2 {
		t.Fatalf("records %v, %+v; want c,b,a and 2 lines skipped (damaged, torn)", jobs, tr)
	}

	none := filepath.Join(t.TempDir(), "absent.jsonl")
	if tr, err := Newest(none, 1<<30, func(Record) bool { return true }); err != nil || tr.Records != 0 {
		t.Errorf("Newest of a log not yet written = %+v, %v; want nothing, no error", tr, err)
	}
}
