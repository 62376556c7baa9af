// Package statetest is the contract every implementation of
// state.RunState passes: the embedded store and the etcd store run the same
// tests, so the daemon can take either.
package statetest

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/state"
)

// Opener opens the run state of one storage (a state directory, an etcd
// prefix), journaled by the audit log at auditPath, as the daemon does on
// start. Each call after the previous one was closed is a restart; close
// closes the run state and then its audit log.
type Opener func(t *testing.T, auditPath string) (rs state.RunState, close func() error)

// Run runs the contract against fresh storage from newStorage for each
// test.
func Run(t *testing.T, newStorage func(t *testing.T) Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"ClaimOnce", testClaimOnce},
		{"ClaimWritesRecords", testClaimWritesRecords},
		{"ConcurrentClaims", testConcurrentClaims},
		{"DoneFiresNeverRunAgain", testDoneNeverAgain},
		{"OutOfOrderDone", testOutOfOrderDone},
		{"Settle", testSettle},
		{"ClaimSettlesMissed", testClaimSettlesMissed},
		{"SyncAndForget", testSync},
		{"PendingAfterRestart", testPendingAfterRestart},
		{"ReissueAfterRestart", testReissueAfterRestart},
		{"DoneAfterRestart", testDoneAfterRestart},
		{"SurvivesRestart", testSurvivesRestart},
		{"Overrides", testOverrides},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{open: newStorage(t), auditPath: filepath.Join(t.TempDir(), "audit.jsonl")}
			t.Cleanup(e.closeAll)
			tc.fn(t, e)
		})
	}
}

type env struct {
	open      Opener
	auditPath string
	rs        state.RunState
	close     func() error
}

// start opens the run state; it must not be open.
func (e *env) start(t *testing.T) state.RunState {
	t.Helper()
	if e.rs != nil {
		t.Fatal("statetest: start while open")
	}
	e.rs, e.close = e.open(t, e.auditPath)
	return e.rs
}

// restart closes and opens the run state again.
func (e *env) restart(t *testing.T) state.RunState {
	t.Helper()
	e.stop(t)
	return e.start(t)
}

func (e *env) stop(t *testing.T) {
	t.Helper()
	if e.rs == nil {
		return
	}
	err := e.close()
	e.rs, e.close = nil, nil
	if err != nil {
		t.Fatalf("close: %v", err)
	}
}

func (e *env) closeAll() {
	if e.rs != nil {
		_ = e.close()
		e.rs = nil
	}
}

// records returns the audit log's records.
func (e *env) records(t *testing.T) []audit.Record {
	t.Helper()
	rs, err := audit.ReadAll(e.auditPath)
	if err != nil {
		t.Fatalf("read audit log: %v", err)
	}
	return rs
}

var base = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func runID(job string, t time.Time) string { return job + "@" + t.UTC().Format(time.RFC3339Nano) }

// claim is the claim of the fire of job at t, on targets a and b, with its
// run records.
func claim(job string, t time.Time, idempotent bool) state.Claim {
	in := state.Intent{RunID: runID(job, t), Scheduled: t, Action: "modelarts.notebook.start", Account: "otc-dev",
		Targets: []string{"a", "b"}, Idempotent: idempotent, Started: t.Add(time.Millisecond)}
	c := state.Claim{Job: job, Intent: in}
	for _, tg := range in.Targets {
		c.Records = append(c.Records, audit.Record{Time: in.Started, Event: audit.EventRun, Job: job, RunID: in.RunID,
			Scheduled: t, Action: in.Action, Account: in.Account, Target: tg, Detail: "intent; idempotent"})
	}
	return c
}

func mustClaim(t *testing.T, rs state.RunState, c state.Claim, want bool) {
	t.Helper()
	got, err := rs.Claim(c)
	if err != nil {
		t.Fatalf("Claim(%s) error: %v", c.Intent.RunID, err)
	}
	if got != want {
		t.Fatalf("Claim(%s) = %v; want %v", c.Intent.RunID, got, want)
	}
}

func mustDone(t *testing.T, rs state.RunState, job string, at time.Time) {
	t.Helper()
	if err := rs.Done(job, at, runID(job, at)); err != nil {
		t.Fatalf("Done(%s, %v): %v", job, at, err)
	}
}

