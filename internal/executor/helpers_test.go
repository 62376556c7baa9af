package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/vendors"
)

// memAuditor keeps records in memory; fail, if set, decides whether an
// Append fails (the record is then not kept).
type memAuditor struct {
	mu   sync.Mutex
	recs []audit.Record
	fail func(audit.Record) error
}

func (a *memAuditor) Append(r audit.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		if err := a.fail(r); err != nil {
			return err
		}
	}
	a.recs = append(a.recs, r)
	return nil
}

// records returns the records of event (all if ""), for target (all if "").
func (a *memAuditor) records(event, target string) []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Record
	for _, r := range a.recs {
		if (event == "" || r.Event == event) && (target == "" || r.Target == target) {
			out = append(out, r)
		}
	}
	return out
}

func outcomes(recs []audit.Record) string {
	var s []string
	for _, r := range recs {
		s = append(s, r.Outcome)
	}
	return strings.Join(s, ",")
}

// logBuffer is a goroutine-safe log sink whose lines decode as JSON.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the decoded log lines at level (all if "").
func (b *logBuffer) lines(t *testing.T, level string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if level == "" || m["level"] == level {
			out = append(out, m)
		}
	}
	return out
}

type harness struct {
	exec *Executor
	aud  *memAuditor
	logs *logBuffer
}

func newHarness(t *testing.T, concurrency map[string]int) *harness {
	t.Helper()
	h := &harness{aud: &memAuditor{}, logs: &logBuffer{}}
	opts := Options{Log: zerolog.New(h.logs), Audit: h.aud}
	if concurrency != nil {
		opts.Concurrency = func(account string) int { return concurrency[account] }
	}
	h.exec = New(opts)
	return h
}

// script returns an Action that returns steps[i] on its i-th call (the
// last step repeats) and counts calls.
type step struct {
	res vendors.Result
	err error
}

type script struct {
	steps []step
	calls atomic.Int32
	mu    sync.Mutex
	times []time.Time // time.Now() of each call
}

func (s *script) do(ctx context.Context, target string) (vendors.Result, error) {
	n := int(s.calls.Add(1))
	s.mu.Lock()
	s.times = append(s.times, time.Now())
	s.mu.Unlock()
	st := s.steps[min(n, len(s.steps))-1]
	return st.res, st.err
}

func (s *script) callTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.times...)
}

func transient(status int) error {
	return &vendors.Error{Op: "test: start t1", Transient: true, HTTPStatus: status, VendorCode: "E503", RequestID: "req-fail"}
}

func permanent() error {
	return &vendors.Error{Op: "test: start t1", HTTPStatus: 400, VendorCode: "InvalidParameter", RequestID: "req-400"}
}

var errBoom = errors.New("disk on fire")

func testJob(do Action, targets ...string) *Job {
	return &Job{
		Name:    "notebooks-on",
		Action:  "modelarts.notebook.start",
		Account: "otc-dev",
		Targets: targets,
		Do:      do,
		Timeout: 5 * time.Second,
		Retry: RetryPolicy{
			InitialInterval: 100 * time.Millisecond,
			MaxInterval:     time.Second,
			MaxElapsed:      time.Minute,
			MaxAttempts:     5,
		},
		Overlap:    OverlapSkip,
		Idempotent: true,
	}
}

var sched = time.Date(2026, 11, 25, 9, 0, 0, 0, time.FixedZone("CET", 3600))
