package observe

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/cloudcron/scheduler/internal/audit"
)

// naiveSummary is the run summary by its definition: the worst settled
// target outcome, of equally bad ones the first target's, with its error;
// "running" while a target is pending and none is missed or worse.
func naiveSummary(ts []Target) (outcome, err string) {
	worst, werr, pending := "", "", false
	for _, t := range ts {
		if t.Outcome == "" || t.Outcome == audit.OutcomeRetry {
			pending = true
			continue
		}
		if worst == "" || severity[t.Outcome] > severity[worst] {
			worst, werr = t.Outcome, t.Error
		}
	}
	if worst == "" || (pending && severity[worst] < severity[audit.OutcomeMissed]) {
		return "running", ""
	}
	return worst, werr
}

// randomRun returns n records of one fire over a few targets, with every
// event and outcome the tracker tells apart, in log order.
func randomRun(rng *rand.Rand, n int) []audit.Record {
	events := []string{audit.EventRun, audit.EventAttempt, audit.EventVerify, audit.EventMissed, audit.EventSkip, audit.EventAbandon}
	outcomes := []string{"", audit.OutcomeSuccess, audit.OutcomeFailure, audit.OutcomeRetry, audit.OutcomeUnknown,
		audit.OutcomeVerifyFailed, audit.OutcomeVerified, audit.OutcomeUnverified, audit.OutcomeMissed, audit.OutcomeSkipped, "abandoned"}
	recs := make([]audit.Record, n)
	for i := range recs {
		recs[i] = audit.Record{Job: "j", RunID: "j@1", Event: events[rng.IntN(len(events))],
			Target: "t" + strconv.Itoa(rng.IntN(6)), Outcome: outcomes[rng.IntN(len(outcomes))],
			Error: "e" + strconv.Itoa(i), Attempt: rng.IntN(4)}
	}
	return recs
}

// TestRunIndexMatchesDefinition applies random records to a run and checks
// after each that the indexed summary is the one by definition, also for
// a copy whose index was dropped (as Fill hands out).
func TestRunIndexMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for k := range 2000 {
		run := &Run{RunID: "j@1"}
		for i, r := range randomRun(rng, 1+rng.IntN(30)) {
			run.apply(r)
			o, e := naiveSummary(run.Targets)
			if run.Outcome != o || run.Error != e {
				t.Fatalf("run %d, record %d: summary %s %q; want %s %q (targets %+v)", k, i, run.Outcome, run.Error, o, e, run.Targets)
			}
			if i%7 == 3 { // go on from a copy without its index
				c := *run
				c.Targets, c.ix = append([]Target(nil), run.Targets...), nil
				run = &c
			}
		}
	}
}

// TestRestoreSuccessMatchesReplay reads random runs backwards, as Restore
// does, and checks after each record that the final outcomes kept while
// reading tell success exactly when replaying the records read so far in
// log order does.
func TestRestoreSuccessMatchesReplay(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	successes := 0
	for k := range 3000 {
		recs := randomRun(rng, 1+rng.IntN(20))
		if k%3 == 0 { // runs that end well, more often than at random
			for i := range recs {
				if recs[i].Outcome == audit.OutcomeFailure || recs[i].Outcome == audit.OutcomeUnknown || recs[i].Outcome == audit.OutcomeVerifyFailed {
					recs[i].Outcome = audit.OutcomeSuccess
				}
			}
		}
		sr := &scanRun{id: "j@1"}
		for i := len(recs) - 1; i >= 0; i-- {
			r := recs[i]
			sr.recs = append(sr.recs, &r)
			sr.decide(&r)
			got, want := sr.succeeded(), sr.replayed()
			if got != want {
				t.Fatalf("run %d, after reading back to record %d: succeeded %v; replay says %v (records %+v)", k, i, got, want, recs[i:])
			}
			if got {
				successes++
			}
		}
	}
	if successes == 0 {
		t.Fatal("no run succeeded: the test checks nothing")
	}
}
