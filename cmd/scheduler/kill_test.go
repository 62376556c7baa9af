package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/engine"
	"github.com/cloudcron/scheduler/internal/executor"
	"github.com/cloudcron/scheduler/internal/state"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
)

// killJobs are the jobs of the kill test: two start/stop pairs on two OTC
// notebooks (idempotent: re-issued after a crash) and an NCP CMAK restart
// (not idempotent: unknown after a crash, never re-issued).
var killJobs = []struct {
	name, schedule, account, action, target string
	idempotent                              bool
}{
	{"nb-a-on", "0/4 * * * * *", "otc", "modelarts.notebook.start", "6fa459ea-ee8a-3ca4-894e-db77e160355e", true},
	{"nb-a-off", "2/4 * * * * *", "otc", "modelarts.notebook.stop", "6fa459ea-ee8a-3ca4-894e-db77e160355e", true},
	{"nb-b-on", "0/2 * * * * *", "otc", "modelarts.notebook.start", "0b3e5c1d-2f4a-4b6c-8d9e-0a1b2c3d4e5f", true},
	{"nb-b-off", "1/2 * * * * *", "otc", "modelarts.notebook.stop", "0b3e5c1d-2f4a-4b6c-8d9e-0a1b2c3d4e5f", true},
	{"cmak", "*/3 * * * * *", "ncp", "cdss.cmak.restart", "1484848", false},
}

// killCatchup is every job's catch-up window: longer than any downtime of
// the test, so that every missed fire is inside it.
const killCatchup = 60 * time.Second

// killCycles is how many times the test kills the daemon with SIGKILL.
const killCycles = 22

// killConfig is the schedule of the kill test, against the emulated cloud
// at url. Secrets come from the child's environment.
func killConfig(url, projectID string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `version: 1
timezone: UTC
audit: {path: audit.jsonl}
state: {dir: state}
defaults:
  timeout: 2s
  retry: {initial_interval: 50ms, max_interval: 100ms, max_elapsed: 1s, max_attempts: 3}
  catchup: %s
accounts:
  otc:
    vendor: otc
    region: eu-de
    project_id: %s
    access_key: {env: KILL_OTC_AK}
    secret_key: {env: KILL_OTC_SK}
    endpoints: {modelarts: %s, iam: %[3]s}
  ncp:
    vendor: ncp
    region: KR
    access_key: {env: KILL_NCP_AK}
    secret_key: {env: KILL_NCP_SK}
    endpoints: {cdss: %[3]s, dataforest: %[3]s}
jobs:
`, killCatchup, projectID, url)
	for _, j := range killJobs {
		fmt.Fprintf(&b, "  - {name: %s, schedule: %q, account: %s, action: %s, targets: [%q]}\n", j.name, j.schedule, j.account, j.action, j.target)
	}
	return b.String()
}

// generation is one run of the daemon process, from exec to exit.
type generation struct {
	start, ready, exit time.Time // ready is zero if killed before "scheduler started"
	killedAt           time.Time // zero for the last generation (SIGTERM)
	log                string
}

// snapshot is the audit log's complete lines as read right before a kill.
type snapshot struct {
	kill  int
	lines []byte
}

