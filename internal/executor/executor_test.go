package executor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/vendors"
)

func TestRunID(t *testing.T) {
	tests := []struct {
		job  string
		at   time.Time
		want string
	}{
		{"on", time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC), "on@2026-11-25T09:00:00Z"},
		{"on", time.Date(2026, 11, 25, 10, 0, 0, 0, time.FixedZone("CET", 3600)), "on@2026-11-25T09:00:00Z"},
		{"every", time.Date(2026, 1, 2, 3, 4, 5, 500_000_000, time.UTC), "every@2026-01-02T03:04:05.5Z"},
	}
	for _, tc := range tests {
		if got := RunID(tc.job, tc.at); got != tc.want {
			t.Errorf("RunID(%q, %v) = %q; want %q", tc.job, tc.at, got, tc.want)
		}
	}
}

// TestFireOutcomes covers the retry decisions that need no waiting to be
// observed: each case's attempt outcomes, final outcome and error.
func TestFireOutcomes(t *testing.T) {
	tests := []struct {
		name        string
		steps       []step
		maxAttempts int
		want        string // outcomes of the attempt records
		wantFinal   string
		wantErr     string // substring of the final error ("" = nil)
		wantDetail  string // detail of the last attempt record
		wantStatus  int    // http_status of the last attempt record
		wantReqID   string
	}{
		{
			name:       "success first try",
			steps:      []step{{res: vendors.Result{HTTPStatus: 200, RequestID: "req-ok", VendorCode: "0"}}},
			want:       "success",
			wantFinal:  audit.OutcomeSuccess,
			wantStatus: 200, wantReqID: "req-ok",
		},
		{
			name:       "already in target state",
			steps:      []step{{res: vendors.Result{HTTPStatus: 200, Already: true}}},
			want:       "success",
			wantFinal:  audit.OutcomeSuccess,
			wantDetail: "already in target state",
			wantStatus: 200,
		},
		{
			name:       "transient twice then success",
			steps:      []step{{err: transient(503)}, {err: transient(503)}, {res: vendors.Result{HTTPStatus: 200, RequestID: "req-ok"}}},
			want:       "retry,retry,success",
			wantFinal:  audit.OutcomeSuccess,
			wantStatus: 200, wantReqID: "req-ok",
		},
		{
			name:       "permanent is tried once",
			steps:      []step{{err: permanent()}},
			want:       "failure",
			wantFinal:  audit.OutcomeFailure,
			wantErr:    "HTTP 400 code InvalidParameter",
			wantStatus: 400, wantReqID: "req-400",
		},
		{
			name:      "plain error is permanent",
			steps:     []step{{err: errBoom}},
			want:      "failure",
			wantFinal: audit.OutcomeFailure,
			wantErr:   "disk on fire",
		},
		{
			name:        "max attempts stops",
			steps:       []step{{err: transient(502)}},
			maxAttempts: 3,
			want:        "retry,retry,failure",
			wantFinal:   audit.OutcomeFailure,
			wantErr:     "gave up after 3 attempts",
			wantStatus:  502, wantReqID: "req-fail",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, nil)
				s := &script{steps: tc.steps}
				j := testJob(s.do, "t1")
				if tc.maxAttempts != 0 {
					j.Retry.MaxAttempts = tc.maxAttempts
				}
				out := h.exec.Fire(t.Context(), j, sched, time.Time{})

				attempts := h.aud.records(audit.EventAttempt, "t1")
				if got := outcomes(attempts); got != tc.want {
					t.Fatalf("attempt outcomes = %s; want %s", got, tc.want)
				}
				if len(out.Targets) != 1 {
					t.Fatalf("Outcome.Targets = %d; want 1", len(out.Targets))
				}
				to := out.Targets[0]
				if to.Outcome != tc.wantFinal || to.Attempts != len(attempts) || int(s.calls.Load()) != len(attempts) {
					t.Errorf("target outcome = %s after %d attempts (%d calls); want %s after %d",
						to.Outcome, to.Attempts, s.calls.Load(), tc.wantFinal, len(attempts))
				}
				switch {
				case tc.wantErr == "" && to.Err != nil:
					t.Errorf("Err = %v; want nil", to.Err)
				case tc.wantErr != "" && (to.Err == nil || !strings.Contains(to.Err.Error(), tc.wantErr)):
					t.Errorf("Err = %v; want it to contain %q", to.Err, tc.wantErr)
				}
				if failed := out.Failed(); (len(failed) == 0) != (tc.wantFinal == audit.OutcomeSuccess) {
					t.Errorf("Failed() = %v for final outcome %s", failed, to.Outcome)
				}

				runs := h.aud.records(audit.EventRun, "t1")
				if len(runs) != 1 || runs[0].Detail != "intent; idempotent" {
					t.Errorf("run records = %+v; want one intent record", runs)
				}
				for i, r := range attempts {
					if r.Attempt != i+1 || r.RunID != "notebooks-on@2026-11-25T08:00:00Z" || r.RunID != out.RunID ||
						r.Job != j.Name || r.Action != j.Action || r.Account != j.Account || !r.Scheduled.Equal(sched) {
						t.Errorf("attempt record %d = %+v; want attempt %d of run %s", i, r, i+1, out.RunID)
					}
					if r.Outcome != audit.OutcomeSuccess && r.Error == "" {
						t.Errorf("attempt record %d has outcome %s and no error", i, r.Outcome)
					}
				}
				last := attempts[len(attempts)-1]
				if last.Detail != tc.wantDetail || last.HTTPStatus != tc.wantStatus || last.RequestID != tc.wantReqID {
					t.Errorf("last record detail, http_status, request_id = %q, %d, %q; want %q, %d, %q",
						last.Detail, last.HTTPStatus, last.RequestID, tc.wantDetail, tc.wantStatus, tc.wantReqID)
				}
				if tc.wantErr != "" && !strings.Contains(last.Error, tc.wantErr) {
					t.Errorf("last record error = %q; want it to contain %q", last.Error, tc.wantErr)
				}

				warns := h.logs.lines(t, "warn")
				if want := strings.Count(tc.want, "retry"); len(warns) != want {
					t.Errorf("warn log lines = %d; want %d (one per retry)", len(warns), want)
				}
				for _, w := range warns {
					if w["component"] != "executor" || w["job"] != j.Name || w["target"] != "t1" || w["attempt"] == nil || w["wait_ms"] == nil {
						t.Errorf("retry log line %v lacks component, job, target, attempt or wait", w)
					}
				}
				level := "info"
				if tc.wantFinal != audit.OutcomeSuccess {
					level = "error"
				}
				if n := len(h.logs.lines(t, level)); n != 1 {
					t.Errorf("%s log lines = %d; want 1", level, n)
				}
			})
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		hinted := &vendors.Error{Op: "test", Transient: true, HTTPStatus: 429, RetryAfter: 7 * time.Second}
		s := &script{steps: []step{{err: hinted}, {res: vendors.Result{HTTPStatus: 200}}}}
		out := h.exec.Fire(t.Context(), testJob(s.do, "t1"), sched, time.Time{})
		if out.Targets[0].Outcome != audit.OutcomeSuccess {
			t.Fatalf("outcome = %+v; want success", out.Targets[0])
		}
		times := s.callTimes()
		if len(times) != 2 {
			t.Fatalf("calls = %d; want 2", len(times))
		}
		if gap := times[1].Sub(times[0]); gap < 7*time.Second {
			t.Errorf("wait after Retry-After 7s = %v; want >= 7s", gap)
		}
	})
}

