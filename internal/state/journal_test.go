package state

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/engine"
)

// journaled is a Store attached to a real audit log in one state.dir.
type journaled struct {
	dir, auditPath string
	s              *Store
	log            *audit.Log
}

// openJournaled opens the store and its audit log as the daemon does:
// Open, the audit log checked against the stored tail, Attach.
func openJournaled(t *testing.T, dir string) *journaled {
	t.Helper()
	// A long interval: checkpoints happen only where the test asks.
	return openJournaledWith(t, dir, AttachOptions{Interval: time.Hour})
}

// openJournaledWith is openJournaled with opts for Attach (AuditPath is
// set here).
func openJournaledWith(t *testing.T, dir string, opts AttachOptions) *journaled {
	t.Helper()
	s, err := Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	seq, hash := s.AuditTail()
	path := filepath.Join(dir, "audit.jsonl")
	l, err := audit.OpenWith(path, audit.Options{ExpectSeq: seq, ExpectHash: hash})
	if err != nil {
		s.Close()
		t.Fatalf("open audit log: %v", err)
	}
	opts.AuditPath = path
	if err := s.Attach(l, opts); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	j := &journaled{dir: dir, auditPath: path, s: s, log: l}
	t.Cleanup(func() { j.s.Close(); j.log.Close() })
	return j
}

// crash ends the store and the log as kill -9 would: nothing is written
// that was not written already.
func (j *journaled) crash() {
	if j.s.stop != nil {
		close(j.s.stop)
		<-j.s.stopped
		j.s.stop = nil
	}
	j.s.mu.Lock()
	j.s.closed = true
	j.s.mu.Unlock()
	j.s.db.Close()
	j.s.lock.Close()
	j.log.Close()
}

func runRecords(job string, in Intent) []audit.Record {
	var rs []audit.Record
	for _, t := range in.Targets {
		rs = append(rs, audit.Record{Event: audit.EventRun, Job: job, RunID: in.RunID, Scheduled: in.Scheduled,
			Action: in.Action, Account: in.Account, Target: t, Detail: "intent; idempotent"})
	}
	return rs
}

func final(job string, in Intent, target, outcome string) audit.Record {
	return audit.Record{Event: audit.EventAttempt, Job: job, RunID: in.RunID, Scheduled: in.Scheduled,
		Action: in.Action, Target: target, Attempt: 1, Outcome: outcome}
}

func intentAt(job string, at time.Time, targets ...string) Intent {
	return Intent{RunID: job + "@" + at.UTC().Format(time.RFC3339), Scheduled: at, Action: "scnet.notebook.start",
		Account: "a", Targets: targets, Idempotent: true}
}

func TestClaimIsOncePerFire(t *testing.T) {
	j := openJournaled(t, t.TempDir())
	in := intentAt("on", t0, "n1", "n2")
	ok, err := j.s.Claim(Claim{Job: "on", Intent: in, Records: runRecords("on", in)})
	if err != nil || !ok {
		t.Fatalf("first Claim = %v, %v; want true", ok, err)
	}
	if ok, err := j.s.Claim(Claim{Job: "on", Intent: in, Records: runRecords("on", in)}); ok || err != nil {
		t.Errorf("second Claim of the same fire = %v, %v; want false: it is in flight", ok, err)
	}
	if ok, _ := j.s.Claim(Claim{Job: "on", Intent: in, Reissue: true, Records: runRecords("on", in)}); !ok {
		t.Errorf("re-issue Claim = false; want true: it replaces its own intent")
	}
	must(t, j.s.Done("on", t0, in.RunID))
	for _, at := range []time.Time{t0, t0.Add(-time.Hour)} {
		old := intentAt("on", at, "n1")
		if ok, _ := j.s.Claim(Claim{Job: "on", Intent: old, Records: runRecords("on", old)}); ok {
			t.Errorf("Claim of %v after %v is done = true; want false (also when the clock went back)", at, t0)
		}
	}
	recs, err := audit.ReadAll(j.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Errorf("audit records = %d; want 4: the run records of the two claims that ran, none of the refused ones", len(recs))
	}
}

