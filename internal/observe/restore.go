package observe

import (
	"slices"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
)

// DefaultRestoreBytes bounds how much of the audit log's tail Restore
// reads: about 30 000 records, a fifth of a second's decoding.
const DefaultRestoreBytes = 16 << 20

// Restored says what Restore read and found.
type Restored struct {
	audit.TailRead
	Jobs  int  // jobs asked for whose newest fire was found
	Found bool // every job asked for had its newest fire and a success, and the failures were full: reading stopped there
}

// Restore rebuilds, from the newest records of the audit log at path,
// what the tracker tells about jobs: each job's newest fire with its
// outcome and error, its last success, and the recent failures; so a
// restarted daemon (or one that was killed) shows them before its next
// fire. Call it before the tracker observes the live stream.
//
// It reads the log backwards (audit.Newest) and stops as soon as every
// job named in jobs has its newest fire read whole (back to its intent
// records) and a fire that succeeded on every target, and the recent
// failures are full; or once it has read maxBytes. A job that never
// succeeded, or never fired, makes it read up to maxBytes. It then
// replays what it read in log order, as the live stream would have
// shown it, except throttled accounts and the newest reload: those tell
// about the process since it started.
func (t *Tracker) Restore(path string, jobs []string, maxBytes int64) (Restored, error) {
	sc := restoreScan{jobs: make(map[string]*scanJob, len(jobs)), pending: len(jobs)}
	for _, j := range jobs {
		sc.jobs[j] = &scanJob{runs: map[string]*scanRun{}}
	}
	sc.pending = len(sc.jobs)
	tr, err := audit.Newest(path, maxBytes, sc.take)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, chunk := range slices.Backward(sc.read) {
		for _, r := range slices.Backward(chunk) {
			// As the live stream shows them: without the chain fields.
			r.LogID, r.Seq, r.Prev, r.Hash = "", 0, "", ""
			t.observe(r, false)
		}
	}
	res := Restored{TailRead: tr, Found: sc.done}
	for _, j := range jobs {
		if jt := t.jobs[j]; jt != nil && jt.last != nil {
			res.Jobs++
		}
	}
	return res, err
}

// restoreScan decides, record by record from the newest, when Restore
// has read enough.
type restoreScan struct {
	jobs     map[string]*scanJob
	pending  int // jobs not done
	failures int
	done     bool
	read     [][]audit.Record // newest first, in chunks (never moved once kept)
}

// readChunk is how many records a chunk of restoreScan.read holds.
const readChunk = 1024

// keep stores r and returns where.
func (sc *restoreScan) keep(r audit.Record) *audit.Record {
	if n := len(sc.read); n == 0 || len(sc.read[n-1]) == readChunk {
		sc.read = append(sc.read, make([]audit.Record, 0, readChunk))
	}
	c := &sc.read[len(sc.read)-1]
	*c = append(*c, r)
	return &(*c)[len(*c)-1]
}

type scanJob struct {
	runs   map[string]*scanRun
	newest *scanRun // the run with the latest scheduled time
	ok     int      // runs read whole that succeeded
	done   bool
}

type scanRun struct {
	id        string
	scheduled time.Time
	recs      []*audit.Record // newest first
	started   bool            // its first records (intents, or a skip, missed or audit_failed record) were read
	ok        bool

	// Each target's final outcome, from its newest decisive record (see
	// decide): what replaying the run in log order would end with.
	targets map[string]bool // target → its outcome is decided
	count   map[string]int  // decided settled outcome → targets
	pending int             // targets undecided, or decided pending
}

// decisive reports whether r sets its target's outcome when the tracker
// applies it (Run.apply): the newest such record of a target, read
// backwards, is its final outcome.
func decisive(r *audit.Record) bool {
	switch r.Event {
	case audit.EventRun:
		return false
	case audit.EventVerify:
		return r.Outcome == audit.OutcomeVerifyFailed
	}
	return true
}

// decide takes r, the run's next record read backwards, into the final
// outcomes.
func (sr *scanRun) decide(r *audit.Record) {
	if sr.targets == nil {
		sr.targets, sr.count = map[string]bool{}, map[string]int{}
	}
	decided, seen := sr.targets[r.Target]
	if !seen {
		sr.pending++
	}
	if decided || !decisive(r) {
		sr.targets[r.Target] = decided
		return
	}
	sr.targets[r.Target] = true
	if !pendingOutcome(r.Outcome) {
		sr.pending--
		sr.count[r.Outcome]++
	}
}

// startsRun reports whether r is among the first records of a fire: the
// intents (one batch for every target), or a fire's only record.
func startsRun(r audit.Record) bool {
	switch r.Event {
	case audit.EventRun, audit.EventSkip, audit.EventMissed, audit.EventAuditFailed:
		return true
	}
	return false
}

// take is Newest's callback: it keeps r, or says to stop before it.
func (sc *restoreScan) take(r audit.Record) bool {
	if sc.done {
		// Enough was read; the rest of a fire's intent batch still
		// belongs to it (a target with no other record yet).
		sj := sc.jobs[r.Job]
		if sj == nil || !startsRun(r) || sj.runs[r.RunID] == nil || !sj.runs[r.RunID].started {
			return false
		}
	}
	kept := sc.keep(r)
	if isFailure(r) {
		sc.failures++
	}
	if sj := sc.jobs[r.Job]; sj != nil && r.RunID != "" && r.Event != audit.EventReload {
		sc.add(sj, kept)
	}
	sc.done = sc.pending == 0 && sc.failures >= recentFailures
	return true
}

func (sc *restoreScan) add(sj *scanJob, r *audit.Record) {
	sr := sj.runs[r.RunID]
	if sr == nil {
		sr = &scanRun{id: r.RunID, scheduled: r.Scheduled}
		sj.runs[r.RunID] = sr
	}
	if sj.newest == nil || sr.scheduled.After(sj.newest.scheduled) {
		sj.newest = sr
	}
	sr.recs = append(sr.recs, r)
	sr.decide(r)
	sr.started = sr.started || startsRun(*r)
	if sr.started {
		ok := sr.succeeded()
		if ok != sr.ok {
			sr.ok = ok
			if ok {
				sj.ok++
			} else {
				sj.ok--
			}
		}
	}
	done := sj.newest.started && sj.ok > 0
	if done != sj.done {
		sj.done = done
		if done {
			sc.pending--
		} else {
			sc.pending++
		}
	}
}

// succeeded tells whether the tracker would show the run as a success,
// from the final outcomes: no target pending and success the worst. Only
// a run whose targets ended partly success and partly unverified (equally
// bad: the first target in order decides) is replayed.
func (sr *scanRun) succeeded() bool {
	if sr.pending > 0 || sr.count[audit.OutcomeSuccess] == 0 {
		return false
	}
	for o := range sr.count {
		if severity[o] > severity[audit.OutcomeSuccess] {
			return false
		}
	}
	if sr.count[audit.OutcomeUnverified] == 0 {
		return true
	}
	return sr.replayed()
}

// replayed replays the run's records in log order as the tracker does.
func (sr *scanRun) replayed() bool {
	run := Run{RunID: sr.id, Scheduled: sr.scheduled}
	for _, r := range slices.Backward(sr.recs) {
		run.apply(*r)
	}
	return run.Outcome == audit.OutcomeSuccess
}