func testClaimOnce(t *testing.T, e *env) {
	rs := e.start(t)
	c := claim("j", base, true)
	mustClaim(t, rs, c, true)
	mustClaim(t, rs, c, false)
	st := rs.Job("j")
	if len(st.InFlight) != 1 || st.InFlight[0].RunID != c.Intent.RunID {
		t.Fatalf("Job(j).InFlight = %+v; want the claimed intent %s", st.InFlight, c.Intent.RunID)
	}
	in := st.InFlight[0]
	if !in.Scheduled.Equal(base) || in.Action != c.Intent.Action || in.Account != c.Intent.Account ||
		!slices.Equal(in.Targets, c.Intent.Targets) || !in.Idempotent {
		t.Errorf("Job(j).InFlight[0] = %+v; want %+v", in, c.Intent)
	}
	// Another fire of the same job is a claim of its own.
	mustClaim(t, rs, claim("j", base.Add(time.Minute), true), true)
	// The same instant of another job too.
	mustClaim(t, rs, claim("k", base, true), true)
	if got := rs.Pending(); len(got) != 0 {
		t.Errorf("Pending() = %+v; want none: the fires were claimed by this run state", got)
	}
}

func testClaimWritesRecords(t *testing.T, e *env) {
	rs := e.start(t)
	c := claim("j", base, true)
	mustClaim(t, rs, c, true)
	mustClaim(t, rs, c, false) // a refused claim writes nothing
	var runs []string
	for _, r := range e.records(t) {
		if r.Event == audit.EventRun {
			runs = append(runs, r.RunID+" "+r.Target)
		}
	}
	want := []string{c.Intent.RunID + " a", c.Intent.RunID + " b"}
	if !slices.Equal(runs, want) {
		t.Fatalf("run records in the journal = %q; want %q", runs, want)
	}
}

func testConcurrentClaims(t *testing.T, e *env) {
	rs := e.start(t)
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	var errs []error
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := rs.Claim(claim("j", base, false))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				won++
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("Claim errors: %v", errors.Join(errs...))
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent claims of one fire succeeded; want exactly 1", won, n)
	}
}

func testDoneNeverAgain(t *testing.T, e *env) {
	rs := e.start(t)
	mustClaim(t, rs, claim("j", base, true), true)
	mustDone(t, rs, "j", base)
	st := rs.Job("j")
	if !st.LastDone.Equal(base) || st.LastRunID != runID("j", base) || len(st.InFlight) != 0 {
		t.Fatalf("Job(j) after Done = %+v; want LastDone %v, LastRunID %s, nothing in flight", st, base, runID("j", base))
	}
	mustClaim(t, rs, claim("j", base, true), false)
	// The clock went backwards: an older fire comes round again.
	mustClaim(t, rs, claim("j", base.Add(-time.Hour), true), false)
	mustClaim(t, rs, claim("j", base.Add(time.Hour), true), true)
}

func testOutOfOrderDone(t *testing.T, e *env) {
	rs := e.start(t)
	t1, t2 := base, base.Add(time.Minute)
	mustClaim(t, rs, claim("j", t1, true), true)
	mustClaim(t, rs, claim("j", t2, true), true)
	mustDone(t, rs, "j", t2)
	mustDone(t, rs, "j", t1)
	st := rs.Job("j")
	if !st.LastDone.Equal(t2) || st.LastRunID != runID("j", t2) || len(st.InFlight) != 0 {
		t.Fatalf("Job(j) = %+v; want LastDone %v (the newer fire's) and nothing in flight", st, t2)
	}
}

func testSettle(t *testing.T, e *env) {
	rs := e.start(t)
	missed := audit.Record{Time: base, Event: audit.EventMissed, Job: "j", RunID: runID("j", base), Scheduled: base,
		Outcome: audit.OutcomeMissed, Detail: "older than catchup 1h"}
	if err := rs.Settle("j", base, runID("j", base), []audit.Record{missed}); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	if st := rs.Job("j"); !st.LastDone.Equal(base) {
		t.Fatalf("Job(j).LastDone after Settle = %v; want %v", st.LastDone, base)
	}
	mustClaim(t, rs, claim("j", base, true), false)
	// Records only.
	note := missed
	note.Job, note.RunID, note.Scheduled = "k", "", time.Time{}
	if err := rs.Settle("k", time.Time{}, "", []audit.Record{note}); err != nil {
		t.Fatalf("Settle without a fire: %v", err)
	}
	if st := rs.Job("k"); !st.LastDone.IsZero() {
		t.Errorf("Job(k).LastDone = %v after a records-only Settle; want zero", st.LastDone)
	}
	got := 0
	for _, r := range e.records(t) {
		if r.Event == audit.EventMissed {
			got++
		}
	}
	if got != 2 {
		t.Errorf("%d missed records in the journal; want 2", got)
	}
}

