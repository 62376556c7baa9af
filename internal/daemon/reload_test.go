package daemon

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/engine"
)

// Reload tests run on the real clock. A "ticking" job fires every second
// and stops notebook nb-1, which the emulated cloud keeps stopped, so each
// fire is one request answered "already in target state". Jobs that must
// not fire during a test run on 15 January only.

const (
	everySecond = "* * * * * *"
	never       = "0 0 15 1 *"
)

// rlStart starts the daemon on e's config with the real clock.
func (e *cuEnv) rlStart(t *testing.T) *cuDaemon {
	t.Helper()
	return e.rlStartNow(t, nil)
}

// rlStartNow is rlStart with the daemon's clock (config anchors, catch-up)
// read from now; the engine still runs on the real clock.
func (e *cuEnv) rlStartNow(t *testing.T, now func() time.Time) *cuDaemon {
	t.Helper()
	d, err := Start(Options{ConfigPath: e.config, Log: zerolog.Nop(), Grace: 5 * time.Second, Now: now})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	cd := &cuDaemon{Daemon: d, t: t}
	t.Cleanup(func() { cd.stop() })
	return cd
}

// lastReload returns the newest reload record.
func lastReload(t *testing.T, path string) audit.Record {
	t.Helper()
	rs := cuRecords(t, path, audit.EventReload, "")
	if len(rs) == 0 {
		t.Fatal("no reload record")
	}
	return rs[len(rs)-1]
}

// runIDs returns the distinct run ids of a job's run records.
func runIDs(t *testing.T, path, job string) []string {
	t.Helper()
	var ids []string
	for _, r := range cuRecords(t, path, audit.EventRun, job) {
		if len(ids) == 0 || ids[len(ids)-1] != r.RunID {
			ids = append(ids, r.RunID)
		}
	}
	return ids
}

// entryOf returns the engine entry of a job and its next fire.
func (d *cuDaemon) entryOf(name string) (engine.EntryID, time.Time, bool) {
	d.mu.Lock()
	e, ok := d.entries[name]
	d.mu.Unlock()
	if !ok {
		return 0, time.Time{}, false
	}
	return e.id, d.runner.NextFire(e.id), true
}

func TestReloadRejectsBadEdits(t *testing.T) {
	tick := cuJob{name: "tick", schedule: everySecond, action: "modelarts.notebook.stop", targets: []string{"nb-1"}}
	tests := []struct {
		name    string
		edit    func(e *cuEnv, t *testing.T)
		problem string
	}{
		{"malformed yaml", func(e *cuEnv, t *testing.T) {
			e.write(t, "", tick, cuJob{name: "[broken", schedule: never, action: "x", targets: []string{"y"}})
		}, "invalid YAML"},
		{"unknown action", func(e *cuEnv, t *testing.T) {
			e.write(t, "", tick, cuJob{name: "typo", schedule: never, action: "modelarts.notebook.strat", targets: []string{"nb-2"}})
		}, `unknown action "modelarts.notebook.strat"`},
		{"unknown account", func(e *cuEnv, t *testing.T) {
			e.write(t, "", tick, cuJob{name: "acct", schedule: never, action: "modelarts.notebook.start", targets: []string{"nb-2"}})
			// point the new job at an account that does not exist
			rewrite(t, e.config, "{name: acct, schedule: \"0 0 15 1 *\", timezone: UTC, account: sb,", "{name: acct, schedule: \"0 0 15 1 *\", timezone: UTC, account: nope,")
		}, "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newCUEnv(t)
			e.write(t, "", tick)
			d := e.rlStart(t)
			d.mu.Lock()
			plan := d.plan
			d.mu.Unlock()
			id, _, _ := d.entryOf("tick")

			tc.edit(e, t)
			d.Reload(false)

			r := lastReload(t, e.audit)
			// file:line:col; a YAML syntax error has no column (yaml.v3
			// reports the line only).
			pos := regexp.MustCompile(regexp.QuoteMeta(e.config) + `:\d+:\d+: `)
			if tc.problem == "invalid YAML" {
				pos = regexp.MustCompile(regexp.QuoteMeta(e.config) + `:\d+(:\d+)?: `)
			}
			if r.Outcome != audit.OutcomeFailure || !pos.MatchString(r.Error) || !strings.Contains(r.Error, tc.problem) {
				t.Fatalf("reload record %+v; want failure with %s:LINE:COL: and %q", r, e.config, tc.problem)
			}
			d.mu.Lock()
			same := d.plan == plan
			n := len(d.entries)
			d.mu.Unlock()
			if !same || n != 1 {
				t.Fatalf("after a rejected reload: plan replaced %v, %d engine entries; want the old plan and 1 entry", !same, n)
			}
			if id2, _, _ := d.entryOf("tick"); id2 != id {
				t.Fatalf("tick's engine entry changed from %d to %d", id, id2)
			}
			// The old schedule keeps firing.
			before := len(runIDs(t, e.audit, "tick"))
			waitUntil(t, "tick fires after the rejected reload", func() bool { return len(runIDs(t, e.audit, "tick")) > before })
		})
	}
}

