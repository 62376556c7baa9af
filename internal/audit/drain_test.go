package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// holdFirstSync makes l's first fsync wait until release is closed; first
// is closed when it starts.
func holdFirstSync(l *Log) (first, release chan struct{}) {
	first, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	l.sync = func(f *os.File) error {
		held := false
		once.Do(func() { held = true })
		if held {
			close(first)
			<-release
		}
		return f.Sync()
	}
	return first, release
}

// waitLog polls cond under l.mu until it holds.
func waitLog(t *testing.T, l *Log, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		l.mu.Lock()
		ok := cond()
		l.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCloseDrainsQueuedAppends: Close called while a batch is being
// fsynced and more appends wait for the next one returns only once all of
// them are durable; none of them fails.
func TestCloseDrainsQueuedAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	first, release := holdFirstSync(l)
	const followers = 5
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := l.Append(Record{Event: EventAttempt, Target: "leader"}); err != nil {
			t.Errorf("leader: %v", err)
		}
	})
	<-first
	for i := range followers {
		wg.Go(func() {
			if err := l.Append(Record{Event: EventAttempt, Target: fmt.Sprint("f", i)}); err != nil {
				t.Errorf("follower %d: %v", i, err)
			}
		})
	}
	waitLog(t, l, "the followers to queue", func() bool { return l.queued == followers+1 })
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	waitLog(t, l, "Close to start", func() bool { return l.closed })
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a batch was still being written", err)
	default:
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close has returned: every queued record is on disk already.
	recs, err := ReadAll(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != followers+1 {
		t.Errorf("%d records on disk when Close returned; want %d", len(recs), followers+1)
	}
	wg.Wait()
	if err := l.Append(Record{Event: EventAttempt}); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v; want ErrClosed", err)
	}
}

// TestReopenDrainsThenFollowsMovedFile: after logrotate moved the file,
// Reopen returns once the queued records are durable, and the live file
// exists again at path before the next append; the chain continues across
// the two files.
func TestReopenDrainsThenFollowsMovedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	appendN(t, l, 1, 2)
	first, release := holdFirstSync(l)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := l.Append(Record{Event: EventAttempt, Target: "q1"}); err != nil {
			t.Errorf("q1: %v", err)
		}
	})
	<-first
	if err := os.Rename(path, path+".1"); err != nil { // logrotate's move
		t.Fatal(err)
	}
	wg.Go(func() {
		if err := l.Append(Record{Event: EventAttempt, Target: "q2"}); err != nil {
			t.Errorf("q2: %v", err)
		}
	})
	waitLog(t, l, "q2 to queue", func() bool { return l.queued == 4 })
	reopened := make(chan error, 1)
	go func() { reopened <- l.Reopen() }()
	close(release)
	if err := <-reopened; err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	// Reopen has returned: q1 and q2 are durable, and the live file is at
	// path, whether or not q2 had to create it.
	rep, err := Verify(path)
	if err != nil || rep.Records != 4 {
		t.Fatalf("Verify after Reopen = %+v, %v; want 4 records", rep, err)
	}
	wg.Wait()
	appendN(t, l, 5, 1)
	if rep, err := Verify(path); err != nil || rep.Records != 5 || len(rep.Files) != 2 || rep.LastSeq != 5 {
		t.Errorf("Verify = %+v, %v; want 5 records up to seq 5 in 2 files", rep, err)
	}
}

// TestReopenOpensTheNewLiveFile: with nothing queued, Reopen after a move
// makes the log write to a new file at path at once.
func TestReopenOpensTheNewLiveFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	appendN(t, l, 1, 2)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no live file at %s after Reopen: %v", path, err)
	}
	l.mu.Lock()
	cur, err := l.f.Stat()
	l.mu.Unlock()
	if err != nil || !os.SameFile(fi, cur) {
		t.Fatalf("after Reopen the log writes to another file than %s (%v)", path, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); !errors.Is(err, ErrClosed) {
		t.Errorf("Reopen after Close: %v; want ErrClosed", err)
	}
}
