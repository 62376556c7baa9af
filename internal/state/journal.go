package state

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
)

// DefaultCheckpointInterval is how long after a change the background
// checkpoint of a journaled Store runs: changes within it share one
// database transaction.
const DefaultCheckpointInterval = 200 * time.Millisecond

// AttachOptions configure Attach.
type AttachOptions struct {
	// AuditPath is the audit log's path, read to replay the records written
	// after the stored state's tail.
	AuditPath string
	// Interval: see DefaultCheckpointInterval.
	Interval time.Duration
	// OnError, if set, is told about each background checkpoint that
	// failed. The store keeps the changes in memory and retries on its own,
	// after Interval, then doubling up to MaxCheckpointRetry, and at Close.
	OnError func(error)
	// OnRecover, if set, is told when a background checkpoint succeeds
	// after OnError: the database holds the run state again.
	OnRecover func()
}

// MaxCheckpointRetry is the longest wait between two tries of a failing
// background checkpoint.
const MaxCheckpointRetry = 30 * time.Second

// ManualTrigger is the detail suffix of the run records of `scheduler
// trigger`: manual runs are not scheduled fires, and replay leaves them out
// of the run state.
const ManualTrigger = "manual trigger"

// Attach makes j the journal of the Store: it replays the records j holds
// after the stored state's audit tail (the fires begun and settled since
// the last checkpoint before a crash), then turns on journaled writes
// (Claim, Settle) and background checkpoints. Call it once, after Open and
// after the audit log was opened (and checked against AuditTail).
func (s *Store) Attach(j Journal, opts AttachOptions) error {
	if opts.Interval <= 0 {
		opts.Interval = DefaultCheckpointInterval
	}
	s.mu.Lock()
	if s.closed || s.journal != nil {
		s.mu.Unlock()
		return errors.New("state: attach: store closed or already attached")
	}
	from := s.tail.Seq
	s.mu.Unlock()
	if opts.AuditPath != "" {
		if err := s.replay(opts.AuditPath, from); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.journal = j
	s.onError = opts.OnError
	s.onRecover = opts.OnRecover
	s.interval = opts.Interval
	s.kick = make(chan struct{}, 1)
	s.stop = make(chan struct{})
	s.stopped = make(chan struct{})
	s.mu.Unlock()
	go s.loop()
	// The replayed state, and the journal's tail, go into the database now.
	return s.Checkpoint()
}

// schedule asks the background loop for a checkpoint.
func (s *Store) schedule() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// loop runs checkpoints: one per Interval at most, none while nothing
// changes. A checkpoint that fails (disk full, I/O error) is retried
// without waiting for a change: after Interval, then doubling up to
// MaxCheckpointRetry, until one succeeds. The changes stay in memory
// meanwhile, and the journal holds them durably.
func (s *Store) loop() {
	defer close(s.stopped)
	t := time.NewTimer(0)
	t.Stop()
	var retry time.Duration // while checkpoints fail: the wait before the next try
	for {
		if retry == 0 {
			select {
			case <-s.stop:
				return
			case <-s.kick:
			}
			t.Reset(s.interval)
		} else {
			t.Reset(retry)
		}
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if err := s.Checkpoint(); err != nil {
			retry = min(max(2*retry, s.interval), MaxCheckpointRetry)
			if s.onError != nil {
				s.onError(err)
			}
		} else if retry != 0 {
			retry = 0
			if s.onRecover != nil {
				s.onRecover()
			}
		}
	}
}

// Claim is one fire claimed for running: its intent and the audit records
// written with it in one durable step.
type Claim struct {
	Job    string
	Intent Intent
	// Reissue: the intent replaces the fire's own earlier one, left in
	// flight by a crash, which would otherwise refuse it.
	Reissue bool
	// Records are written to the journal in the same durable step: the
	// fire's run records on every target, and missed fires it supersedes.
	Records []audit.Record
	// Settled, if not zero, settles the job's fires up to it (they were
	// audited missed in Records): LastDone becomes at least Settled.
	Settled time.Time
}

// Claim records the intent of a fire before its first vendor call and
// returns true, or returns false when the fire must not run: it is done
// (at or before LastDone, also after the clock went backwards) or already
// in flight. The check and the intent are one step, so of two callers
// claiming one fire exactly one gets true. The intent is durable through
// c.Records in the journal (one group-committed write shared with the
// fires claimed at the same moment); the database follows at the next
// checkpoint. On error nothing is claimed.
func (s *Store) Claim(c Claim) (bool, error) {
	in := c.Intent
	if c.Job == "" || in.RunID == "" || in.Scheduled.IsZero() {
		return false, fmt.Errorf("state: claim %q: need a job name, run id and scheduled time", in.RunID)
	}
	in.Targets = slices.Clone(in.Targets)
	s.cut.RLock()
	defer s.cut.RUnlock()
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return false, ErrClosed
	case s.journal == nil:
		s.mu.Unlock()
		return false, ErrNoJournal
	}
	if !s.mayRunLocked(c.Job, in.Scheduled, in.RunID, c.Reissue) {
		s.mu.Unlock()
		return false, nil
	}
	prev := s.intents[in.RunID]
	s.putIntentLocked(&intentRec{Job: c.Job, Intent: in})
	j := s.journal
	s.mu.Unlock()

	err := j.AppendBatch(c.Records)

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.dropIntentLocked(in.RunID)
		if prev != nil {
			s.putIntentLocked(prev)
		}
		return false, err
	}
	s.dirtyIntents[in.RunID] = true
	delete(s.pending, in.RunID)
	if !c.Settled.IsZero() {
		s.settleLocked(c.Job, c.Settled)
	}
	s.schedule()
	return true, nil
}

