package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// contractFields are the fields design.md requires on every record.
var contractFields = []string{
	"time", "event", "job", "run_id", "scheduled", "action", "account", "target",
	"attempt", "outcome", "http_status", "vendor_code", "request_id", "error", "duration_ms",
}

var numericFields = map[string]bool{"attempt": true, "http_status": true, "duration_ms": true}

func mustOpen(t testing.TB, path string) *Log {
	t.Helper()
	l, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%q) error = %v", path, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func fullRecord() Record {
	berlin := time.FixedZone("CET", 3600)
	return Record{
		Time:       time.Date(2026, 11, 25, 8, 0, 0, 123456789, berlin),
		Event:      EventAttempt,
		Job:        "notebooks-on",
		RunID:      "notebooks-on@2026-11-25T08:00:00Z",
		Scheduled:  time.Date(2026, 11, 25, 9, 0, 0, 0, berlin),
		Action:     "modelarts.notebook.start",
		Account:    "otc-dev",
		Target:     "6fa459ea-ee8a-3ca4-894e-db77e160355e",
		Attempt:    2,
		Outcome:    OutcomeRetry,
		HTTPStatus: 503,
		VendorCode: "ModelArts.0001",
		RequestID:  "req-1",
		Error:      "otc: start notebook: HTTP 503",
		DurationMS: 42,
		Detail:     "x",
	}
}

func TestRecordJSON(t *testing.T) {
	tests := []struct {
		name       string
		rec        Record
		wantTime   string
		wantSched  string
		wantDetail bool
	}{
		{"zero", Record{}, "", "", false},
		{"full", fullRecord(), "2026-11-25T07:00:00.123456789Z", "2026-11-25T09:00:00+01:00", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			for _, f := range contractFields {
				v, ok := m[f]
				if !ok {
					t.Errorf("field %q missing from %s", f, b)
					continue
				}
				switch v.(type) {
				case float64:
					if !numericFields[f] {
						t.Errorf("field %q = %v is a number; want a string", f, v)
					}
				case string:
					if numericFields[f] {
						t.Errorf("field %q = %q is a string; want a number", f, v)
					}
				default:
					t.Errorf("field %q = %#v; want a string or number, never null", f, v)
				}
			}
			if m["time"] != tc.wantTime {
				t.Errorf("time = %q; want %q", m["time"], tc.wantTime)
			}
			if m["scheduled"] != tc.wantSched {
				t.Errorf("scheduled = %q; want %q", m["scheduled"], tc.wantSched)
			}
			if _, ok := m["detail"]; ok != tc.wantDetail {
				t.Errorf("detail present = %v; want %v", ok, tc.wantDetail)
			}
			var back Record
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !back.Time.Equal(tc.rec.Time) || !back.Scheduled.Equal(tc.rec.Scheduled) {
				t.Errorf("round trip times = %v, %v; want %v, %v", back.Time, back.Scheduled, tc.rec.Time, tc.rec.Scheduled)
			}
			back.Time, back.Scheduled = tc.rec.Time, tc.rec.Scheduled
			if back != tc.rec {
				t.Errorf("round trip = %+v; want %+v", back, tc.rec)
			}
		})
	}
}

func TestOpenCreatesDirAndFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log", "sub", "audit.jsonl")
	l := mustOpen(t, path)
	if err := l.Append(Record{Event: EventReload}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("file mode = %v; want 0600", got)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode = %v; want 0700", got)
	}
}

func TestAppendFillsTimeAndAppendsToExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	if err := l.Append(fullRecord()); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := mustOpen(t, path) // reopen: must append, not truncate
	before := time.Now()
	if err := l2.Append(Record{Event: EventReload, Detail: "jobs +1"}); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadAll(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("ReadAll = %d records; want 2", len(recs))
	}
	if recs[0].RunID != fullRecord().RunID {
		t.Errorf("first record run_id = %q; want %q", recs[0].RunID, fullRecord().RunID)
	}
	if recs[1].Time.Before(before.Add(-time.Second)) || recs[1].Time.Location() != time.UTC {
		t.Errorf("filled time = %v; want about %v in UTC", recs[1].Time, before)
	}
}

