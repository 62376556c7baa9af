package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/vendors"
)

// nextFire names the bound of a fire's waits in errors and audit records.
const nextFire = "the next fire"

// runTarget is the life of one target in one fire, from the moment the
// account's queue starts it (with a slot) to its outcome. Every vendor
// call and status read first waits its turn in the queue (a slot and a
// rate-limit token, under the fire's context), so that the call's timeout
// and the retry budget count only the call.
func (e *Executor) runTarget(ctx context.Context, f *fire, i int) TargetOutcome {
	t := e.startTarget(f, i)
	defer t.end()
	if f.halted() {
		return t.halted()
	}

	// Before the action: the status a verdict depends on (a CDSS restart
	// is judged against the value read before it).
	t.readBefore(ctx)

	// The action: one attempt per turn, with backoff between attempts,
	// until one is final.
	for n := 1; ; n++ {
		if f.halted() {
			return t.halted()
		}
		tr, err := t.waitTurn(ctx, nextFire)
		if err != nil {
			return t.abandon(err)
		}
		wait, again := t.attempt(ctx, tr, n)
		if !again {
			break
		}
		if err := sleep(ctx, f, wait); err != nil {
			return t.abandon(err)
		}
	}

	// After a success: the end state, if the job verifies it.
	if t.out.Outcome == audit.OutcomeSuccess && f.j.Verify != nil {
		t.verify(ctx)
	}
	return t.out
}

// target is what runTarget carries from one step to the next.
type target struct {
	e   *Executor
	f   *fire
	j   *Job
	key jobTarget // for Executor.Running
	out TargetOutcome

	// slotHeld: the slot the queue started the target with is not used
	// yet; the first turn takes it instead of queueing again.
	slotHeld bool
	queued   time.Duration // in the queue so far, all turns

	// The retry budget starts with the first attempt; it is made at the
	// first transient failure, and counts neither the queue time before
	// nor after (queuedSince: queue time since the first attempt).
	firstAttempt time.Time
	queuedSince  time.Duration
	budget       *retryBackOff

	// The judges from the status read before the action; beforeErr says
	// why it failed, if it did.
	verifyJudge, checkJudge Judge
	beforeErr               error
}

func (e *Executor) startTarget(f *fire, i int) target {
	name := f.j.Targets[i]
	t := target{
		e: e, f: f, j: f.j, key: jobTarget{f.j.Name, name},
		out:      TargetOutcome{Target: name, Outcome: audit.OutcomeFailure},
		slotHeld: true,
	}
	e.track(t.key, 1)
	return t
}

// log starts a log event about the target. (A sub-logger per target would
// cost an allocation per target, for a fire of 10 000 of them.)
func (t *target) log(level zerolog.Level) *zerolog.Event {
	return t.f.log.WithLevel(level).Str("target", t.out.Target)
}

// end gives back a slot never used and stops tracking the target.
func (t *target) end() {
	if t.slotHeld {
		t.slotHeld = false
		t.f.q.release()
	}
	t.e.track(t.key, -1)
}

// waitTurn waits in the account's queue, under ctx, for a slot (unless
// the target still holds the one it was started with) and then for the
// account's 429 pause to end and a rate-limit token. bound names what
// ctx's deadline is, for the error.
func (t *target) waitTurn(ctx context.Context, bound string) (*turn, error) {
	q := t.f.q
	since := time.Now()
	if t.slotHeld {
		since, t.slotHeld = t.f.queuedAt, false
	} else if err := q.waitSlot(ctx, t.f); err != nil {
		return nil, t.noTurn(bound, since, err)
	}
	if err := ctx.Err(); err != nil { // got the slot as time ran out
		q.release()
		return nil, t.noTurn(bound, since, err)
	}
	tr := &turn{q: q}
	if lim := q.limiter(); lim != nil {
		tk, err := q.acquireToken(ctx, lim)
		if err != nil {
			q.release()
			return nil, t.noTurn(bound, since, err)
		}
		tr.ticket, tr.paused = tk, tk.Paused()
	}
	tr.queued = time.Since(since)
	t.queued += tr.queued
	if !t.firstAttempt.IsZero() {
		t.queuedSince += tr.queued
	}
	return tr, nil
}

func (t *target) noTurn(bound string, since time.Time, err error) error {
	waited := time.Since(since)
	t.queued += waited
	if errors.Is(err, errHalted) {
		return err
	}
	return &queueError{bound: bound, waited: waited, queue: t.f.q.describe(), err: err}
}