func testClaimSettlesMissed(t *testing.T, e *env) {
	rs := e.start(t)
	older, fire := base, base.Add(time.Hour)
	c := claim("j", fire, true)
	c.Settled = older
	c.Records = append([]audit.Record{{Time: fire, Event: audit.EventMissed, Job: "j", RunID: runID("j", older),
		Scheduled: older, Outcome: audit.OutcomeMissed, Detail: "superseded"}}, c.Records...)
	mustClaim(t, rs, c, true)
	st := rs.Job("j")
	if !st.LastDone.Equal(older) || len(st.InFlight) != 1 {
		t.Fatalf("Job(j) = %+v; want LastDone %v (the settled missed fire) and the catch-up fire in flight", st, older)
	}
	mustClaim(t, rs, claim("j", older, true), false)
	recs := e.records(t)
	if len(recs) != 3 || recs[0].Event != audit.EventMissed {
		t.Fatalf("journal = %d records, first %q; want the missed record before the 2 run records", len(recs), recs[0].Event)
	}
}

func testSync(t *testing.T, e *env) {
	rs := e.start(t)
	if err := rs.Sync(nil, []string{"a", "b"}, base); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := rs.Sync(nil, []string{"a", "b", "c"}, base.Add(time.Hour)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got, want := rs.Jobs(), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("Jobs() = %q; want %q", got, want)
	}
	if got := rs.Job("a").Since; !got.Equal(base) {
		t.Errorf("Job(a).Since = %v; want %v (the first registration)", got, base)
	}
	if got := rs.Job("c").Since; !got.Equal(base.Add(time.Hour)) {
		t.Errorf("Job(c).Since = %v; want %v", got, base.Add(time.Hour))
	}
	if err := rs.Sync([]string{"b"}, nil, time.Time{}); err != nil {
		t.Fatalf("Sync forget: %v", err)
	}
	if got, want := rs.Jobs(), []string{"a", "c"}; !slices.Equal(got, want) {
		t.Fatalf("Jobs() after forgetting b = %q; want %q", got, want)
	}
	if st := rs.Job("b"); !st.Since.IsZero() || !st.LastDone.IsZero() {
		t.Errorf("Job(b) after Forget = %+v; want zero", st)
	}
	// Many jobs in one Sync.
	many := make([]string, 300)
	for i := range many {
		many[i] = fmt.Sprintf("job-%03d", i)
	}
	if err := rs.Sync([]string{"a", "c"}, many, base); err != nil {
		t.Fatalf("Sync of %d jobs: %v", len(many), err)
	}
	if got := rs.Jobs(); !slices.Equal(got, many) {
		t.Fatalf("Jobs() = %d names; want the %d registered", len(got), len(many))
	}
}

func testPendingAfterRestart(t *testing.T, e *env) {
	rs := e.start(t)
	kept := claim("j", base, false)
	mustClaim(t, rs, kept, true)
	mustClaim(t, rs, claim("k", base, true), true)
	mustDone(t, rs, "k", base)
	rs = e.restart(t)
	got := rs.Pending()
	if len(got) != 1 {
		t.Fatalf("Pending() after restart = %+v; want the one unsettled intent %s", got, kept.Intent.RunID)
	}
	p := got[0]
	if p.Job != "j" || p.RunID != kept.Intent.RunID || !p.Scheduled.Equal(base) || p.Action != kept.Intent.Action ||
		!slices.Equal(p.Targets, kept.Intent.Targets) || p.Idempotent {
		t.Errorf("Pending()[0] = %+v; want job j, intent %+v", p, kept.Intent)
	}
	// The fire is still in flight: a plain claim is refused.
	mustClaim(t, rs, kept, false)
	// A fire claimed by this run state is not pending.
	mustClaim(t, rs, claim("j", base.Add(time.Minute), true), true)
	if got := rs.Pending(); len(got) != 1 {
		t.Errorf("Pending() = %d intents after a new claim; want still 1", len(got))
	}
	// Settle it as unknown: no longer pending, never claimed again.
	ok, err := rs.Adopt(p)
	if err != nil || !ok {
		t.Fatalf("Adopt(%s) = %v, %v; want true", p.RunID, ok, err)
	}
	rec := state.Recover(p).Records(p, base.Add(time.Hour))
	if err := rs.Settle(p.Job, p.Scheduled, p.RunID, rec); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	if got := rs.Pending(); len(got) != 0 {
		t.Errorf("Pending() after Settle = %+v; want none", got)
	}
	if ok, err := rs.Adopt(p); err != nil || ok {
		t.Errorf("Adopt of a settled intent = %v, %v; want false", ok, err)
	}
	mustClaim(t, rs, kept, false)
}

