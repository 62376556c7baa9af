// Package executor runs one fire of a job: the job's action on each of its
// targets, in parallel, with retries, timeouts, the overlap policy and an
// audit record for every step.
//
// Retries: an error for which vendors.IsTransient reports true (network
// errors, timeouts, HTTP 5xx and 429, the vendor codes vendors.md marks
// transient) is retried with exponential backoff and ±50% jitter, waiting
// at least as long as a Retry-After hint. Retries stop after
// RetryPolicy.MaxAttempts attempts, when the next wait would end after
// RetryPolicy.MaxElapsed, or when it would reach the job's next fire (the
// deadline passed to Fire): the fire never runs into the next one. Any other
// error is permanent: one attempt, recorded as a failure. An action that
// reports the target already in the requested state succeeds.
//
// Audit: for each target, a "run" record (the intent) is written before the
// first vendor call, and an "attempt" record after each call, before the
// executor moves on, with outcome retry, success or failure. If a record
// cannot be written the fire stops: no vendor is called for a target whose
// record could not be made durable, and every target still pending fails
// with ErrAudit.
//
// Non-idempotent actions (restart, kill; Job.Idempotent false) are never
// re-issued blindly: after an ambiguous failure (the attempt timed out, the
// connection broke after the request may have been sent, or HTTP 504), the
// executor reads the target's status (Job.Check, else Job.Verify) instead
// of retrying. If the state shows the action in progress (or done, where
// that proves it), the attempt counts as a success and its detail says so;
// otherwise the target ends with outcome unknown, and is not re-issued.
//
// Verification: with Job.Verify set, a successful action (already in the
// target state included) is followed by status polls with jittered
// exponential backoff until the Verifier judges the state reached or
// failed, or until its Timeout, the fire's deadline or ctx ends; one
// "verify" record says verified, verify_failed (with the last state seen or
// the read error) or unverified (the vendor documents no status read). A
// verify_failed target's Outcome is verify_failed, so Outcome.Failed
// includes it.
//
// Concurrency: calls in flight are bounded per account, across all jobs of
// that account (Options.Concurrency, default 8). A slot is held for one
// attempt or status read, not during backoff or poll waits.
package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/vendors"
)

// DefaultConcurrency is the number of calls an account may have in flight
// when Options.Concurrency does not say.
const DefaultConcurrency = 8

// Overlap policies: what Fire does when the job's previous fire still runs.
const (
	OverlapSkip  = "skip"  // audit a skip per target and return; the default
	OverlapQueue = "queue" // wait for the running fire, then run; at most one waits
	OverlapAllow = "allow" // run concurrently
)

// ErrAudit is wrapped by the error of every target a fire stopped because
// an audit record could not be written.
var ErrAudit = errors.New("audit log failed")

// Action performs one catalogue action against one target. It must return
// when ctx is done.
type Action func(ctx context.Context, target string) (vendors.Result, error)

// Job is what the executor needs to know about one job.
type Job struct {
	Name    string // unique: fires of the same name are subject to the overlap policy
	Action  string // catalogue name, for the audit log
	Account string // the semaphore and the audit account field
	Targets []string
	Do      Action
	Timeout time.Duration // of one attempt; 0 = bounded only by the fire's deadline
	Retry   RetryPolicy
	Overlap string // OverlapSkip, OverlapQueue or OverlapAllow; anything else acts as skip
	// Idempotent says whether re-issuing the action is safe (start, stop).
	// It is written in the detail of the "run" intent record, so that a
	// restart after a crash can tell re-issue from "unknown". A
	// non-idempotent action is not retried after an ambiguous failure (see
	// the package doc).
	Idempotent bool
	// Verify, if set, verifies the end state after a success; nil = no
	// verification (the config's verify: false, the default).
	Verify *Verifier
	// Check is the status read used after an ambiguous failure of a
	// non-idempotent action; nil falls back to Verify, and with neither
	// such a failure ends with outcome unknown.
	Check *Verifier
}

// Auditor receives the executor's audit records. Append must return only
// after the record is durable. *audit.Log implements it.
type Auditor interface {
	Append(audit.Record) error
}

