package executor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/ratelimit"
	"github.com/cloudcron/scheduler/internal/vendors"
)

// Default poll intervals of a Verifier.
const (
	DefaultVerifyInterval    = time.Second
	DefaultVerifyMaxInterval = 15 * time.Second
	// checkReads is how many status reads the executor makes, after an
	// ambiguous failure of a non-idempotent action, to find a conclusive
	// state (read errors and inconclusive states both count).
	checkReads = 3
)

// Verdict is what one status value says about the action's target state.
type Verdict int

// Verdicts. The zero value is Unknown.
const (
	// Unknown: a value the vendor does not document (or we do not know):
	// keep polling; it never counts as the target state.
	Unknown Verdict = iota
	// Pending: a known transitional state (STARTING, ACCEPTED…): the action
	// is in progress; keep polling.
	Pending
	// Reached: the target state.
	Reached
	// Failed: a state the resource does not leave on its own towards the
	// target (START_FAILED, Failed…): stop polling, verify_failed.
	Failed
)

func (v Verdict) String() string {
	switch v {
	case Pending:
		return "pending"
	case Reached:
		return "reached"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Judge tells what a raw status value means for one action.
type Judge func(state string) Verdict

// Verifier reads a target's status after an action and judges it.
type Verifier struct {
	// Status reads the target's state. nil means the vendor documents no
	// status read for this action: verification is audited "unverified",
	// and an ambiguous failure of a non-idempotent action ends "unknown".
	Status func(ctx context.Context, target string) (string, error)
	// Judge judges a state; nil judges everything Unknown.
	Judge Judge
	// Before, if set, is called once per target before the first attempt
	// and returns the Judge to use for that target instead of Judge (CDSS
	// restarts: "back to the value read before the restart"). If it fails,
	// Judge is used and the failure is named in the verify record.
	Before func(ctx context.Context, target string) (Judge, error)
	// Want names the target state for the audit detail, e.g. "RUNNING".
	Want string
	// Timeout bounds the polling (the job's verify_timeout); 0 = until the
	// fire's deadline or ctx ends.
	Timeout time.Duration
	// Interval is the first wait between polls, doubled up to MaxInterval,
	// each jittered by ±20%; defaults DefaultVerifyInterval and
	// DefaultVerifyMaxInterval.
	Interval, MaxInterval time.Duration
	// ReachedProvesEffect says that finding the target state after an
	// ambiguous failure proves the action took effect (a kill: the app is
	// gone). For a restart it does not: the target state is also the state
	// before the restart, so only Pending proves it.
	ReachedProvesEffect bool
}

// judgeFor returns the judge for one target, running Before if set.
func (v *Verifier) judgeFor(ctx context.Context, target string, timeout time.Duration) (Judge, error) {
	if v.Before == nil {
		return v.Judge, nil
	}
	rctx, cancel := attemptCtx(ctx, timeout)
	defer cancel()
	j, err := v.Before(rctx, target)
	if err != nil || j == nil {
		return v.Judge, err
	}
	return j, nil
}

func (v *Verifier) intervals() (first, limit time.Duration) {
	first, limit = v.Interval, v.MaxInterval
	if first <= 0 {
		first = DefaultVerifyInterval
	}
	if limit <= 0 {
		limit = DefaultVerifyMaxInterval
	}
	return first, max(first, limit)
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func attemptCtx(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout > 0 {
		return context.WithTimeout(ctx, timeout)
	}
	return context.WithCancel(ctx)
}

// read makes one status read in a concurrency slot of the account.
func (e *Executor) read(ctx context.Context, f *fire, v *Verifier, target string) (string, error) {
	release, err := e.acquire(ctx, f, f.j.Account)
	if err != nil {
		return "", err
	}
	defer release()
	rctx, cancel := attemptCtx(ctx, f.j.Timeout)
	defer cancel()
	return v.Status(rctx, target)
}

// verify polls the target's status after a successful action and audits
// the verdict. It fills in to.Verify and to.State, and on verify_failed
// sets to.Outcome and to.Err.
func (e *Executor) verify(ctx context.Context, f *fire, to *TargetOutcome, judge Judge, judgeErr error, log zerolog.Logger) {
	v := f.j.Verify
	rec := f.record(audit.EventVerify, to.Target)
	start := time.Now()
	finish := func(outcome, detail string, err error) {
		to.Verify = outcome
		rec.Outcome = outcome
		rec.Detail = detail
		rec.DurationMS = time.Since(start).Milliseconds()
		if err != nil {
			fillResult(&rec, vendors.Result{}, err)
		}
		if outcome == audit.OutcomeVerifyFailed {
			to.Outcome = audit.OutcomeVerifyFailed
			to.Err = fmt.Errorf("verify %s: %s", to.Target, detail)
			if err != nil {
				to.Err = fmt.Errorf("verify %s: %s: %w", to.Target, detail, err)
			}
		}
		if aerr := e.append(rec); aerr != nil {
			*to = e.auditFailed(f, *to, rec, aerr)
			return
		}
		ev := log.Info()
		if outcome == audit.OutcomeVerifyFailed {
			ev = log.Error()
		}
		ev.Str("verify", outcome).Str("state", to.State).Msg(detail)
	}
	if v.Status == nil {
		finish(audit.OutcomeUnverified, fmt.Sprintf("%s: the vendor documents no status read to verify it", f.j.Action), nil)
		return
	}
	if judge == nil {
		judge = func(string) Verdict { return Unknown }
	}
	vctx := ctx
	if v.Timeout > 0 {
		var cancel context.CancelFunc
		vctx, cancel = context.WithTimeout(ctx, v.Timeout)
		defer cancel()
	}
	note := ""
	if judgeErr != nil {
		note = fmt.Sprintf("; status before the action unread (%v)", judgeErr)
	}
	interval, limit := v.intervals()
	wait := time.Duration(0)
	if !to.Result.Already {
		wait = jitter(interval)
	}
	polls := 0
	var lastErr error
	for {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-vctx.Done():
				t.Stop()
			case <-f.stop:
				t.Stop()
				to.Outcome, to.Err = audit.OutcomeFailure, fmt.Errorf("%w: not calling vendor", ErrAudit)
				return
			}
		}
		if vctx.Err() != nil {
			break
		}
		state, err := e.read(vctx, f, v, to.Target)
		polls++
		if err != nil {
			if vctx.Err() != nil {
				break
			}
			lastErr = err
			if !vendors.IsTransient(err) {
				finish(audit.OutcomeVerifyFailed, fmt.Sprintf("status read failed after %d polls; last state %q%s", polls, to.State, note), err)
				return
			}
			log.Warn().Err(err).Int("poll", polls).Msg("status read failed; polling on")
		} else {
			lastErr = nil
			to.State = state
			switch judge(state) {
			case Reached:
				finish(audit.OutcomeVerified, fmt.Sprintf("state %s after %d polls in %s", state, polls, time.Since(start).Round(time.Millisecond)), nil)
				return
			case Failed:
				finish(audit.OutcomeVerifyFailed, fmt.Sprintf("state %s (want %s) after %d polls%s", state, v.Want, polls, note), nil)
				return
			}
		}
		if polls > 1 || !to.Result.Already {
			interval = min(interval*2, limit)
		}
		wait = jitter(interval)
	}
	why := "verify_timeout " + v.Timeout.String()
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		why = "the job's next fire"
	case ctx.Err() != nil:
		why = "shutdown (" + ctx.Err().Error() + ")"
	}
	detail := fmt.Sprintf("stopped at %s after %d polls; last state %q (want %s)%s", why, polls, to.State, v.Want, note)
	finish(audit.OutcomeVerifyFailed, detail, lastErr)
}

