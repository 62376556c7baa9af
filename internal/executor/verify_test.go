package executor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/ratelimit"
	"github.com/cloudcron/scheduler/internal/vendors"
)

// reads is a scripted status read: the i-th call returns states[i] (the
// last repeats), or errs[i] when set; it records when each read happened.
type reads struct {
	states []string
	errs   map[int]error
	mu     sync.Mutex
	at     []time.Time
}

func (r *reads) status(ctx context.Context, target string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := len(r.at)
	r.at = append(r.at, time.Now())
	if err := r.errs[i]; err != nil {
		return "", err
	}
	return r.states[min(i, len(r.states)-1)], nil
}

func (r *reads) times() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.at...)
}

// startJudge is ModelArts start's judge.
func startJudge(s string) Verdict {
	switch s {
	case "RUNNING":
		return Reached
	case "STARTING":
		return Pending
	case "START_FAILED", "ERROR":
		return Failed
	}
	return Unknown
}

func ok200(context.Context, string) (vendors.Result, error) {
	return vendors.Result{HTTPStatus: 200}, nil
}

func TestVerifyOutcomes(t *testing.T) {
	tests := []struct {
		name        string
		states      []string
		errs        map[int]error
		noStatus    bool
		already     bool
		timeout     time.Duration
		wantVerify  string
		wantOutcome string
		wantPolls   int
		wantDetail  string // substring of the verify record's detail
		wantError   string // substring of the verify record's error
	}{
		{
			name: "several polls to RUNNING", states: []string{"STARTING", "STARTING", "STARTING", "RUNNING"},
			wantVerify: audit.OutcomeVerified, wantOutcome: audit.OutcomeSuccess, wantPolls: 4,
			wantDetail: "state RUNNING after 4 polls",
		},
		{
			name: "fails to start", states: []string{"STARTING", "START_FAILED"},
			wantVerify: audit.OutcomeVerifyFailed, wantOutcome: audit.OutcomeVerifyFailed, wantPolls: 2,
			wantDetail: "state START_FAILED (want RUNNING)",
		},
		{
			name: "unknown value polled until timeout", states: []string{"HIBERNATING"}, timeout: 20 * time.Second,
			wantVerify: audit.OutcomeVerifyFailed, wantOutcome: audit.OutcomeVerifyFailed, wantPolls: 4,
			wantDetail: `stopped at verify_timeout 20s after 4 polls; last state "HIBERNATING"`,
		},
		{
			name: "transient read error is polled through", states: []string{"STARTING", "STARTING", "RUNNING"},
			errs:       map[int]error{1: transient(503)},
			wantVerify: audit.OutcomeVerified, wantOutcome: audit.OutcomeSuccess, wantPolls: 3,
		},
		{
			name: "permanent read error", states: []string{"STARTING"}, errs: map[int]error{1: permanent()},
			wantVerify: audit.OutcomeVerifyFailed, wantOutcome: audit.OutcomeVerifyFailed, wantPolls: 2,
			wantDetail: `status read failed after 2 polls; last state "STARTING"`, wantError: "HTTP 400 code InvalidParameter",
		},
		{
			name: "already running is read at once", states: []string{"RUNNING"}, already: true,
			wantVerify: audit.OutcomeVerified, wantOutcome: audit.OutcomeSuccess, wantPolls: 1,
		},
		{
			name: "no documented status read", noStatus: true,
			wantVerify: audit.OutcomeUnverified, wantOutcome: audit.OutcomeSuccess, wantPolls: 0,
			wantDetail: "documents no status read",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, nil)
				r := &reads{states: tc.states, errs: tc.errs}
				do := ok200
				if tc.already {
					do = func(context.Context, string) (vendors.Result, error) {
						return vendors.Result{HTTPStatus: 400, VendorCode: "ModelArts.6305", Already: true}, nil
					}
				}
				j := testJob(do, "nb1")
				j.Verify = &Verifier{Status: r.status, Judge: startJudge, Want: "RUNNING", Timeout: tc.timeout}
				if tc.noStatus {
					j.Verify.Status = nil
				}
				start := time.Now()
				out := h.exec.Fire(t.Context(), j, sched, time.Time{})
				to := out.Targets[0]
				if to.Verify != tc.wantVerify || to.Outcome != tc.wantOutcome {
					t.Fatalf("verify %q outcome %q (err %v); want %q, %q", to.Verify, to.Outcome, to.Err, tc.wantVerify, tc.wantOutcome)
				}
				if failed := len(out.Failed()) == 1; failed != (tc.wantOutcome != audit.OutcomeSuccess) {
					t.Errorf("Failed() = %v; want the target listed only when the outcome is not success", out.Failed())
				}
				if n := len(r.times()); n != tc.wantPolls {
					t.Errorf("status reads = %d; want %d", n, tc.wantPolls)
				}
				recs := h.aud.records(audit.EventVerify, "nb1")
				if len(recs) != 1 {
					t.Fatalf("verify records = %d; want 1", len(recs))
				}
				rec := recs[0]
				if rec.Outcome != tc.wantVerify || !strings.Contains(rec.Detail, tc.wantDetail) || !strings.Contains(rec.Error, tc.wantError) {
					t.Errorf("verify record outcome %q detail %q error %q; want %q, detail ~%q, error ~%q",
						rec.Outcome, rec.Detail, rec.Error, tc.wantVerify, tc.wantDetail, tc.wantError)
				}
				if rec.RunID != out.RunID || rec.Action != j.Action || rec.Account != j.Account {
					t.Errorf("verify record not tied to the run: %+v", rec)
				}
				if tc.timeout > 0 {
					if took := time.Since(start); took < tc.timeout || took > tc.timeout+time.Second {
						t.Errorf("verify took %s; want about the timeout %s", took, tc.timeout)
					}
				}
			})
		})
	}
}

