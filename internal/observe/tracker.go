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

// apply adds one record of the run and sets its outcome. It costs the
// same for the run's first target as for its 10 000th: targets are found
// through an index and the outcome is summarised from counts.
func (run *Run) apply(r audit.Record) {
	run.Time = r.Time
	i := run.target(r.Target)
	tg := &run.Targets[i]
	was := tg.Outcome
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
	if tg.Outcome != was {
		run.ix.leave(run.Targets, i, was)
		run.ix.enter(i, tg.Outcome)
	}
	run.summarize()
}

// runIndex lets a Run with many targets take each record in constant
// time: where each target is, how many targets have each settled
// outcome, the first of them in target order, and how many are pending.
type runIndex struct {
	pos     map[string]int // target → its index in Run.Targets
	count   map[string]int // settled outcome → targets that have it
	first   map[string]int // settled outcome → the smallest index of a target that has it
	pending int            // targets without an outcome, or between retries
}

func pendingOutcome(o string) bool { return o == "" || o == audit.OutcomeRetry }

func (ix *runIndex) enter(i int, o string) {
	if pendingOutcome(o) {
		ix.pending++
		return
	}
	ix.count[o]++
	if f, ok := ix.first[o]; !ok || i < f {
		ix.first[o] = i
	}
}

// leave takes target i out of outcome o; targets already holds its new
// outcome.
func (ix *runIndex) leave(targets []Target, i int, o string) {
	if pendingOutcome(o) {
		ix.pending--
		return
	}
	ix.count[o]--
	if ix.count[o] == 0 {
		delete(ix.count, o)
		delete(ix.first, o)
		return
	}
	if ix.first[o] == i { // rare: a settled target's outcome changed (verify_failed after success)
		for j := range targets {
			if targets[j].Outcome == o {
				ix.first[o] = j
				break
			}
		}
	}
}

// target returns the index of the named target, adding it (pending).
func (r *Run) target(name string) int {
	if r.ix == nil {
		r.ix = &runIndex{pos: make(map[string]int, len(r.Targets)), count: map[string]int{}, first: map[string]int{}}
		for i, t := range r.Targets {
			r.ix.pos[t.Target] = i
			r.ix.enter(i, t.Outcome)
		}
	}
	if i, ok := r.ix.pos[name]; ok {
		return i
	}
	r.Targets = append(r.Targets, Target{Target: name})
	i := len(r.Targets) - 1
	r.ix.pos[name] = i
	r.ix.enter(i, "")
	return i
}

// severity orders target outcomes: a run shows its worst.
var severity = map[string]int{
	audit.OutcomeSuccess: 1, audit.OutcomeSkipped: 2, audit.OutcomeUnverified: 1,
	audit.OutcomeMissed: 4, audit.OutcomeVerifyFailed: 5, audit.OutcomeUnknown: 6, audit.OutcomeFailure: 7,
}

// summarize sets the run's outcome and error from its targets: the worst
// settled outcome (of equally bad ones, that of the first target in
// order) with that target's error; "running" while a target has none yet
// (or is between retries) and no other target failed.
func (r *Run) summarize() {
	worst := ""
	for o := range r.ix.count {
		if worst == "" || severity[o] > severity[worst] || (severity[o] == severity[worst] && r.ix.first[o] < r.ix.first[worst]) {
			worst = o
		}
	}
	if worst == "" || (r.ix.pending > 0 && severity[worst] < severity[audit.OutcomeMissed]) {
		r.Outcome, r.Error = "running", ""
		return
	}
	r.Outcome, r.Error = worst, r.Targets[r.ix.first[worst]].Error
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
		run.Targets, run.ix = append([]Target(nil), run.Targets...), nil
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
			run.Targets, run.ix = append([]Target(nil), jt.last.Targets...), nil
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
