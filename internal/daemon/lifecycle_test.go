package daemon

import (
	"fmt"
	"net/http"
	"os"
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

// A rejected edit of a config whose audit log lives in the same folder
// must be audited once, not re-read on every audit write it causes.
func TestWatchRejectedEditBesideAuditLogIsAuditedOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	auditPath := filepath.Join(dir, "audit.jsonl")
	good := fmt.Sprintf(watchBase, "audit.jsonl", "state", "one")
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	stop, logs := startWatchedWith(t, path, auditPath, 0)
	defer stop()
	bad := []byte(good + "jobs: [oops\n")
	replaceFile(t, path, bad)
	waitUntil(t, "a reload record", func() bool { return len(reloads(t, auditPath)) >= 1 })
	// Write the same bad content again: once the daemon has skipped it as
	// unchanged, a reload caused by the audit write would have happened.
	skips := unchangedSkips(logs)
	replaceFile(t, path, bad)
	waitUntil(t, "the unchanged write to be skipped", func() bool {
		return unchangedSkips(logs) > skips || len(reloads(t, auditPath)) > 1
	})
	if n := len(reloads(t, auditPath)); n != 1 {
		t.Fatalf("%d reload records after one bad edit; want 1 (the audit write must not trigger another reload)", n)
	}
}