func TestRetryBudget(t *testing.T) {
	tests := []struct {
		name         string
		err          error
		retry        RetryPolicy
		deadline     time.Duration // from the start; 0 = none
		wantMsg      string
		wantAttempts int // 0 = at least 2
		maxElapsed   time.Duration
	}{
		{
			name:     "next fire stops retries",
			err:      transient(503),
			retry:    RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Second},
			deadline: 5 * time.Second,
			wantMsg:  "retry budget exhausted before next fire",
		},
		{
			name:         "retry-after past next fire stops now",
			err:          &vendors.Error{Op: "test", Transient: true, HTTPStatus: 429, RetryAfter: time.Hour},
			retry:        RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Second},
			deadline:     10 * time.Minute,
			wantMsg:      "retry budget exhausted before next fire",
			wantAttempts: 1,
		},
		{
			name:       "max elapsed",
			err:        transient(503),
			retry:      RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Second, MaxElapsed: 4 * time.Second},
			wantMsg:    "max_elapsed 4s",
			maxElapsed: 4 * time.Second,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, nil)
				s := &script{steps: []step{{err: tc.err}}}
				j := testJob(s.do, "t1")
				j.Retry = tc.retry
				start := time.Now()
				var deadline time.Time
				if tc.deadline != 0 {
					deadline = start.Add(tc.deadline)
				}
				out := h.exec.Fire(t.Context(), j, sched, deadline)
				took := time.Since(start)

				to := out.Targets[0]
				if to.Outcome != audit.OutcomeFailure || !errors.Is(to.Err, ErrRetryBudget) || !strings.Contains(to.Err.Error(), tc.wantMsg) {
					t.Fatalf("outcome = %s, %v; want failure wrapping ErrRetryBudget, containing %q", to.Outcome, to.Err, tc.wantMsg)
				}
				switch {
				case tc.wantAttempts != 0 && to.Attempts != tc.wantAttempts:
					t.Errorf("attempts = %d; want %d", to.Attempts, tc.wantAttempts)
				case tc.wantAttempts == 0 && to.Attempts < 2:
					t.Errorf("attempts = %d; want retries before the budget ran out", to.Attempts)
				}
				if tc.wantAttempts == 1 && took != 0 {
					t.Errorf("Fire took %v; want it to stop at once", took)
				}
				for _, at := range s.callTimes() {
					if !deadline.IsZero() && !at.Before(deadline) {
						t.Errorf("attempt at %v; deadline %v", at, deadline)
					}
				}
				if !deadline.IsZero() && !start.Add(took).Before(deadline) {
					t.Errorf("Fire returned at +%v; want before the next fire at +%v", took, tc.deadline)
				}
				if tc.maxElapsed != 0 && took > tc.maxElapsed {
					t.Errorf("Fire took %v; want <= max_elapsed %v", took, tc.maxElapsed)
				}
				recs := h.aud.records(audit.EventAttempt, "t1")
				if last := recs[len(recs)-1]; last.Outcome != audit.OutcomeFailure || !strings.Contains(last.Error, tc.wantMsg) {
					t.Errorf("last record = %s %q; want failure containing %q", last.Outcome, last.Error, tc.wantMsg)
				}
			})
		})
	}
}

