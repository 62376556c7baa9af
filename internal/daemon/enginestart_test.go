package daemon

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/executor"
	"github.com/cloudcron/scheduler/internal/state"
)

// startHeldAtEngine starts a daemon in dir whose one job, tick, starts
// nb-1 on the sandbox every second (overlap: allow), with extra lines
// before accounts:, holding start-up 1.5 s between catch-up's instant and
// the engine's start; it returns the daemon and when Start returned.
func startHeldAtEngine(t *testing.T, dir, extra string) (*Daemon, time.Time) {
	t.Helper()
	cfg := filepath.Join(dir, "config.yaml")
	writeConfig(t, cfg, `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
`+extra+`accounts:
  sb: {vendor: sandbox}
jobs:
  - {name: tick, schedule: "* * * * * *", account: sb, action: modelarts.notebook.start, targets: [nb-1], overlap: allow}
`)
	old := holdAt
	holdAt = "engine:1500ms"
	t.Cleanup(func() { holdAt = old })
	d, err := Start(Options{ConfigPath: cfg, Log: zerolog.Nop(), Grace: 5 * time.Second})
	holdAt = old
	if err != nil {
		t.Fatal(err)
	}
	return d, time.Now()
}

// TestFireDueWhileEngineStartsIsNotLost holds start-up for 1.5 s between
// catch-up's instant and the engine's start, as a loaded machine does
// when cron's goroutines begin late: the fires of a job due every second
// in that time are the engine's and each runs (or, due less than the
// runway before the next, is audited missed); no second from the hold on
// is left without a record. (The kill -9 test found one lost this way
// in a full -race run: "has no audit record at all: silently lost".)
func TestFireDueWhileEngineStartsIsNotLost(t *testing.T) {
	dir := t.TempDir()
	d, ready := startHeldAtEngine(t, dir, "")
	// Every whole second from one before READY (inside the hold: after
	// catch-up's instant, before the engine began) to two after it.
	first := ready.Add(-time.Second).Truncate(time.Second).Add(time.Second)
	last := ready.Add(2 * time.Second).Truncate(time.Second)
	scheduled := map[time.Time]bool{}
	waitUntil(t, "the fires up to two seconds after READY", func() bool {
		recs, err := audit.ReadAll(filepath.Join(dir, "audit.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			// Run, or missed as too late when the hold left less than
			// the runway before the next fire (which then runs).
			if r.Job == "tick" && (r.Event == audit.EventRun || r.Event == audit.EventMissed) {
				scheduled[r.Scheduled.UTC()] = true
			}
		}
		return scheduled[last.UTC()]
	})
	if err := d.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for s := first; !s.After(last); s = s.Add(time.Second) {
		if !scheduled[s.UTC()] {
			t.Errorf("the fire of %s (READY at %s) has no record: lost while the engine started", s.Format("15:04:05.000"), ready.Format("15:04:05.000"))
		}
	}
}

// TestCatchUpOvertakenByNextFire holds start-up 1.5 s after catch-up's
// instant: the catch-up fire of a job due every second reaches its turn
// after the job's next fire came due. That fire is the engine's and runs;
// the catch-up fire is audited missed, superseded by it, instead of
// running the same start again (overlap: allow, as here) or being skipped
// behind it unsettled (the kill -9 test found "has only [skip …previous
// run still running: <the newer fire>]").
func TestCatchUpOvertakenByNextFire(t *testing.T) {
	dir := t.TempDir()
	lastDone := time.Now().Truncate(time.Second).Add(-3 * time.Second)
	s, err := state.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Register("tick", lastDone.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Done("tick", lastDone, executor.RunID("tick", lastDone)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	d, ready := startHeldAtEngine(t, dir, "defaults: {catchup: 1h}\n")
	last := ready.Add(2 * time.Second).Truncate(time.Second)
	var recs []audit.Record
	waitUntil(t, "the fires up to two seconds after READY", func() bool {
		if recs, err = audit.ReadAll(filepath.Join(dir, "audit.jsonl")); err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(recs, func(r audit.Record) bool { return r.Event == audit.EventRun && r.Scheduled.Equal(last) })
	})
	if err := d.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if recs, err = audit.ReadAll(filepath.Join(dir, "audit.jsonl")); err != nil {
		t.Fatal(err)
	}
	byFire := map[time.Time][]audit.Record{}
	var overtaken time.Time
	for _, r := range recs {
		if r.Job != "tick" {
			continue
		}
		byFire[r.Scheduled.UTC()] = append(byFire[r.Scheduled.UTC()], r)
		if r.Event == audit.EventSkip {
			t.Errorf("fire %s skipped: %s", r.Scheduled.Format("15:04:05"), r.Detail)
		}
		if r.Event == audit.EventMissed && strings.HasPrefix(r.Detail, "superseded: too late to run") {
			overtaken = r.Scheduled.UTC()
			if want := r.Scheduled.Add(time.Second).UTC().Format(time.RFC3339); !strings.Contains(r.Detail, want) {
				t.Errorf("catch-up fire %s missed as %q; want it to name the next fire, %s", r.Scheduled.Format("15:04:05"), r.Detail, want)
			}
		}
	}
	if overtaken.IsZero() {
		t.Fatalf("no catch-up fire audited missed as overtaken by the next fire; records:\n%s", describeRecords(recs))
	}
	for _, r := range recs {
		// The older missed fires name the fire that did the job.
		if r.Job == "tick" && r.Event == audit.EventMissed && r.Scheduled.Before(overtaken) &&
			!strings.Contains(r.Detail, "superseded by the fire at "+overtaken.Add(time.Second).Format(time.RFC3339)) {
			t.Errorf("older fire %s missed as %q; want it superseded by the fire at %s", r.Scheduled.Format("15:04:05"), r.Detail, overtaken.Add(time.Second).Format("15:04:05"))
		}
	}
	if !slices.ContainsFunc(byFire[overtaken.Add(time.Second)], func(r audit.Record) bool { return r.Event == audit.EventRun }) {
		t.Errorf("the fire that overtook the catch-up, %s, did not run", overtaken.Add(time.Second).Format("15:04:05"))
	}
	for at := lastDone.Add(time.Second); !at.After(last); at = at.Add(time.Second) {
		if len(byFire[at.UTC()]) == 0 {
			t.Errorf("fire %s has no record (READY at %s)", at.Format("15:04:05"), ready.Format("15:04:05.000"))
		}
	}
}

func describeRecords(recs []audit.Record) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "  %s %s %s %s %q\n", r.Scheduled.Format("15:04:05"), r.Job, r.Event, r.Outcome, r.Detail)
	}
	return b.String()
}
