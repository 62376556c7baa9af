// Package audit writes and reads the audit log: JSON Lines, one Record per
// line (design.md "Audit log contract").
//
// Append returns only after the record's line has been written and the file
// fsynced, so the daemon acts only on durable records; it never drops a
// record. Concurrent Appends are safe and their lines never interleave. When
// several goroutines append at once their lines are group-committed: one
// write and one fsync cover the whole batch, and each caller returns after
// the fsync that covers its record.
//
// A failed write or fsync is returned to every caller whose record it
// covered and makes the Log refuse all further appends (a sticky error): it
// is never retried silently, because a partial line may already be on disk
// and the operator has to look. Open a new Log to resume.
package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: log closed")

// Log is an append-only audit log file. Its methods are safe for
// concurrent use.
type Log struct {
	path string
	now  func() time.Time
	sync func(*os.File) error // (*os.File).Sync; replaced in tests

	mu       sync.Mutex
	cond     *sync.Cond // signalled when a flush ends
	f        *os.File
	pending  []byte // lines waiting for the next flush
	spare    []byte // the other buffer, reused between flushes
	queued   uint64 // records handed to Append so far
	durable  uint64 // records covered by a successful fsync
	flushing bool   // a leader is writing outside mu
	closed   bool
	err      error // sticky write or fsync error
}

// Open opens the audit log at path for appending, creating the file (mode
// 0600) and its parent directory (mode 0700) if needed. An existing file
// keeps its mode.
func Open(path string) (*Log, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: create directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	l := &Log{path: path, f: f, now: time.Now, sync: (*os.File).Sync}
	l.cond = sync.NewCond(&l.mu)
	return l, nil
}

// Path returns the path the log was opened with.
func (l *Log) Path() string { return l.path }

// Append writes r as one line and returns after the line is on disk
// (written and fsynced). A zero r.Time is set to the current time. An error
// means the record may not be durable; after a write or fsync error every
// later Append fails with the same error.
func (l *Log) Append(r Record) error {
	if r.Time.IsZero() {
		r.Time = l.now()
	}
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit: encode record: %w", err)
	}
	line = append(line, '\n')

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return ErrClosed
	}
	l.pending = append(l.pending, line...)
	l.queued++
	mine := l.queued
	for {
		if l.durable >= mine {
			return nil
		}
		if l.err != nil {
			return l.err
		}
		if l.flushing {
			l.cond.Wait()
			continue
		}
		l.flushLocked()
	}
}

// flushLocked makes the caller the leader: it writes and fsyncs every
// pending line outside mu, while followers keep queueing for the next
// batch. mu is held on entry and on return.
func (l *Log) flushLocked() {
	buf, upto := l.pending, l.queued
	l.pending, l.spare = l.spare[:0], nil
	l.flushing = true
	l.mu.Unlock()

	_, err := l.f.Write(buf)
	if err != nil {
		err = fmt.Errorf("audit: write %s: %w", l.path, err)
	} else if serr := l.sync(l.f); serr != nil {
		err = fmt.Errorf("audit: fsync %s: %w", l.path, serr)
	}

	l.mu.Lock()
	l.flushing = false
	l.spare = buf[:0]
	if err != nil {
		l.err = err
	} else {
		l.durable = upto
	}
	l.cond.Broadcast()
}

// drainLocked returns when every queued line is durable or the log has
// failed. mu is held on entry and on return.
func (l *Log) drainLocked() {
	for l.err == nil && (l.flushing || l.durable < l.queued) {
		if l.flushing {
			l.cond.Wait()
			continue
		}
		l.flushLocked()
	}
}

// Reopen closes the file and opens path again, for use after logrotate
// moved the file away. Lines already queued are flushed to the old file
// first. It does not clear a sticky error.
func (l *Log) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drainLocked()
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return ErrClosed
	}
	f, err := os.OpenFile(l.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit: reopen: %w", err)
	}
	old := l.f
	l.f = f
	if err := old.Close(); err != nil {
		return fmt.Errorf("audit: close rotated %s: %w", l.path, err)
	}
	return nil
}

// Close flushes the lines of Appends in progress, then closes the file.
// Appends after Close return ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.drainLocked()
	if err := l.f.Close(); err != nil && l.err == nil {
		return fmt.Errorf("audit: close %s: %w", l.path, err)
	}
	return nil
}

// ReadAll reads every record of the log at path, in order. On a malformed
// line it returns the records before it and an error naming the line.
func ReadAll(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	var out []Record
	for r, err := range Records(f) {
		if err != nil {
			return out, fmt.Errorf("audit: %s: %w", path, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Records iterates over the records of a log read from rd. A malformed line
// yields an error naming its line number; iteration may continue past it.
// A read error ends the iteration after yielding it. Blank lines are
// skipped.
func Records(rd io.Reader) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		sc := bufio.NewScanner(rd)
		sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
		n := 0
		for sc.Scan() {
			n++
			b := sc.Bytes()
			if len(b) == 0 {
				continue
			}
			var r Record
			if err := json.Unmarshal(b, &r); err != nil {
				if !yield(Record{}, fmt.Errorf("line %d: %w", n, err)) {
					return
				}
				continue
			}
			if !yield(r, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(Record{}, fmt.Errorf("after line %d: %w", n, err))
		}
	}
}