// TestVerifyPollBackoff checks the waits between polls: ~1s doubling,
// capped at 15s, each within ±20% jitter.
func TestVerifyPollBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		r := &reads{states: []string{"STARTING", "STARTING", "STARTING", "STARTING", "STARTING", "STARTING", "RUNNING"}}
		j := testJob(ok200, "nb1")
		j.Verify = &Verifier{Status: r.status, Judge: startJudge, Want: "RUNNING"}
		start := time.Now()
		out := h.exec.Fire(t.Context(), j, sched, time.Time{})
		if out.Targets[0].Verify != audit.OutcomeVerified {
			t.Fatalf("verify = %q; want verified", out.Targets[0].Verify)
		}
		want := []time.Duration{1, 2, 4, 8, 15, 15, 15} // seconds, before jitter
		prev := start
		for i, at := range r.times() {
			gap := at.Sub(prev)
			lo, hi := want[i]*time.Second*8/10, want[i]*time.Second*12/10
			if gap < lo || gap > hi {
				t.Errorf("wait before poll %d = %s; want %s..%s", i+1, gap, lo, hi)
			}
			prev = at
		}
	})
}

func TestVerifyStopsAtNextFire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		r := &reads{states: []string{"STARTING"}}
		j := testJob(ok200, "nb1")
		j.Verify = &Verifier{Status: r.status, Judge: startJudge, Want: "RUNNING", Timeout: 10 * time.Minute}
		deadline := time.Now().Add(30 * time.Second)
		out := h.exec.Fire(t.Context(), j, sched, deadline)
		if got := time.Now(); got.After(deadline) {
			t.Errorf("fire ended %s after the next fire", got.Sub(deadline))
		}
		to := out.Targets[0]
		if to.Outcome != audit.OutcomeVerifyFailed || to.State != "STARTING" {
			t.Fatalf("outcome %q state %q; want verify_failed, STARTING", to.Outcome, to.State)
		}
		if rec := h.aud.records(audit.EventVerify, "nb1")[0]; !strings.Contains(rec.Detail, "next fire") {
			t.Errorf("detail %q; want it to name the next fire", rec.Detail)
		}
	})
}

// TestVerifyBefore covers a judge built from the status read before the
// action (CDSS: back to the pre-restart value).
func TestVerifyBefore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		r := &reads{states: []string{"orange", "orange", "yellow"}}
		var before atomic.Int32
		var actionAfterBefore atomic.Bool
		do := func(context.Context, string) (vendors.Result, error) {
			actionAfterBefore.Store(before.Load() == 1)
			return vendors.Result{HTTPStatus: 200}, nil
		}
		j := testJob(do, "1484848")
		j.Idempotent = false
		j.Verify = &Verifier{
			Status: r.status, Want: "the pre-restart value",
			Before: func(context.Context, string) (Judge, error) {
				before.Add(1)
				return func(s string) Verdict {
					if s == "yellow" {
						return Reached
					}
					return Pending
				}, nil
			},
		}
		out := h.exec.Fire(t.Context(), j, sched, time.Time{})
		if out.Targets[0].Verify != audit.OutcomeVerified || !actionAfterBefore.Load() || before.Load() != 1 {
			t.Fatalf("verify %q, Before calls %d, action after Before %v; want verified, 1, true",
				out.Targets[0].Verify, before.Load(), actionAfterBefore.Load())
		}
	})
}