func TestAttemptTimeout(t *testing.T) {
	tests := []struct {
		name    string
		onCtx   func(ctx context.Context) error
		wantErr error
	}{
		{"action returns ctx error", func(ctx context.Context) error { return ctx.Err() }, context.DeadlineExceeded},
		{"action returns a plain error", func(ctx context.Context) error { return errBoom }, errBoom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, nil)
				var calls atomic.Int32
				hang := func(ctx context.Context, target string) (vendors.Result, error) {
					calls.Add(1)
					<-ctx.Done()
					return vendors.Result{}, tc.onCtx(ctx)
				}
				j := testJob(hang, "t1")
				j.Timeout = 2 * time.Second
				j.Retry.MaxAttempts = 2
				out := h.exec.Fire(t.Context(), j, sched, time.Time{})
				to := out.Targets[0]
				if calls.Load() != 2 || to.Outcome != audit.OutcomeFailure {
					t.Fatalf("calls = %d, outcome %s; want 2 calls (timeout is transient), failure", calls.Load(), to.Outcome)
				}
				if !vendors.IsTransient(errors.Unwrap(to.Err)) || !errors.Is(to.Err, tc.wantErr) ||
					!strings.Contains(to.Err.Error(), "timed out after 2s") {
					t.Errorf("Err = %v; want a transient timeout wrapping %v", to.Err, tc.wantErr)
				}
				recs := h.aud.records(audit.EventAttempt, "t1")
				if got := outcomes(recs); got != "retry,failure" {
					t.Errorf("outcomes = %s; want retry,failure", got)
				}
				for _, r := range recs {
					if r.DurationMS != 2000 {
						t.Errorf("duration_ms = %d; want 2000", r.DurationMS)
					}
				}
			})
		})
	}
}