// mayRunLocked is ShouldRun on the memory state.
func (s *Store) mayRunLocked(job string, scheduled time.Time, runID string, reissue bool) bool {
	if r := s.jobs[job]; r != nil && !scheduled.After(r.LastDone) {
		return false
	}
	for id, in := range s.byJob[job] {
		if in.Scheduled.Equal(scheduled) && !(reissue && id == runID) {
			return false
		}
	}
	return true
}

// settleLocked marks the fires of job up to t as settled (audited missed).
func (s *Store) settleLocked(job string, t time.Time) {
	r := s.jobLocked(job)
	if t.After(r.LastDone) {
		r.LastDone, r.LastRunID = t, ""
		s.dirtyJobs[job] = true
	}
}

// Settle writes records (missed or recover records about fires that do
// not run) to the journal and, in the same step, marks the fire of job at
// scheduled (run id runID) done, as Done does. A zero scheduled only
// writes the records. A crash leaves either both or neither, so a missed
// fire is never audited twice.
func (s *Store) Settle(job string, scheduled time.Time, runID string, records []audit.Record) error {
	s.cut.RLock()
	defer s.cut.RUnlock()
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.journal == nil:
		s.mu.Unlock()
		return ErrNoJournal
	}
	j := s.journal
	s.mu.Unlock()
	if err := j.AppendBatch(records); err != nil {
		return err
	}
	if job == "" || scheduled.IsZero() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.doneLocked(job, scheduled, runID)
	s.schedule()
	return nil
}

// replay applies the audit records after seq from, in order: run records
// are intents, final records (an attempt that ended, skip, abandon,
// recover, missed) settle their targets, and a fire all of whose targets
// are settled is done. Final records at or before from settle the fires
// the stored state still has in flight. Records of manual triggers are
// left out.
func (s *Store) replay(path string, from uint64) error {
	files, err := audit.Files(path)
	if err != nil {
		return fmt.Errorf("state: replay the audit log: %w", err)
	}
	// The newest files hold the records after from: start at the newest
	// file whose first record is at or before from+1.
	start := 0
	for i := len(files) - 1; i >= 0; i-- {
		first, ok, err := firstSeq(files[i])
		if err != nil {
			return err
		}
		if ok && first <= from+1 {
			start = i
			break
		}
	}
	type fire struct {
		job       string
		scheduled time.Time
		finished  map[string]bool
	}
	fires := map[string]*fire{}
	manual := map[string]bool{}
	var order []string
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, file := range files[start:] {
		fh, err := os.Open(file)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("state: replay the audit log: %w", err)
		}
		for r, err := range audit.Records(fh) {
			if err != nil || r.RunID == "" || r.Job == "" || manual[r.RunID] {
				continue
			}
			// A checkpoint can take the journal's tail after a fire's
			// final record was written and before Done reached the
			// state: the stored state then has the fire in flight and a
			// tail past its outcome. Such a fire is settled from its
			// records at or before the tail too (in the files read).
			if r.Seq <= from && (r.Event == audit.EventRun || s.intents[r.RunID] == nil) {
				continue
			}
			if r.Event == audit.EventRun && strings.HasSuffix(r.Detail, ManualTrigger) {
				manual[r.RunID] = true
				continue
			}
			f := fires[r.RunID]
			if f == nil {
				f = &fire{job: r.Job, scheduled: r.Scheduled, finished: map[string]bool{}}
				fires[r.RunID] = f
				order = append(order, r.RunID)
			}
			switch r.Event {
			case audit.EventRun:
				in := s.intents[r.RunID]
				if in == nil {
					in = &intentRec{Job: r.Job, Intent: Intent{
						RunID: r.RunID, Scheduled: r.Scheduled, Action: r.Action, Account: r.Account,
						Idempotent: strings.Contains(r.Detail, "intent; idempotent"), Started: r.Time,
					}}
					s.putIntentLocked(in)
				}
				if r.Target != "" && !slices.Contains(in.Targets, r.Target) {
					in.Targets = append(in.Targets, r.Target)
				}
				s.dirtyIntents[r.RunID] = true
				s.pending[r.RunID] = true
			case audit.EventAttempt:
				if r.Outcome != audit.OutcomeRetry {
					f.finished[r.Target] = true
				}
			case audit.EventSkip, audit.EventAbandon, audit.EventRecover, audit.EventMissed:
				f.finished[r.Target] = true
			}
		}
		fh.Close()
	}
	for _, id := range order {
		f := fires[id]
		if len(f.finished) == 0 {
			continue
		}
		if in := s.intents[id]; in != nil && slices.ContainsFunc(in.Targets, func(t string) bool { return !f.finished[t] }) {
			continue // left in flight: Pending, for the daemon's recovery
		}
		s.doneLocked(f.job, f.scheduled, id)
	}
	return nil
}

// firstSeq returns the seq of the first record of an audit file.
func firstSeq(path string) (uint64, bool, error) {
	fh, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("state: replay the audit log: %w", err)
	}
	defer fh.Close()
	for r, err := range audit.Records(fh) {
		if err != nil {
			continue
		}
		return r.Seq, true, nil
	}
	return 0, false, nil
}