// Options configure an Executor.
type Options struct {
	Log   zerolog.Logger
	Audit Auditor // required
	// Now gives the audit records' time; default time.Now. Waits and
	// durations use the runtime's timers and clock.
	Now func() time.Time
	// Concurrency returns the limit of calls in flight for an account; a
	// value < 1 or a nil func means DefaultConcurrency. It is asked once per
	// account, the first time the account is used.
	Concurrency func(account string) int
}

// Executor runs fires. Its methods are safe for concurrent use.
type Executor struct {
	log         zerolog.Logger
	audit       Auditor
	now         func() time.Time
	concurrency func(string) int

	mu       sync.Mutex
	sems     map[string]chan struct{} // per account
	jobs     map[string]*jobState     // per job name, while a fire runs or waits
	inflight map[string]int           // "job target" -> targets in progress
	active   int                      // Fire calls in progress
	idle     chan struct{}            // closed when active drops to 0
}

// jobState tracks the fires of one job, for the overlap policy.
type jobState struct {
	running []string             // run ids of fires in progress
	ends    map[string]time.Time // deadline of each running fire (zero: none)
	queued  string               // run id of the fire waiting under OverlapQueue
	done    chan struct{}        // closed (and replaced) when a fire ends
}

// New returns an Executor. It panics if opts.Audit is nil: the executor
// never acts without an audit log.
func New(opts Options) *Executor {
	if opts.Audit == nil {
		panic("executor: Options.Audit is nil")
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Executor{
		log:         opts.Log.With().Str("component", "executor").Logger(),
		audit:       opts.Audit,
		now:         now,
		concurrency: opts.Concurrency,
		sems:        map[string]chan struct{}{},
		jobs:        map[string]*jobState{},
		inflight:    map[string]int{},
	}
}

// Outcome is the result of one fire.
type Outcome struct {
	RunID     string
	Scheduled time.Time
	Skipped   bool // the overlap policy skipped the fire; Targets say "skipped"
	NotRun    bool // FireWith's begin refused the fire: nothing was called or audited
	Targets   []TargetOutcome
}

// TargetOutcome is the result of one fire for one target.
type TargetOutcome struct {
	Target string
	// Outcome is audit.OutcomeSuccess, OutcomeFailure, OutcomeSkipped,
	// OutcomeUnknown (a non-idempotent action whose effect could not be
	// told after an ambiguous failure) or OutcomeVerifyFailed (the action
	// succeeded but its end state was not verified).
	Outcome  string
	Attempts int   // vendor calls made (status reads not counted)
	Err      error // the last error; nil on success
	Result   vendors.Result
	// Verify is the outcome of the verify record: audit.OutcomeVerified,
	// OutcomeVerifyFailed or OutcomeUnverified; "" when not verified.
	Verify string
	State  string // the last status read, if any
}

// Failed returns the targets whose outcome is not success: failure,
// unknown, verify_failed and skipped.
func (o Outcome) Failed() []TargetOutcome {
	var out []TargetOutcome
	for _, t := range o.Targets {
		if t.Outcome != audit.OutcomeSuccess {
			out = append(out, t)
		}
	}
	return out
}

// RunID names one fire: the job name and the scheduled time in UTC,
// RFC 3339 with fractional seconds only when there are any, e.g.
// "notebooks-on@2026-11-25T08:00:00Z".
func RunID(job string, scheduled time.Time) string {
	return job + "@" + scheduled.UTC().Format(time.RFC3339Nano)
}

// fire is the state shared by the targets of one fire.
type fire struct {
	j         *Job
	runID     string
	scheduled time.Time
	deadline  time.Time
	log       zerolog.Logger

	stopOnce sync.Once
	stop     chan struct{} // closed when an audit record failed
}

func (f *fire) halt() { f.stopOnce.Do(func() { close(f.stop) }) }

func (f *fire) halted() bool {
	select {
	case <-f.stop:
		return true
	default:
		return false
	}
}

// BeginFunc records a fire's intent before its first vendor call. It gets
// the fire's "run" records, one per target, and must make them durable
// before it returns, together with whatever the caller records in the same
// step (the run state's intent, missed fires the fire supersedes): one
// durable write for all of it. ok false means the fire must not run (it is
// already done, or in flight elsewhere) and nothing was written; an error
// means the intent may not be durable, and no vendor is called.
type BeginFunc func(runRecords []audit.Record) (ok bool, err error)

// BatchAuditor is an Auditor that can make several records durable in one
// step; *audit.Log implements it. The executor uses it for a fire's intent
// records when no BeginFunc is given.
type BatchAuditor interface {
	AppendBatch([]audit.Record) error
}

// Fire runs one fire of j scheduled at scheduled, and returns when every
// target has succeeded or failed. A non-zero deadline (the job's next fire)
// bounds the whole fire: no wait or attempt runs past it. The fire's intent
// records are written by the executor itself; see FireWith.
func (e *Executor) Fire(ctx context.Context, j *Job, scheduled, deadline time.Time) Outcome {
	return e.FireWith(ctx, j, scheduled, deadline, nil)
}

// FireWith is Fire with the intent recorded by begin: after the overlap
// policy admits the fire and before any vendor call, begin gets the run
// records of every target. If begin refuses, the fire does not run and
// Outcome.NotRun is set; if it fails, every target fails with ErrAudit.
// A nil begin appends the run records to the executor's audit log in one
// batch.
func (e *Executor) FireWith(ctx context.Context, j *Job, scheduled, deadline time.Time, begin BeginFunc) Outcome {
	e.begin()
	defer e.end()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	f := &fire{
		j:         j,
		runID:     RunID(j.Name, scheduled),
		scheduled: scheduled,
		deadline:  deadline,
		stop:      make(chan struct{}),
	}
	f.log = e.log.With().Str("job", j.Name).Str("run_id", f.runID).
		Str("action", j.Action).Str("account", j.Account).Logger()
	out := Outcome{RunID: f.runID, Scheduled: scheduled, Targets: make([]TargetOutcome, len(j.Targets))}

	if reason, ok := e.admit(ctx, j, f.runID, scheduled, deadline); !ok {
		out.Skipped = true
		e.skip(f, reason, out.Targets)
		return out
	}
	defer e.finish(j.Name, f.runID)

	// The intent, on every target at once: one durable write per fire
	// (shared with the fires due at the same moment by the audit log's
	// group commit), before any vendor call.
	intents := make([]audit.Record, len(j.Targets))
	for i, target := range j.Targets {
		intents[i] = f.record(audit.EventRun, target)
		intents[i].Detail = intentDetail(j.Idempotent)
		intents[i].Time = e.now().UTC()
	}
	if begin == nil {
		begin = e.appendIntents
	}
	switch ok, err := begin(intents); {
	case err != nil:
		f.halt()
		f.log.Error().Err(err).Msg("intent not recorded; no vendor call is made")
		for i, target := range j.Targets {
			out.Targets[i] = TargetOutcome{Target: target, Outcome: audit.OutcomeFailure, Err: fmt.Errorf("%w: intent not recorded: %w", ErrAudit, err)}
		}
		return out
	case !ok:
		out.NotRun = true
		for i, target := range j.Targets {
			out.Targets[i] = TargetOutcome{Target: target, Outcome: audit.OutcomeSkipped}
		}
		return out
	}

	var wg sync.WaitGroup
	for i, target := range j.Targets {
		wg.Go(func() { out.Targets[i] = e.runTarget(ctx, f, target) })
	}
	wg.Wait()
	return out
}

// admit applies the overlap policy. It returns ok when the fire may run,
// and otherwise the reason it is skipped.
func (e *Executor) admit(ctx context.Context, j *Job, runID string, scheduled, deadline time.Time) (reason string, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.jobs[j.Name]
	if st == nil {
		st = &jobState{done: make(chan struct{}), ends: map[string]time.Time{}}
		e.jobs[j.Name] = st
	}
	start := func() (string, bool) {
		st.running = append(st.running, runID)
		st.ends[runID] = deadline
		return "", true
	}
	busy := len(st.running) > 0 || st.queued != ""
	switch {
	case !busy || j.Overlap == OverlapAllow:
		return start()
	case st.queued == "" && st.endingBy(scheduled):
		// The running fires are bounded by this very fire and are being
		// stopped now: this fire waits for them rather than being skipped
		// behind a run that is already over.
		if err := e.waitRunning(ctx, st); err != nil {
			return fmt.Sprintf("previous run %s did not end at its deadline: %v", st.describe(), err), false
		}
		// The last fire to end may have dropped the job's state; another
		// fire may have started meanwhile.
		switch cur := e.jobs[j.Name]; {
		case cur == nil:
			e.jobs[j.Name] = st
		case cur != st && (len(cur.running) > 0 || cur.queued != ""):
			return "previous run still running: " + cur.describe(), false
		case cur != st:
			st = cur
		}
		return start()
	case j.Overlap != OverlapQueue:
		return "previous run still running: " + st.describe(), false
	case st.queued != "":
		return fmt.Sprintf("a fire is already queued (%s) behind %s", st.queued, st.describe()), false
	}
	st.queued = runID
	if err := e.waitRunning(ctx, st); err != nil {
		st.queued = ""
		e.forgetLocked(j.Name, st)
		return fmt.Sprintf("queued behind %s, gave up: %v", st.describe(), err), false
	}
	st.queued = ""
	return start()
}

// waitRunning waits until st has no running fire or ctx ends; e.mu is
// held on entry and on return, released while waiting.
func (e *Executor) waitRunning(ctx context.Context, st *jobState) error {
	for len(st.running) > 0 {
		done := st.done
		e.mu.Unlock()
		select {
		case <-done:
			e.mu.Lock()
		case <-ctx.Done():
			e.mu.Lock()
			return ctx.Err()
		}
	}
	return nil
}

// endingBy reports whether every running fire has a deadline at or before
// t, so that all of them stop by t; e.mu is held.
func (st *jobState) endingBy(t time.Time) bool {
	for _, id := range st.running {
		if d := st.ends[id]; d.IsZero() || d.After(t) {
			return false
		}
	}
	return true
}

// describe names the runs in progress; e.mu is held.
func (st *jobState) describe() string {
	if len(st.running) == 0 {
		return "none"
	}
	return strings.Join(st.running, ", ")
}

// finish ends the fire runID of job.
func (e *Executor) finish(job, runID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.jobs[job]
	if i := slices.Index(st.running, runID); i >= 0 {
		st.running = slices.Delete(st.running, i, i+1)
	}
	delete(st.ends, runID)
	close(st.done)
	st.done = make(chan struct{})
	e.forgetLocked(job, st)
}

// forgetLocked drops the state of a job with nothing running or queued.
func (e *Executor) forgetLocked(job string, st *jobState) {
	if len(st.running) == 0 && st.queued == "" && e.jobs[job] == st {
		delete(e.jobs, job)
	}
}

// skip audits a skipped fire, one record per target.
func (e *Executor) skip(f *fire, reason string, out []TargetOutcome) {
	f.log.Warn().Str("reason", reason).Msg("fire skipped by overlap policy")
	for i, target := range f.j.Targets {
		rec := f.record(audit.EventSkip, target)
		rec.Outcome = audit.OutcomeSkipped
		rec.Detail = reason
		out[i] = TargetOutcome{Target: target, Outcome: audit.OutcomeSkipped}
		if err := e.append(rec); err != nil {
			out[i].Err = err
			f.log.Error().Err(err).Str("target", target).Msg("audit append failed for a skipped fire")
		}
	}
}

// record starts an audit record of this fire about target.
func (f *fire) record(event, target string) audit.Record {
	return audit.Record{
		Event:     event,
		Job:       f.j.Name,
		RunID:     f.runID,
		Scheduled: f.scheduled,
		Action:    f.j.Action,
		Account:   f.j.Account,
		Target:    target,
	}
}

func (e *Executor) append(rec audit.Record) error {
	rec.Time = e.now().UTC()
	if err := e.audit.Append(rec); err != nil {
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	return nil
}

// auditFailed stops the fire after a record of target could not be written.
func (e *Executor) auditFailed(f *fire, to TargetOutcome, lost audit.Record, err error) TargetOutcome {
	f.halt()
	f.log.Error().Err(err).Str("target", to.Target).Str("event", lost.Event).
		Int("attempt", lost.Attempt).Str("lost_outcome", lost.Outcome).Str("lost_error", lost.Error).
		Msg("audit record not written; stopping the fire, no further vendor calls")
	to.Outcome = audit.OutcomeFailure
	to.Err = err
	return to
}

func intentDetail(idempotent bool) string {
	if idempotent {
		return "intent; idempotent"
	}
	return "intent; not idempotent"
}

// runTarget runs the attempts for one target and audits each.
func (e *Executor) runTarget(ctx context.Context, f *fire, target string) TargetOutcome {
	j := f.j
	to := TargetOutcome{Target: target, Outcome: audit.OutcomeFailure}
	log := f.log.With().Str("target", target).Logger()
	key := j.Name + " " + target
	e.track(key, 1)
	defer e.track(key, -1)

	if f.halted() {
		to.Err = fmt.Errorf("%w: not calling vendor", ErrAudit)
		return to
	}

	// The status before the action, where a verdict depends on it (CDSS
	// restarts); read before the first attempt.
	var verifyJudge, checkJudge Judge
	var verifyJudgeErr error
	if j.Verify != nil {
		verifyJudge, verifyJudgeErr = j.Verify.judgeFor(ctx, target, j.Timeout)
		if verifyJudgeErr != nil {
			log.Warn().Err(verifyJudgeErr).Msg("status read before the action failed")
		}
	}
	check := j.Check
	if check == nil {
		check = j.Verify
	}
	switch {
	case j.Idempotent || check == nil:
	case check == j.Verify:
		checkJudge = verifyJudge
	default:
		checkJudge, _ = check.judgeFor(ctx, target, j.Timeout)
	}

	b := newRetryBackOff(j.Retry, f.deadline)
	for attempt := 1; ; attempt++ {
		if f.halted() {
			to.Err = fmt.Errorf("%w: not calling vendor", ErrAudit)
			return to
		}
		if err := ctx.Err(); err != nil {
			// Already out of time (e.g. the status read before a restart
			// used it up): say so rather than blame the concurrency slot.
			return e.abandon(f, to, log, fmt.Errorf("no time left before calling the vendor: %w", err))
		}
		release, err := e.acquire(ctx, f, j.Account)
		if err != nil {
			return e.abandon(f, to, log, fmt.Errorf("wait for a concurrency slot of account %s: %w", j.Account, err))
		}
		start := time.Now()
		res, timedOut, err := call(ctx, j, target)
		dur := time.Since(start)
		release()
		to.Attempts, to.Result, to.Err = attempt, res, err

		rec := f.record(audit.EventAttempt, target)
		rec.Attempt = attempt
		rec.DurationMS = dur.Milliseconds()
		fillResult(&rec, res, err)
		var wait time.Duration
		switch {
		case err == nil:
			rec.Outcome = audit.OutcomeSuccess
			if res.Already {
				rec.Detail = "already in target state"
			}
		case ctx.Err() != nil:
			rec.Outcome = audit.OutcomeFailure
			why := "fire stopped"
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				why = "stopped at the next fire"
			}
			to.Err = fmt.Errorf("%s: %w", why, err)
			if !j.Idempotent && ambiguous(err, timedOut) {
				// The request may have reached the vendor: a restart or
				// kill cut off mid-call did not necessarily not happen.
				rec.Outcome = audit.OutcomeUnknown
				rec.Detail = why + " while the request may have reached the vendor; not re-issued: check the target"
			}
		case !j.Idempotent && ambiguous(err, timedOut):
			took, detail := e.check(ctx, f, check, checkJudge, target)
			if took {
				rec.Outcome = audit.OutcomeSuccess
				rec.Error = ""
				rec.Detail = "attempt failed (" + err.Error() + "); " + detail
				to.Err = nil
			} else {
				rec.Outcome = audit.OutcomeUnknown
				rec.Detail = detail
				to.Err = fmt.Errorf("%s: %w", detail, err)
			}
		case !vendors.IsTransient(err):
			rec.Outcome = audit.OutcomeFailure
		case j.Retry.MaxAttempts > 0 && attempt >= j.Retry.MaxAttempts:
			rec.Outcome = audit.OutcomeFailure
			to.Err = fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		default:
			b.lastErr = err
			if wait = b.NextBackOff(); wait == backoff.Stop {
				rec.Outcome = audit.OutcomeFailure
				to.Err = fmt.Errorf("%w: %w", b.reason, err)
			} else {
				rec.Outcome = audit.OutcomeRetry
			}
		}
		if to.Err != nil {
			rec.Error = to.Err.Error()
		}
		if aerr := e.append(rec); aerr != nil {
			return e.auditFailed(f, to, rec, aerr)
		}

		switch rec.Outcome {
		case audit.OutcomeSuccess:
			to.Outcome = audit.OutcomeSuccess
			log.Info().Int("attempt", attempt).Dur("duration", dur).Bool("already", res.Already).
				Str("detail", rec.Detail).Msg("action succeeded")
			if j.Verify != nil {
				e.verify(ctx, f, &to, verifyJudge, verifyJudgeErr, log)
			}
			return to
		case audit.OutcomeUnknown:
			to.Outcome = audit.OutcomeUnknown
			log.Error().Err(to.Err).Int("attempt", attempt).Msg("action outcome unknown; not re-issued")
			return to
		case audit.OutcomeFailure:
			log.Error().Err(to.Err).Int("attempt", attempt).Int("http_status", rec.HTTPStatus).
				Str("vendor_code", rec.VendorCode).Msg("action failed")
			return to
		}
		log.Warn().Err(err).Int("attempt", attempt).Dur("wait", wait).Msg("transient vendor error; retrying")
		if werr := sleep(ctx, f, wait); werr != nil {
			return e.abandon(f, to, log, werr)
		}
	}
}

// appendIntents is the BeginFunc of a fire without one: the run records,
// in one batch where the audit log can take one.
func (e *Executor) appendIntents(rs []audit.Record) (bool, error) {
	if b, ok := e.audit.(BatchAuditor); ok {
		return true, b.AppendBatch(rs)
	}
	for _, r := range rs {
		if err := e.audit.Append(r); err != nil {
			return true, err
		}
	}
	return true, nil
}

// abandon records that a target stops without a further attempt.
func (e *Executor) abandon(f *fire, to TargetOutcome, log zerolog.Logger, cause error) TargetOutcome {
	if f.halted() {
		to.Err = fmt.Errorf("%w: not calling vendor", ErrAudit)
		return to
	}
	to.Outcome = audit.OutcomeFailure
	to.Err = cause
	rec := f.record(audit.EventAbandon, to.Target)
	rec.Attempt = to.Attempts
	rec.Outcome = audit.OutcomeFailure
	rec.Error = cause.Error()
	if err := e.append(rec); err != nil {
		return e.auditFailed(f, to, rec, err)
	}
	log.Error().Err(cause).Int("attempts", to.Attempts).Msg("action abandoned")
	return to
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

// call makes one attempt with its own timeout. An attempt that runs out of
// its own time is a transient timeout, whatever the action returned, and
// timedOut is set.
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

// acquire takes a call slot of account.
func (e *Executor) acquire(ctx context.Context, f *fire, account string) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sem := e.sem(account)
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-f.stop:
		return nil, fmt.Errorf("%w: not calling vendor", ErrAudit)
	}
}