// TestAccountConcurrency fires two jobs of one account and one of another at
// once, and measures calls in flight per account.
func TestAccountConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, map[string]int{"limited": 2})
		var mu sync.Mutex
		cur, peak := map[string]int{}, map[string]int{}
		var otherStart time.Time
		start := time.Now()
		action := func(account string) Action {
			return func(ctx context.Context, target string) (vendors.Result, error) {
				mu.Lock()
				cur[account]++
				peak[account] = max(peak[account], cur[account])
				if account == "other" {
					otherStart = time.Now()
				}
				mu.Unlock()
				time.Sleep(time.Second)
				mu.Lock()
				cur[account]--
				mu.Unlock()
				return vendors.Result{HTTPStatus: 200}, nil
			}
		}
		jobs := []*Job{
			{Name: "a1", Account: "limited", Targets: []string{"x", "y", "z"}, Do: action("limited")},
			{Name: "a2", Account: "limited", Targets: []string{"x", "y", "z"}, Do: action("limited")},
			{Name: "b", Account: "other", Targets: []string{"x", "y", "z"}, Do: action("other")},
		}
		var wg sync.WaitGroup
		outs := make([]Outcome, len(jobs))
		for i, j := range jobs {
			wg.Go(func() { outs[i] = h.exec.Fire(t.Context(), j, sched, time.Time{}) })
		}
		wg.Wait()
		for i, o := range outs {
			if f := o.Failed(); len(f) != 0 {
				t.Errorf("job %s failed: %+v", jobs[i].Name, f)
			}
		}
		if peak["limited"] != 2 {
			t.Errorf("peak calls in flight for account limited = %d; want 2 (the limit)", peak["limited"])
		}
		if peak["other"] != 3 {
			t.Errorf("peak calls in flight for account other = %d; want 3 (default limit 8)", peak["other"])
		}
		if !otherStart.Equal(start) {
			t.Errorf("account other started at +%v; want +0 (not blocked by account limited)", otherStart.Sub(start))
		}
		if took := time.Since(start); took != 3*time.Second {
			t.Errorf("6 one-second calls at 2 in flight took %v; want 3s", took)
		}
	})
}

func TestParallelTargets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		slow := func(ctx context.Context, target string) (vendors.Result, error) {
			time.Sleep(time.Second)
			if target == "bad" {
				return vendors.Result{}, permanent()
			}
			return vendors.Result{RequestID: "req-" + target}, nil
		}
		targets := []string{"t1", "t2", "bad", "t4", "t5"}
		start := time.Now()
		out := h.exec.Fire(t.Context(), testJob(slow, targets...), sched, time.Time{})
		if took := time.Since(start); took != time.Second {
			t.Errorf("5 targets of 1s each took %v; want 1s (in parallel)", took)
		}
		for i, to := range out.Targets {
			want := audit.OutcomeSuccess
			if targets[i] == "bad" {
				want = audit.OutcomeFailure
			}
			if to.Target != targets[i] || to.Outcome != want {
				t.Errorf("Targets[%d] = %s %s; want %s %s", i, to.Target, to.Outcome, targets[i], want)
			}
		}
		if f := out.Failed(); len(f) != 1 || f[0].Target != "bad" {
			t.Errorf("Failed() = %+v; want only target bad", f)
		}
		if n := len(h.aud.records(audit.EventAttempt, "")); n != 5 {
			t.Errorf("attempt records = %d; want 5", n)
		}
	})
}

// gate is an Action that blocks until released and counts calls in flight.
type gate struct {
	release  chan struct{}
	inFlight atomic.Int32
	calls    atomic.Int32
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) do(ctx context.Context, target string) (vendors.Result, error) {
	g.calls.Add(1)
	g.inFlight.Add(1)
	defer g.inFlight.Add(-1)
	select {
	case <-g.release:
		return vendors.Result{HTTPStatus: 200}, nil
	case <-ctx.Done():
		return vendors.Result{}, ctx.Err()
	}
}

