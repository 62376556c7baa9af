// Package executor runs one fire of a job: the job's action on each of its
// targets, in parallel, with retries, timeouts, the overlap policy and an
// audit record for every step.
//
// Retries: an error for which vendors.IsTransient reports true (network
// errors, timeouts, HTTP 5xx and 429, the vendor codes vendors.md marks
// transient) is retried with exponential backoff and ±50% jitter, waiting
// at least as long as a Retry-After hint. Retries stop after
// RetryPolicy.MaxAttempts attempts, when the next wait would end after
// RetryPolicy.MaxElapsed (counted from the first attempt, without the time
// queued for the account's turn), or when it would reach the job's next
// fire (the deadline passed to Fire): the fire never runs into the next
// one. Any other
// error is permanent: one attempt, recorded as a failure. An action that
// reports the target already in the requested state succeeds.
//
// Audit: for each target, a "run" record (the intent) is written before the
// first vendor call, and an "attempt" record after each call, before the
// executor moves on, with outcome retry, success or failure; a target that
// stops without a further call (out of time in the queue or in backoff,
// shutdown) gets an "abandon" record. If a record
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
// Queueing: every vendor call and status read waits its turn in its
// account's queue, across all jobs of the account, before it starts: a
// slot (calls in flight are bounded per account: Options.Concurrency,
// default 8), then the end of any 429 pause and a rate-limit token
// (Options.Limiter), all under the fire's context. Only then does the
// attempt start, so Job.Timeout and the retry budget count the vendor call,
// not the queue; the request carries the token it was given, so the HTTP
// transport does not make it wait again. A slot is held for one attempt or
// status read, not during backoff or poll waits. Slots go round robin
// across the account's fires, first come first served within a fire, and a
// target gets its goroutine only when it first gets a slot. An attempt
// that queued noticeably says so in its audit detail ("queued 1.2s for
// account sandbox (concurrency 64, rate 4/s)"). A target still queued when
// the fire reaches its deadline (or a 429 pause runs past it) is abandoned
// with an "abandon" record: it made no attempt.
//
// The life of one target, queue to outcome, is runTarget in target.go.
package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/ratelimit"
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
	// value < 1 or a nil func means DefaultConcurrency. It is asked at the
	// start of each fire of the account, so a reload's new limit applies
	// from the next fire.
	Concurrency func(account string) int
	// Limiter returns the rate limiter of an account, the one its HTTP
	// client's transport is wrapped with (ratelimit.Limiter.Wrap); nil (or
	// a nil func) means none. Each call and status read waits for its 429
	// pause and a token of it in the executor's queue, and carries the
	// token (ratelimit.WithTicket) so the transport does not wait for
	// another. It is asked at the start of each fire of the account.
	Limiter func(account string) *ratelimit.Limiter
}

// Executor runs fires. Its methods are safe for concurrent use.
type Executor struct {
	log         zerolog.Logger
	audit       Auditor
	now         func() time.Time
	concurrency func(string) int
	limiter     func(string) *ratelimit.Limiter

	mu       sync.Mutex
	queues   map[string]*queue    // per account
	jobs     map[string]*jobState // per job name, while a fire runs or waits
	inflight map[jobTarget]int    // targets in progress
	active   int                  // Fire calls in progress
	idle     chan struct{}        // closed when active drops to 0
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
		limiter:     opts.Limiter,
		queues:      map[string]*queue{},
		jobs:        map[string]*jobState{},
		inflight:    map[jobTarget]int{},
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

	// In the account's queue (q.mu guards next, waiters, idle, inRing,
	// allStarted).
	q          *queue
	queuedAt   time.Time     // when the targets were queued
	launch     func(i int)   // starts target i, which holds a slot, in a new goroutine
	started    chan struct{} // closed when no target will start any more
	allStarted bool
	next       int        // first target not started
	waiters    []*waiter  // started targets waiting for a slot
	idle       []chan int // goroutines whose target is done, waiting for another
	inRing     bool
	wg         sync.WaitGroup // the targets' goroutines
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

	// The targets queue for their account's turns; each gets a goroutine
	// when it first gets a slot, one whose previous target is done if
	// there is one. Those still queued when the fire runs out of time (or
	// stops) are abandoned without an attempt.
	f.q = e.queue(j.Account)
	f.started = make(chan struct{})
	f.launch = func(i int) {
		f.wg.Go(func() {
			idle := make(chan int, 1)
			for ok := true; ok; i, ok = f.q.nextTarget(f, idle) {
				out.Targets[i] = e.runTarget(ctx, f, i)
			}
		})
	}
	f.q.enqueue(f)
	select {
	case <-f.started:
	case <-ctx.Done():
	case <-f.stop:
	}
	if left := f.q.withdraw(f); len(left) > 0 {
		e.abandonQueued(ctx, f, left, out.Targets)
	}
	f.wg.Wait()
	return out
}

// abandonQueued ends targets that never left the queue: one abandon
// record each, in one batch.
func (e *Executor) abandonQueued(ctx context.Context, f *fire, left []int, outs []TargetOutcome) {
	if f.halted() {
		for _, i := range left {
			outs[i] = TargetOutcome{Target: f.j.Targets[i], Outcome: audit.OutcomeFailure, Err: fmt.Errorf("%w: not calling vendor", ErrAudit)}
		}
		return
	}
	cause := &queueError{bound: nextFire, waited: time.Since(f.queuedAt), queue: f.q.describe(), err: ctx.Err()}
	recs := make([]audit.Record, len(left))
	for k, i := range left {
		outs[i] = TargetOutcome{Target: f.j.Targets[i], Outcome: audit.OutcomeFailure, Err: cause}
		recs[k] = f.record(audit.EventAbandon, f.j.Targets[i])
		recs[k].Outcome = audit.OutcomeFailure
		recs[k].Error = cause.Error()
		recs[k].Time = e.now().UTC()
	}
	if err := e.appendAll(recs); err != nil {
		f.halt()
		f.log.Error().Err(err).Int("targets", len(left)).Msg("abandon records of queued targets not written")
		for _, i := range left {
			outs[i].Err = fmt.Errorf("%w: %w", ErrAudit, err)
		}
		return
	}
	f.log.Error().Err(cause).Int("targets", len(left)).Msg("targets abandoned in the queue; no attempt made")
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

func intentDetail(idempotent bool) string {
	if idempotent {
		return "intent; idempotent"
	}
	return "intent; not idempotent"
}

// appendIntents is the BeginFunc of a fire without one: the run records,
// in one batch where the audit log can take one.
func (e *Executor) appendIntents(rs []audit.Record) (bool, error) {
	return true, e.appendAll(rs)
}

// appendAll appends records whose Time is set, in one batch where the
// audit log can take one.
func (e *Executor) appendAll(rs []audit.Record) error {
	if b, ok := e.audit.(BatchAuditor); ok {
		return b.AppendBatch(rs)
	}
	for _, r := range rs {
		if err := e.audit.Append(r); err != nil {
			return err
		}
	}
	return nil
}

// jobTarget names a target of a job, for Running.
type jobTarget struct{ job, target string }

func (e *Executor) track(key jobTarget, delta int) {
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
		out = append(out, k.job+" "+k.target)
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