func (e *Executor) sem(account string) chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.sems[account]
	if !ok {
		n := DefaultConcurrency
		if e.concurrency != nil {
			if c := e.concurrency(account); c > 0 {
				n = c
			}
		}
		s = make(chan struct{}, n)
		e.sems[account] = s
	}
	return s
}

func (e *Executor) track(key string, delta int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inflight[key] += delta; e.inflight[key] <= 0 {
		delete(e.inflight, key)
	}
}

func (e *Executor) begin() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.active == 0 {
		e.idle = make(chan struct{})
	}
	e.active++
}

func (e *Executor) end() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.active--; e.active == 0 {
		close(e.idle)
	}
}

// Running returns the targets in progress, as "job target", sorted.
func (e *Executor) Running() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.inflight))
	for k := range e.inflight {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Wait returns when no fire is in progress (or queued). If ctx ends first
// it returns an error wrapping ctx's, naming what was still running.
func (e *Executor) Wait(ctx context.Context) error {
	e.mu.Lock()
	if e.active == 0 {
		e.mu.Unlock()
		return nil
	}
	idle := e.idle
	e.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		running := e.Running()
		return fmt.Errorf("executor: abandoned %d running targets [%s]: %w",
			len(running), strings.Join(running, ", "), ctx.Err())
	}
}