// ambiguous reports whether a failed attempt of a non-idempotent action
// may nevertheless have reached the vendor and taken effect: the attempt
// timed out, the connection failed after the request may have been sent
// (not a dial error, not a rate-limit wait), or the gateway timed out
// waiting for the backend (HTTP 504).
func ambiguous(err error, timedOut bool) bool {
	if err == nil {
		return false
	}
	if timedOut {
		return true
	}
	if errors.Is(err, ratelimit.ErrNotSent) {
		return false
	}
	var ve *vendors.Error
	if !errors.As(err, &ve) || !ve.Transient {
		return false
	}
	if ve.HTTPStatus == 504 {
		return true
	}
	if ve.HTTPStatus != 0 {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	var dns *net.DNSError
	return !errors.As(err, &dns)
}

// check reads the status after an ambiguous failure of a non-idempotent
// action, to decide without re-issuing it: tookEffect when the state shows
// the action in progress (or done, where that proves it), otherwise the
// action's effect is unknown. detail says what was seen.
func (e *Executor) check(ctx context.Context, f *fire, v *Verifier, judge Judge, target string) (tookEffect bool, detail string) {
	kind := f.j.Action
	if v == nil || v.Status == nil {
		return false, fmt.Sprintf("%s is not idempotent and the vendor documents no status read; not re-issued", kind)
	}
	if judge == nil {
		judge = func(string) Verdict { return Unknown }
	}
	interval, _ := v.intervals()
	var last string
	var lastErr error
	for i := range checkReads {
		if i > 0 {
			if err := sleep(ctx, f, jitter(interval)); err != nil {
				break
			}
		}
		state, err := e.read(ctx, f, v, target)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil || !vendors.IsTransient(err) {
				break
			}
			continue
		}
		last, lastErr = state, nil
		switch verdict := judge(state); {
		case verdict == Pending:
			return true, fmt.Sprintf("status %s shows %s in progress; not re-issued", state, kind)
		case verdict == Reached && v.ReachedProvesEffect:
			return true, fmt.Sprintf("status %s shows %s took effect; not re-issued", state, kind)
		case verdict == Failed:
			return false, fmt.Sprintf("status %s after %s; not re-issued", state, kind)
		}
	}
	if lastErr != nil {
		return false, fmt.Sprintf("status unread (%v); %s not re-issued", lastErr, kind)
	}
	return false, fmt.Sprintf("status %s cannot tell whether %s took effect; not re-issued", last, kind)
}
