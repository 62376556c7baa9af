package observe

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
)

// recentFailures is how many failure records the status keeps.
const recentFailures = 20

// Tracker is the sink that keeps, from the record stream, what the status
// shows about jobs: each job's newest fire with its per-target outcomes,
// its newest fully successful fire, throttled accounts, the newest
// failures and the newest reload. Its methods are safe for concurrent use.
type Tracker struct {
	mu        sync.Mutex
	jobs      map[string]*jobTrack
	throttled map[string]*Throttled
	failures  []audit.Record // ring, newest last
	reload    Reload
	auditErr  string
}

type jobTrack struct {
	last        *Run
	lastSuccess time.Time
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{jobs: map[string]*jobTrack{}, throttled: map[string]*Throttled{}}
}

// Observe takes one batch of the record stream (see Hub).
func (t *Tracker) Observe(b Batch) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b.Err != nil {
		t.auditErr = "audit log write failed: " + b.Err.Error()
		return
	}
	for _, r := range b.Records {
		t.observe(r, true)
	}
}

// observe takes one record. Restored records (live false) tell the jobs'
// runs and the failures, not what counts since the daemon started
// (throttled accounts) nor its config (the newest reload).
func (t *Tracker) observe(r audit.Record, live bool) {
	if live && r.HTTPStatus == 429 && r.Account != "" {
		th := t.throttled[r.Account]
		if th == nil {
			th = &Throttled{Account: r.Account}
			t.throttled[r.Account] = th
		}
		th.Total++
		th.Last = r.Time
	}
	if isFailure(r) {
		t.failures = append(t.failures, r)
		if len(t.failures) > recentFailures {
			t.failures = t.failures[len(t.failures)-recentFailures:]
		}
	}
	if r.Event == audit.EventReload {
		if !live {
			return
		}
		t.reload = Reload{Time: r.Time, Successful: r.Outcome == audit.OutcomeSuccess, Error: r.Error}
		return
	}
	if r.Job == "" || r.RunID == "" {
		return
	}
	jt := t.jobs[r.Job]
	if jt == nil {
		jt = &jobTrack{}
		t.jobs[r.Job] = jt
	}
	run := jt.last
	if run == nil || run.RunID != r.RunID {
		// An older fire's late record (a catch-up's missed records come
		// with the newer fire) does not replace the newest run.
		if run != nil && !r.Scheduled.IsZero() && r.Scheduled.Before(run.Scheduled) {
			return
		}
		run = &Run{RunID: r.RunID, Scheduled: r.Scheduled, Outcome: "running"}
		jt.last = run
	}
	run.apply(r)
	if run.Outcome == audit.OutcomeSuccess && run.Scheduled.After(jt.lastSuccess) {
		jt.lastSuccess = run.Scheduled
	}
}

// apply adds one record of the run and sets its outcome.
func (run *Run) apply(r audit.Record) {
	run.Time = r.Time
	tg := run.target(r.Target)
	switch r.Event {
	case audit.EventRun:
		// intent: the call is in flight
	case audit.EventVerify:
		tg.Verify = r.Outcome
		if r.Outcome == audit.OutcomeVerifyFailed {
			tg.Outcome, tg.Error = r.Outcome, r.Error
		}
	default:
		if r.Attempt > tg.Attempts {
			tg.Attempts = r.Attempt
		}
		tg.Outcome, tg.Error = r.Outcome, r.Error
	}
	run.summarize()
}

func (r *Run) target(name string) *Target {
	for i := range r.Targets {
		if r.Targets[i].Target == name {
			return &r.Targets[i]
		}
	}
	r.Targets = append(r.Targets, Target{Target: name})
	return &r.Targets[len(r.Targets)-1]
}

// severity orders target outcomes: a run shows its worst.
var severity = map[string]int{
	audit.OutcomeSuccess: 1, audit.OutcomeSkipped: 2, audit.OutcomeUnverified: 1,
	audit.OutcomeMissed: 4, audit.OutcomeVerifyFailed: 5, audit.OutcomeUnknown: 6, audit.OutcomeFailure: 7,
}

// summarize sets the run's outcome and error from its targets: the worst
// settled outcome; "running" while a target has none yet (or is between
// retries) and no other target failed.
func (r *Run) summarize() {
	worst, err := "", ""
	pending := false
	for _, t := range r.Targets {
		if t.Outcome == "" || t.Outcome == audit.OutcomeRetry {
			pending = true
			continue
		}
		if worst == "" || severity[t.Outcome] > severity[worst] {
			worst, err = t.Outcome, t.Error
		}
	}
	if worst == "" || (pending && severity[worst] < severity[audit.OutcomeMissed]) {
		r.Outcome, r.Error = "running", ""
		return
	}
	r.Outcome, r.Error = worst, err
}

// isFailure reports whether r belongs in the status's recent failures.
func isFailure(r audit.Record) bool {
	switch r.Outcome {
	case audit.OutcomeFailure, audit.OutcomeUnknown, audit.OutcomeVerifyFailed, audit.OutcomeMissed:
		return true
	}
	return false
}

// NewestFailure returns the job whose newest fire failed most recently
// (a target failure, unknown, verify_failed or missed), with that fire;
// ok is false when no job's newest fire failed. A daemon that restarts
// tells it in its one-line status, as it would have before the restart.
func (t *Tracker) NewestFailure() (job string, run Run, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, jt := range t.jobs {
		if jt.last == nil || severity[jt.last.Outcome] < severity[audit.OutcomeMissed] {
			continue
		}
		if !ok || jt.last.Time.After(run.Time) || (jt.last.Time.Equal(run.Time) && name < job) {
			job, run, ok = name, *jt.last, true
		}
	}
	if ok {
		run.Targets = append([]Target(nil), run.Targets...)
	}
	return job, run, ok
}

// Fill adds what the tracker knows to st: per job (matched by name) the
// newest run and last success, and the throttled accounts, failures and
// reload.
func (t *Tracker) Fill(st *Status) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range st.Jobs {
		jt := t.jobs[st.Jobs[i].Name]
		if jt == nil {
			continue
		}
		st.Jobs[i].LastSuccess = jt.lastSuccess
		if jt.last != nil {
			run := *jt.last
			run.Targets = append([]Target(nil), jt.last.Targets...)
			st.Jobs[i].Last = &run
		}
	}
	st.Throttled = st.Throttled[:0]
	for _, th := range t.throttled {
		st.Throttled = append(st.Throttled, *th)
	}
	sortThrottled(st.Throttled)
	st.RecentFailures = make([]audit.Record, 0, len(t.failures))
	for i := len(t.failures) - 1; i >= 0; i-- {
		st.RecentFailures = append(st.RecentFailures, t.failures[i])
	}
	if !t.reload.Time.IsZero() {
		st.Reload = t.reload
	}
	if t.auditErr != "" && st.Problem == "" {
		st.Problem = t.auditErr
	}
}

func sortThrottled(ts []Throttled) {
	slices.SortFunc(ts, func(a, b Throttled) int { return strings.Compare(a.Account, b.Account) })
}