// TestConcurrentAppend checks that lines never interleave and that each
// record is in the file when its Append returns.
func TestConcurrentAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	const writers, each = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				target := fmt.Sprintf("t-%02d-%02d", w, i)
				// A long field makes a torn or interleaved line likely to be noticed.
				r := Record{Event: EventAttempt, Job: "j", Target: target, Error: strings.Repeat("e", 300)}
				if err := l.Append(r); err != nil {
					errs <- err
					return
				}
				b, err := os.ReadFile(path)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Contains(b, []byte(`"target":"`+target+`"`)) {
					errs <- fmt.Errorf("record %s not in file when Append returned", target)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	recs, err := ReadAll(path)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if len(recs) != writers*each {
		t.Fatalf("ReadAll = %d records; want %d", len(recs), writers*each)
	}
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.Target]++
	}
	for target, n := range seen {
		if n != 1 {
			t.Errorf("target %s appears %d times; want 1", target, n)
		}
	}
	if len(seen) != writers*each {
		t.Errorf("distinct targets = %d; want %d", len(seen), writers*each)
	}
}

// TestAppendReturnsAfterFsync blocks fsync and checks Append is still
// waiting for it.
func TestAppendReturnsAfterFsync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustOpen(t, filepath.Join(t.TempDir(), "audit.jsonl"))
		release := make(chan struct{})
		var synced atomic.Bool
		l.sync = func(f *os.File) error {
			<-release
			synced.Store(true)
			return f.Sync()
		}
		var returned atomic.Bool
		go func() {
			if err := l.Append(Record{Event: EventReload}); err != nil {
				t.Error(err)
			}
			returned.Store(true)
		}()
		synctest.Wait()
		if returned.Load() {
			t.Fatal("Append returned before fsync completed")
		}
		close(release)
		synctest.Wait()
		if !returned.Load() || !synced.Load() {
			t.Fatalf("after fsync: returned = %v, synced = %v; want both", returned.Load(), synced.Load())
		}
	})
}

// TestGroupCommit holds the first fsync until more appenders have queued,
// and checks they share the second fsync.
func TestGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	var syncs atomic.Int32
	first := make(chan struct{})
	release := make(chan struct{})
	l.sync = func(f *os.File) error {
		if syncs.Add(1) == 1 {
			close(first)
			<-release
		}
		return f.Sync()
	}
	const followers = 10
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := l.Append(Record{Target: "leader"}); err != nil {
			t.Error(err)
		}
	})
	<-first
	for i := range followers {
		wg.Go(func() {
			if err := l.Append(Record{Target: fmt.Sprint("f", i)}); err != nil {
				t.Error(err)
			}
		})
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		l.mu.Lock()
		q := l.queued
		l.mu.Unlock()
		if q == followers+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued = %d; want %d", q, followers+1)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if got := syncs.Load(); got != 2 {
		t.Errorf("fsyncs = %d for %d appends; want 2 (leader, then one batch)", got, followers+1)
	}
	recs, err := ReadAll(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != followers+1 {
		t.Errorf("records = %d; want %d", len(recs), followers+1)
	}
}

func TestStickyError(t *testing.T) {
	tests := []struct {
		name     string
		breakLog func(t *testing.T, l *Log) // makes the next flush fail
		want     error
	}{
		{
			name:     "write to closed file",
			breakLog: func(t *testing.T, l *Log) { l.f.Close() },
			want:     os.ErrClosed,
		},
		{
			name: "fsync fails",
			breakLog: func(t *testing.T, l *Log) {
				calls := 0
				l.sync = func(*os.File) error {
					calls++
					if calls > 1 {
						t.Errorf("fsync retried after failure")
					}
					return syscall.EIO
				}
			},
			want: syscall.EIO,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := mustOpen(t, filepath.Join(dir, "audit.jsonl"))
			l.retryMin = time.Hour // no retry during this test: TestFullDiskRecovers covers it
			tc.breakLog(t, l)
			err := l.Append(Record{Target: "a"})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Append error = %v; want %v", err, tc.want)
			}
			// Repair the file underneath: the log must still refuse.
			good, err2 := os.OpenFile(filepath.Join(dir, "good.jsonl"), os.O_CREATE|os.O_WRONLY, 0o600)
			if err2 != nil {
				t.Fatal(err2)
			}
			l.mu.Lock()
			l.f, l.sync = good, (*os.File).Sync
			l.mu.Unlock()
			if err := l.Append(Record{Target: "b"}); !errors.Is(err, tc.want) {
				t.Errorf("second Append error = %v; want sticky %v", err, tc.want)
			}
			if b, _ := os.ReadFile(good.Name()); len(b) != 0 {
				t.Errorf("log wrote %q after a failure; want nothing", b)
			}
		})
	}
}

