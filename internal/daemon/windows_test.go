package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/control"
	"github.com/cloudcron/scheduler/internal/schedule"
	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
)

// The window tests run a real daemon whose sandbox account talks HTTP to
// its emulated cloud; the daemon's clock (desired state, edges, checks) is
// a fake one the test moves, and each test waits for reconcile passes to
// end instead of sleeping.

const nbID = "6fa459ea-ee8a-3ca4-894e-db77e160355e"

// windowDaemon is a running daemon with a fake clock.
type windowDaemon struct {
	d      *Daemon
	dir    string
	mu     sync.Mutex
	now    time.Time
	passes chan string
}

func (w *windowDaemon) setNow(t time.Time) {
	w.mu.Lock()
	w.now = t
	w.mu.Unlock()
}

func (w *windowDaemon) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

// pass pokes the reconciler and waits for the pass it runs.
func (w *windowDaemon) pass(t *testing.T, reason string) {
	t.Helper()
	w.drain()
	w.d.windows.poke(reason)
	w.waitPass(t)
}

func (w *windowDaemon) drain() {
	for {
		select {
		case <-w.passes:
		default:
			return
		}
	}
}

func (w *windowDaemon) waitPass(t *testing.T) string {
	t.Helper()
	select {
	case r := <-w.passes:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("no reconcile pass within 60s")
		return ""
	}
}

func (w *windowDaemon) cloud(t *testing.T) *emulator.Cloud {
	t.Helper()
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	c := w.d.plan.sandboxClouds()["lab"]
	if c == nil {
		t.Fatal("no emulated cloud for account lab")
	}
	return c
}

