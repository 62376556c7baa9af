package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// dirState is every file of a directory with its content.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range ents {
		if e.Name() == filepath.Base(dir)+".lock" || strings.HasSuffix(e.Name(), ".lock") {
			continue // the lock file holds the holder's pid
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

func sameDir(t *testing.T, before, after map[string]string) {
	t.Helper()
	for name, b := range before {
		if after[name] != b {
			t.Errorf("%s changed: %d bytes before, %d after", name, len(b), len(after[name]))
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s appeared", name)
		}
	}
}

// TestRefusedOpenChangesNothing is issue 14 item 1: the run state counts
// seq 11, the last 30 bytes of the log are gone. Open refuses, says the
// last line is incomplete, and cuts nothing.
func TestRefusedOpenChangesNothing(t *testing.T) {
	path := writeLog(t, 11)
	recs, _ := ReadAll(path)
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, b[:len(b)-30], 0o600); err != nil {
		t.Fatal(err)
	}
	before := dirState(t, filepath.Dir(path))
	l, err := OpenWith(path, Options{ExpectSeq: 11, ExpectHash: recs[10].Hash})
	if err == nil {
		l.Close()
		t.Fatal("OpenWith succeeded; want a refusal")
	}
	var ce *CorruptError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "the last line is incomplete") || !strings.Contains(err.Error(), "seq 11") {
		t.Errorf("OpenWith = %v; want the incomplete last line named, with the run state's seq 11", err)
	}
	sameDir(t, before, dirState(t, filepath.Dir(path)))
	if _, err := Verify(path); err == nil || !strings.Contains(err.Error(), "the last line is incomplete") {
		t.Errorf("Verify after the refused open = %v; want the last line is incomplete", err)
	}
	// Every other refusal of the tail check changes nothing either.
	writeLines(t, path, readLines(t, path)) // a complete log of 10 records now
	before = dirState(t, filepath.Dir(path))
	for _, o := range []Options{{ExpectSeq: 11}, {ExpectSeq: 10, ExpectHash: recs[3].Hash}, {ExpectSeq: 4, ExpectHash: recs[2].Hash}} {
		if l, err := OpenWith(path, o); err == nil {
			l.Close()
			t.Errorf("OpenWith(%+v) succeeded; want a refusal", o)
		}
	}
	sameDir(t, before, dirState(t, filepath.Dir(path)))
}