func TestOverlap(t *testing.T) {
	s1, s2, s3 := sched, sched.Add(time.Minute), sched.Add(2*time.Minute)

	t.Run("skip", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, nil)
			g := newGate()
			j := testJob(g.do, "t1", "t2")
			j.Overlap = OverlapSkip
			done := make(chan Outcome)
			go func() { done <- h.exec.Fire(t.Context(), j, s1, time.Time{}) }()
			synctest.Wait()
			out := h.exec.Fire(t.Context(), j, s2, time.Time{})
			if !out.Skipped || len(out.Failed()) != 2 || out.Targets[0].Outcome != audit.OutcomeSkipped {
				t.Fatalf("second fire = %+v; want skipped for both targets", out)
			}
			skips := h.aud.records(audit.EventSkip, "")
			if len(skips) != 2 {
				t.Fatalf("skip records = %d; want 2 (one per target)", len(skips))
			}
			for _, r := range skips {
				if r.Outcome != audit.OutcomeSkipped || r.RunID != RunID(j.Name, s2) || !strings.Contains(r.Detail, RunID(j.Name, s1)) {
					t.Errorf("skip record = %+v; want outcome skipped, run %s, detail naming %s", r, RunID(j.Name, s2), RunID(j.Name, s1))
				}
			}
			close(g.release)
			if first := <-done; len(first.Failed()) != 0 {
				t.Errorf("first fire failed: %+v", first.Failed())
			}
			if g.calls.Load() != 2 {
				t.Errorf("vendor calls = %d; want 2 (first fire only)", g.calls.Load())
			}
			// Once the first fire is over, the next one runs.
			if out := h.exec.Fire(t.Context(), j, s3, time.Time{}); out.Skipped || len(out.Failed()) != 0 {
				t.Errorf("fire after the first ended = %+v; want it to run", out)
			}
		})
	})

	t.Run("queue", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, nil)
			g := newGate()
			j := testJob(g.do, "t1")
			j.Overlap = OverlapQueue
			var wg sync.WaitGroup
			outs := make([]Outcome, 2)
			wg.Go(func() { outs[0] = h.exec.Fire(t.Context(), j, s1, time.Time{}) })
			synctest.Wait()
			wg.Go(func() { outs[1] = h.exec.Fire(t.Context(), j, s2, time.Time{}) })
			synctest.Wait()
			if g.calls.Load() != 1 {
				t.Fatalf("calls while the second fire is queued = %d; want 1", g.calls.Load())
			}
			third := h.exec.Fire(t.Context(), j, s3, time.Time{})
			if !third.Skipped {
				t.Fatalf("third fire = %+v; want skipped (one already queued)", third)
			}
			if skips := h.aud.records(audit.EventSkip, ""); len(skips) != 1 || !strings.Contains(skips[0].Detail, "queued") ||
				skips[0].RunID != RunID(j.Name, s3) {
				t.Errorf("skip records = %+v; want one for the third fire saying a fire is queued", skips)
			}
			close(g.release)
			wg.Wait()
			for i, o := range outs {
				if o.Skipped || len(o.Failed()) != 0 {
					t.Errorf("fire %d = %+v; want success", i+1, o)
				}
			}
			if g.inFlight.Load() != 0 || g.calls.Load() != 2 {
				t.Errorf("calls = %d; want 2", g.calls.Load())
			}
			var order []string
			for _, r := range h.aud.records("", "t1") {
				if r.Event != audit.EventSkip {
					order = append(order, r.Event+" "+r.RunID)
				}
			}
			want := []string{"run " + RunID(j.Name, s1), "attempt " + RunID(j.Name, s1), "run " + RunID(j.Name, s2), "attempt " + RunID(j.Name, s2)}
			if !slices.Equal(order, want) {
				t.Errorf("record order = %q; want %q (queued fire after the first)", order, want)
			}
		})
	})

	t.Run("queue gives up at its deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, nil)
			g := newGate()
			j := testJob(g.do, "t1")
			j.Overlap = OverlapQueue
			j.Timeout = 0 // the first fire runs until released
			go h.exec.Fire(t.Context(), j, s1, time.Time{})
			synctest.Wait()
			out := h.exec.Fire(t.Context(), j, s2, time.Now().Add(time.Minute))
			if !out.Skipped {
				t.Fatalf("queued fire past its deadline = %+v; want skipped", out)
			}
			if skips := h.aud.records(audit.EventSkip, ""); len(skips) != 1 || !strings.Contains(skips[0].Detail, "gave up") {
				t.Errorf("skip records = %+v; want one saying the queued fire gave up", skips)
			}
			close(g.release)
		})
	})

	t.Run("allow", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, nil)
			g := newGate()
			j := testJob(g.do, "t1")
			j.Overlap = OverlapAllow
			var wg sync.WaitGroup
			for _, s := range []time.Time{s1, s2} {
				wg.Go(func() { h.exec.Fire(t.Context(), j, s, time.Time{}) })
			}
			synctest.Wait()
			if n := g.inFlight.Load(); n != 2 {
				t.Errorf("calls in flight = %d; want 2 (fires run concurrently)", n)
			}
			close(g.release)
			wg.Wait()
		})
	})
}