// rewrite replaces old by new in the file at path; old must occur.
func rewrite(t *testing.T, path, old, new string) {
	t.Helper()
	b := readFile(t, path)
	if !strings.Contains(b, old) {
		t.Fatalf("%s does not contain %q:\n%s", path, old, b)
	}
	writeConfig(t, path, strings.Replace(b, old, new, 1))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReloadRemoveAndReAddWhileRunning removes a job while one of its
// fires waits on a slow vendor (a delay fault), then adds it back.
//
// Behaviour pinned here: the in-flight fire completes under the plan it
// started with and is audited; the removed job never fires again. A job
// added back starts fresh in the run state: its Since is the re-add time,
// so fires while it was absent are not caught up.
func TestReloadRemoveAndReAddWhileRunning(t *testing.T) {
	e := newCUEnv(t)
	faults := "    faults: [{target: nb-1, action: modelarts.notebook.stop, kind: delay, delay: 800ms}]\n"
	slow := cuJob{name: "slow", schedule: everySecond, action: "modelarts.notebook.stop", targets: []string{"nb-1"}}
	idle := cuJob{name: "idle", schedule: never, action: "modelarts.notebook.stop", targets: []string{"nb-1"}} // keeps the fault valid
	// tick fires every second on another notebook: its fires show the
	// engine running past a second on which slow would have fired.
	tick := cuJob{name: "tick", schedule: everySecond, action: "modelarts.notebook.stop", targets: []string{"nb-2"}}
	e.write(t, faults, slow, idle, tick)
	d := e.rlStart(t)
	since := d.store.Job("slow").Since

	// Wait for a fire in flight: its intent is audited, its attempt is not.
	var inflight string
	waitUntil(t, "a fire of slow in flight", func() bool {
		ids := runIDs(t, e.audit, "slow")
		if len(ids) == 0 {
			return false
		}
		inflight = ids[len(ids)-1]
		for _, a := range cuRecords(t, e.audit, audit.EventAttempt, "slow") {
			if a.RunID == inflight {
				return false
			}
		}
		return true
	})
	e.write(t, faults, idle, tick)
	d.Reload(false)
	removed := lastReload(t, e.audit)
	if removed.Outcome != audit.OutcomeSuccess || !strings.Contains(removed.Detail, "removed [slow]") {
		t.Fatalf("reload record %+v; want success removing slow", removed)
	}
	if _, _, ok := d.entryOf("slow"); ok {
		t.Fatal("slow still has an engine entry after its removal")
	}

	// The in-flight fire completes and is audited after the reload.
	waitUntil(t, "the in-flight fire's outcome", func() bool {
		for _, a := range cuRecords(t, e.audit, audit.EventAttempt, "slow") {
			if a.RunID == inflight {
				return true
			}
		}
		return false
	})
	for _, a := range cuRecords(t, e.audit, audit.EventAttempt, "slow") {
		if a.RunID == inflight && (a.Outcome != audit.OutcomeSuccess || a.Seq < removed.Seq) {
			t.Fatalf("attempt %+v; want success audited after the reload (seq > %d)", a, removed.Seq)
		}
	}
	// The removed job never fires: two fires of tick after the removal
	// (a whole second of the engine, and the delay, went by).
	waitUntil(t, "two fires of tick after the removal", func() bool {
		n := 0
		for _, r := range cuRecords(t, e.audit, audit.EventRun, "tick") {
			if r.Seq > removed.Seq {
				n++
			}
		}
		return n >= 2
	})
	for _, r := range cuRecords(t, e.audit, "", "slow") {
		if r.Seq > removed.Seq && !(r.Event == audit.EventAttempt && r.RunID == inflight) {
			t.Fatalf("record %+v of the removed job after the reload", r)
		}
	}

	// Added back: it fires again, with fresh run state.
	readd := time.Now()
	e.write(t, faults, slow, idle, tick)
	d.Reload(false)
	added := lastReload(t, e.audit)
	if added.Outcome != audit.OutcomeSuccess || !strings.Contains(added.Detail, "added [slow]") {
		t.Fatalf("reload record %+v; want success adding slow", added)
	}
	waitUntil(t, "slow fires after it was added back", func() bool {
		for _, r := range cuRecords(t, e.audit, audit.EventRun, "slow") {
			if r.Seq > added.Seq {
				return true
			}
		}
		return false
	})
	if js := d.store.Job("slow"); js.Since.Before(readd) || !js.Since.After(since) {
		t.Fatalf("run state of the re-added job %+v; want Since at the re-add (after %v)", js, readd)
	}
}

// TestReloadKeepsUnchangedJobs changes one job, then one account, and
// checks that every other job keeps its engine entry and next fire, and
// that the changed account's new fault reaches only its jobs.
func TestReloadKeepsUnchangedJobs(t *testing.T) {
	e := newCUEnv(t)
	// sb carries a fault and a rate limit (fields the config holds by
	// pointer), sb2 neither.
	accounts := func(sb2Fault string) string {
		return "    faults: [{target: nb-1, kind: delay, delay: 1ms}]\n    rate_limit: {per_second: 100, burst: 10}\n" +
			"  sb2:\n    vendor: sandbox\n" + sb2Fault
	}
	a := cuJob{name: "a", schedule: "@every 1h", action: "modelarts.notebook.stop", targets: []string{"nb-1"}}
	b := cuJob{name: "b", schedule: never, action: "modelarts.notebook.stop", targets: []string{"nb-2"}}
	c := cuJob{name: "c", schedule: never, action: "modelarts.notebook.stop", targets: []string{"nb-3"}, account: "sb2"}
	e.write(t, accounts(""), a, b, c)
	var clock atomic.Int64 // the daemon's clock, in Unix nanoseconds
	clock.Store(time.Now().UnixNano())
	d := e.rlStartNow(t, func() time.Time { return time.Unix(0, clock.Load()) })
	type timing struct {
		id   engine.EntryID
		next time.Time
	}
	snapshot := func() map[string]timing {
		m := map[string]timing{}
		for _, n := range []string{"a", "b", "c"} {
			id, next, ok := d.entryOf(n)
			if !ok {
				t.Fatalf("job %s has no engine entry", n)
			}
			m[n] = timing{id, next}
		}
		return m
	}
	check := func(step string, before map[string]timing, changed ...string) {
		t.Helper()
		after := snapshot()
		for n, was := range before {
			isChanged := slices.Contains(changed, n)
			if now := after[n]; !isChanged && (now.id != was.id || !now.next.Equal(was.next)) {
				t.Errorf("%s: unchanged job %s went from entry %d next %v to entry %d next %v", step, n, was.id, was.next, now.id, now.next)
			} else if isChanged && now.id == was.id {
				t.Errorf("%s: changed job %s kept its engine entry %d", step, n, was.id)
			}
		}
		want := "changed [" + strings.Join(changed, " ") + "]"
		if r := lastReload(t, e.audit); r.Outcome != audit.OutcomeSuccess || !strings.Contains(r.Detail, want) {
			t.Errorf("%s: reload record %+v; want success with %q", step, r, want)
		}
	}

	before := snapshot()
	clock.Add(int64(1100 * time.Millisecond)) // a re-registered @every job would move
	d.Reload(true)                            // SIGHUP, nothing changed
	check("forced reload of the same file", before)

	before = snapshot()
	b.schedule = "0 1 15 1 *"
	e.write(t, accounts(""), a, b, c)
	d.Reload(false)
	check("b's schedule changed", before, "b")

	before = snapshot()
	e.write(t, accounts("    faults: [{target: nb-3, kind: reject}]\n"), a, b, c)
	d.Reload(false)
	check("sb2 got a fault", before, "c")

	// The new fault reaches c, and only c.
	now := time.Now().Truncate(time.Second)
	d.fire("a", now)
	d.fire("c", now)
	for _, job := range []string{"a", "c"} {
		at := cuRecords(t, e.audit, audit.EventAttempt, job)
		want := audit.OutcomeSuccess
		if job == "c" {
			want = audit.OutcomeFailure
		}
		if len(at) != 1 || at[0].Outcome != want {
			t.Errorf("job %s: attempts %+v; want one %s", job, at, want)
		}
	}
}

// A reload of a big schedule takes the jobs of unchanged chunks from the
// running config (schedule.Options.Prev) while fires of those jobs run:
// the diff, the engine entries and what fires are those of a full load,
// and nothing writes to a job the running fires read (-race).
func TestReloadBigScheduleTakesUnchangedJobs(t *testing.T) {
	e := newCUEnv(t)
	const n = 3000
	jobs := make([]cuJob, n)
	for i := range jobs {
		jobs[i] = cuJob{name: fmt.Sprintf("job-%04d-%s", i, strings.Repeat("x", 40)), schedule: never, action: "modelarts.notebook.stop", targets: []string{fmt.Sprintf("nb-%d", i+2)}}
	}
	jobs[n/2] = cuJob{name: "tick", schedule: everySecond, action: "modelarts.notebook.stop", targets: []string{"nb-1"}}
	e.write(t, "", jobs...)
	if fi, err := os.Stat(e.config); err != nil || fi.Size() < 256<<10 {
		t.Fatalf("config of %v bytes (%v): too small to load in chunks", fi.Size(), err)
	}
	d := e.rlStart(t)
	d.mu.Lock()
	tick := d.plan.cfg.Job("tick")
	d.mu.Unlock()
	tickID, _, _ := d.entryOf("tick")
	_, oldNext, _ := d.entryOf(jobs[7].name)

	// Fires of tick run while the reloads do.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for at := time.Now().Truncate(time.Second).Add(-time.Hour); ; at = at.Add(time.Second) {
			select {
			case <-stop:
				return
			default:
			}
			d.fire("tick", at)
		}
	}()
	jobs[7].schedule = "0 1 15 2 *"
	e.write(t, "", jobs...)
	d.Reload(false)
	d.mu.Lock()
	first := d.plan.cfg
	d.mu.Unlock()
	added := cuJob{name: "added", schedule: never, action: "modelarts.notebook.stop", targets: []string{"nb-0"}}
	e.write(t, "", append(append(slices.Clone(jobs[:9]), jobs[10:]...), added)...)
	d.Reload(false)
	close(stop)
	<-done

	recs := cuRecords(t, e.audit, audit.EventReload, "")
	if len(recs) != 2 || recs[0].Detail != fmt.Sprintf("added [] removed [] changed [%s] unchanged %d", jobs[7].name, n-1) ||
		recs[1].Detail != fmt.Sprintf("added [added] removed [%s] changed [] unchanged %d", jobs[9].name, n-1) {
		t.Fatalf("reload records %+v", recs)
	}
	d.mu.Lock()
	cfg := d.plan.cfg
	d.mu.Unlock()
	// The first edit moved no line: the jobs taken are the running
	// config's own. The second moved those after job 9 up a line.
	if first.Reused() < n/2 || first.Job("tick") != tick {
		t.Errorf("the first reload took %d of %d jobs from the running config (tick the same: %v); want most, tick among them",
			first.Reused(), len(first.Jobs), first.Job("tick") == tick)
	}
	if cfg.Reused() < n/2 || cfg.Job("tick").Line != tick.Line-1 {
		t.Errorf("the second reload took %d of %d jobs from the running config, tick on line %d (was %d); want most, tick a line up",
			cfg.Reused(), len(cfg.Jobs), cfg.Job("tick").Line, tick.Line)
	}
	if id, _, _ := d.entryOf("tick"); id != tickID {
		t.Errorf("unchanged tick went from engine entry %d to %d", tickID, id)
	}
	if _, next, ok := d.entryOf(jobs[7].name); !ok || next.Equal(oldNext) || next.Month() != time.February || next.Day() != 15 {
		t.Errorf("changed %s: next fire %v (was %v); want 15 February", jobs[7].name, next, oldNext)
	}
	if _, _, ok := d.entryOf(jobs[9].name); ok {
		t.Errorf("removed %s still has an engine entry", jobs[9].name)
	}
	if len(runIDs(t, e.audit, "tick")) == 0 {
		t.Error("tick never ran")
	}
}