// readBefore reads the status before the action where a verdict depends
// on it (Verifier.Before), for the verify and for the status check after
// an ambiguous failure.
func (t *target) readBefore(ctx context.Context) {
	j := t.j
	if j.Verify != nil {
		t.verifyJudge, t.beforeErr = t.judge(ctx, j.Verify)
		if t.beforeErr != nil {
			t.log(zerolog.WarnLevel).Err(t.beforeErr).Msg("status read before the action failed")
		}
	}
	switch check := t.check(); {
	case j.Idempotent || check == nil:
	case check == j.Verify:
		t.checkJudge = t.verifyJudge
	default:
		t.checkJudge, _ = t.judge(ctx, check)
	}
}

// judge returns the judge for this target, from a status read in its own
// turn when v has Before.
func (t *target) judge(ctx context.Context, v *Verifier) (Judge, error) {
	if v.Before == nil {
		return v.Judge, nil
	}
	tr, err := t.waitTurn(ctx, nextFire)
	if err != nil {
		return v.Judge, err
	}
	defer tr.release()
	rctx, cancel := attemptCtx(tr.context(ctx), t.j.Timeout)
	defer cancel()
	j, err := v.Before(rctx, t.out.Target)
	if err != nil || j == nil {
		return v.Judge, err
	}
	return j, nil
}

// check is the status read used after an ambiguous failure.
func (t *target) check() *Verifier {
	if t.j.Check != nil {
		return t.j.Check
	}
	return t.j.Verify
}

// attempt makes attempt n in turn tr, decides what it means and audits it.
// again says another attempt follows after wait; otherwise t.out holds the
// target's outcome.
func (t *target) attempt(ctx context.Context, tr *turn, n int) (wait time.Duration, again bool) {
	j := t.j
	start := time.Now()
	if n == 1 {
		t.firstAttempt = start
	}
	res, timedOut, err := call(tr.context(ctx), j, t.out.Target)
	dur := time.Since(start)
	tr.release()
	t.out.Attempts, t.out.Result, t.out.Err = n, res, err

	rec := t.f.record(audit.EventAttempt, t.out.Target)
	rec.Attempt = n
	rec.DurationMS = dur.Milliseconds()
	fillResult(&rec, res, err)
	var detail string
	switch {
	case err == nil:
		rec.Outcome = audit.OutcomeSuccess
		if res.Already {
			detail = "already in target state"
		}
	case ctx.Err() != nil:
		rec.Outcome = audit.OutcomeFailure
		why := "fire stopped"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			why = "stopped at the next fire"
		}
		t.out.Err = fmt.Errorf("%s: %w", why, err)
		if !j.Idempotent && ambiguous(err, timedOut) {
			// The request may have reached the vendor: a restart or kill
			// cut off mid-call did not necessarily not happen.
			rec.Outcome = audit.OutcomeUnknown
			detail = why + " while the request may have reached the vendor; not re-issued: check the target"
		}
	case !j.Idempotent && ambiguous(err, timedOut):
		took, seen := t.checkEffect(ctx)
		if took {
			rec.Outcome = audit.OutcomeSuccess
			rec.Error = ""
			detail = "attempt failed (" + err.Error() + "); " + seen
			t.out.Err = nil
		} else {
			rec.Outcome = audit.OutcomeUnknown
			detail = seen
			t.out.Err = fmt.Errorf("%s: %w", seen, err)
		}
	case !vendors.IsTransient(err):
		rec.Outcome = audit.OutcomeFailure
	case j.Retry.MaxAttempts > 0 && n >= j.Retry.MaxAttempts:
		rec.Outcome = audit.OutcomeFailure
		t.out.Err = fmt.Errorf("gave up after %d attempts: %w", n, err)
	default:
		b := t.retryBudget()
		b.lastErr = err
		if wait = b.NextBackOff(); wait == backoff.Stop {
			rec.Outcome = audit.OutcomeFailure
			t.out.Err = fmt.Errorf("%w: %w", b.reason, err)
		} else {
			rec.Outcome = audit.OutcomeRetry
		}
	}
	rec.Detail = joinDetail(detail, tr.note())
	if t.out.Err != nil {
		rec.Error = t.out.Err.Error()
	}
	if aerr := t.e.append(rec); aerr != nil {
		t.auditFailed(rec, aerr)
		return 0, false
	}

	switch rec.Outcome {
	case audit.OutcomeSuccess:
		t.out.Outcome = audit.OutcomeSuccess
		t.log(zerolog.InfoLevel).Int("attempt", n).Dur("duration_ms", dur).Bool("already", res.Already).
			Str("detail", rec.Detail).Msg("action succeeded")
	case audit.OutcomeUnknown:
		t.out.Outcome = audit.OutcomeUnknown
		t.log(zerolog.ErrorLevel).Err(t.out.Err).Int("attempt", n).Msg("action outcome unknown; not re-issued")
	case audit.OutcomeFailure:
		t.log(zerolog.ErrorLevel).Err(t.out.Err).Int("attempt", n).Int("http_status", rec.HTTPStatus).
			Str("vendor_code", rec.VendorCode).Msg("action failed")
	default:
		t.log(zerolog.WarnLevel).Err(err).Int("attempt", n).Dur("wait_ms", wait).Msg("transient vendor error; retrying")
		return wait, true
	}
	return 0, false
}