// TestConcurrentClaimsOneWins races many claimers on one fire.
func TestConcurrentClaimsOneWins(t *testing.T) {
	j := openJournaled(t, t.TempDir())
	in := intentAt("on", t0, "n1")
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 32 {
		wg.Go(func() {
			ok, err := j.s.Claim(Claim{Job: "on", Intent: in, Records: runRecords("on", in)})
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("claims won = %d; want exactly 1", wins)
	}
}

// TestReplayAfterCrash: nothing reached the database after Attach; the
// audit log alone tells what was begun and what ended.
func TestReplayAfterCrash(t *testing.T) {
	dir := t.TempDir()
	j := openJournaled(t, dir)
	must(t, j.s.Sync(nil, []string{"on", "off"}, t0.Add(-time.Hour)))
	half := intentAt("on", t0, "n1", "n2")
	whole := intentAt("off", t0, "n3")
	for _, c := range []Claim{{Job: "on", Intent: half}, {Job: "off", Intent: whole}} {
		c.Records = runRecords(c.Job, c.Intent)
		if ok, err := j.s.Claim(c); !ok || err != nil {
			t.Fatalf("Claim %s = %v, %v", c.Intent.RunID, ok, err)
		}
	}
	must(t, j.log.Append(final("on", half, "n1", audit.OutcomeSuccess)))
	must(t, j.log.Append(final("off", whole, "n3", audit.OutcomeRetry)))
	must(t, j.log.Append(final("off", whole, "n3", audit.OutcomeFailure)))
	must(t, j.s.Done("off", t0, whole.RunID)) // in memory only: the checkpoint is an hour away
	j.crash()

	r := openJournaled(t, dir)
	p := r.s.Pending()
	if len(p) != 1 || p[0].RunID != half.RunID || strings.Join(p[0].Targets, ",") != "n1,n2" || !p[0].Idempotent {
		t.Fatalf("Pending() after the crash = %+v; want %s on n1,n2 (the daemon settles n1 from the audit log)", p, half.RunID)
	}
	if off := r.s.Job("off"); !off.LastDone.Equal(t0) || len(off.InFlight) != 0 {
		t.Errorf("Job(off) = %+v; want done at %v: every target has a final record", off, t0)
	}
	if on := r.s.Job("on"); !on.Since.Equal(t0.Add(-time.Hour)) {
		t.Errorf("Job(on).Since = %v; want the registration", on.Since)
	}
	// The replay is checkpointed: a second crash right away loses nothing,
	// and the stored tail covers the log.
	seq, _ := r.log.Tail()
	if got, _ := r.s.AuditTail(); got != seq {
		t.Errorf("AuditTail() = %d after Attach; want the log's tail %d", got, seq)
	}
	r.crash()
	r2 := openJournaled(t, dir)
	if p := r2.s.Pending(); len(p) != 1 {
		t.Errorf("Pending() after a second crash = %+v; want the same one intent", p)
	}
}

// TestCatchUpMissedRecordsNeverTwice: the missed records of a catch-up are
// written with its fire's intent; after a crash neither is planned again.
func TestCatchUpMissedRecordsNeverTwice(t *testing.T) {
	dir := t.TempDir()
	spec, err := engine.Parse("0 9 * * *", time.UTC, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 5, 9, 30, 0, 0, time.UTC)
	j := openJournaled(t, dir)
	must(t, j.s.Sync(nil, []string{"on"}, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)))
	plan := Plan(spec, j.s.Job("on"), now, 2*time.Hour)
	if plan.Run.IsZero() || len(plan.Missed) != 3 {
		t.Fatalf("plan = %s; want 3 missed and one to run", plan)
	}
	missed := plan.MissedRecords("on", now, func(job string, at time.Time) string { return job + "@" + at.UTC().Format(time.RFC3339) })
	in := intentAt("on", plan.Run, "n1")
	ok, err := j.s.Claim(Claim{Job: "on", Intent: in, Records: append(missed, runRecords("on", in)...),
		Settled: plan.Missed[len(plan.Missed)-1].Scheduled})
	if !ok || err != nil {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	j.crash()

	r := openJournaled(t, dir)
	again := Plan(spec, r.s.Job("on"), now.Add(time.Minute), 2*time.Hour)
	if len(again.Missed) != 0 || !again.Run.IsZero() {
		t.Errorf("plan after the crash = %s; want nothing: the missed fires are audited and the catch-up fire is in flight", again)
	}
	if p := r.s.Pending(); len(p) != 1 || p[0].RunID != in.RunID {
		t.Errorf("Pending() = %+v; want the catch-up fire", p)
	}
}

// TestSettleIsOneStep: missed records and the fire's settlement survive a
// crash together.
func TestSettleIsOneStep(t *testing.T) {
	dir := t.TempDir()
	j := openJournaled(t, dir)
	rec := audit.Record{Event: audit.EventMissed, Job: "on", RunID: "on@x", Scheduled: t0, Outcome: audit.OutcomeMissed, Detail: "older than catchup 1h"}
	must(t, j.s.Settle("on", t0, "on@x", []audit.Record{rec}))
	j.crash()
	r := openJournaled(t, dir)
	if got := r.s.Job("on"); !got.LastDone.Equal(t0) {
		t.Errorf("Job(on) after the crash = %+v; want settled at %v", got, t0)
	}
	recs, _ := audit.ReadAll(r.auditPath)
	if len(recs) != 1 {
		t.Errorf("audit records = %d; want the one missed record", len(recs))
	}
}

// TestManualTriggerIsNotAFire: records of `scheduler trigger` do not move
// the run state.
func TestManualTriggerIsNotAFire(t *testing.T) {
	dir := t.TempDir()
	j := openJournaled(t, dir)
	in := intentAt("on", t0.Add(time.Hour), "n1")
	rs := runRecords("on", in)
	rs[0].Detail += "; " + ManualTrigger
	must(t, j.log.AppendBatch(rs))
	must(t, j.log.Append(final("on", in, "n1", audit.OutcomeSuccess)))
	j.crash()
	r := openJournaled(t, dir)
	if got := r.s.Job("on"); !got.LastDone.IsZero() || len(got.InFlight) != 0 {
		t.Errorf("Job(on) = %+v; want untouched by a manual trigger", got)
	}
}

// TestCheckpointUnderLoad claims and settles from many goroutines while
// checkpoints run, crashes, and checks that every acknowledged fact is
// back: claimed fires are done or pending, and LastDone is the newest done.
func TestCheckpointUnderLoad(t *testing.T) {
	dir := t.TempDir()
	j := openJournaled(t, dir)
	const jobs, fires = 8, 40
	var wg sync.WaitGroup
	done := make([]time.Time, jobs)
	for n := range jobs {
		wg.Go(func() {
			name := fmt.Sprint("job", n)
			for i := 1; i <= fires; i++ {
				in := intentAt(name, t0.Add(time.Duration(i)*time.Minute), "t")
				if ok, err := j.s.Claim(Claim{Job: name, Intent: in, Records: runRecords(name, in)}); !ok || err != nil {
					t.Errorf("Claim %s = %v, %v", in.RunID, ok, err)
					return
				}
				if i%3 == 0 {
					continue // left in flight
				}
				if err := j.log.Append(final(name, in, "t", audit.OutcomeSuccess)); err != nil {
					t.Error(err)
					return
				}
				if i == fires {
					// A checkpoint between a fire's outcome record and its
					// Done (the executor writes the outcome, then the daemon
					// calls Done). Each job's last checkpoint is this one,
					// so the last of all is taken in the window and the
					// crash below finds that fire in flight in state.db
					// with a tail past its outcome: replay must settle it.
					// Before c40b3d1 it did not, and only the chance
					// checkpoints of other jobs landed there (1 run in 8).
					if err := j.s.Checkpoint(); err != nil {
						t.Error(err)
					}
				}
				if err := j.s.Done(name, in.Scheduled, in.RunID); err != nil {
					t.Error(err)
					return
				}
				done[n] = in.Scheduled
				if i%7 == 0 {
					if err := j.s.Checkpoint(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	j.crash()
	r := openJournaled(t, dir)
	for n := range jobs {
		name := fmt.Sprint("job", n)
		js := r.s.Job(name)
		if !js.LastDone.Equal(done[n]) {
			t.Errorf("%s: LastDone = %v; want %v", name, js.LastDone, done[n])
		}
		if len(js.InFlight) != fires/3 {
			t.Errorf("%s: %d in flight; want %d (every third fire)", name, len(js.InFlight), fires/3)
		}
	}
}

func TestMigrateV1(t *testing.T) {
	dir, old := validFile(t)
	s := mustOpen(t, dir)
	if got := s.Job("nightly-stop"); got.LastRunID != "nightly-stop@x" || !got.Since.Equal(t0) {
		t.Errorf("Job(nightly-stop) after migration = %+v", got)
	}
	if p := s.Pending(); len(p) != 1 || p[0].RunID != "morning-start@1" || strings.Join(p[0].Targets, ",") != "n1,n2" {
		t.Errorf("Pending() after migration = %+v; want the old file's intent", p)
	}
	if seq, hash := s.AuditTail(); seq != 7 || hash != "h7" {
		t.Errorf("AuditTail() = %d %q; want 7 h7", seq, hash)
	}
	if n := s.Notes(); len(n) != 1 || !strings.Contains(n[0], "migrated the run state of 2 jobs") {
		t.Errorf("Notes() = %q; want the migration named", n)
	}
	kept, _ := os.ReadFile(filepath.Join(dir, movedV1Name))
	if !bytes.Equal(kept, old) {
		t.Errorf("%s does not hold the old file's bytes", movedV1Name)
	}
	// What an older binary finds: a state.json of another format, which it
	// refuses (it reads only scheduler-state/v1) rather than start empty.
	marker, _ := os.ReadFile(filepath.Join(dir, FileNameV1))
	if bytes.Contains(marker, []byte(FormatV1)) || !bytes.Contains(marker, []byte(`"format": "`+Format+`"`)) {
		t.Errorf("marker state.json = %s; want format %s", marker, Format)
	}
	must(t, s.Close())
	r := mustOpen(t, dir) // opens again without migrating twice
	if n := r.Notes(); len(n) != 0 {
		t.Errorf("second Open notes %q; want none", n)
	}
	if got := r.Job("nightly-stop"); got.LastRunID != "nightly-stop@x" {
		t.Errorf("Job after reopen = %+v", got)
	}
}

func TestMigrateRefusesBothStates(t *testing.T) {
	dir, old := validFile(t)
	must(t, os.Remove(filepath.Join(dir, FileNameV1)))
	s := mustOpen(t, dir)
	must(t, s.Register("new-job", t0))
	must(t, s.Close())
	// An older binary ran here after the upgrade and wrote its own file.
	must(t, os.WriteFile(filepath.Join(dir, FileNameV1), old, 0o600))
	_, err := Open(dir)
	if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "an older scheduler ran here") {
		t.Fatalf("Open with both = %v; want a refusal naming the cause", err)
	}
}

func TestOpenRefusesBadDatabase(t *testing.T) {
	for name, content := range map[string][]byte{
		"garbage": bytes.Repeat([]byte("not a database "), 1000),
		"empty":   {},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			must(t, os.WriteFile(path, content, 0o600))
			_, err := Open(dir)
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != path || !strings.Contains(err.Error(), "aside") {
				t.Fatalf("Open = %v; want a FileError naming %s and the way out", err, path)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, content) {
				t.Errorf("Open changed the refused file")
			}
		})
	}
}

func TestReadAuditTailWhileInUse(t *testing.T) {
	dir := t.TempDir()
	j := openJournaled(t, dir)
	in := intentAt("on", t0, "n1")
	if ok, err := j.s.Claim(Claim{Job: "on", Intent: in, Records: runRecords("on", in)}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	must(t, j.s.Checkpoint())
	want, _ := j.log.Tail()
	got, _, err := ReadAuditTail(filepath.Join(dir, "state"))
	if err != nil || got != want {
		t.Errorf("ReadAuditTail while the store is open = %d, %v; want %d", got, err, want)
	}
	must(t, j.s.Close())
	if got, _, err := ReadAuditTail(filepath.Join(dir, "state")); err != nil || got != want {
		t.Errorf("ReadAuditTail after Close = %d, %v; want %d", got, err, want)
	}
}

func TestOpenRefusesForeignDatabase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	must(t, db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err }))
	must(t, db.Close())
	_, err = Open(dir)
	if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "format marker") {
		t.Fatalf("Open of another program's bbolt file = %v; want ErrForeign naming the missing marker", err)
	}
}