func TestFullDevice(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	l, err := Open("/dev/full")
	if err != nil {
		t.Skipf("cannot open /dev/full: %v", err)
	}
	defer l.Close()
	if err := l.Append(Record{Event: EventReload}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on /dev/full error = %v; want ENOSPC", err)
	}
	if err := l.Append(Record{Event: EventReload}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("second Append error = %v; want sticky ENOSPC", err)
	}
}

func TestClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	var wg sync.WaitGroup
	var ok atomic.Int32
	for i := range 20 {
		wg.Go(func() {
			err := l.Append(Record{Target: fmt.Sprint(i)})
			switch {
			case err == nil:
				ok.Add(1)
			case !errors.Is(err, ErrClosed):
				t.Errorf("Append during Close error = %v; want nil or ErrClosed", err)
			}
		})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := l.Append(Record{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close error = %v; want ErrClosed", err)
	}
	recs, err := ReadAll(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != int(ok.Load()) {
		t.Errorf("records on disk = %d; want %d (the Appends that succeeded)", len(recs), ok.Load())
	}
}

func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	l := mustOpen(t, path)
	if err := l.Append(Record{Target: "old"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(Record{Target: "new"}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{path + ".1": "old", path: "new"} {
		recs, err := ReadAll(file)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].Target != want {
			t.Errorf("%s holds %+v; want one record for %q", file, recs, want)
		}
	}
}

func TestRecordsMalformedLine(t *testing.T) {
	in := `{"event":"reload","time":"2026-01-01T00:00:00Z"}` + "\n" +
		`{"event":"attempt","tim` + "\n" + // torn line
		"\n" +
		`{"event":"skip","scheduled":"2026-01-01T09:00:00+09:00"}` + "\n"
	var events []string
	var errs []error
	for r, err := range Records(strings.NewReader(in)) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		events = append(events, r.Event)
	}
	if got := strings.Join(events, ","); got != "reload,skip" {
		t.Errorf("events = %s; want reload,skip", got)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "line 2") {
		t.Errorf("errors = %v; want one naming line 2", errs)
	}

	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadAll(path)
	if err == nil || len(recs) != 1 {
		t.Errorf("ReadAll = %d records, %v; want 1 record and an error", len(recs), err)
	}
}

func benchRecord() Record {
	r := fullRecord()
	r.Time = time.Time{}
	return r
}

func BenchmarkAppend(b *testing.B) {
	l := mustOpen(b, filepath.Join(b.TempDir(), "audit.jsonl"))
	r := benchRecord()
	b.ResetTimer()
	for b.Loop() {
		if err := l.Append(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkAppendParallel(b *testing.B) {
	l := mustOpen(b, filepath.Join(b.TempDir(), "audit.jsonl"))
	r := benchRecord()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Append(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestAppendBatch checks that a batch is one fsync and that its lines stay
// together and in order while other goroutines append.
func TestAppendBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	var syncs atomic.Int32
	l.sync = func(f *os.File) error {
		syncs.Add(1)
		return f.Sync()
	}
	batch := make([]Record, 50)
	for i := range batch {
		batch[i] = Record{Event: EventRun, RunID: "b", Target: fmt.Sprint(i)}
	}
	if err := l.AppendBatch(batch); err != nil {
		t.Fatal(err)
	}
	if got := syncs.Load(); got != 1 {
		t.Errorf("fsyncs = %d for one batch of %d; want 1", got, len(batch))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20 {
				if err := l.Append(Record{RunID: "single", Target: fmt.Sprint(g, "-", i)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for range 5 {
		wg.Go(func() {
			if err := l.AppendBatch(batch); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := l.AppendBatch(nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}
	recs, err := ReadAll(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := 6*len(batch) + 80; len(recs) != want {
		t.Fatalf("records = %d; want %d", len(recs), want)
	}
	for i := 0; i < len(recs); i++ {
		if recs[i].RunID != "b" {
			continue
		}
		for k := range batch {
			if r := recs[i+k]; r.RunID != "b" || r.Target != fmt.Sprint(k) {
				t.Fatalf("record %d: batch line %d is %s/%s: a batch was split or reordered", i+k, k, r.RunID, r.Target)
			}
		}
		i += len(batch) - 1
	}
	if _, err := Verify(path); err != nil {
		t.Errorf("verify: %v", err)
	}
}