func TestAuditFailureStopsVendorCalls(t *testing.T) {
	tests := []struct {
		name      string
		fail      func(audit.Record) error
		steps     []step
		wantCalls int32
	}{
		{
			name:      "intent record fails",
			fail:      func(audit.Record) error { return errBoom },
			steps:     []step{{res: vendors.Result{HTTPStatus: 200}}},
			wantCalls: 0,
		},
		{
			name: "retry record fails",
			fail: func(r audit.Record) error {
				if r.Event == audit.EventAttempt {
					return errBoom
				}
				return nil
			},
			steps:     []step{{err: transient(503)}, {res: vendors.Result{HTTPStatus: 200}}},
			wantCalls: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, nil)
				h.aud.fail = tc.fail
				s := &script{steps: tc.steps}
				out := h.exec.Fire(t.Context(), testJob(s.do, "t1", "t2", "t3"), sched, time.Time{})
				// Targets that started before the failure may each have made
				// one call; none goes on after its own record failed.
				if got := s.calls.Load(); got > tc.wantCalls*3 {
					t.Errorf("vendor calls = %d; want at most %d", got, tc.wantCalls*3)
				}
				if tc.wantCalls == 0 && s.calls.Load() != 0 {
					t.Errorf("vendor calls = %d; want 0 when no record can be written", s.calls.Load())
				}
				for _, to := range out.Targets {
					if to.Outcome != audit.OutcomeFailure || !errors.Is(to.Err, ErrAudit) {
						t.Errorf("target %s = %s, %v; want failure wrapping ErrAudit", to.Target, to.Outcome, to.Err)
					}
					if to.Attempts > int(tc.wantCalls) {
						t.Errorf("target %s made %d attempts; want at most %d", to.Target, to.Attempts, tc.wantCalls)
					}
				}
				errs := h.logs.lines(t, "error")
				if len(errs) == 0 || !strings.Contains(fmt.Sprint(errs[0]["error"]), "disk on fire") {
					t.Errorf("error logs = %v; want the audit failure logged at error level", errs)
				}
			})
		})
	}
}

func TestWaitAndRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		if err := h.exec.Wait(t.Context()); err != nil {
			t.Fatalf("Wait with nothing running = %v; want nil", err)
		}
		g := newGate()
		go h.exec.Fire(t.Context(), testJob(g.do, "t2", "t1"), sched, time.Time{})
		synctest.Wait()
		want := []string{"notebooks-on t1", "notebooks-on t2"}
		if got := h.exec.Running(); !slices.Equal(got, want) {
			t.Errorf("Running() = %q; want %q", got, want)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		err := h.exec.Wait(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "notebooks-on t1") {
			t.Errorf("Wait past its deadline = %v; want DeadlineExceeded naming notebooks-on t1", err)
		}
		close(g.release)
		if err := h.exec.Wait(t.Context()); err != nil {
			t.Errorf("Wait after the fire ended = %v; want nil", err)
		}
		if got := h.exec.Running(); len(got) != 0 {
			t.Errorf("Running() after the fire = %q; want none", got)
		}
	})
}

func TestCancelledDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		s := &script{steps: []step{{err: transient(503)}}}
		j := testJob(s.do, "t1")
		j.Retry.InitialInterval, j.Retry.MaxInterval = 10*time.Second, 10*time.Second
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		out := h.exec.Fire(ctx, j, sched, time.Time{})
		if to := out.Targets[0]; to.Outcome != audit.OutcomeFailure || !errors.Is(to.Err, context.Canceled) || to.Attempts != 1 {
			t.Errorf("target = %+v; want failure after 1 attempt, wrapping context.Canceled", to)
		}
		ab := h.aud.records(audit.EventAbandon, "t1")
		if len(ab) != 1 || ab[0].Outcome != audit.OutcomeFailure || ab[0].Attempt != 1 {
			t.Errorf("abandon records = %+v; want one failure after attempt 1", ab)
		}
	})
}