// retryBudget returns the target's retry budget, made on first use: from
// the first attempt, not counting the time queued since.
func (t *target) retryBudget() *retryBackOff {
	if t.budget == nil {
		t.budget = newRetryBackOff(t.j.Retry, t.f.deadline)
		t.budget.start = t.firstAttempt
	}
	t.budget.queued = t.queuedSince
	return t.budget
}

// call makes one attempt with its own timeout, which starts now, after the
// queue. An attempt that runs out of its own time is a transient timeout,
// whatever the action returned, and timedOut is set.
func call(ctx context.Context, j *Job, target string) (res vendors.Result, timedOut bool, err error) {
	if j.Do == nil {
		return res, false, fmt.Errorf("job %s: no action bound for %s", j.Name, j.Action)
	}
	actx := ctx
	if j.Timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, j.Timeout)
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s %s: action panicked: %v", j.Action, target, p)
		}
	}()
	res, err = j.Do(actx, target)
	if err != nil && ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
		op := fmt.Sprintf("%s %s: attempt timed out after %s", j.Action, target, j.Timeout)
		if vendors.IsTransient(err) {
			return res, true, fmt.Errorf("%s: %w", op, err)
		}
		return res, true, &vendors.Error{Op: op, Transient: true, Err: err}
	}
	return res, false, err
}

