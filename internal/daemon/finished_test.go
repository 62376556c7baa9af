package daemon

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/cloudcron/scheduler/internal/audit"
)

// TestFinishedTargets: crash recovery counts a target as finished only on
// a final record of an interrupted fire, read from the newest two files of
// the audit log: an attempt that ended (not a retry), or a skip, abandon,
// recover or missed record. Intents, retries, records without target and
// other fires' records do not count.
func TestFinishedTargets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	add := func(recs ...audit.Record) {
		t.Helper()
		if err := l.AppendBatch(recs); err != nil {
			t.Fatal(err)
		}
	}
	rotate := func(n string) {
		t.Helper()
		if err := os.Rename(path, path+"."+n); err != nil {
			t.Fatal(err)
		}
	}
	rec := func(event, run, target, outcome string) audit.Record {
		return audit.Record{Event: event, Job: "j", RunID: run, Target: target, Outcome: outcome}
	}
	// Oldest file: beyond the two newest, not read.
	add(rec(audit.EventAttempt, "r4", "a", audit.OutcomeSuccess))
	rotate("1")
	add(
		rec(audit.EventRun, "r1", "a", ""),
		rec(audit.EventAttempt, "r1", "a", audit.OutcomeRetry), // not final
		rec(audit.EventAttempt, "r1", "b", audit.OutcomeSuccess),
		rec(audit.EventSkip, "r2", "x", audit.OutcomeSkipped),
	)
	rotate("2")
	add(
		rec(audit.EventAttempt, "r1", "c", audit.OutcomeUnknown),
		rec(audit.EventRun, "r1", "d", ""), // intent only
		rec(audit.EventAbandon, "r2", "y", audit.OutcomeFailure),
		rec(audit.EventRecover, "r2", "z", audit.OutcomeUnknown),
		rec(audit.EventMissed, "r2", "w", audit.OutcomeMissed),
		rec(audit.EventMissed, "r2", "", audit.OutcomeMissed),    // no target
		rec(audit.EventAttempt, "r3", "a", audit.OutcomeSuccess), // another fire
		rec(audit.EventAttempt, "r1", "e", audit.OutcomeRetry),   // retried...
		rec(audit.EventAttempt, "r1", "e", audit.OutcomeFailure), // ...then final
	)
	got, err := finishedTargets(path, map[string]bool{"r1": true, "r2": true, "r4": true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]bool{
		"r1": {"b": true, "c": true, "e": true},
		"r2": {"x": true, "y": true, "z": true, "w": true},
	}
	if !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("finishedTargets = %v; want %v", got, want)
	}
}