// TestWithAuditLog runs a fire against a real audit file and checks what a
// reader of the file sees.
func TestWithAuditLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	log, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	fixed := time.Date(2026, 11, 25, 8, 0, 1, 0, time.UTC)
	e := New(Options{Log: zerolog.Nop(), Audit: log, Now: func() time.Time { return fixed }})
	s := &script{steps: []step{{err: transient(503)}, {res: vendors.Result{HTTPStatus: 200, RequestID: "req-ok"}}}}
	j := testJob(s.do, "t1")
	j.Retry.InitialInterval, j.Retry.MaxInterval = time.Millisecond, time.Millisecond
	out := e.Fire(t.Context(), j, sched, time.Time{})
	if len(out.Failed()) != 0 {
		t.Fatalf("Failed() = %+v", out.Failed())
	}
	recs, err := audit.ReadAll(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s/%d/%s/%d/%s", r.Event, r.Attempt, r.Outcome, r.HTTPStatus, r.RequestID))
		if !r.Time.Equal(fixed) || r.RunID != "notebooks-on@2026-11-25T08:00:00Z" || r.Target != "t1" {
			t.Errorf("record %+v: want time %v, run_id notebooks-on@2026-11-25T08:00:00Z, target t1", r, fixed)
		}
	}
	want := []string{"run/0//0/", "attempt/1/retry/503/req-fail", "attempt/2/success/200/req-ok"}
	if !slices.Equal(got, want) {
		t.Errorf("records = %q; want %q", got, want)
	}
}

func TestDeadlineDuringAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		g := newGate()
		j := testJob(g.do, "t1")
		j.Timeout = 0
		start := time.Now()
		out := h.exec.Fire(t.Context(), j, sched, start.Add(3*time.Second))
		if took := time.Since(start); took != 3*time.Second {
			t.Errorf("Fire took %v; want 3s (stopped at the next fire)", took)
		}
		to := out.Targets[0]
		if to.Outcome != audit.OutcomeFailure || to.Attempts != 1 || !strings.Contains(to.Err.Error(), "stopped at the next fire") {
			t.Errorf("target = %s after %d attempts, %v; want failure after 1, stopped at the next fire", to.Outcome, to.Attempts, to.Err)
		}
		if got := outcomes(h.aud.records(audit.EventAttempt, "t1")); got != "failure" {
			t.Errorf("attempt outcomes = %s; want failure", got)
		}
	})
}

// A restart cut off by the next fire while its request was on the wire may
// have happened: it is audited unknown, not failure, and not re-issued.
func TestDeadlineDuringNonIdempotentAttemptIsUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		var calls atomic.Int32
		j := testJob(func(ctx context.Context, target string) (vendors.Result, error) {
			calls.Add(1)
			<-ctx.Done() // the request went out; no answer before the deadline
			return vendors.Result{}, vendors.TransportError("test: restart t1", ctx.Err())
		}, "t1")
		j.Action, j.Idempotent, j.Timeout = "cdss.cmak.restart", false, 0
		out := h.exec.Fire(t.Context(), j, sched, time.Now().Add(3*time.Second))
		to := out.Targets[0]
		if to.Outcome != audit.OutcomeUnknown || calls.Load() != 1 {
			t.Fatalf("target = %s after %d calls; want unknown after exactly 1", to.Outcome, calls.Load())
		}
		recs := h.aud.records(audit.EventAttempt, "t1")
		if got := outcomes(recs); got != "unknown" || !strings.Contains(recs[0].Detail, "may have reached the vendor") {
			t.Errorf("attempt outcomes = %s, detail %q; want unknown saying the request may have reached the vendor", got, recs[0].Detail)
		}
	})
}

// A late fire bounded by the next fire is being stopped when that next
// fire comes: the next fire waits for it to end instead of being skipped
// behind a run that is already over.
func TestOverlapSkipDoesNotSkipBehindAnEndingFire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		var calls atomic.Int32
		j := testJob(func(ctx context.Context, target string) (vendors.Result, error) {
			if calls.Add(1) == 1 {
				<-ctx.Done() // the late fire hangs until its deadline
				time.Sleep(50 * time.Millisecond)
				return vendors.Result{}, ctx.Err()
			}
			return vendors.Result{HTTPStatus: 200}, nil
		}, "t1")
		j.Overlap, j.Timeout = OverlapSkip, 0
		next := time.Now().Add(time.Second)
		done := make(chan Outcome)
		go func() { done <- h.exec.Fire(t.Context(), j, sched, next) }()
		time.Sleep(time.Second) // the next fire comes exactly at the first one's deadline
		out := h.exec.Fire(t.Context(), j, sched.Add(time.Minute), next.Add(time.Minute))
		<-done
		if out.Skipped || len(out.Failed()) != 0 {
			t.Fatalf("next fire = %+v; want it to run after the ending fire, not skipped", out)
		}
		if n := len(h.aud.records(audit.EventSkip, "")); n != 0 {
			t.Errorf("%d skip records; want none", n)
		}
	})
}