func testReissueAfterRestart(t *testing.T, e *env) {
	rs := e.start(t)
	c := claim("j", base, true)
	mustClaim(t, rs, c, true)
	rs = e.restart(t)
	ps := rs.Pending()
	if len(ps) != 1 {
		t.Fatalf("Pending() = %+v; want 1", ps)
	}
	if ok, err := rs.Adopt(ps[0]); err != nil || !ok {
		t.Fatalf("Adopt = %v, %v; want true", ok, err)
	}
	re := c
	re.Reissue = true
	re.Intent.Targets = []string{"b"}
	mustClaim(t, rs, re, true)
	if got := rs.Pending(); len(got) != 0 {
		t.Errorf("Pending() after the re-issue's claim = %+v; want none", got)
	}
	st := rs.Job("j")
	if len(st.InFlight) != 1 || !slices.Equal(st.InFlight[0].Targets, []string{"b"}) {
		t.Fatalf("Job(j).InFlight = %+v; want the re-issued intent on target b", st.InFlight)
	}
	mustDone(t, rs, "j", base)
	rs = e.restart(t)
	if got := rs.Pending(); len(got) != 0 {
		t.Errorf("Pending() after the re-issued fire was done and a restart = %+v; want none", got)
	}
	mustClaim(t, rs, c, false)
}

func testDoneAfterRestart(t *testing.T, e *env) {
	rs := e.start(t)
	mustClaim(t, rs, claim("j", base, true), true)
	rs = e.restart(t)
	mustDone(t, rs, "j", base)
	if got := rs.Pending(); len(got) != 0 {
		t.Errorf("Pending() after Done = %+v; want none", got)
	}
	if st := rs.Job("j"); !st.LastDone.Equal(base) || len(st.InFlight) != 0 {
		t.Errorf("Job(j) = %+v; want done at %v", st, base)
	}
}

func testSurvivesRestart(t *testing.T, e *env) {
	rs := e.start(t)
	if err := rs.Sync(nil, []string{"j", "k"}, base.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, rs, claim("j", base, true), true)
	mustDone(t, rs, "j", base)
	rs = e.restart(t)
	st := rs.Job("j")
	if !st.Since.Equal(base.Add(-time.Hour)) || !st.LastDone.Equal(base) || st.LastRunID != runID("j", base) {
		t.Fatalf("Job(j) after restart = %+v; want Since %v, LastDone %v", st, base.Add(-time.Hour), base)
	}
	if got, want := rs.Jobs(), []string{"j", "k"}; !slices.Equal(got, want) {
		t.Errorf("Jobs() after restart = %q; want %q", got, want)
	}
	mustClaim(t, rs, claim("j", base, true), false)
}

func testClosed(t *testing.T, e *env) {
	rs := e.start(t)
	mustClaim(t, rs, claim("j", base, true), true)
	closed := rs
	e.stop(t)
	if ok, err := closed.Claim(claim("j", base.Add(time.Minute), true)); ok || !errors.Is(err, state.ErrClosed) {
		t.Errorf("Claim on a closed run state = %v, %v; want false, ErrClosed", ok, err)
	}
	if err := closed.Done("j", base, runID("j", base)); !errors.Is(err, state.ErrClosed) {
		t.Errorf("Done on a closed run state = %v; want ErrClosed", err)
	}
}

// overrides is the part of a run state that keeps the windows' overrides.
type overrides interface {
	Overrides() ([]state.Override, error)
	SetOverride(state.Override) error
	ClearOverride(window, target string) (bool, error)
}

func testOverrides(t *testing.T, e *env) {
	rs := e.start(t)
	ov, ok := rs.(overrides)
	if !ok {
		t.Fatalf("%T keeps no overrides", rs)
	}
	a := state.Override{Window: "lab", State: "on", From: base, Until: base.Add(time.Hour)}
	b := state.Override{Window: "lab", Target: "nb-1", State: "off", From: base, Until: base.Add(2 * time.Hour)}
	for _, o := range []state.Override{b, a} {
		if err := ov.SetOverride(o); err != nil {
			t.Fatalf("SetOverride: %v", err)
		}
	}
	a.State = "off" // replaces the window's
	if err := ov.SetOverride(a); err != nil {
		t.Fatal(err)
	}
	rs = e.restart(t)
	ov = rs.(overrides)
	got, err := ov.Overrides()
	if err != nil || len(got) != 2 || got[0].Target != "" || got[0].State != "off" || got[1].Target != "nb-1" ||
		!got[1].Until.Equal(b.Until) {
		t.Fatalf("Overrides() after a restart = %+v, %v; want the window's (off) then nb-1's", got, err)
	}
	if found, err := ov.ClearOverride("lab", "nb-1"); !found || err != nil {
		t.Errorf("ClearOverride = %v, %v; want true", found, err)
	}
	if found, err := ov.ClearOverride("lab", "nb-1"); found || err != nil {
		t.Errorf("ClearOverride again = %v, %v; want false", found, err)
	}
	if got, _ := ov.Overrides(); len(got) != 1 {
		t.Errorf("Overrides() after clearing one = %+v; want 1", got)
	}
}