func (w *windowDaemon) records(t *testing.T) []audit.Record {
	t.Helper()
	recs, err := audit.ReadAll(filepath.Join(w.dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// count returns the records of event (and outcome, if not "") for target.
func count(recs []audit.Record, event, outcome, target string) []audit.Record {
	var out []audit.Record
	for _, r := range recs {
		if r.Event == event && (outcome == "" || r.Outcome == outcome) && r.Target == target {
			out = append(out, r)
		}
	}
	return out
}

// startWindows starts a daemon on a config of a sandbox account lab (with
// faults) and windows, at now, and waits for its first pass.
func startWindows(t *testing.T, now time.Time, faults, windows string) *windowDaemon {
	t.Helper()
	return startWindowsIn(t, t.TempDir(), now, faults, windows)
}

// startWindowsIn is startWindows in dir (a restart keeps the run state).
func startWindowsIn(t *testing.T, dir string, now time.Time, faults, windows string) *windowDaemon {
	t.Helper()
	cfg := "version: 1\ntimezone: Europe/Berlin\naudit: {path: audit.jsonl}\nstate: {dir: state}\n" +
		"defaults:\n  timeout: 2s\n  retry: {initial_interval: 100ms, max_interval: 500ms, max_elapsed: 5s, max_attempts: 3}\n  verify_timeout: 20s\n" +
		"accounts:\n  lab:\n    vendor: sandbox\n" + faults + "windows:\n" + windows
	path := filepath.Join(dir, "scheduler.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	w := &windowDaemon{dir: dir, now: now, passes: make(chan string, 64)}
	d, err := Start(Options{ConfigPath: path, Log: zerolog.Nop(), Resolver: secret.Resolver{}, Now: w.clock, Grace: 5 * time.Second,
		windowPass: func(reason string) { w.passes <- reason }})
	if err != nil {
		t.Fatalf("Start:\n%s\n%v", cfg, err)
	}
	w.d = d
	t.Cleanup(func() {
		if w.d != nil {
			if err := w.d.Shutdown(); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		}
	})
	if r := w.waitPass(t); r != passStart {
		t.Fatalf("first pass %q; want %q", r, passStart)
	}
	return w
}

var berlin = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		panic(err)
	}
	return loc
}()

const nbWindow = `  - name: lab-notebooks
    account: lab
    resource: modelarts.notebook
    targets: [` + nbID + `]
    on: [{days: MON-FRI, from: "09:00", to: "19:00"}]
    holidays: DE-BY
`

// A daemon that comes up in the middle of a window starts the notebook
// (seen off, wanted on); one that was down over the 19:00 edge stops it
// when it comes back.
func TestWindowRestartInTheMiddle(t *testing.T) {
	monday10 := time.Date(2026, 6, 1, 10, 0, 0, 0, berlin)
	w := startWindows(t, monday10, "", nbWindow)
	if got := w.cloud(t).State("modelarts.notebook.start", nbID); got != "RUNNING" {
		t.Fatalf("notebook %s after the first pass; want RUNNING", got)
	}
	recs := w.records(t)
	rec := count(recs, eventReconcile, "", nbID)
	if len(rec) != 1 || rec[0].Action != "modelarts.notebook.start" || rec[0].Job != "lab-notebooks" ||
		!strings.Contains(rec[0].Detail, "seen off (STOPPED), wanted on (in a period); start") {
		t.Fatalf("reconcile records = %+v; want one naming the state seen and wanted", rec)
	}
	if v := count(recs, audit.EventVerify, audit.OutcomeVerified, nbID); len(v) != 1 || v[0].RunID != rec[0].RunID {
		t.Fatalf("verify records = %+v; want one verified, same run_id", v)
	}

	// Down from 18:55 to 19:10: the reload at 19:10 (as a restart would)
	// stops it.
	w.setNow(time.Date(2026, 6, 1, 19, 10, 0, 0, berlin))
	w.pass(t, passReload)
	if got := w.cloud(t).State("modelarts.notebook.stop", nbID); got != "STOPPED" {
		t.Fatalf("notebook %s at 19:10; want STOPPED", got)
	}
	if rec := count(w.records(t), eventReconcile, "", nbID); len(rec) != 2 || !strings.Contains(rec[1].Detail, "seen on (RUNNING), wanted off") {
		t.Fatalf("reconcile records = %+v", rec)
	}
}

// Under enforce a notebook stopped by hand is started again at the next
// check; under edges it is left alone until the next edge.
func TestWindowDrift(t *testing.T) {
	for _, tc := range []struct {
		drift     string
		corrected bool
	}{{"enforce", true}, {"edges", false}} {
		t.Run(tc.drift, func(t *testing.T) {
			monday10 := time.Date(2026, 6, 1, 10, 0, 0, 0, berlin)
			w := startWindows(t, monday10, "", nbWindow+"    drift: "+tc.drift+"\n    check_every: 1m\n")
			cloud := w.cloud(t)
			if got := cloud.State("modelarts.notebook.start", nbID); got != "RUNNING" {
				t.Fatalf("notebook %s; want RUNNING", got)
			}
			cloud.SetState(emulator.KindOTCNotebook, nbID, "STOPPED") // a colleague stops it at noon
			w.setNow(monday10.Add(2 * time.Hour))
			w.pass(t, passTimer)
			want := "STOPPED"
			if tc.corrected {
				want = "RUNNING"
			}
			if got := cloud.State("modelarts.notebook.start", nbID); got != want {
				t.Fatalf("notebook %s after the drift check; want %s", got, want)
			}
			rec := count(w.records(t), eventReconcile, "", nbID)
			if tc.corrected && (len(rec) != 2 || !strings.Contains(rec[1].Detail, "drift check")) {
				t.Fatalf("reconcile records = %+v; want the correction named a drift check", rec)
			}
			if !tc.corrected && len(rec) != 1 {
				t.Fatalf("reconcile records = %+v; want none after the first", rec)
			}
		})
	}
}

// On a holiday the window leaves its targets off, and says why.
func TestWindowHolidayLeavesOff(t *testing.T) {
	corpusChristi := time.Date(2026, 6, 4, 10, 0, 0, 0, berlin) // Thursday, a holiday in Bavaria
	w := startWindows(t, corpusChristi, "", nbWindow)
	if got := w.cloud(t).State("modelarts.notebook.start", nbID); got != "STOPPED" {
		t.Fatalf("notebook %s on a holiday; want STOPPED", got)
	}
	if rec := count(w.records(t), eventReconcile, "", nbID); len(rec) != 0 {
		t.Fatalf("reconcile records on a holiday = %+v; want none", rec)
	}
	st := w.d.Snapshot()
	if len(st.Windows) != 1 || st.Windows[0].Targets[0].Desired != "off" || st.Windows[0].Targets[0].Actual != "off" {
		t.Fatalf("status windows = %+v; want desired off, actual off", st.Windows)
	}
}

// `after`: the notebooks start only once the SCNet notebook they need is
// verified running; when its start is refused, the gate fails, is
// audited once, and the chain stops.
func TestWindowAfterFailedGate(t *testing.T) {
	faults := "    faults: [{target: \"42\", action: scnet.notebook.start, kind: reject}]\n"
	windows := `  - name: lab-db
    account: lab
    resource: scnet.notebook
    targets: ["42"]
    on: [{days: MON-FRI, from: "08:00", to: "20:00"}]
` + nbWindow + "    after: [lab-db]\n"
	monday10 := time.Date(2026, 6, 1, 10, 0, 0, 0, berlin)
	w := startWindows(t, monday10, faults, windows)
	cloud := w.cloud(t)
	if got := cloud.State("modelarts.notebook.start", nbID); got != "STOPPED" {
		t.Fatalf("notebook %s; want STOPPED: its gate (lab-db running) failed", got)
	}
	recs := w.records(t)
	if a := count(recs, audit.EventAttempt, audit.OutcomeFailure, "42"); len(a) == 0 {
		t.Fatalf("no failed start attempt for lab-db's target: %+v", recs)
	}
	gate := count(recs, eventReconcile, audit.OutcomeFailure, nbID)
	if len(gate) != 1 || !strings.Contains(gate[0].Error, "window lab-db: target 42 is not verified running") {
		t.Fatalf("gate records = %+v; want one failure naming lab-db's target", gate)
	}
	if n := count(recs, audit.EventRun, "", nbID); len(n) != 0 {
		t.Fatalf("the notebook was acted on despite the failed gate: %+v", n)
	}
	// A re-read later does not audit the same failed gate again.
	w.setNow(monday10.Add(time.Minute))
	w.pass(t, passTimer)
	if gate := count(w.records(t), eventReconcile, audit.OutcomeFailure, nbID); len(gate) != 1 {
		t.Fatalf("gate records after a re-read = %d; want still 1", len(gate))
	}
}

// A target in a transitional state is not drift: no stop is issued into a
// start in progress; the window reads again later and acts once the state
// settles.
func TestWindowTransitionalIsNotDrift(t *testing.T) {
	evening := time.Date(2026, 6, 1, 21, 0, 0, 0, berlin)
	w := startWindows(t, evening, "", nbWindow)
	cloud := w.cloud(t)
	cloud.SetState(emulator.KindOTCNotebook, nbID, "STARTING") // someone is starting it by hand
	w.setNow(evening.Add(10 * time.Minute))                    // past the next check
	w.pass(t, passTimer)
	if got := cloud.State("modelarts.notebook.stop", nbID); got != "STARTING" {
		t.Fatalf("notebook %s; want STARTING left alone", got)
	}
	if rec := count(w.records(t), eventReconcile, "", nbID); len(rec) != 0 {
		t.Fatalf("reconcile records = %+v; want none while the start is in progress", rec)
	}
	st := w.d.Snapshot().Windows[0].Targets[0]
	if st.Actual != "moving" {
		t.Fatalf("status actual = %q; want moving", st.Actual)
	}
	cloud.SetState(emulator.KindOTCNotebook, nbID, "RUNNING") // the start completed
	w.setNow(evening.Add(11 * time.Minute))                   // the re-read is due (backoff 2s)
	w.pass(t, passTimer)
	if got := cloud.State("modelarts.notebook.stop", nbID); got != "STOPPED" {
		t.Fatalf("notebook %s after the re-read; want STOPPED", got)
	}
	if rec := count(w.records(t), eventReconcile, "", nbID); len(rec) != 1 || !strings.Contains(rec[0].Detail, "re-read") {
		t.Fatalf("reconcile records = %+v; want one, after a re-read", rec)
	}
}

// An override holds a window off through enforce checks, survives a
// restart, and ends by itself: audited set, then expired, and the window
// follows its schedule again.
func TestWindowOverrideExpires(t *testing.T) {
	monday10 := time.Date(2026, 6, 1, 10, 0, 0, 0, berlin)
	dir := t.TempDir()
	w := startWindowsIn(t, dir, monday10, "", nbWindow)
	cloud := w.cloud(t)
	if got := cloud.State("modelarts.notebook.start", nbID); got != "RUNNING" {
		t.Fatalf("notebook %s; want RUNNING", got)
	}
	c, err := control.Dial(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	var out OverrideList
	// Refusals: an unknown window, no end, an end in the past.
	for _, bad := range []OverrideRequest{
		{Window: "nope", State: "off", For: "1h"},
		{Window: "lab-notebooks", State: "off"},
		{Window: "lab-notebooks", State: "off", Until: monday10.Add(-time.Minute)},
		{Window: "lab-notebooks", Target: "other", State: "off", For: "1h"},
	} {
		var ce *control.Error
		if err := c.Post(ctx, "/v1/overrides", bad, &out); !errors.As(err, &ce) {
			t.Fatalf("override %+v: error %v; want a refusal", bad, err)
		}
	}
	w.drain()
	if err := c.Post(ctx, "/v1/overrides", OverrideRequest{Window: "lab-notebooks", State: "off", For: "2h"}, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Overrides) != 1 || !out.Overrides[0].Until.Equal(monday10.Add(2*time.Hour)) {
		t.Fatalf("overrides = %+v", out.Overrides)
	}
	if r := w.waitPass(t); r != passOverride {
		t.Fatalf("pass %q; want override", r)
	}
	if got := cloud.State("modelarts.notebook.stop", nbID); got != "STOPPED" {
		t.Fatalf("notebook %s under an off override; want STOPPED", got)
	}

	// A restart keeps the override: the new daemon leaves the notebook off.
	if err := w.d.Shutdown(); err != nil {
		t.Fatal(err)
	}
	w.d = nil
	w = startWindowsIn(t, dir, monday10.Add(30*time.Minute), "", nbWindow)
	cloud = w.cloud(t) // a new daemon's sandbox: the notebook starts stopped there
	if got := cloud.State("modelarts.notebook.start", nbID); got != "STOPPED" {
		t.Fatalf("notebook %s after a restart under the override; want STOPPED", got)
	}
	if st := w.d.Snapshot(); len(st.Overrides) != 1 || st.Windows[0].Targets[0].Override != "off" {
		t.Fatalf("status overrides = %+v, targets %+v", st.Overrides, st.Windows[0].Targets)
	}

	// Past its end: expired, and the window is on again.
	w.setNow(monday10.Add(2*time.Hour + time.Second))
	w.pass(t, passTimer)
	if got := cloud.State("modelarts.notebook.start", nbID); got != "RUNNING" {
		t.Fatalf("notebook %s after the override expired; want RUNNING", got)
	}
	var events []string
	for _, r := range w.records(t) {
		if r.Event == eventOverride {
			events = append(events, strings.SplitN(r.Detail, ":", 2)[0])
		}
	}
	if strings.Join(events, ",") != "set,expired" {
		t.Fatalf("override records = %v; want set, expired", events)
	}
	ost, _ := w.d.overrideStore()
	if left, _ := ost.Overrides(); len(left) != 0 {
		t.Fatalf("run state still holds %+v after expiry", left)
	}
}

// An ICS holiday file is re-read when it changes: a day added to it turns
// the window off at the next pass.
func TestWindowICSReread(t *testing.T) {
	monday10 := time.Date(2026, 6, 1, 10, 0, 0, 0, berlin)
	dir := t.TempDir()
	ics := filepath.Join(dir, "company.ics")
	if err := os.WriteFile(ics, []byte("BEGIN:VEVENT\nDTSTART;VALUE=DATE:20261224\nEND:VEVENT\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	win := strings.Replace(nbWindow, "holidays: DE-BY", "holidays: {ics: company.ics}", 1)
	w := startWindowsIn(t, dir, monday10, "", win)
	cloud := w.cloud(t)
	if got := cloud.State("modelarts.notebook.start", nbID); got != "RUNNING" {
		t.Fatalf("notebook %s; want RUNNING", got)
	}
	if err := os.WriteFile(ics, []byte("BEGIN:VEVENT\nDTSTART;VALUE=DATE:20260601\nSUMMARY:Offsite\nEND:VEVENT\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.setNow(monday10.Add(10 * time.Minute)) // the next enforce check
	w.pass(t, passTimer)
	if got := cloud.State("modelarts.notebook.stop", nbID); got != "STOPPED" {
		t.Fatalf("notebook %s after the ICS file made today a holiday; want STOPPED", got)
	}
	if rec := count(w.records(t), eventReconcile, "", nbID); len(rec) != 2 || !strings.Contains(rec[1].Detail, "holiday: Offsite") {
		t.Fatalf("reconcile records = %+v; want the stop naming the holiday", rec)
	}
}

// A reload that changes a window's periods acts at once: the new desired
// state is reconciled by the pass the reload asks for.
func TestWindowReload(t *testing.T) {
	evening := time.Date(2026, 6, 1, 21, 0, 0, 0, berlin)
	dir := t.TempDir()
	w := startWindowsIn(t, dir, evening, "", nbWindow)
	cloud := w.cloud(t)
	if got := cloud.State("modelarts.notebook.start", nbID); got != "STOPPED" {
		t.Fatalf("notebook %s in the evening; want STOPPED", got)
	}
	path := filepath.Join(dir, "scheduler.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	late := strings.Replace(string(data), `to: "19:00"`, `to: "23:00"`, 1)
	if err := os.WriteFile(path, []byte(late), 0o600); err != nil {
		t.Fatal(err)
	}
	w.drain()
	w.d.Reload(true)
	if r := w.waitPass(t); r != passReload {
		t.Fatalf("pass %q after the reload; want reload", r)
	}
	cloud = w.cloud(t) // a reload builds the sandbox account, and its emulated cloud, anew
	if got := cloud.State("modelarts.notebook.start", nbID); got != "RUNNING" {
		t.Fatalf("notebook %s after the reload made 21:00 on-hours; want RUNNING", got)
	}
	if rec := count(w.records(t), eventReconcile, "", nbID); len(rec) != 1 || !strings.HasSuffix(rec[0].Detail, "; reload") {
		t.Fatalf("reconcile records = %+v; want one, for the reload", rec)
	}
}

func TestAfterGroups(t *testing.T) {
	ws := []*schedule.Window{{Name: "a"}, {Name: "b", After: []string{"a"}}, {Name: "c"}, {Name: "d", After: []string{"b"}}, {Name: "e", After: []string{"c"}}}
	var got []string
	for _, g := range afterGroups(ws) {
		var names []string
		for _, w := range g {
			names = append(names, w.Name)
		}
		got = append(got, strings.Join(names, ">"))
	}
	if strings.Join(got, " ") != "a>b>d c>e" {
		t.Fatalf("afterGroups = %v; want [a>b>d c>e]", got)
	}
}

// Half a second before an edge, the account opens the connections that
// the targets changing state then will need, as for a job's fire: here 5
// notebooks turn on at 09:00, the start pass's connections were closed,
// and 5 new ones are opened, though the next pass (the fake clock has not
// reached the edge) reads nothing.
func TestWindowEdgeOpensConnectionsAhead(t *testing.T) {
	ids := []string{"0a1b2c3d-0000-4000-8000-000000000011", "0a1b2c3d-0000-4000-8000-000000000012",
		"0a1b2c3d-0000-4000-8000-000000000013", "0a1b2c3d-0000-4000-8000-000000000014", "0a1b2c3d-0000-4000-8000-000000000015"}
	win := `  - name: lab-notebooks
    account: lab
    resource: modelarts.notebook
    targets: [` + strings.Join(ids, ", ") + `]
    on: [{days: MON-FRI, from: "09:00", to: "19:00"}]
`
	// The fake clock stands 2 s before the edge: the reconciler sleeps 1.5 s
	// (real), prepares, and passes 0.5 s later.
	w := startWindows(t, time.Date(2026, 6, 1, 8, 59, 58, 0, berlin), "", win)
	cloud := w.cloud(t)
	w.d.current().accounts["lab"].http.CloseIdleConnections() // the start pass's reads
	before := len(cloud.Accepted())
	reason := w.waitPass(t) // the timer's pass, after the edge was prepared; it reads nothing
	if reason != passTimer {
		t.Fatalf("pass %q; want the timer's", reason)
	}
	eventually(t, "the notebooks' connections are open", func() bool { return len(cloud.Accepted())-before >= len(ids) })
	if got := len(cloud.Accepted()) - before; got != len(ids) {
		t.Errorf("%d connections opened for the edge; want %d, one per notebook turning on", got, len(ids))
	}
}
