package state

import (
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
)

// RunState is the run state as the daemon consumes it: which fires are
// done, which are claimed and in flight, and which a crashed claimer left
// without outcome. Two implementations sit beside each other: *Store, the
// embedded store of one host (bbolt in state.dir, journaled by the audit
// log), and the etcd store of a cluster (package etcdstore), where several
// replicas share one run state and a claim is a transaction that creates
// the fire's key. Both pass the contract suite in package statetest.
//
// Writes that carry audit records (Claim, Settle) write them to the
// store's journal, the replica's own audit log, in the same step as the
// change they record.
type RunState interface {
	// Job returns a copy of the state of job; the zero JobState if unknown.
	Job(name string) JobState
	// Jobs returns the names of the jobs with state, sorted.
	Jobs() []string
	// Sync registers every job of register (Since is set once, to now)
	// and forgets every job of forget, in one step.
	Sync(forget, register []string, now time.Time) error
	// Claim records a fire's intent before its first vendor call and
	// returns true, or returns false when the fire must not run: done (at
	// or before LastDone), or claimed by someone else, or in flight
	// without c.Reissue. Of several callers claiming one fire, at once or
	// one after another, exactly one gets true.
	Claim(c Claim) (bool, error)
	// Settle writes records and, with a non-zero scheduled, marks the
	// fire done in the same step (see Store.Settle).
	Settle(job string, scheduled time.Time, runID string, records []audit.Record) error
	// Done marks the fire of job at scheduled done: LastDone becomes the
	// later of LastDone and scheduled, and the fire's intent is removed.
	Done(job string, scheduled time.Time, runID string) error
	// Pending returns the intents whose claimer is gone (a crash, a kill,
	// a replica cut off), oldest first: the fires to recover.
	Pending() []PendingIntent
	// Adopt takes over the recovery of p, a fire Pending returned: true
	// for exactly one caller while p is still pending, and then the
	// caller must Claim it again with Reissue or Settle it.
	Adopt(p PendingIntent) (bool, error)
	// Close releases the run state; a claim it holds is then released
	// too, and its intent, until settled, is Pending elsewhere.
	Close() error
}

var _ RunState = (*Store)(nil)

// Adopt reports whether p is still pending in the Store: left in flight
// by the previous process and not settled or re-claimed since. One process
// holds a state directory, so nobody else can take it over.
func (s *Store) Adopt(p PendingIntent) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	return s.pending[p.RunID] && s.intents[p.RunID] != nil, nil
}