// Shutdown waits the whole grace period for a catch-up fire that is still
// in flight, and that fire completes.
func TestShutdownWaitsForCatchUpFireWithinGrace(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	body := `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
defaults: {catchup: 1h, timeout: 10s}
accounts:
  sb:
    vendor: sandbox
    faults: [{target: "nb-1", kind: delay, delay: 1500ms}]
jobs:
  - {name: on, schedule: "0 0 * * *", account: sb, action: modelarts.notebook.start, targets: [nb-1]}
`
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// The daemon last ran before today's midnight fire.
	midnight := time.Now().UTC().Truncate(24 * time.Hour)
	now := midnight.Add(10 * time.Minute)
	s, err := state.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Register("on", midnight.Add(-48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Done("on", midnight.Add(-24*time.Hour), executor.RunID("on", midnight.Add(-24*time.Hour))); err != nil {
		t.Fatal(err)
	}
	s.Close()
	d, err := Start(Options{ConfigPath: cfg, Log: zerolog.Nop(), Now: func() time.Time { return now }, Grace: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// The catch-up fire is in flight, in the delay fault: its intent is
	// audited (before any call), its attempt is not yet.
	waitUntil(t, "the catch-up fire in flight", func() bool {
		recs, err := audit.ReadAll(filepath.Join(dir, "audit.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Event == audit.EventAttempt {
				t.Fatalf("attempt %+v audited before shutdown; the delay fault did not hold the call", r)
			}
		}
		return slices.ContainsFunc(recs, func(r audit.Record) bool { return r.Event == audit.EventRun && r.Job == "on" })
	})
	began := time.Now()
	if err := d.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(began); took < time.Second {
		t.Errorf("Shutdown returned after %v; want it to wait for the in-flight call (~1.3s)", took)
	}
	recs, err := audit.ReadAll(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, r := range recs {
		if r.Event == audit.EventAttempt {
			outcomes = append(outcomes, r.Outcome)
		}
	}
	if strings.Join(outcomes, ",") != "success" {
		t.Fatalf("attempt outcomes %v; want one success (the call finished inside the grace period)", outcomes)
	}
}

// A reload closes the replaced plan's clients (here a sandbox account's
// emulated cloud) once no fire runs under it.
func TestReloadClosesReplacedPlan(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	write := func(job string) {
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(watchBase, "audit.jsonl", "state", job)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	d, err := Start(Options{ConfigPath: cfg, Log: zerolog.Nop(), Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown()
	d.mu.Lock()
	oldURL := d.plan.sandboxClouds()["sb"].URL()
	d.mu.Unlock()
	if resp, err := http.Get(oldURL + "/"); err != nil {
		t.Fatalf("old cloud not serving before the reload: %v", err)
	} else {
		resp.Body.Close()
	}
	write("two")
	d.Reload(true)
	if _, err := http.Get(oldURL + "/"); err == nil {
		t.Fatal("the replaced plan's emulated cloud still serves after the reload")
	}
}

// A catch-up fire that reaches its start after a newer fire of the job
// already ran is audited missed (superseded), never dropped silently.
func TestLateCatchUpFireSupersededIsAudited(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(watchBase, "audit.jsonl", "state", "on")), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Start(Options{ConfigPath: cfg, Log: zerolog.Nop(), Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown()
	older := time.Date(2026, 1, 14, 9, 0, 0, 0, time.UTC)
	newer := older.Add(24 * time.Hour)
	if err := d.store.Done("on", newer, executor.RunID("on", newer)); err != nil {
		t.Fatal(err)
	}
	d.goFire("on", older, nil, &catchUpMissed{fire: older}) // the catch-up fire, late
	waitFires(d)
	recs, err := audit.ReadAll(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var missed []audit.Record
	for _, r := range recs {
		if r.RunID == executor.RunID("on", older) {
			if r.Event != audit.EventMissed {
				t.Fatalf("late catch-up fire wrote %s/%s; want only a missed record", r.Event, r.Outcome)
			}
			missed = append(missed, r)
		}
	}
	if len(missed) != 1 || missed[0].Outcome != audit.OutcomeMissed || !strings.Contains(missed[0].Detail, "superseded") || missed[0].Target != "x" {
		t.Fatalf("records for the late catch-up fire = %+v; want one missed record (superseded) for target x", missed)
	}
}

// A fire that starts so late that its next fire is due within the runway
// is audited missed (superseded) and settled, not attempted and failed.
func TestTooLateFireIsMissedNotFailed(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(watchBase, "audit.jsonl", "state", "on")), 0o600); err != nil {
		t.Fatal(err)
	}
	// "0 9 * * *": the fire of 2026-01-14 09:00 seen at 2026-01-15 08:59:59.9.
	scheduled := time.Date(2026, 1, 14, 9, 0, 0, 0, time.UTC)
	now := scheduled.Add(24*time.Hour - 100*time.Millisecond)
	d, err := Start(Options{ConfigPath: cfg, Log: zerolog.Nop(), Grace: time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown()
	// A catch-up fire: the day before was missed, superseded by it.
	older := scheduled.Add(-24 * time.Hour)
	d.goFire("on", scheduled, nil, &catchUpMissed{fire: scheduled, settled: older, records: []audit.Record{{
		Event: audit.EventMissed, Job: "on", RunID: executor.RunID("on", older), Scheduled: older, Outcome: audit.OutcomeMissed,
		Detail: "superseded by the newer missed fire at " + scheduled.Format(time.RFC3339)}}})
	waitFires(d)
	var got []string
	recs, _ := audit.ReadAll(filepath.Join(dir, "audit.jsonl"))
	for _, r := range recs {
		if r.RunID == executor.RunID("on", older) {
			// It cannot name a fire that never ran as its superseder.
			if want := "superseded by the fire at 2026-01-15T09:00:00Z: the newest missed fire, 2026-01-14T09:00:00Z, came too late to run"; r.Detail != want {
				t.Errorf("older missed fire: detail %q; want %q", r.Detail, want)
			}
		}
		if r.RunID == executor.RunID("on", scheduled) {
			got = append(got, r.Event+"/"+r.Outcome)
			if !strings.Contains(r.Detail, "too late to run") {
				t.Errorf("detail %q; want it to say too late to run", r.Detail)
			}
		}
	}
	if strings.Join(got, " ") != "missed/missed" {
		t.Fatalf("records %v; want one missed record", got)
	}
	if st := d.store.Job("on"); !st.LastDone.Equal(scheduled) {
		t.Errorf("LastDone = %v; want the missed fire settled (%v)", st.LastDone, scheduled)
	}
}