// TestNonIdempotentTimeoutReadsStatus: a restart whose attempt times out is
// never re-issued; the status read decides between success and unknown.
func TestNonIdempotentTimeoutReadsStatus(t *testing.T) {
	restartJudge := func(s string) Verdict {
		switch s {
		case "RUNNING":
			return Reached
		case "ACCEPTED":
			return Pending
		case "FAILED":
			return Failed
		}
		return Unknown
	}
	tests := []struct {
		name        string
		check       *Verifier
		states      []string
		errs        map[int]error
		wantOutcome string
		wantReads   int
		wantDetail  string
	}{
		{"in progress counts as done", &Verifier{Judge: restartJudge}, []string{"ACCEPTED"}, nil,
			audit.OutcomeSuccess, 1, "status ACCEPTED shows dataforest.notebook.restart in progress; not re-issued"},
		{"target state cannot tell for a restart", &Verifier{Judge: restartJudge}, []string{"RUNNING"}, nil,
			audit.OutcomeUnknown, checkReads, "status RUNNING cannot tell"},
		{"target state proves a kill", &Verifier{Judge: restartJudge, ReachedProvesEffect: true}, []string{"RUNNING"}, nil,
			audit.OutcomeSuccess, 1, "took effect"},
		{"failure state", &Verifier{Judge: restartJudge}, []string{"FAILED"}, nil,
			audit.OutcomeUnknown, 1, "status FAILED after"},
		{"status unreadable", &Verifier{Judge: restartJudge}, []string{"x"}, map[int]error{0: permanent()},
			audit.OutcomeUnknown, 1, "status unread"},
		{"transient read error then in progress", &Verifier{Judge: restartJudge}, []string{"x", "ACCEPTED"}, map[int]error{0: transient(503)},
			audit.OutcomeSuccess, 2, "in progress"},
		{"no status read", nil, nil, nil, audit.OutcomeUnknown, 0, "documents no status read; not re-issued"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, nil)
				var calls atomic.Int32
				hang := func(ctx context.Context, target string) (vendors.Result, error) {
					calls.Add(1)
					<-ctx.Done()
					return vendors.Result{}, vendors.TransportError("ncp: restart notebook nb1", ctx.Err())
				}
				j := testJob(hang, "nb1")
				j.Action = "dataforest.notebook.restart"
				j.Idempotent = false
				j.Timeout = 2 * time.Second
				r := &reads{states: tc.states, errs: tc.errs}
				if tc.check != nil {
					tc.check.Status = r.status
					tc.check.Interval = 100 * time.Millisecond
					j.Check = tc.check
				}
				out := h.exec.Fire(t.Context(), j, sched, time.Time{})
				to := out.Targets[0]
				if calls.Load() != 1 {
					t.Errorf("restart issued %d times; want 1", calls.Load())
				}
				if to.Outcome != tc.wantOutcome {
					t.Fatalf("outcome %q (err %v); want %q", to.Outcome, to.Err, tc.wantOutcome)
				}
				if n := len(r.times()); n != tc.wantReads {
					t.Errorf("status reads = %d; want %d", n, tc.wantReads)
				}
				recs := h.aud.records(audit.EventAttempt, "nb1")
				if len(recs) != 1 || recs[0].Outcome != tc.wantOutcome || !strings.Contains(recs[0].Detail, tc.wantDetail) {
					t.Fatalf("attempt records %+v; want one, outcome %q, detail ~%q", recs, tc.wantOutcome, tc.wantDetail)
				}
				if tc.wantOutcome == audit.OutcomeSuccess && (to.Err != nil || recs[0].Error != "") {
					t.Errorf("success carries error %v / %q", to.Err, recs[0].Error)
				}
				if tc.wantOutcome == audit.OutcomeUnknown && (len(out.Failed()) != 1 || to.Err == nil) {
					t.Errorf("unknown: Failed() = %v, err %v; want it listed with an error", out.Failed(), to.Err)
				}
			})
		})
	}
}

// TestNonIdempotentRetriesWhatWasNotSent: errors that prove the request
// never took effect are retried as before, even for a restart.
func TestNonIdempotentRetriesWhatWasNotSent(t *testing.T) {
	notSent := &vendors.Error{Op: "x", Transient: true, Err: fmt.Errorf("wait: %w", ratelimit.ErrNotSent)}
	dial := vendors.TransportError("x", &net.OpError{Op: "dial", Err: errors.New("connection refused")})
	for name, first := range map[string]error{"503": transient(503), "rate-limit wait": notSent, "dial": dial} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, nil)
				s := &script{steps: []step{{err: first}, {res: vendors.Result{HTTPStatus: 200}}}}
				j := testJob(s.do, "nb1")
				j.Idempotent = false
				out := h.exec.Fire(t.Context(), j, sched, time.Time{})
				if s.calls.Load() != 2 || out.Targets[0].Outcome != audit.OutcomeSuccess {
					t.Fatalf("calls %d outcome %q; want 2, success", s.calls.Load(), out.Targets[0].Outcome)
				}
			})
		})
	}
}

func TestAmbiguous(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		timedOut bool
		want     bool
	}{
		{"attempt timed out", errBoom, true, true},
		{"connection reset", vendors.TransportError("x", errors.New("connection reset by peer")), false, true},
		{"gateway timeout", &vendors.Error{Op: "x", Transient: true, HTTPStatus: 504}, false, true},
		{"service unavailable", transient(503), false, false},
		{"429", &vendors.Error{Op: "x", Transient: true, HTTPStatus: 429}, false, false},
		{"dial", vendors.TransportError("x", &net.OpError{Op: "dial", Err: errBoom}), false, false},
		{"dns", vendors.TransportError("x", &net.DNSError{Err: "no such host"}), false, false},
		{"rate-limit wait", vendors.TransportError("x", fmt.Errorf("%w", ratelimit.ErrNotSent)), false, false},
		{"permanent", permanent(), false, false},
		{"nil", nil, false, false},
	}
	for _, tc := range tests {
		if got := ambiguous(tc.err, tc.timedOut); got != tc.want {
			t.Errorf("%s: ambiguous = %v; want %v", tc.name, got, tc.want)
		}
	}
}