// TestTornTailRepairIsAudited: a crash left half a line the run state does
// not count. Open cuts it, keeps its bytes in a side file, and writes a
// repair record that names what it removed.
func TestTornTailRepairIsAudited(t *testing.T) {
	path := writeLog(t, 4)
	lines := readLines(t, path)
	torn := lines[3][:100]
	writeLines(t, path, append(lines[:3:3], torn))
	recs, _ := ReadAll(path)
	l, err := OpenWith(path, Options{ExpectSeq: 3, ExpectHash: recs[2].Hash})
	if err != nil {
		t.Fatalf("OpenWith = %v; want the torn line repaired", err)
	}
	if err := l.Append(Record{Event: EventReload, Detail: "after"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	got, err := ReadAll(path)
	if err != nil || len(got) != 5 {
		t.Fatalf("ReadAll = %d records, %v; want 3 old, the repair, the new one", len(got), err)
	}
	rep := got[3]
	off := offsetOf(lines, 3)
	sum := sha256.Sum256(torn)
	if rep.Event != EventRepair || rep.Seq != 4 {
		t.Fatalf("record 4 = %+v; want the repair record", rep)
	}
	side := sidePath(t, rep.Detail)
	for _, want := range []string{"offset " + strconv.FormatInt(off, 10), "100 bytes", hex.EncodeToString(sum[:]), side} {
		if !strings.Contains(rep.Detail, want) {
			t.Errorf("repair detail %q lacks %q", rep.Detail, want)
		}
	}
	kept, err := os.ReadFile(side)
	if err != nil || !bytes.Equal(kept, torn) {
		t.Errorf("side file %s = %q, %v; want the removed bytes %q", side, kept, err, torn)
	}
	if r, err := Verify(path); err != nil || r.Records != 5 {
		t.Errorf("Verify = %+v, %v; want 5 good records", r, err)
	}
}

// sidePath finds the side file a repair record names.
func sidePath(t *testing.T, detail string) string {
	t.Helper()
	i := strings.Index(detail, "kept in ")
	if i < 0 {
		t.Fatalf("detail %q names no side file", detail)
	}
	return strings.TrimRight(strings.Fields(detail[i+len("kept in "):])[0], ";,.")
}

// TestOneWriter is issue 14 item 2: a second Log on the same file is
// refused with a message naming the holder, until the first closes.
func TestOneWriter(t *testing.T) {
	path := writeLog(t, 2)
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(path)
	if err == nil {
		b.Close()
		t.Fatal("second Open succeeded; want it refused")
	}
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), "one writer") {
		t.Errorf("second Open = %v; want ErrBusy naming pid %d", err, os.Getpid())
	}
	if _, err := Repair(path, Options{ExpectSeq: 9}, "test"); !errors.Is(err, ErrBusy) {
		t.Errorf("Repair while open = %v; want ErrBusy", err)
	}
	if err := a.Append(Record{Event: EventReload}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b, err = Open(path)
	if err != nil {
		t.Fatalf("Open after Close = %v", err)
	}
	b.Close()
}

// TestRepairStartsSegment is issue 14 item 5: records cut from the end
// (the run state counts seq 6, the log ends at 4, its last line torn).
// Repair keeps every byte, starts a new chain segment that names the old
// one, and the log opens and verifies again.
func TestRepairStartsSegment(t *testing.T) {
	path := writeLog(t, 6)
	recs, _ := ReadAll(path)
	lines := readLines(t, path)
	torn := lines[4][:50]
	writeLines(t, path, append(lines[:4:4], torn))
	old, _ := os.ReadFile(path)
	opts := Options{ExpectSeq: 6, ExpectHash: recs[5].Hash}
	if _, err := OpenWith(path, opts); err == nil {
		t.Fatal("OpenWith succeeded before the repair")
	}
	rp, err := Repair(path, opts, "operator: lost on a full disk")
	if err != nil {
		t.Fatalf("Repair = %v", err)
	}
	now, _ := os.ReadFile(path)
	if !bytes.HasPrefix(now, old[:len(old)-len(torn)]) {
		t.Error("the complete lines before the repair were changed")
	}
	if kept, err := os.ReadFile(rp.Side); err != nil || !bytes.Equal(kept, torn) {
		t.Errorf("side file %q = %q, %v; want the torn bytes", rp.Side, kept, err)
	}
	r := rp.Record
	if r.Event != EventRepair || r.Seq != 7 || r.LogID == "" || r.LogID == recs[0].LogID {
		t.Errorf("segment start = %+v; want event repair, seq 7, a new log_id", r)
	}
	for _, want := range []string{"new chain segment", recs[0].LogID, "seq 4", recs[3].Hash, "seq 6", recs[5].Hash, rp.Side, "operator: lost on a full disk"} {
		if !strings.Contains(r.Detail, want) {
			t.Errorf("segment detail %q lacks %q", r.Detail, want)
		}
	}
	rep, err := Verify(path)
	if err != nil || rep.Records != 5 || rep.LastSeq != 7 || len(rep.Segments) != 1 || rep.Segments[0] != 7 {
		t.Errorf("Verify = %+v, %v; want 5 records, last seq 7, one segment start at 7", rep, err)
	}
	l, err := OpenWith(path, Options{ExpectSeq: r.Seq, ExpectHash: r.Hash})
	if err != nil {
		t.Fatalf("OpenWith the repaired tail = %v", err)
	}
	if err := l.Append(Record{Event: EventReload}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if rep, err := Verify(path); err != nil || rep.LastSeq != 8 {
		t.Errorf("Verify after an append = %+v, %v", rep, err)
	}
	if _, err := Repair(path, Options{ExpectSeq: 8}, "again"); err == nil || !strings.Contains(err.Error(), "nothing to repair") {
		t.Errorf("Repair of a matching log = %v; want nothing to repair", err)
	}
}

// TestForgedSegmentStart: a record that claims to start a segment but does
// not name the record before it breaks the chain.
func TestForgedSegmentStart(t *testing.T) {
	path := writeLog(t, 3)
	lines := readLines(t, path)
	var buf []byte
	id := newLogID()
	body := []byte(`{"time":"2026-01-01T00:00:00Z","event":"repair"}`)
	buf, _ = seal(buf, body, 4, SegmentLink(id, 2, "00"), id)
	writeLines(t, path, append(lines, buf))
	var ce *CorruptError
	if _, err := Verify(path); !errors.As(err, &ce) || ce.Kind != KindBrokenLink || ce.Seq != 4 {
		t.Errorf("Verify = %v; want a broken link at seq 4", err)
	}
}
