package audit

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestSubscribe checks that a subscriber sees each batch after it is on
// disk, with Time filled in, and a failed write with its error.
func TestSubscribe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	type got struct {
		recs   []Record
		err    error
		ondisk int // records in the file when the subscriber ran
	}
	var seen []got
	l.Subscribe(func(recs []Record, err error) {
		all, _ := ReadAll(path)
		seen = append(seen, got{recs, err, len(all)})
	})
	if err := l.Append(Record{Event: EventReload, Outcome: OutcomeSuccess}); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendBatch([]Record{{Event: EventRun, Job: "j", Target: "a"}, {Event: EventRun, Job: "j", Target: "b"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendBatch(nil); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 {
		t.Fatalf("subscriber saw %d batches; want 2 (an empty batch is not published)", len(seen))
	}
	if s := seen[0]; len(s.recs) != 1 || s.err != nil || s.ondisk != 1 || s.recs[0].Time.IsZero() || s.recs[0].Event != EventReload {
		t.Errorf("first batch = %+v; want the reload record, durable, with its time", s)
	}
	if s := seen[1]; len(s.recs) != 2 || s.err != nil || s.ondisk != 3 || s.recs[1].Target != "b" {
		t.Errorf("second batch = %+v; want both run records in order, durable", s)
	}

	// A write that fails is published with its error.
	l.mu.Lock()
	l.sync = func(*os.File) error { return syscall.EIO }
	l.mu.Unlock()
	err := l.Append(Record{Event: EventRun, Target: "c"})
	if len(seen) != 3 || !errors.Is(seen[2].err, syscall.EIO) || !errors.Is(err, syscall.EIO) || seen[2].recs[0].Target != "c" {
		t.Errorf("after a failed fsync the subscriber saw %+v (Append: %v); want the record with EIO", seen[len(seen)-1], err)
	}
	if !errors.Is(l.Err(), syscall.EIO) {
		t.Errorf("Err() = %v; want the sticky EIO", l.Err())
	}
}
