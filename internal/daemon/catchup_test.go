package daemon

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/executor"
	"github.com/cloudcron/scheduler/internal/state"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
)

// These tests drive catch-up and crash recovery through Start: the run
// state is written beforehand with internal/state, the daemon starts with
// an injected Options.Now, and the audit log and the sandbox account's
// request log say what happened.
//
// The engine's timers run on the real clock. The schedules here only fire
// on days the real clock does not reach during a test (15 January, or March
// and October for the DST cases), so only the catch-up and re-issue fires
// ever run. The injected instants lie in the future of the real clock
// where a fire has to reach the emulated cloud: a fire's deadline is the
// job's next fire, enforced on the real clock.

// cuJan15 is an instant on 15 January of a year still ahead, in UTC.
func cuJan15(h, m int) time.Time {
	return time.Date(time.Now().Year()+1, time.January, 15, h, m, 0, 0, time.UTC)
}

// cuEnv is a config directory with an audit log and a state directory.
type cuEnv struct {
	dir, config, audit, state string
	logs                      lockedBuffer // the daemons' log lines
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newCUEnv(t *testing.T) *cuEnv {
	t.Helper()
	dir := t.TempDir()
	return &cuEnv{dir: dir, config: filepath.Join(dir, "scheduler.yaml"),
		audit: filepath.Join(dir, "audit.jsonl"), state: filepath.Join(dir, "state")}
}

// cuJob is one jobs entry, on account sb unless account is set.
type cuJob struct {
	name, schedule, tz, action, catchup string
	targets                             []string
	account                             string
}

func (j cuJob) yaml() string {
	tz := j.tz
	if tz == "" {
		tz = "UTC"
	}
	acct := j.account
	if acct == "" {
		acct = "sb"
	}
	s := fmt.Sprintf("  - {name: %s, schedule: %q, timezone: %s, account: %s, action: %s, targets: [%s]",
		j.name, j.schedule, tz, acct, j.action, strings.Join(j.targets, ", "))
	if j.catchup != "" {
		s += ", catchup: " + j.catchup
	}
	return s + "}\n"
}

// write writes the config: a sandbox account sb, followed by sbExtra (more
// lines of sb, e.g. faults, and further accounts), and jobs.
func (e *cuEnv) write(t *testing.T, sbExtra string, jobs ...cuJob) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\naudit: {path: %q}\nstate: {dir: %q}\n", e.audit, e.state)
	b.WriteString("defaults:\n  timeout: 5s\n  retry: {initial_interval: 50ms, max_interval: 200ms, max_elapsed: 5s, max_attempts: 3}\n")
	b.WriteString("accounts:\n  sb:\n    vendor: sandbox\n" + sbExtra + "jobs:\n")
	for _, j := range jobs {
		b.WriteString(j.yaml())
	}
	if err := os.WriteFile(e.config, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// seed opens the run state, lets fn change it, and closes it, as a daemon
// that ran before would have left it.
func (e *cuEnv) seed(t *testing.T, fn func(s *state.Store)) {
	t.Helper()
	s, err := state.Open(e.state)
	if err != nil {
		t.Fatal(err)
	}
	fn(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// seedDone registers job since since and records lastDone (if set) as
// its last completed fire.
func (e *cuEnv) seedDone(t *testing.T, job string, since, lastDone time.Time) {
	t.Helper()
	e.seed(t, func(s *state.Store) {
		if err := s.Register(job, since); err != nil {
			t.Fatal(err)
		}
		if !lastDone.IsZero() {
			if err := s.Done(job, lastDone, executor.RunID(job, lastDone)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// cuDaemon is a daemon started by a test, stopped once.
type cuDaemon struct {
	*Daemon
	t    *testing.T
	once sync.Once
	// requests is the request log of sb's emulated cloud, read at stop.
	requests []emulator.Request
}

// startAt starts the daemon on e's config with the clock fixed at now.
func (e *cuEnv) startAt(t *testing.T, now time.Time) *cuDaemon {
	t.Helper()
	d, err := Start(Options{ConfigPath: e.config, Log: zerolog.New(&e.logs), Grace: 2 * time.Second,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	cd := &cuDaemon{Daemon: d, t: t}
	t.Cleanup(func() { cd.stop() })
	return cd
}

// cloud returns the emulated cloud of the current plan's account sb.
func (d *cuDaemon) cloud() *emulator.Cloud {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.plan.sandboxClouds()["sb"]
}

// stop waits for the catch-up and re-issued fires, keeps the request log
// and shuts the daemon down.
func (d *cuDaemon) stop() {
	d.once.Do(func() {
		waitFires(d.Daemon)
		c := d.cloud()
		d.requests = c.Requests()
		// Work around a data race in the emulator (Start's serve
		// goroutine reads Cloud.srv unlocked, Close clears it): one
		// request answered orders that read before the Close.
		if resp, err := http.Get(c.URL() + "/"); err == nil {
			_ = resp.Body.Close()
		}
		if err := d.Shutdown(); err != nil {
			d.t.Errorf("Shutdown: %v", err)
		}
	})
}

// actionRequests counts the requests of a catalogue action in log.
func actionRequests(log []emulator.Request, action string) int {
	n := 0
	for _, r := range log {
		if r.Action == action {
			n++
		}
	}
	return n
}

// cuRecords returns the records of the audit log at path with the given
// event (all if empty), for job (all if empty).
func cuRecords(t *testing.T, path, event, job string) []audit.Record {
	t.Helper()
	all, err := audit.ReadAll(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, r := range all {
		if (event == "" || r.Event == event) && (job == "" || r.Job == job) {
			out = append(out, r)
		}
	}
	return out
}

// scheduledOf returns the scheduled instants of records, in UTC.
func scheduledOf(recs []audit.Record) []time.Time {
	out := make([]time.Time, len(recs))
	for i, r := range recs {
		out[i] = r.Scheduled.UTC()
	}
	return out
}

func sameInstants(a, b []time.Time) bool {
	return slices.EqualFunc(a, b, func(x, y time.Time) bool { return x.Equal(y) })
}

func TestStartCatchUp(t *testing.T) {
	hourly := "0 * 15 1 *" // every hour on 15 January
	at := cuJan15
	tests := []struct {
		name     string
		catchup  string
		since    time.Time
		lastDone time.Time
		now      time.Time
		// run is the one fire caught up; zero if none.
		run time.Time
		// missed are the fires audited missed, oldest first, and a
		// phrase of their reason.
		missed []time.Time
		reason string
	}{
		{
			name: "downtime across one fire", catchup: "1h",
			lastDone: at(9, 0), now: at(10, 20),
			run: at(10, 0),
		},
		{
			name: "downtime across many fires: only the newest runs", catchup: "1h",
			lastDone: at(5, 0), now: at(10, 20),
			run:    at(10, 0),
			missed: []time.Time{at(6, 0), at(7, 0), at(8, 0), at(9, 0)},
			reason: "older than catchup 1h",
		},
		{
			name: "many fires inside the window collapse into the newest", catchup: "12h",
			lastDone: at(5, 0), now: at(10, 20),
			run:    at(10, 0),
			missed: []time.Time{at(6, 0), at(7, 0), at(8, 0), at(9, 0)},
			reason: "superseded by the newer missed fire at " + at(10, 0).Format(time.RFC3339),
		},
		{
			name: "never fired: missed counted from registration", catchup: "1h",
			since: at(7, 30), now: at(10, 59),
			run:    at(10, 0),
			missed: []time.Time{at(8, 0), at(9, 0)},
			reason: "older than catchup 1h",
		},
		{
			name: "newest fire older than catchup: nothing runs", catchup: "15m",
			lastDone: at(7, 0), now: at(10, 20),
			missed: []time.Time{at(8, 0), at(9, 0), at(10, 0)},
			reason: "older than catchup 15m",
		},
		{
			name: "catchup 0: never", catchup: "0s",
			lastDone: at(8, 0), now: at(10, 1),
			missed: []time.Time{at(9, 0), at(10, 0)},
			reason: "catch-up is off (catchup 0)",
		},
		{
			name: "nothing missed", catchup: "1h",
			lastDone: at(10, 0), now: at(10, 59),
		},
		{
			name: "clock went backwards: done fires never run again", catchup: "1h",
			lastDone: at(10, 0), now: at(7, 30),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newCUEnv(t)
			e.write(t, "", cuJob{name: "nb-on", schedule: hourly, action: "modelarts.notebook.start",
				catchup: tc.catchup, targets: []string{"nb-1", "nb-2"}})
			since := tc.since
			if since.IsZero() {
				since = tc.lastDone.Add(-24 * time.Hour)
			}
			e.seedDone(t, "nb-on", since, tc.lastDone)

			d := e.startAt(t, tc.now)
			d.stop()

			runs := cuRecords(t, e.audit, audit.EventRun, "nb-on")
			attempts := cuRecords(t, e.audit, audit.EventAttempt, "nb-on")
			missed := cuRecords(t, e.audit, audit.EventMissed, "nb-on")
			if tc.run.IsZero() {
				if len(runs)+len(attempts) != 0 || actionRequests(d.requests, "modelarts.notebook.start") != 0 {
					t.Fatalf("%d run and %d attempt records, %d start requests; want none",
						len(runs), len(attempts), actionRequests(d.requests, "modelarts.notebook.start"))
				}
			} else {
				want := []time.Time{tc.run, tc.run}
				if !sameInstants(scheduledOf(runs), want) {
					t.Fatalf("run records scheduled %v; want one per target at %v", scheduledOf(runs), tc.run)
				}
				if len(attempts) != 2 {
					t.Fatalf("%d attempt records %+v; want 2", len(attempts), attempts)
				}
				for _, a := range attempts {
					if a.Outcome != audit.OutcomeSuccess || a.RunID != executor.RunID("nb-on", tc.run) {
						t.Errorf("attempt %s %s %s; want success of run %s", a.Target, a.RunID, a.Outcome, executor.RunID("nb-on", tc.run))
					}
				}
				if n := actionRequests(d.requests, "modelarts.notebook.start"); n != 2 {
					t.Errorf("%d start requests reached the emulated cloud; want 2", n)
				}
			}
			if !sameInstants(scheduledOf(missed), tc.missed) {
				t.Fatalf("missed records scheduled %v; want %v", scheduledOf(missed), tc.missed)
			}
			for _, m := range missed {
				if m.Outcome != audit.OutcomeMissed || !strings.Contains(m.Detail, tc.reason) ||
					m.RunID != executor.RunID("nb-on", m.Scheduled) || m.Action != "modelarts.notebook.start" {
					t.Errorf("missed record %+v; want outcome missed, reason %q, its run id and action", m, tc.reason)
				}
			}

			// What was settled is never run or reported again: a second
			// start at the same instant does nothing.
			before := len(cuRecords(t, e.audit, "", ""))
			d2 := e.startAt(t, tc.now)
			d2.stop()
			if after := cuRecords(t, e.audit, "", ""); len(after) != before {
				t.Fatalf("a second start at the same instant wrote %d records: %+v", len(after)-before, after[before:])
			}
			if n := actionRequests(d2.requests, "modelarts.notebook.start"); n != 0 {
				t.Fatalf("a second start sent %d start requests; want 0", n)
			}
		})
	}
}

// TestStartCatchUpDST runs `30 2 * * *` in Europe/Berlin (restricted to
// March and October so that the real clock never fires it) across the
// DST changes of 2026, through Start. A fixed-time spec fires once on the
// spring-forward day, at the first instant after the gap (03:00 CEST), and
// once on the fall-back day, at the first 02:30 (CEST).
//
// These instants are behind the real clock, so the caught-up fire's
// deadline (its next fire) has passed on the real clock and it makes no
// vendor call; what is checked is which fire was chosen.
func TestStartCatchUpDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	b := func(y int, mo time.Month, d, h, m int) time.Time { return time.Date(y, mo, d, h, m, 0, 0, berlin) }
	spring := time.Date(2026, time.March, 29, 1, 0, 0, 0, time.UTC)   // 03:00 CEST, just after the gap
	fall1 := time.Date(2026, time.October, 25, 0, 30, 0, 0, time.UTC) // 02:30 CEST, first pass
	tests := []struct {
		name           string
		catchup        string
		lastDone, now  time.Time
		run            time.Time
		missed         []time.Time
		missedContains string
	}{
		{"spring forward: the gap fire runs at 03:00 CEST", "1h",
			b(2026, 3, 28, 2, 30), b(2026, 3, 29, 3, 10), spring, nil, ""},
		{"spring forward: two days down, the gap fire is the newest", "1h",
			b(2026, 3, 27, 2, 30), b(2026, 3, 29, 3, 59),
			spring, []time.Time{time.Date(2026, 3, 28, 1, 30, 0, 0, time.UTC)}, "older than catchup 1h"},
		{"fall back: the first 02:30 runs, the repeated hour does not fire again", "2h",
			b(2026, 10, 24, 2, 30), time.Date(2026, 10, 25, 1, 45, 0, 0, time.UTC), // 02:45 CET
			fall1, nil, ""},
		{"fall back: the first 02:30 is older than catchup 1h", "1h",
			b(2026, 10, 24, 2, 30), time.Date(2026, 10, 25, 1, 45, 0, 0, time.UTC),
			time.Time{}, []time.Time{fall1}, "older than catchup 1h"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newCUEnv(t)
			e.write(t, "", cuJob{name: "dst", schedule: "30 2 * 3,10 *", tz: "Europe/Berlin",
				action: "modelarts.notebook.stop", catchup: tc.catchup, targets: []string{"nb-1"}})
			e.seedDone(t, "dst", tc.lastDone.Add(-time.Hour), tc.lastDone)
			d := e.startAt(t, tc.now)
			d.stop()
			runs := cuRecords(t, e.audit, audit.EventRun, "dst")
			var want []time.Time
			if !tc.run.IsZero() {
				want = []time.Time{tc.run}
			}
			if !sameInstants(scheduledOf(runs), want) {
				t.Fatalf("run records scheduled %v; want %v", scheduledOf(runs), want)
			}
			missed := cuRecords(t, e.audit, audit.EventMissed, "dst")
			if !sameInstants(scheduledOf(missed), tc.missed) {
				t.Fatalf("missed records scheduled %v; want %v", scheduledOf(missed), tc.missed)
			}
			for _, m := range missed {
				if !strings.Contains(m.Detail, tc.missedContains) {
					t.Errorf("missed record detail %q; want it to say %q", m.Detail, tc.missedContains)
				}
			}
			// The run state settles on the fire decided about.
			s, err := state.Open(e.state)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			settled := tc.run
			if settled.IsZero() {
				settled = tc.missed[len(tc.missed)-1]
			}
			if got := s.Job("dst").LastDone; !got.Equal(settled) {
				t.Fatalf("LastDone = %v; want %v", got, settled)
			}
		})
	}
}

// TestStartSettlesPendingIntents leaves intents without outcome in the run
// state, as a crash between a fire's intent and its outcome does, and
// starts the daemon: a current start or stop is re-issued under the same
// run id; a restart or kill is audited unknown and never sent; a stale
// start or stop is audited missed and not re-issued.
func TestStartSettlesPendingIntents(t *testing.T) {
	hourly := "0 * 15 1 *"
	at := cuJan15
	tests := []struct {
		name      string
		action    string
		targets   []string
		catchup   string
		scheduled time.Time // of the intent
		now       time.Time
		// recover is the outcome of the recover records ("" when
		// re-issued: no recover record) and a phrase of their detail.
		recover, detail string
		// reissued says the intent's fire runs again, with its run id.
		reissued bool
		// caughtUp is a newer fire run by catch-up instead; zero if none.
		caughtUp time.Time
	}{
		{name: "start is re-issued", action: "modelarts.notebook.start", targets: []string{"nb-1", "nb-2"},
			catchup: "1h", scheduled: at(10, 0), now: at(10, 5), reissued: true},
		{name: "stop is re-issued", action: "modelarts.notebook.stop", targets: []string{"nb-1"},
			catchup: "1h", scheduled: at(10, 0), now: at(10, 59), reissued: true},
		{name: "restart is unknown, never sent", action: "cdss.cmak.restart", targets: []string{"1484848", "1484849"},
			catchup: "1h", scheduled: at(10, 0), now: at(10, 5),
			recover: audit.OutcomeUnknown, detail: "not idempotent, not re-issued"},
		{name: "kill is unknown, never sent", action: "dataforest.aiapp.kill", targets: []string{"7kHeVWhiRsxdRl0nXz04ri"},
			catchup: "1h", scheduled: at(10, 0), now: at(10, 5),
			recover: audit.OutcomeUnknown, detail: "not idempotent, not re-issued"},
		{name: "stale start: older than catchup", action: "modelarts.notebook.start", targets: []string{"nb-1"},
			catchup: "30m", scheduled: at(10, 0), now: at(10, 45),
			recover: audit.OutcomeMissed, detail: "older than catchup 30m"},
		{name: "stale start: a newer fire is due and is caught up instead", action: "modelarts.notebook.start", targets: []string{"nb-1"},
			catchup: "3h", scheduled: at(9, 0), now: at(10, 5),
			recover: audit.OutcomeMissed, detail: "a newer fire of the job is already due", caughtUp: at(10, 0)},
		{name: "stale stop: catchup 0", action: "modelarts.notebook.stop", targets: []string{"nb-1"},
			catchup: "0s", scheduled: at(10, 0), now: at(10, 1),
			recover: audit.OutcomeMissed, detail: "catch-up is off"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newCUEnv(t)
			e.write(t, "", cuJob{name: "j", schedule: hourly, action: tc.action, catchup: tc.catchup, targets: tc.targets})
			runID := executor.RunID("j", tc.scheduled)
			idempotent := strings.HasSuffix(tc.action, ".start") || strings.HasSuffix(tc.action, ".stop")
			e.seed(t, func(s *state.Store) {
				if err := s.Register("j", tc.scheduled.Add(-48*time.Hour)); err != nil {
					t.Fatal(err)
				}
				if err := s.Done("j", tc.scheduled.Add(-time.Hour), executor.RunID("j", tc.scheduled.Add(-time.Hour))); err != nil {
					t.Fatal(err)
				}
				if err := s.Begin("j", state.Intent{RunID: runID, Scheduled: tc.scheduled, Action: tc.action,
					Account: "sb", Targets: tc.targets, Idempotent: idempotent, Started: tc.scheduled}); err != nil {
					t.Fatal(err)
				}
			})

			d := e.startAt(t, tc.now)
			d.stop()

			recovers := cuRecords(t, e.audit, audit.EventRecover, "j")
			attempts := cuRecords(t, e.audit, audit.EventAttempt, "j")
			sent := actionRequests(d.requests, tc.action)
			if tc.reissued {
				if len(recovers) != 0 {
					t.Errorf("recover records %+v; want none for a re-issued fire", recovers)
				}
				if len(attempts) != len(tc.targets) || sent != len(tc.targets) {
					t.Fatalf("%d attempt records, %d %s requests; want %d of each", len(attempts), sent, tc.action, len(tc.targets))
				}
				for _, a := range attempts {
					if a.RunID != runID || a.Outcome != audit.OutcomeSuccess {
						t.Errorf("attempt %s run %s outcome %s; want success under the intent's run id %s", a.Target, a.RunID, a.Outcome, runID)
					}
				}
			} else {
				if len(recovers) != len(tc.targets) {
					t.Fatalf("%d recover records %+v; want one per target", len(recovers), recovers)
				}
				for i, r := range recovers {
					if r.RunID != runID || r.Target != tc.targets[i] || r.Outcome != tc.recover || !strings.Contains(r.Detail, tc.detail) {
						t.Errorf("recover record %+v; want run %s, target %s, outcome %s, detail with %q", r, runID, tc.targets[i], tc.recover, tc.detail)
					}
				}
				for _, a := range attempts {
					if a.RunID == runID {
						t.Errorf("attempt %+v of the settled intent; want it not re-issued", a)
					}
				}
				if tc.recover == audit.OutcomeUnknown {
					// Someone has to check the targets: say so loudly.
					var line string
					for _, l := range strings.Split(e.logs.String(), "\n") {
						if strings.Contains(l, runID) && strings.Contains(l, "NOT re-issued") {
							line = l
						}
					}
					if !strings.Contains(line, `"level":"error"`) || !strings.Contains(line, "check the targets") {
						t.Errorf("no error log line about %s not being re-issued; logs:\n%s", runID, e.logs.String())
					}
				}
				want := 0
				if !tc.caughtUp.IsZero() {
					want = len(tc.targets)
					if len(attempts) != want || attempts[0].RunID != executor.RunID("j", tc.caughtUp) {
						t.Errorf("attempts %+v; want the newer fire %s caught up", attempts, tc.caughtUp)
					}
				}
				if sent != want {
					t.Fatalf("%d %s requests reached the emulated cloud; want %d", sent, tc.action, want)
				}
			}

			// Settled: nothing is left in flight, and a second start
			// neither re-issues nor reports it again.
			before := len(cuRecords(t, e.audit, "", ""))
			d2 := e.startAt(t, tc.now)
			d2.stop()
			if after := cuRecords(t, e.audit, "", ""); len(after) != before {
				t.Fatalf("a second start wrote %d records: %+v", len(after)-before, after[before:])
			}
			s, err := state.Open(e.state)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if js := s.Job("j"); len(js.InFlight) != 0 || js.LastDone.Before(tc.scheduled) {
				t.Fatalf("job state after settling %+v; want nothing in flight and LastDone ≥ %v", js, tc.scheduled)
			}
		})
	}
}

// TestClockJumps drives what watchClock does after a jump, with a fake
// now: a forward jump catches up (d.catchUp at the new wall time), and a
// backward jump makes the engine present fires again that are already
// done, which never run twice (d.fire refuses them).
func TestClockJumps(t *testing.T) {
	at := cuJan15
	e := newCUEnv(t)
	e.write(t, "", cuJob{name: "j", schedule: "0 * 15 1 *", action: "modelarts.notebook.start",
		catchup: "1h", targets: []string{"nb-1"}})
	e.seedDone(t, "j", at(0, 0), at(10, 0))
	d := e.startAt(t, at(10, 20))
	if n := len(cuRecords(t, e.audit, "", "j")); n != 0 {
		t.Fatalf("%d records at start; want none, nothing was missed", n)
	}
	starts := func() int { return actionRequests(d.cloud().Requests(), "modelarts.notebook.start") }
	catchUp := func(now time.Time) {
		t.Helper()
		d.mu.Lock()
		cfg := d.plan.cfg
		d.mu.Unlock()
		if _, err := d.catchUp(cfg, now, nil); err != nil {
			t.Fatal(err)
		}
		waitFires(d.Daemon)
	}

	// Forward: the wall clock jumps from 10:20 to 13:30.
	catchUp(at(13, 30))
	runs := cuRecords(t, e.audit, audit.EventRun, "j")
	missed := cuRecords(t, e.audit, audit.EventMissed, "j")
	if !sameInstants(scheduledOf(runs), []time.Time{at(13, 0)}) || starts() != 1 {
		t.Fatalf("after a forward jump: runs %v, %d start requests; want 13:00 once", scheduledOf(runs), starts())
	}
	if !sameInstants(scheduledOf(missed), []time.Time{at(11, 0), at(12, 0)}) {
		t.Fatalf("after a forward jump: missed %v; want 11:00 and 12:00", scheduledOf(missed))
	}
	// A second detection at the same instant finds nothing left.
	catchUp(at(13, 30))
	if n := len(cuRecords(t, e.audit, "", "j")); n != len(runs)+len(missed)+1 {
		t.Fatalf("a repeated catch-up wrote records: %d in all", n)
	}

	// Backward: the clock is set back to 10:30 and the engine presents
	// 11:00, 12:00 and 13:00 again; none of them runs.
	before := len(cuRecords(t, e.audit, "", ""))
	for _, s := range []time.Time{at(11, 0), at(12, 0), at(13, 0)} {
		d.fire("j", s)
	}
	if after := cuRecords(t, e.audit, "", ""); len(after) != before || starts() != 1 {
		t.Fatalf("after a backward jump %d new records %+v and %d start requests; want none and 1", len(after)-before, after[before:], starts())
	}
	// The first fire after the newest done one does run (the emulated
	// notebook is still STARTING from 13:00, so its attempts are retried).
	d.fire("j", at(14, 0))
	if runs := cuRecords(t, e.audit, audit.EventRun, "j"); !sameInstants(scheduledOf(runs), []time.Time{at(13, 0), at(14, 0)}) || starts() < 2 {
		t.Fatalf("runs %v, %d start requests; want 13:00 and 14:00", scheduledOf(runs), starts())
	}
	d.stop()
	s, err := state.Open(e.state)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Job("j").LastDone; !got.Equal(at(14, 0)) {
		t.Fatalf("LastDone = %v; want 14:00", got)
	}
}

// waitFires waits until no fire runs (catch-up and re-issued fires run in
// their own goroutines).
func waitFires(d *Daemon) {
	for {
		d.mu.Lock()
		n := d.running
		d.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