// TestKillNineNeverLosesOrRepeatsAFire runs the real binary against an
// emulated cloud that outlives it, kills it with SIGKILL at random moments
// (often while calls are in flight), restarts it, and checks from the audit
// log and the cloud's request log that no acknowledged record was lost, no
// completed fire was repeated, every fire inside the catch-up window was
// executed or accounted for, and the hash chain verifies across all
// restarts. KILL_SEED=n replays a run.
func TestKillNineNeverLosesOrRepeatsAFire(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the real binary for about a minute")
	}
	bin := binary(t)
	began := time.Now()

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KILL_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KILL_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("seed %d (replay with KILL_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	cloud := emulator.New(emulator.Options{TransitionDelay: -1})
	// Every vendor call takes a while, so that kills land while calls are
	// in flight.
	cloud.Inject(emulator.Fault{Kind: emulator.FaultDelay, Delay: 120 * time.Millisecond})
	if err := cloud.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close() })
	creds := cloud.Credentials()

	cfgPath, auditPath := writeConfig(t, killConfig(cloud.URL(), creds.OTCProjectID))
	stateDir := filepath.Join(filepath.Dir(cfgPath), "state")
	env := append(os.Environ(),
		"KILL_OTC_AK="+creds.OTCAccessKey, "KILL_OTC_SK="+creds.OTCSecretKey,
		"KILL_NCP_AK="+creds.NCPAccessKey, "KILL_NCP_SK="+creds.NCPSecretKey)

	var gens []*generation
	var snaps []snapshot
	// dump prints the daemon logs on failure.
	t.Cleanup(func() {
		if dir := os.Getenv("KILL_KEEP"); dir != "" {
			_ = os.MkdirAll(dir, 0o755)
			b, _ := os.ReadFile(auditPath)
			_ = os.WriteFile(filepath.Join(dir, "audit.jsonl"), b, 0o644)
			for i, g := range gens {
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("gen%02d.log", i)), []byte(g.log), 0o644)
			}
		}
		if !t.Failed() {
			return
		}
		for i, g := range gens {
			log := g.log
			if len(log) > 6000 {
				log = "…" + log[len(log)-6000:]
			}
			t.Logf("generation %d (start %s, ready %s, exit %s):\n%s", i, ts(g.start), ts(g.ready), ts(g.exit), log)
		}
	})

	start := func() (*daemonProc, *generation) {
		p := &daemonProc{stderr: &syncBuffer{}, done: make(chan error, 1)}
		p.cmd = exec.Command(bin, "run", "--config", cfgPath, "--log-level", "debug")
		p.cmd.Env = env
		p.cmd.Stderr = p.stderr
		p.cmd.Stdout = p.stderr
		g := &generation{start: time.Now()}
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		})
		gens = append(gens, g)
		return p, g
	}
	// awaitReady waits for the startup line; false if the process died.
	awaitReady := func(p *daemonProc, g *generation) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if strings.Contains(p.stderr.String(), "scheduler started") {
				g.ready = time.Now()
				return
			}
			select {
			case err := <-p.done:
				p.done <- err
				g.log = p.stderr.String()
				t.Fatalf("daemon exited during startup: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
		}
		g.log = p.stderr.String()
		t.Fatal("daemon not started after 30s")
	}

	// The kill/restart cycles.
	for k := range killCycles {
		p, g := start()
		early := rng.IntN(6) == 0
		if early {
			// Kill during startup: recovery and catch-up themselves are
			// interrupted.
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
			if strings.Contains(p.stderr.String(), "scheduler started") {
				g.ready = time.Now()
			}
		} else {
			awaitReady(p, g)
			if rng.IntN(2) == 0 {
				// Right after a fire's scheduled second, while its calls are
				// in flight.
				now := time.Now()
				next := now.Truncate(time.Second).Add(time.Duration(1+rng.IntN(2)) * time.Second)
				time.Sleep(next.Sub(now) + time.Duration(rng.IntN(250))*time.Millisecond)
			} else {
				time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
			}
		}
		snaps = append(snaps, snapshot{kill: k, lines: completeLines(t, auditPath)})
		g.killedAt = time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		g.exit = time.Now()
		g.log = p.stderr.String()
		// Downtime: often short, sometimes across one or more fires.
		down := time.Duration(rng.IntN(300)) * time.Millisecond
		if rng.IntN(5) >= 2 && time.Since(began) < 45*time.Second {
			down = 500*time.Millisecond + time.Duration(rng.IntN(2500))*time.Millisecond
		}
		time.Sleep(down)
	}

	// The last generation runs until every fire up to end has an outcome,
	// then stops with SIGTERM.
	p, g := start()
	awaitReady(p, g)
	end := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second)
	waitFor(t, 30*time.Second, "every fire up to "+ts(end)+" to settle", func() bool {
		return settledUpTo(auditPath, end)
	})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		g.exit, g.log = time.Now(), p.stderr.String()
		if err != nil {
			t.Fatalf("last daemon: exit after SIGTERM: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("last daemon: no exit 40s after SIGTERM")
	}

	// Since is when the first daemon registered the jobs: the first fire
	// the test expects is the one after it.
	st, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	since := map[string]time.Time{}
	for _, j := range killJobs {
		since[j.name] = st.Job(j.name).Since
		if since[j.name].IsZero() {
			t.Errorf("job %s: no Since in the run state", j.name)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	final := completeLines(t, auditPath)
	recs := parseRecords(t, final)
	reqs := cloud.Requests()
	fig := checkKillRun(t, killRun{
		gens: gens, snaps: snaps, final: final, recs: recs, reqs: reqs,
		since: since, end: end,
	})

	// (4) The chain verifies across every restart, through the command.
	code, out, errOut := runCLI(t, "audit", "verify", "--path", auditPath)
	if code != exitOK {
		t.Errorf("scheduler audit verify: exit %d\n%s%s", code, out, errOut)
	}
	if want := fmt.Sprintf("ok: %d records", len(recs)); !strings.HasPrefix(out, want) {
		t.Errorf("scheduler audit verify = %q; want it to start with %q", out, want)
	}

	t.Logf("kill test: seed %d, %v wall time, %d generations", seed, time.Since(began).Round(time.Millisecond), len(gens))
	t.Logf("kill test: kills %d, fires checked %d, executed %d, lost records %d, repeated %d, missed %d, unknown %d, re-issued %d, abandoned %d",
		fig.kills, fig.fires, fig.executed, fig.lost, fig.repeated, fig.missed, fig.unknown, fig.reissued, fig.abandoned)
	t.Logf("kill test: vendor requests %d (start/stop %d, restart %d), attempt records %d (start/stop %d, restart %d), attempts cut short by kills %d, audit records %d",
		fig.requests[0]+fig.requests[1], fig.requests[0], fig.requests[1],
		fig.attempts[0]+fig.attempts[1], fig.attempts[0], fig.attempts[1], fig.cut, len(recs))
}

// killRun is what checkKillRun checks.
type killRun struct {
	gens  []*generation
	snaps []snapshot
	final []byte
	recs  []audit.Record
	reqs  []emulator.Request
	since map[string]time.Time
	end   time.Time
}

// killFigures are the kill test's figures.
type killFigures struct {
	kills, fires, executed, lost, repeated, missed, unknown, reissued, abandoned, cut int
	requests, attempts                                                                [2]int // [0] start/stop, [1] restart
}

// checkKillRun checks the invariants of the kill test and returns its
// figures.
func checkKillRun(t *testing.T, r killRun) killFigures {
	t.Helper()
	fig := killFigures{kills: len(r.snaps)}

	// (1) No acknowledged record lost: every complete line read before a
	// kill is still there, byte for byte, at the same offset.
	for _, s := range r.snaps {
		if bytes.HasPrefix(r.final, s.lines) {
			continue
		}
		n := bytes.Count(s.lines, []byte{'\n'})
		i := 0
		for i < len(s.lines) && i < len(r.final) && s.lines[i] == r.final[i] {
			i++
		}
		lost := bytes.Count(s.lines[i:], []byte{'\n'})
		fig.lost += lost
		t.Errorf("kill %d: %d of %d records read before the kill are no longer in the log as they were (first difference at byte %d)", s.kill, lost, n, i)
	}

	genOf := func(at time.Time) int {
		for i, g := range r.gens {
			if !at.Before(g.start) && (g.exit.IsZero() || !at.After(g.exit)) {
				return i
			}
		}
		return -1
	}

	byRun := map[string]*killFire{}
	get := func(id string) *killFire {
		if byRun[id] == nil {
			byRun[id] = &killFire{}
		}
		return byRun[id]
	}
	jobKind := map[string]int{} // 0 start/stop, 1 restart
	for _, j := range killJobs {
		if !j.idempotent {
			jobKind[j.name] = 1
		}
	}
	for i, rec := range r.recs {
		if rec.Seq != uint64(i+1) {
			t.Errorf("record %d has seq %d; the chain does not continue across restarts", i+1, rec.Seq)
		}
		if genOf(rec.Time) < 0 {
			t.Errorf("record seq %d at %s was written while no daemon ran", rec.Seq, ts(rec.Time))
		}
		if rec.RunID == "" {
			continue
		}
		f := get(rec.RunID)
		switch rec.Event {
		case audit.EventRun:
			f.run = append(f.run, rec)
		case audit.EventAttempt:
			f.attempts = append(f.attempts, rec)
			fig.attempts[jobKind[rec.Job]]++
			if rec.Outcome != audit.OutcomeRetry {
				// success, failure, or unknown: a restart cut off at its
				// next fire while its request may have reached the vendor.
				f.finals = append(f.finals, rec)
			}
		case audit.EventRecover:
			if rec.Outcome == audit.OutcomeMissed {
				// An interrupted start or stop not re-issued because a
				// newer fire was due.
				f.missed = append(f.missed, rec)
				break
			}
			f.recovers = append(f.recovers, rec)
		case audit.EventMissed:
			f.missed = append(f.missed, rec)
		case audit.EventSkip:
			f.skips = append(f.skips, rec)
		case audit.EventAbandon:
			f.abandons = append(f.abandons, rec)
		}
	}
	// The chain spans the restarts: the records come from many
	// generations, up to the last.
	wrote := map[int]bool{}
	for _, rec := range r.recs {
		wrote[genOf(rec.Time)] = true
	}
	if last := len(r.gens) - 1; len(r.recs) == 0 || !wrote[last] || len(wrote) < len(r.gens)/2 {
		t.Errorf("%d of %d generations wrote to the log (the last: %v); the log does not span the restarts", len(wrote), len(r.gens), wrote[last])
	}

	// (2) No completed fire repeated: one final record per fire, and no
	// vendor request for a fire after its final record. A request belongs
	// to the fire of its job whose run record (written and synced before
	// any call) is the newest before the request.
	jobOf := map[string]string{} // action+target -> job
	for _, j := range killJobs {
		jobOf[j.action+" "+j.target] = j.name
	}
	runsOf := map[string][]audit.Record{} // job -> run records, in order
	for _, rec := range r.recs {
		if rec.Event == audit.EventRun {
			runsOf[rec.Job] = append(runsOf[rec.Job], rec)
		}
	}
	for id, f := range byRun {
		// A missed fire is audited once per target, never again after a
		// crash (the records and the fire's settlement are one step).
		perTarget := map[string]int{}
		for _, m := range f.missed {
			if perTarget[m.Target]++; perTarget[m.Target] == 2 {
				fig.repeated++
				t.Errorf("fire %s is audited missed more than once on %q: %s", id, m.Target, describe(f.missed))
			}
		}
		if len(f.finals) > 1 {
			fig.repeated++
			t.Errorf("fire %s has %d final attempt records; it ran again after it completed: %s", id, len(f.finals), describe(f.finals))
		}
	}
	for _, q := range r.reqs {
		job, ok := jobOf[q.Action+" "+q.Target]
		if !ok {
			continue
		}
		kind := jobKind[job]
		fig.requests[kind]++
		runs := runsOf[job]
		i := sort.Search(len(runs), func(i int) bool { return runs[i].Time.After(q.Time) }) - 1
		if i < 0 {
			t.Errorf("%s request on %s at %s precedes every run record of job %s: a call without intent", q.Action, q.Target, ts(q.Time), job)
			continue
		}
		f := byRun[runs[i].RunID]
		if len(f.finals) > 0 && q.Time.After(f.finals[0].Time) {
			fig.repeated++
			t.Errorf("%s request on %s at %s came after fire %s completed at %s", q.Action, q.Target, ts(q.Time), runs[i].RunID, ts(f.finals[0].Time))
		}
	}

	// (5) An interrupted attempt may reach the vendor before its record:
	// at most one such request per attempt a kill cut short, that is per
	// intent (run record) of a target without a final record after it. A
	// kill can cut several: every target of every job firing that second.
	var cut [2]int
	pending := map[string]int{} // run_id + target → intents not yet followed by a final record
	for _, rec := range r.recs {
		key := rec.RunID + " " + rec.Target
		switch {
		case rec.Event == audit.EventRun:
			pending[key]++
		case rec.Event == audit.EventAttempt && rec.Outcome != audit.OutcomeRetry,
			rec.Event == audit.EventAbandon:
			if pending[key] > 0 {
				pending[key]--
			}
		}
	}
	for key, n := range pending {
		cut[jobKind[strings.SplitN(key, "@", 2)[0]]] += n
	}
	fig.cut = cut[0] + cut[1]
	for kind, name := range []string{"start/stop", "restart"} {
		if d := fig.requests[kind] - fig.attempts[kind]; d < 0 || d > cut[kind] {
			t.Errorf("%s: %d vendor requests and %d attempt records; the difference must be in [0, %d attempts cut short by kills]",
				name, fig.requests[kind], fig.attempts[kind], cut[kind])
		}
	}

	// (3) Every scheduled fire between the first start and end is executed,
	// missed because a newer missed fire superseded it, or recovered as
	// unknown; none is silently absent.
	for _, j := range killJobs {
		spec, err := engine.Parse(j.schedule, time.UTC, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		for at := spec.Next(r.since[j.name]); !at.After(r.end); at = spec.Next(at) {
			fig.fires++
			id := executor.RunID(j.name, at)
			f := byRun[id]
			switch {
			case f == nil:
				t.Errorf("fire %s (generation %d) has no audit record at all: silently lost", id, genOf(at))
				continue
			case len(f.finals) > 0:
				fig.executed++
			case len(f.abandons) > 0:
				fig.abandoned++
				t.Errorf("fire %s was abandoned without a vendor call (nothing here shuts down or times out): %s", id, describe(append(f.run, f.abandons...)))
			case len(f.recovers) > 0:
				for _, rec := range f.recovers {
					if rec.Outcome != audit.OutcomeUnknown {
						t.Errorf("fire %s: recover record with outcome %q; want unknown", id, rec.Outcome)
					}
				}
				if j.idempotent {
					t.Errorf("fire %s of idempotent %s was audited unknown instead of re-issued: %s", id, j.action, describe(f.recovers))
				}
				fig.unknown++
				settledInTime(t, id, f, f.recovers[0], r.gens, genOf)
			case len(f.missed) > 0:
				fig.missed++
				checkMissed(t, j.name, spec, at, f, byRun)
				if strings.Contains(f.missed[0].Detail, "interrupted by a restart") {
					settledInTime(t, id, f, f.missed[0], r.gens, genOf)
				}
			case len(f.attempts) > 0:
				t.Errorf("fire %s has attempts but no final one and no recovery: %s", id, describe(f.attempts))
			default:
				t.Errorf("fire %s has only %s: never settled", id, describe(append(append(f.run, f.skips...), f.attempts...)))
			}
			if len(f.run) > 1 {
				fig.reissued++
				settledInTime(t, id, f, f.run[1], r.gens, genOf)
			}
			// An interrupted fire is settled by the next start: an
			// idempotent one is re-issued while it is current.
			if len(f.run) > 0 && len(f.finals) == 0 || len(f.run) > 1 {
				g := genOf(f.run[0].Time)
				if g == len(r.gens)-1 {
					t.Errorf("fire %s was left without outcome by the last daemon, which stopped with SIGTERM", id)
				}
			}
		}
	}
	if fig.fires < 40 {
		t.Errorf("only %d fires checked; the run was too short to mean much", fig.fires)
	}
	if fig.executed < fig.fires/2 {
		t.Errorf("only %d of %d fires executed", fig.executed, fig.fires)
	}
	return fig
}

// killFire is the audit records of one fire, by kind.
type killFire struct {
	run, attempts, finals, recovers, missed, skips, abandons []audit.Record
}

// settledInTime checks that the fire id, interrupted in the generation
// of its first run record, was settled (recover or missed record rec) by
// the first later generation that got through its startup: each start
// settles every intent a crash left.
func settledInTime(t *testing.T, id string, f *killFire, rec audit.Record, gens []*generation, genOf func(time.Time) int) {
	t.Helper()
	// The generation that last began the fire before rec.
	b := -1
	for _, run := range f.run {
		if run.Time.Before(rec.Time) {
			b = genOf(run.Time)
		}
	}
	if b < 0 {
		return
	}
	k := genOf(rec.Time)
	for g := b + 1; g < k; g++ {
		if !gens[g].ready.IsZero() {
			t.Errorf("fire %s was interrupted in generation %d, but generation %d started without settling it; generation %d settled it: %s",
				id, b, g, k, describe([]audit.Record{rec}))
			return
		}
	}
}

// checkMissed checks the missed record m of the fire at at of job j. An
// interrupted start or stop is missed only if its next fire was already
// due when the daemon restarted (m is timed with that instant); any other
// missed fire was superseded by a newer fire due at the same restart, and
// that newest fire ran, or was itself interrupted and recovered.
func checkMissed(t *testing.T, job string, spec engine.Schedule, at time.Time, f *killFire, byRun map[string]*killFire) {
	t.Helper()
	m := f.missed[0]
	id := executor.RunID(job, at)
	if strings.Contains(m.Detail, "interrupted by a restart") {
		// Or due so soon (within the daemon's 250 ms runway) that the
		// re-issue was not worth starting.
		if next := spec.Next(at); next.Sub(m.Time) >= 250*time.Millisecond && m.Time.Sub(at) <= killCatchup {
			t.Errorf("interrupted fire %s was audited missed at %s although its next fire (%s) was not due yet: it should have been re-issued: %s",
				id, ts(m.Time), ts(next), describe(f.missed))
		}
		return
	}
	if !strings.Contains(m.Detail, "superseded") {
		t.Errorf("fire %s missed for a reason the test does not allow (every downtime is inside catchup): %s", id, describe(f.missed))
		return
	}
	if strings.Contains(m.Detail, "too late to run") {
		// Started so late that its next fire was due within the runway:
		// that next fire must have run.
		next := spec.Next(at)
		if gap := next.Sub(m.Time); gap > time.Second {
			t.Errorf("fire %s missed as too late at %s, %v before its next fire: %s", id, ts(m.Time), gap, describe(f.missed))
		}
		if nf := byRun[executor.RunID(job, next)]; nf == nil || len(nf.run)+len(nf.attempts)+len(nf.recovers)+len(nf.missed) == 0 {
			t.Errorf("fire %s missed as too late, but its next fire %s left no record", id, executor.RunID(job, next))
		}
		return
	}
	newest := at
	for n := spec.Next(at); !n.After(m.Time); n = spec.Next(n) {
		newest = n
	}
	if newest.Equal(at) {
		t.Errorf("fire %s missed as superseded, but no newer fire was due at %s: %s", id, ts(m.Time), describe(f.missed))
		return
	}
	nf := byRun[executor.RunID(job, newest)]
	if nf != nil && len(nf.missed) > 0 && strings.Contains(nf.missed[0].Detail, "too late to run") {
		// The newest missed fire came too late itself: its next fire
		// superseded both (checked on its own record), and this record
		// must say so rather than name a fire that never ran.
		if !strings.Contains(m.Detail, "came too late to run") {
			t.Errorf("fire %s names %s as superseding it, but that fire came too late to run: %s", id, ts(newest), describe(f.missed))
		}
		return
	}
	if nf == nil || len(nf.run)+len(nf.attempts)+len(nf.recovers) == 0 &&
		!(len(nf.missed) > 0 && strings.Contains(nf.missed[0].Detail, "interrupted by a restart")) {
		t.Errorf("fire %s was missed as superseded by %s, but the newest missed fire %s was not run", id, ts(newest), executor.RunID(job, newest))
	}
}

// settledUpTo reports whether every fire of every job scheduled at or
// before end has a final attempt, recover or missed record.
func settledUpTo(path string, end time.Time) bool {
	recs, err := audit.ReadAll(path)
	if err != nil {
		return false
	}
	settled := map[string]bool{}
	for _, r := range recs {
		switch {
		case r.Event == audit.EventAttempt && r.Outcome != audit.OutcomeRetry,
			r.Event == audit.EventRecover, r.Event == audit.EventMissed, r.Event == audit.EventAbandon:
			settled[r.RunID] = true
		}
	}
	for _, j := range killJobs {
		spec, err := engine.Parse(j.schedule, time.UTC, time.Time{})
		if err != nil {
			return false
		}
		last := spec.Next(end.Add(-5 * time.Second))
		for ; !last.After(end); last = spec.Next(last) {
			if !settled[executor.RunID(j.name, last)] {
				return false
			}
		}
	}
	return true
}

// completeLines returns the audit log's complete lines (rotated files and
// the live file), without a torn last line.
func completeLines(t *testing.T, path string) []byte {
	t.Helper()
	files, err := audit.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all[:bytes.LastIndexByte(all, '\n')+1]
}

func parseRecords(t *testing.T, b []byte) []audit.Record {
	t.Helper()
	var out []audit.Record
	for r, err := range audit.Records(bytes.NewReader(b)) {
		if err != nil {
			t.Fatalf("audit log: %v", err)
		}
		out = append(out, r)
	}
	return out
}

func describe(recs []audit.Record) string {
	var parts []string
	for _, r := range recs {
		parts = append(parts, fmt.Sprintf("[seq %d %s %s %s %q]", r.Seq, ts(r.Time), r.Event, r.Outcome, r.Detail))
	}
	return strings.Join(parts, " ")
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("15:04:05.000")
}

// TestSlowStartupLosesNoFire starts the real binary on a run state that
// a crash left with many intents without outcome, and holds its start-up
// after settling them (SCHEDULER_TEST_HOLD_AT) for over a second before
// its engine starts. The
// fires due during that time must not be lost, and the missed fire caught
// up at start must reach the vendor rather than be abandoned because its
// next fire went by while the daemon was still starting.
func TestSlowStartupLosesNoFire(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	bin := binary(t)
	cfgPath, auditPath := writeConfig(t, `version: 1
timezone: UTC
audit: {path: audit.jsonl}
state: {dir: state}
defaults:
  timeout: 2s
  catchup: 60s
accounts:
  sandbox: {vendor: sandbox}
jobs:
  - {name: tick, schedule: "* * * * * *", account: sandbox, action: cdss.cmak.restart, targets: ["1484848"]}
`)
	stateDir := filepath.Join(filepath.Dir(cfgPath), "state")
	// The last fire done was 3s ago; a crash left ghostIntents restarts of
	// a job since removed without outcome.
	const ghostIntents = 250
	st, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	lastDone := time.Now().Truncate(time.Second).Add(-3 * time.Second)
	if err := st.Register("tick", lastDone.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := st.Done("tick", lastDone, executor.RunID("tick", lastDone)); err != nil {
		t.Fatal(err)
	}
	for i := range ghostIntents {
		at := lastDone.Add(-time.Duration(i+1) * time.Second)
		job := fmt.Sprintf("ghost-%03d", i)
		if err := st.Begin(job, state.Intent{RunID: executor.RunID(job, at), Scheduled: at, Action: "cdss.cmak.restart",
			Account: "sandbox", Targets: []string{"1484848"}, Started: at}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	p := &daemonProc{stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, "run", "--config", cfgPath, "--log-level", "debug")
	// Start-up is held after recovery, before the engine starts, so that
	// it spans fires on any machine, however fast recovery is.
	const hold = 1500 * time.Millisecond
	p.cmd.Env = append(os.Environ(), "SCHEDULER_TEST_HOLD_AT=recovered:"+hold.String())
	p.cmd.Stderr, p.cmd.Stdout = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	waitFor(t, 60*time.Second, "the daemon to start", func() bool { return strings.Contains(p.stderr.String(), "scheduler started") })
	ready := time.Now()
	if ready.Sub(began) < hold {
		t.Fatalf("startup took only %v, held %v after recovery: the hold did not happen", ready.Sub(began), hold)
	}
	end := time.Now().Add(2 * time.Second).Truncate(time.Second)
	waitFor(t, 20*time.Second, "the fires up to "+ts(end), func() bool { return settledUpToJob(auditPath, "tick", end) })
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.done; err != nil {
		t.Fatalf("exit: %v\n%s", err, p.stderr.String())
	}
	t.Logf("startup took %v", ready.Sub(began))

	byRun := map[string][]audit.Record{}
	for _, r := range readAudit(t, auditPath) {
		if r.Job == "tick" {
			byRun[r.RunID] = append(byRun[r.RunID], r)
		}
	}
	for at := lastDone.Add(time.Second); !at.After(end); at = at.Add(time.Second) {
		id := executor.RunID("tick", at)
		recs := byRun[id]
		var attempted, missed, abandoned bool
		for _, r := range recs {
			attempted = attempted || r.Event == audit.EventAttempt
			missed = missed || r.Event == audit.EventMissed
			abandoned = abandoned || r.Event == audit.EventAbandon
		}
		switch {
		case len(recs) == 0:
			t.Errorf("fire %s (startup %s..%s) has no audit record: silently lost", id, ts(began), ts(ready))
		case abandoned && !attempted:
			t.Errorf("fire %s was abandoned without a vendor call: %s", id, describe(recs))
		case !attempted && !missed:
			t.Errorf("fire %s never reached the vendor: %s", id, describe(recs))
		}
	}
}

// TestSlowStartupSupersedesReissue starts the real binary on a run state
// that a crash left with a start in flight for the current second, of a job
// that starts every second, and holds start-up after recovery for 1.5 s:
// recovery finds the start current and decides to re-issue it, but by the
// time the engine starts, newer fires are due. The re-issue must give way
// (audited missed, naming the newer fire) and the newest fire due must run
// through catch-up: no fire of the job is silently lost nor skipped behind a
// re-issue that outlived its own next fire.
func TestSlowStartupSupersedesReissue(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	bin := binary(t)
	cfgPath, auditPath := writeConfig(t, `version: 1
timezone: UTC
audit: {path: audit.jsonl}
state: {dir: state}
defaults:
  timeout: 2s
  catchup: 60s
accounts:
  sandbox: {vendor: sandbox}
jobs:
  - {name: on, schedule: "* * * * * *", account: sandbox, action: modelarts.notebook.start, targets: [6fa459ea-ee8a-3ca4-894e-db77e160355e]}
`)
	stateDir := filepath.Join(filepath.Dir(cfgPath), "state")
	st, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	// The crash: the fire of this very second began, without outcome. The
	// recovery right after exec sees its next fire not yet due.
	interrupted := time.Now().Truncate(time.Second)
	if err := st.Register("on", interrupted.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := st.Done("on", interrupted.Add(-time.Second), executor.RunID("on", interrupted.Add(-time.Second))); err != nil {
		t.Fatal(err)
	}
	if err := st.Begin("on", state.Intent{RunID: executor.RunID("on", interrupted), Scheduled: interrupted, Action: "modelarts.notebook.start",
		Account: "sandbox", Targets: []string{"6fa459ea-ee8a-3ca4-894e-db77e160355e"}, Idempotent: true, Started: interrupted}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	p := &daemonProc{stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, "run", "--config", cfgPath, "--log-level", "debug")
	const hold = 1500 * time.Millisecond
	p.cmd.Env = append(os.Environ(), "SCHEDULER_TEST_HOLD_AT=recovered:"+hold.String())
	p.cmd.Stderr, p.cmd.Stdout = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	waitFor(t, 60*time.Second, "the daemon to start", func() bool { return strings.Contains(p.stderr.String(), "scheduler started") })
	ready := time.Now()
	end := ready.Add(2 * time.Second).Truncate(time.Second)
	waitFor(t, 20*time.Second, "the fires up to "+ts(end), func() bool { return settledUpToJob(auditPath, "on", end) })
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.done; err != nil {
		t.Fatalf("exit: %v\n%s", err, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "interrupted by a restart") {
		t.Fatalf("the daemon did not recover the interrupted start; the crash state was not what the test meant:\n%s", p.stderr.String())
	}

	byRun := map[string][]audit.Record{}
	for _, r := range readAudit(t, auditPath) {
		if r.Job == "on" {
			byRun[r.RunID] = append(byRun[r.RunID], r)
		}
	}
	// The interrupted fire gave way to a newer one: missed, not re-run.
	var superseded bool
	for _, r := range byRun[executor.RunID("on", interrupted)] {
		switch {
		case r.Event == audit.EventAttempt:
			t.Errorf("the interrupted start was re-issued after its next fire was due: %s", describe(byRun[executor.RunID("on", interrupted)]))
		case r.Outcome == audit.OutcomeMissed && strings.Contains(r.Detail, "a newer fire of the job is due"):
			superseded = true
		}
	}
	if !superseded {
		t.Errorf("the interrupted start at %s is not audited missed in favour of a newer fire: %s", ts(interrupted), describe(byRun[executor.RunID("on", interrupted)]))
	}
	// Every later fire up to end: run, or missed as superseded by the
	// newest one due at start-up, which ran. None lost, none skipped.
	var ran int
	for at := interrupted.Add(time.Second); !at.After(end); at = at.Add(time.Second) {
		id := executor.RunID("on", at)
		recs := byRun[id]
		var attempted, missed, abandoned bool
		for _, r := range recs {
			// Reached the vendor (a start every second may find the
			// notebook still starting: that is the vendor's answer).
			attempted = attempted || r.Event == audit.EventAttempt && r.Outcome != audit.OutcomeRetry
			missed = missed || r.Event == audit.EventMissed
			// A fire that found its account busy until its next fire on a
			// loaded machine is abandoned, audited: settled, not lost. A
			// skip here would be a fire behind a re-issue that outlived its
			// own next fire, the fault this test is about.
			abandoned = abandoned || r.Event == audit.EventAbandon && strings.Contains(r.Error, "no turn before")
			if r.Event == audit.EventSkip || r.Event == audit.EventAbandon && !strings.Contains(r.Error, "no turn before") {
				t.Errorf("fire %s was %s (%s): %s", id, r.Event, r.Error, describe(recs))
			}
		}
		switch {
		case len(recs) == 0:
			t.Errorf("fire %s (start-up held %v after recovery, ready at %s) has no audit record: silently lost", id, hold, ts(ready))
		case attempted:
			ran++
		case !missed && !abandoned:
			t.Errorf("fire %s neither ran nor was missed: %s", id, describe(recs))
		}
	}
	if ran == 0 {
		t.Errorf("no fire after the interrupted one ran")
	}
}

// settledUpToJob reports whether the fire of job at end has a final
// record.
func settledUpToJob(path, job string, end time.Time) bool {
	recs, err := audit.ReadAll(path)
	if err != nil {
		return false
	}
	id := executor.RunID(job, end)
	for _, r := range recs {
		if r.RunID == id && (r.Event == audit.EventAbandon || r.Event == audit.EventAttempt && r.Outcome != audit.OutcomeRetry) {
			return true
		}
	}
	return false
}

// TestCompletedFireNotReissuedAfterKill reproduces the state a SIGKILL
// leaves when it lands after the executor made a start's final attempt
// record durable and before the daemon recorded the fire as done in the
// run state: the audit log has the outcome, the run state still has the
// intent. The fire completed, so the next start must not call the vendor
// for it again (nor audit a second outcome).
func TestCompletedFireNotReissuedAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	// The job fires hourly, last about half an hour ago: its next fire is
	// not due during the test, so a pending intent for the last one would
	// be re-issued, whatever the minute the test runs at.
	at := halfAnHourAgo()
	cfgPath, auditPath := writeConfig(t, `version: 1
timezone: UTC
audit: {path: audit.jsonl}
state: {dir: state}
defaults:
  timeout: 2s
  catchup: 2h
accounts:
  sandbox: {vendor: sandbox}
jobs:
  - {name: hourly-on, schedule: "`+hourlyHalfAnHourAgo(at)+`", account: sandbox, action: modelarts.notebook.start, targets: [6fa459ea-ee8a-3ca4-894e-db77e160355e]}
`)
	stateDir := filepath.Join(filepath.Dir(cfgPath), "state")
	id := executor.RunID("hourly-on", at)
	target := "6fa459ea-ee8a-3ca4-894e-db77e160355e"

	st, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Register("hourly-on", at.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.Done("hourly-on", at.Add(-time.Hour), executor.RunID("hourly-on", at.Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := st.Begin("hourly-on", state.Intent{RunID: id, Scheduled: at, Action: "modelarts.notebook.start", Account: "sandbox",
		Targets: []string{target}, Idempotent: true, Started: at}); err != nil {
		t.Fatal(err)
	}
	al, err := audit.Open(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	base := audit.Record{Job: "hourly-on", RunID: id, Scheduled: at, Action: "modelarts.notebook.start", Account: "sandbox", Target: target}
	run, attempt := base, base
	run.Time, run.Event, run.Detail = at.Add(time.Millisecond), audit.EventRun, "intent; idempotent"
	attempt.Time, attempt.Event, attempt.Attempt, attempt.Outcome, attempt.HTTPStatus, attempt.DurationMS =
		at.Add(120*time.Millisecond), audit.EventAttempt, 1, audit.OutcomeSuccess, 200, 119
	for _, r := range []audit.Record{run, attempt} {
		if err := al.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	seq, hash := al.Tail()
	if err := st.SetAuditTail(seq, hash); err != nil {
		t.Fatal(err)
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// A re-issue is claimed, its run record durable, before the daemon
	// says it started, and Shutdown waits for its vendor call: stopping
	// right after the start leaves any re-issue's records in the log.
	p := startDaemon(t, cfgPath)
	waitFor(t, 30*time.Second, "the daemon to start", func() bool { return strings.Contains(p.stderr.String(), "scheduler started") })
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.done; err != nil {
		t.Fatalf("exit: %v\n%s", err, p.stderr.String())
	}
	// The restart settled the fire from its audit records (the journal's
	// replay): done, nothing left in flight.
	st, err = state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if js := st.Job("hourly-on"); !js.LastDone.Equal(at) || js.LastRunID != id || len(js.InFlight) != 0 {
		t.Errorf("run state after the restart: %+v; want fire %s done and none in flight", js, id)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	var finals []audit.Record
	for _, r := range readAudit(t, auditPath) {
		if r.RunID == id && (r.Event == audit.EventAttempt || r.Event == audit.EventRun || r.Event == audit.EventRecover) && r.Seq > seq {
			finals = append(finals, r)
		}
	}
	if len(finals) > 0 {
		t.Errorf("fire %s completed before the kill, yet the restart acted on it again: %s", id, describe(finals))
	}
}

// TestKillInCatchUpStep is the fixed case of the window the random kill
// test found about one run in four: a crash between catch-up's missed
// records and the catch-up fire's intent wrote the missed records twice
// after the restart, naming a superseding fire that never ran. The daemon
// kills itself exactly there (SCHEDULER_TEST_CRASH_AT), the next start
// must audit no missed fire twice and settle the catch-up fire once.
func TestKillInCatchUpStep(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	for _, tc := range []struct {
		point, catchup string
		runs           bool // the catch-up fire runs (inside catchup)
	}{
		{"catchup-before-claim", "2h", true},
		{"catchup-claimed", "2h", true},
		{"catchup-settled", "1s", false},
	} {
		t.Run(tc.point, func(t *testing.T) {
			// Hourly, last fired about half an hour ago: the next fire does
			// not come due during the test, whatever the minute it runs at.
			hour := halfAnHourAgo()
			cfgPath, auditPath := writeConfig(t, `version: 1
timezone: UTC
audit: {path: audit.jsonl}
state: {dir: state}
defaults:
  timeout: 2s
  catchup: `+tc.catchup+`
accounts:
  sandbox: {vendor: sandbox}
jobs:
  - {name: hourly-on, schedule: "`+hourlyHalfAnHourAgo(hour)+`", account: sandbox, action: modelarts.notebook.start, targets: [6fa459ea-ee8a-3ca4-894e-db77e160355e]}
`)
			stateDir := filepath.Join(filepath.Dir(cfgPath), "state")
			st, err := state.Open(stateDir)
			if err != nil {
				t.Fatal(err)
			}
			// Registered five hours ago and never run since: four fires
			// are missed, the newest (this hour's) is the catch-up fire.
			if err := st.Register("hourly-on", hour.Add(-4*time.Hour-time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}

			crashing := exec.Command(binary(t), "run", "--config", cfgPath)
			crashing.Env = append(os.Environ(), "SCHEDULER_TEST_CRASH_AT="+tc.point)
			out, err := crashing.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("daemon with crash point %s: %v; want killed by SIGKILL\n%s", tc.point, err, out)
			}

			p := startDaemon(t, cfgPath)
			id := executor.RunID("hourly-on", hour)
			waitFor(t, 30*time.Second, "the daemon to start", func() bool { return strings.Contains(p.stderr.String(), "scheduler started") })
			waitFor(t, 30*time.Second, "the catch-up fire to settle", func() bool {
				for _, r := range readAudit(t, auditPath) {
					if r.RunID == id && (r.Event == audit.EventAttempt && r.Outcome != audit.OutcomeRetry ||
						r.Event == audit.EventMissed || r.Event == audit.EventRecover) {
						return true
					}
				}
				return false
			})
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			if err := <-p.done; err != nil {
				t.Fatalf("exit: %v\n%s", err, p.stderr.String())
			}

			missed := map[string]int{}
			finals := 0
			for _, r := range readAudit(t, auditPath) {
				if r.Event == audit.EventMissed {
					missed[r.RunID]++
				}
				if r.RunID == id && r.Event == audit.EventAttempt && r.Outcome != audit.OutcomeRetry {
					finals++
				}
			}
			want := 4 // the older fires; the newest ran
			if !tc.runs {
				want = 5 // all of them, older than catchup
			}
			if len(missed) != want {
				t.Errorf("missed fires audited: %d (%v); want %d", len(missed), missed, want)
			}
			for id, n := range missed {
				if n != 1 {
					t.Errorf("fire %s audited missed %d times across the crash; want once", id, n)
				}
			}
			if tc.runs && finals != 1 {
				t.Errorf("catch-up fire %s has %d final attempts; want 1 (re-issued once after the crash)", id, finals)
			}
			if !tc.runs && finals != 0 {
				t.Errorf("catch-up fire %s ran %d times; want 0: it is older than catchup", id, finals)
			}
		})
	}
}

// halfAnHourAgo is the minute 30 to 31 minutes before now (UTC): an hourly
// job firing at its minute (hourlyHalfAnHourAgo) last fired there, and
// fires next in about half an hour.
func halfAnHourAgo() time.Time {
	return time.Now().UTC().Truncate(time.Minute).Add(-30 * time.Minute)
}

// hourlyHalfAnHourAgo is the cron spec firing every hour at at's minute.
func hourlyHalfAnHourAgo(at time.Time) string {
	return fmt.Sprintf("0 %d * * * *", at.Minute())
}