// checkEffect reads the status after an ambiguous failure of a
// non-idempotent action, to decide without re-issuing it: tookEffect when
// the state shows the action in progress (or done, where that proves it),
// otherwise the action's effect is unknown. detail says what was seen.
func (t *target) checkEffect(ctx context.Context) (tookEffect bool, detail string) {
	kind := t.j.Action
	v := t.check()
	if v == nil || v.Status == nil {
		return false, fmt.Sprintf("%s is not idempotent and the vendor documents no status read; not re-issued", kind)
	}
	judge := t.checkJudge
	if judge == nil {
		judge = func(string) Verdict { return Unknown }
	}
	interval, _ := v.intervals()
	var last string
	var lastErr error
	for i := range checkReads {
		if i > 0 {
			if err := sleep(ctx, t.f, jitter(interval)); err != nil {
				break
			}
		}
		state, err := t.read(ctx, v, nextFire)
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

// read makes one status read in its own turn of the account's queue.
func (t *target) read(ctx context.Context, v *Verifier, bound string) (string, error) {
	tr, err := t.waitTurn(ctx, bound)
	if err != nil {
		return "", err
	}
	defer tr.release()
	rctx, cancel := attemptCtx(tr.context(ctx), t.j.Timeout)
	defer cancel()
	return v.Status(rctx, t.out.Target)
}

// verify polls the target's status after a successful action and audits
// the verdict. It fills in t.out.Verify and t.out.State, and on
// verify_failed sets t.out.Outcome and t.out.Err.
func (t *target) verify(ctx context.Context) {
	v := t.j.Verify
	to := &t.out
	rec := t.f.record(audit.EventVerify, to.Target)
	start := time.Now()
	queuedBefore := t.queued
	finish := func(outcome, detail string, err error) {
		to.Verify = outcome
		rec.Outcome = outcome
		rec.Detail = detail
		if q := t.queued - queuedBefore; q >= queuedNoticeable {
			rec.Detail = joinDetail(detail, fmt.Sprintf("status reads queued %s for %s", q.Round(time.Millisecond), t.f.q.describe()))
		}
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
		if aerr := t.e.append(rec); aerr != nil {
			t.auditFailed(rec, aerr)
			return
		}
		ev := t.log(zerolog.InfoLevel)
		if outcome == audit.OutcomeVerifyFailed {
			ev = t.log(zerolog.ErrorLevel)
		}
		ev.Str("verify", outcome).Str("state", to.State).Msg(detail)
	}
	if v.Status == nil {
		finish(audit.OutcomeUnverified, fmt.Sprintf("%s: the vendor documents no status read to verify it", t.j.Action), nil)
		return
	}
	judge := t.verifyJudge
	if judge == nil {
		judge = func(string) Verdict { return Unknown }
	}
	vctx := ctx
	bound := nextFire
	if v.Timeout > 0 {
		var cancel context.CancelFunc
		vctx, cancel = context.WithTimeout(ctx, v.Timeout)
		defer cancel()
		bound = "the end of verify_timeout " + v.Timeout.String()
	}
	note := ""
	if t.beforeErr != nil {
		note = fmt.Sprintf("; status before the action unread (%v)", t.beforeErr)
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
			tm := time.NewTimer(wait)
			select {
			case <-tm.C:
			case <-vctx.Done():
				tm.Stop()
			case <-t.f.stop:
				tm.Stop()
				to.Outcome, to.Err = audit.OutcomeFailure, fmt.Errorf("%w: not calling vendor", ErrAudit)
				return
			}
		}
		if vctx.Err() != nil {
			break
		}
		state, err := t.read(vctx, v, bound)
		polls++
		if err != nil {
			if vctx.Err() != nil {
				break
			}
			if t.f.halted() {
				to.Outcome, to.Err = audit.OutcomeFailure, fmt.Errorf("%w: not calling vendor", ErrAudit)
				return
			}
			lastErr = err
			if !vendors.IsTransient(err) {
				finish(audit.OutcomeVerifyFailed, fmt.Sprintf("status read failed after %d polls; last state %q%s", polls, to.State, note), err)
				return
			}
			t.log(zerolog.WarnLevel).Err(err).Int("poll", polls).Msg("status read failed; polling on")
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

// abandon records that the target stops without a further attempt, and
// returns its outcome.
func (t *target) abandon(cause error) TargetOutcome {
	if t.f.halted() {
		return t.halted()
	}
	t.out.Outcome = audit.OutcomeFailure
	t.out.Err = cause
	rec := t.f.record(audit.EventAbandon, t.out.Target)
	rec.Attempt = t.out.Attempts
	rec.Outcome = audit.OutcomeFailure
	rec.Error = cause.Error()
	if err := t.e.append(rec); err != nil {
		t.auditFailed(rec, err)
		return t.out
	}
	t.log(zerolog.ErrorLevel).Err(cause).Int("attempts", t.out.Attempts).Msg("action abandoned")
	return t.out
}

// halted is the outcome of a target the fire stopped after an audit
// failure elsewhere.
func (t *target) halted() TargetOutcome {
	t.out.Outcome = audit.OutcomeFailure
	t.out.Err = fmt.Errorf("%w: not calling vendor", ErrAudit)
	return t.out
}

// auditFailed stops the fire after a record of the target could not be
// written.
func (t *target) auditFailed(lost audit.Record, err error) {
	t.f.halt()
	t.log(zerolog.ErrorLevel).Err(err).Str("event", lost.Event).
		Int("attempt", lost.Attempt).Str("lost_outcome", lost.Outcome).Str("lost_error", lost.Error).
		Msg("audit record not written; stopping the fire, no further vendor calls")
	t.out.Outcome = audit.OutcomeFailure
	t.out.Err = err
}

// sleep waits d, or until the fire is cancelled or halted.
func sleep(ctx context.Context, f *fire, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fire stopped during backoff wait: %w", ctx.Err())
	case <-f.stop:
		return fmt.Errorf("%w: not calling vendor", ErrAudit)
	}
}

// fillResult copies the vendor's status, code and request id into rec.
func fillResult(rec *audit.Record, res vendors.Result, err error) {
	rec.HTTPStatus, rec.VendorCode, rec.RequestID = res.HTTPStatus, res.VendorCode, res.RequestID
	var ve *vendors.Error
	if errors.As(err, &ve) {
		if ve.HTTPStatus != 0 {
			rec.HTTPStatus = ve.HTTPStatus
		}
		if ve.VendorCode != "" {
			rec.VendorCode = ve.VendorCode
		}
		if ve.RequestID != "" {
			rec.RequestID = ve.RequestID
		}
	}
	if err != nil {
		rec.Error = err.Error()
	}
}

// joinDetail joins the non-empty parts of an audit detail with "; ".
func joinDetail(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "; ")
}
