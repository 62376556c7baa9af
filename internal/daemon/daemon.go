// Package daemon wires a schedule to the cron engine, the executor, the
// vendor clients and the audit log. It is the `run`, `trigger` and `demo`
// commands minus flag parsing and signals: cmd/scheduler turns signals into
// a cancelled context and a reload channel and calls in here.
//
// Reload does every fallible step (read, decode, validate, resolve secrets,
// build clients) before it touches the running schedule; a bad edit is
// logged and audited and the old schedule keeps running.
package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/control"
	"github.com/cloudcron/scheduler/internal/engine"
	"github.com/cloudcron/scheduler/internal/executor"
	"github.com/cloudcron/scheduler/internal/notify"
	"github.com/cloudcron/scheduler/internal/observe"
	"github.com/cloudcron/scheduler/internal/schedule"
	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/state"
)

// Options configures a daemon.
type Options struct {
	ConfigPath string
	Log        zerolog.Logger
	Resolver   secret.Resolver
	Now        func() time.Time // default time.Now
	// Grace is how long shutdown waits for in-flight calls; default 30s.
	Grace time.Duration
	// Ready, if set, is called once the first schedule is registered.
	Ready func(Status)
	// OnReload, if set, is called around each Reload: with phase
	// "reloading" and the running schedule's status before the config is
	// re-read, then with "ready" (the new config is in force) or "rejected"
	// (it was refused and the old schedule keeps running) and the status
	// after.
	OnReload func(phase string, st Status)
	// Started, if set, is called with the daemon right after Ready, for
	// what needs it while Run drives it (Health for a watchdog, Status).
	Started func(*Daemon)
	// Watch makes the daemon reload by itself when the config file changes.
	Watch bool
	// OnAudit, if set, is called with the status when the audit log or the
	// run state's database stops writing (a full disk) and when it writes
	// again (systemd STATUS=).
	OnAudit func(Status)
	// OnCluster, if set, is called with the status when the replica's part
	// in a cluster changes: elected leader, leadership lost, cut off from
	// etcd, back (systemd STATUS=, at once rather than every 30 s).
	OnCluster func(Status)
	// AuditWrite, AuditRetryInitial and AuditRetryMax are passed to the
	// audit log (audit.Options): tests inject a full disk with AuditWrite.
	AuditWrite                       func(*os.File, []byte) (int, error)
	AuditRetryInitial, AuditRetryMax time.Duration

	// Tests: windowCheck shortens each window's check_every; windowPass is
	// called after each reconcile pass with its reason.
	windowCheck func(*schedule.Window) time.Duration
	windowPass  func(reason string)
	// Sinks receive the record stream after the daemon's own (the status
	// tracker, metrics, notifications): every batch of audit records, once
	// durable, in log order (see internal/observe).
	Sinks []observe.Sink

	// debounce overrides the config watcher's debounce (tests).
	debounce time.Duration
}

// Status is a one-line view of the running daemon.
type Status struct {
	Jobs        int
	NextJob     string
	NextFire    time.Time
	LastFailure string // the newest fire that failed on a target, if any
	Audit       string // why the audit log is not writing, if it is not
	RunState    string // why the run state's database is not written, if it is not
	// Cluster is the replica's role in a cluster ("leader", "replica"), or
	// why it claims no fires; "" on a single host.
	Cluster string
}

func (s Status) String() string {
	line := fmt.Sprintf("%d jobs; no upcoming fire", s.Jobs)
	if !s.NextFire.IsZero() {
		line = fmt.Sprintf("%d jobs; next %s at %s", s.Jobs, s.NextJob, s.NextFire.Format(time.RFC3339))
	}
	if s.LastFailure != "" {
		line += "; last failure " + s.LastFailure
	}
	if s.Audit != "" {
		line += "; " + s.Audit
	}
	if s.RunState != "" {
		line += "; " + s.RunState
	}
	if s.Cluster != "" {
		line = "cluster " + s.Cluster + "; " + line
	}
	return line
}

// Daemon is a running scheduler.
type Daemon struct {
	opts   Options
	log    zerolog.Logger
	now    func() time.Time
	audit  *audit.Log
	exec   *executor.Executor
	runner *engine.Runner
	// ctx is the parent of every fire; Shutdown cancels it when the grace
	// period is over, so abandoned calls end and are audited as failed.
	ctx    context.Context
	cancel context.CancelFunc

	store state.RunState // run state: intents, last done fires
	// stateHealth: whether the run state's background checkpoints write.
	stateHealth *runStateHealth
	cl          *cluster         // nil on a single host; see cluster.go
	hub         *observe.Hub     // the record stream's fan-out (observe.go)
	tracker     *observe.Tracker // what the status says about jobs
	control     *control.Server  // <state.dir>/control.sock; nil if it could not open
	windows     *reconciler      // keeps windows' targets in their desired state (windows.go)
	metrics     *observe.Metrics
	notifier    *notify.Notifier
	savedStop   chan struct{} // stops the saved-hours ticker (observe.go)
	savedDone   chan struct{}
	httpMu      sync.Mutex
	http        *observe.Server // http.listen; nil when absent or not bound
	httpAddr    string          // the http.listen it was started for
	started     time.Time
	stopClock   chan struct{}
	clockDone   chan struct{}

	mu       sync.Mutex
	plan     *plan
	entries  map[string]entry // by job name
	running  int              // fires between their first line and their end
	closing  bool             // Shutdown started: no new fires
	idle     chan struct{}    // closed when closing and running drops to 0
	lastSeen string           // hash of the config content last loaded or rejected
	lastFail string           // Status.LastFailure

	// The engine fires a hidden heartbeat job every heartbeatEvery; Health
	// reports whether the last beat is recent.
	hbMu   sync.Mutex
	hbLast time.Time   // wall clock with monotonic reading; never opts.Now
	hbBusy atomic.Bool // a beat is waiting for d.mu

	auditDown     bool          // under hbMu: the audit log was failing at the last beat
	watchdogAfter time.Duration // audit.watchdog_after
}

// heartbeatEvery is how often the engine fires the heartbeat; Health turns
// false when no beat completed for heartbeatStale beats.
var heartbeatEvery = 5 * time.Second

const heartbeatStale = 3

// heartbeatJob names the heartbeat in the engine's debug log; it is not a
// schedule job and Status does not count it.
const heartbeatJob = "(heartbeat)"

// every is the heartbeat's engine schedule.
type every time.Duration

func (e every) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }

// beat records a heartbeat. It takes d.mu, so a daemon wedged holding its
// lock stops beating too; while one beat waits, later beats are dropped.
func (d *Daemon) beat(time.Time) {
	if !d.hbBusy.CompareAndSwap(false, true) {
		return
	}
	defer d.hbBusy.Store(false)
	d.mu.Lock()
	//lint:ignore SA2001 the lock is the liveness probe
	d.mu.Unlock()
	d.hbMu.Lock()
	d.hbLast = time.Now()
	d.hbMu.Unlock()
	d.watchAudit()
}

// Health reports whether the engine loop is alive: its heartbeat job fired
// and could take the daemon's lock within the last few heartbeat periods.
// It never blocks. Feed it to the systemd watchdog so that a wedged
// scheduler is restarted.
//
// It is also false once the audit log has not been writable for longer
// than audit.watchdog_after: the daemon cannot act without it, and a
// restart by systemd is the next thing to try.
func (d *Daemon) Health() bool {
	d.hbMu.Lock()
	last := d.hbLast
	d.hbMu.Unlock()
	if h := d.audit.Health(); !h.OK && time.Since(h.Since) >= d.watchdogAfter {
		return false
	}
	return !last.IsZero() && time.Since(last) < heartbeatStale*heartbeatEvery
}

// DefaultWatchdogAfter is audit.watchdog_after when the config leaves it
// out.
const DefaultWatchdogAfter = 10 * time.Minute

// AuditHealth reports whether the audit log is writing, for /readyz, the
// metrics (audit_write_errors_total) and the status line.
func (d *Daemon) AuditHealth() audit.Health { return d.audit.Health() }

// auditProblem is the status line's note about an audit log that is not
// writing; "" when it is.
func (d *Daemon) auditProblem() string {
	h := d.audit.Health()
	if h.OK {
		return ""
	}
	return fmt.Sprintf("AUDIT LOG NOT WRITABLE since %s (%d records refused, no vendor calls; retrying): %s",
		h.Since.UTC().Format(time.RFC3339), h.Refused, h.Err)
}

// watchAudit logs when the audit log stops and starts writing again; the
// heartbeat calls it.
func (d *Daemon) watchAudit() {
	h := d.audit.Health()
	d.hbMu.Lock()
	was := d.auditDown
	d.auditDown = !h.OK
	d.hbMu.Unlock()
	switch {
	case !h.OK && !was:
		d.log.Error().Str("audit", d.audit.Path()).Str("error", h.Err).Time("since", h.Since).Dur("watchdog_after_ms", d.watchdogAfter).
			Msg("the audit log cannot be written: every fire is refused until it can; retrying with backoff")
	case h.OK && was:
		d.log.Warn().Str("audit", d.audit.Path()).Uint64("write_errors", h.WriteErrors).
			Msg("the audit log writes again; the refused fires are audited as audit_failed")
	default:
		return
	}
	if d.opts.OnAudit != nil {
		d.opts.OnAudit(d.Status())
	}
}

type entry struct {
	id          engine.EntryID
	fingerprint string
}

// Load reads and validates the config at path exactly as `run` does,
// secrets included.
// @every schedules count from anchor.
func Load(path string, res secret.Resolver, anchor time.Time) (*schedule.Config, error) {
	return loadAfter(path, res, anchor, nil)
}

// loadAfter is Load of a file that prev was loaded from (see
// schedule.Options.Prev).
func loadAfter(path string, res secret.Resolver, anchor time.Time, prev *schedule.Config) (*schedule.Config, error) {
	return schedule.LoadFile(path, schedule.Options{Resolver: res, CheckSecrets: true, Anchor: anchor.Truncate(time.Second), Prev: prev})
}

// Run starts the daemon and blocks until ctx is cancelled, then shuts down:
// no new fires, in-flight calls get opts.Grace to finish, and whatever is
// still running after that is abandoned and logged. A receive on reload
// re-reads the config.
func Run(ctx context.Context, opts Options, reload <-chan struct{}) error {
	d, err := Start(opts)
	if err != nil {
		return err
	}
	var watched chan struct{}
	if opts.Watch {
		watched = make(chan struct{}, 1)
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			if err := watchConfig(wctx, opts.ConfigPath, d.log, opts.debounce, watched); err != nil {
				d.log.Warn().Err(err).Msg("cannot watch the config file; reload with SIGHUP")
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return d.Shutdown()
		case <-reload:
			d.Reload(true)
		case <-watched:
			d.Reload(false)
		}
	}
}

// Start loads the config, opens the audit log, builds every client and
// registers the schedule; the daemon then fires on its own until Shutdown.
func Start(opts Options) (*Daemon, error) {
	wallClock := opts.Now == nil // the engine's clock too (tests set their own for catch-up)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Grace == 0 {
		opts.Grace = 30 * time.Second
	}
	log := opts.Log.With().Str("component", "daemon").Logger()
	cfg, err := Load(opts.ConfigPath, opts.Resolver, opts.Now())
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings() {
		log.Warn().Str("config", opts.ConfigPath).Msg(w)
	}
	p, err := buildPlan(cfg, opts.Resolver, opts.Log)
	if err != nil {
		return nil, err
	}
	stateHealth := &runStateHealth{}
	store, al, cl, err := openRunState(cfg, opts.Resolver, log, opts.ConfigPath,
		audit.Options{Write: opts.AuditWrite, RetryInitial: opts.AuditRetryInitial, RetryMax: opts.AuditRetryMax}, stateHealth)
	if err != nil {
		p.close()
		return nil, err
	}
	closeState := func() {
		if cl != nil {
			_ = cl.close()
		} else {
			_ = store.Close()
		}
	}
	d := &Daemon{opts: opts, log: log, now: opts.Now, audit: al, store: store, stateHealth: stateHealth, cl: cl, plan: p, entries: map[string]entry{},
		stopClock: make(chan struct{}), clockDone: make(chan struct{}), lastSeen: cfg.Hash(), started: opts.Now().UTC()}
	if opts.OnAudit != nil {
		stateHealth.setChanged(func() { opts.OnAudit(d.Status()) })
	}
	d.watchdogAfter = DefaultWatchdogAfter
	if w := cfg.Audit.WatchdogAfter; w != nil {
		d.watchdogAfter = w.D()
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.startObserve()
	d.knownMetrics(cfg)
	d.setNotify(cfg)
	fail := func(err error) (*Daemon, error) {
		d.cancel()
		d.waitIdle(nil)
		p.close()
		_ = al.Close()
		closeState()
		d.notifier.Close(context.Background())
		d.hub.Close()
		return nil, err
	}
	var execAudit executor.Auditor = al
	if cl != nil {
		execAudit = &outcomeAuditor{log: al, cl: cl}
	}
	d.exec = executor.New(executor.Options{
		Log:         opts.Log,
		Audit:       execAudit,
		Now:         opts.Now,
		Concurrency: d.concurrency,
		Limiter:     d.limiter,
	})
	d.runner = engine.NewRunner(opts.Log)
	d.runner.SetPrepare(d.prepare)
	// Settling what a crash left may take a while (audit and state writes);
	// it happens before the engine starts. The engine then covers every fire
	// after its start, and catch-up, planned right after, every fire up to
	// that moment: no fire falls between the two (begin runs a fire both
	// see only once).
	reissue, err := d.recoverPending(cfg, opts.Now())
	if err != nil {
		return fail(err)
	}
	holdPoint("recovered")
	if err := d.syncJobs(cfg, opts.Now()); err != nil {
		return fail(err)
	}
	for _, j := range cfg.Jobs {
		if err := d.register(j); err != nil {
			return fail(err)
		}
	}
	if _, err := d.runner.Add(heartbeatJob, every(heartbeatEvery), d.beat); err != nil {
		return fail(err)
	}
	d.hbLast = time.Now()
	// Catch-up covers the fires due by caughtAt, the engine every fire
	// after it: it counts from caughtAt, not from the moment its goroutines
	// begin (later, on a loaded machine: a fire due in between was lost,
	// found by the kill -9 test under a full -race run).
	caughtAt := opts.Now()
	engineFrom := caughtAt
	if !wallClock {
		engineFrom = time.Now() // cron runs on the wall clock
	}
	holdPoint("engine")
	d.runner.StartFrom(engineFrom)
	// The re-issues and catch-up fires run in the background, but each is
	// claimed (its intent durable) before READY=1: a daemon killed right
	// after it said ready finds them in its run state on the next start.
	//
	// Recovery decided at its own instant that each re-issue was still
	// current; start-up may have taken long enough since for the job's next
	// fire to be due or imminent. Such a re-issue is settled missed instead,
	// and catch-up, planned at the same instant as this check, runs the newer
	// fire: a fire due between recovery and caughtAt belongs to catch-up,
	// one after it to the engine, never to nobody.
	reissued := map[string]bool{}
	var claims []<-chan struct{}
	for _, r := range reissue {
		if j := cfg.Job(r.job); j != nil && j.Spec.Next(r.scheduled).Sub(caughtAt) < minRunway {
			if err := d.supersedeReissue(r, caughtAt, j.Spec.Next(r.scheduled)); err != nil {
				d.runner.Stop()
				return fail(err)
			}
			continue
		}
		claims = append(claims, d.goFire(r.job, r.scheduled, r.targets, nil))
		reissued[r.job] = true
	}
	var caught []<-chan struct{}
	if cl != nil {
		// Catch-up runs on the elected leader; recovery of fires left by
		// other replicas on every one.
		d.startCluster()
	} else if caught, err = d.catchUp(cfg, caughtAt, reissued); err != nil {
		d.runner.Stop()
		return fail(err)
	}
	for _, c := range append(claims, caught...) {
		<-c
	}
	go func() {
		defer close(d.clockDone)
		d.watchClock(d.stopClock)
	}()
	d.startWindows()
	d.startControl(cfg.State.Dir)
	d.setHTTP(cfg.HTTP)
	d.startSaved()
	st := d.Status()
	log.Info().Str("config", opts.ConfigPath).Int("jobs", len(cfg.Jobs)).Str("audit", cfg.Audit.Path).
		Str("next", st.String()).Msg("scheduler started")
	for n, c := range p.sandboxClouds() {
		log.Info().Str("account", n).Str("url", c.URL()).Msg("sandbox account: emulated cloud on loopback")
	}
	if opts.Ready != nil {
		opts.Ready(st)
	}
	if opts.Started != nil {
		opts.Started(d)
	}
	// Loading a large schedule leaves garbage several times the size of
	// what stays; hand its pages back to the system now rather than keep
	// them resident until the heap grows into them.
	go debug.FreeOSMemory()
	return d, nil
}

// openAuditErr explains a refusal to open the audit log: OpenWith changed
// nothing, and a tail that does not match the run state has a way out.
func openAuditErr(err error, configPath string) error {
	var ce *audit.CorruptError
	if errors.As(err, &ce) && ce.Tail {
		return fmt.Errorf("open audit log: %w\nThe audit log was left as it is. Look at it with: scheduler audit verify --config %s\nTo start anyway, keeping every byte and starting a new chain segment: scheduler audit repair --config %s", err, configPath, configPath)
	}
	return fmt.Errorf("open audit log: %w", err)
}

func (d *Daemon) concurrency(account string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.plan.concurrency(account)
}

// register adds job j of the current plan to the engine.
func (d *Daemon) register(j *schedule.Job) error {
	name := j.Name
	id, err := d.runner.Add(name, j.Spec, func(scheduled time.Time) { d.fire(name, scheduled) })
	if err != nil {
		return fmt.Errorf("job %s: register schedule: %w", name, err)
	}
	d.entries[name] = entry{id: id, fingerprint: d.fingerprint(j)}
	return nil
}

// fingerprint covers what makes a job behave differently: the job itself
// and the account it calls through (schedule.Job.Fingerprint hashes both,
// by value; printing the account would print its pointer fields, such as
// rate_limit, as addresses that differ on every load).
func (d *Daemon) fingerprint(j *schedule.Job) string {
	return j.Fingerprint()
}

// fire runs one scheduled fire of a job under the plan current at that
// moment. It is called by the engine in its own goroutine.
func (d *Daemon) fire(name string, scheduled time.Time) {
	p, ok := d.enter()
	if !ok {
		return
	}
	defer d.leave(p)
	d.runFire(p, name, scheduled, nil, nil, nil)
}

// prepare is told of each fire half a second before it is due (the
// engine's early wake): the job's account opens the connections its calls
// will need then, so that a burst of fires does not begin with a burst of
// dials.
func (d *Daemon) prepare(name string, scheduled time.Time) {
	p := d.current()
	if j := p.jobs[name]; j != nil {
		if a := p.accounts[j.Account]; a != nil {
			a.prepare(j.Action, scheduled, len(j.Targets))
		}
	}
}

// current returns the plan running now.
func (d *Daemon) current() *plan {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.plan
}

// enter counts a fire as running under the current plan, so that Shutdown
// waits for it and a reload does not close its clients under it. It fails
// once Shutdown has begun.
func (d *Daemon) enter() (*plan, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return nil, false
	}
	d.running++
	d.plan.inflight++
	return d.plan, true
}

// runFire runs one fire of job name under plan p. A non-nil reissue
// re-issues the intent a crash left in flight for this fire (which would
// otherwise make the claim refuse it) on those targets. A non-nil missed
// marks a catch-up fire: its missed records (the older fires it
// supersedes) are written in the same durable step as its intent, and if
// a newer fire of the job ran first, the fire itself is audited missed
// rather than dropped silently. A non-nil began is called once the fire's
// claim is decided (claimed, refused or failed), or when the fire ends
// without one.
func (d *Daemon) runFire(p *plan, name string, scheduled time.Time, reissue []string, missed *catchUpMissed, began func()) {
	j := p.jobs[name]
	cj := p.cfg.Job(name)
	if j == nil || cj == nil {
		return // removed by a reload after the engine picked it
	}
	if reissue != nil {
		jj := *j
		jj.Targets = reissue
		j = &jj
	}
	now := d.now()
	// Retries stop at the job's next fire; a late fire (catch-up, a slow
	// start) still gets until the next fire after now. A re-issue does
	// not: the job's next fire supersedes it, and runs on time rather than
	// be skipped behind it.
	due := cj.Spec.Next(scheduled) // the job's fire after this one
	next := due
	if n := cj.Spec.Next(now); n.After(next) && reissue == nil {
		next = n
	}
	if reissue != nil && next.Sub(now) < minRunway {
		d.settleMissed(j, scheduled, true, nil, fmt.Sprintf("interrupted by a restart; not re-issued: a newer fire of the job is due at %s", next.Format(time.RFC3339)))
		return
	}
	d.log.Debug().Str("job", name).Time("scheduled", scheduled).Dur("lag_ms", now.Sub(scheduled)).Msg("fire")
	// A catch-up fire that reaches this point after its job's next fire
	// came due (a loaded machine) is overtaken: that fire is after
	// catch-up's instant, so the engine runs it; running this one too
	// would repeat the job's action, or be skipped behind it unsettled.
	by := next
	overtaken := missed != nil && !due.After(now)
	if overtaken {
		by = due
	}
	if reissue == nil && (next.Sub(now) < minRunway || overtaken) && d.cl.isLeader() && d.mayRun(j, scheduled) {
		// So late that the job's next fire is due before a call could
		// go out: that fire does the job; this one is missed, not failed.
		if missed != nil {
			// The older fires this catch-up superseded are superseded by
			// the next fire instead: say so rather than name this one.
			for i, r := range missed.records {
				if strings.HasPrefix(r.Detail, "superseded by the newer missed fire") {
					missed.records[i].Detail = fmt.Sprintf("superseded by the fire at %s: the newest missed fire, %s, came too late to run",
						by.Format(time.RFC3339), scheduled.Format(time.RFC3339))
				}
			}
		}
		d.settleMissed(j, scheduled, true, missed, fmt.Sprintf("superseded: too late to run, the next fire at %s is due", by.Format(time.RFC3339)))
		return
	}
	out := d.exec.FireWith(d.ctx, j, scheduled, next, d.claim(j, scheduled, next, reissue != nil, missed, began))
	if out.NotRun && d.cl != nil && missed == nil {
		d.log.Debug().Str("job", name).Time("scheduled", scheduled).Msg("fire claimed by another replica, or done")
		return
	}
	if out.NotRun {
		st := d.store.Job(name)
		d.log.Info().Str("job", name).Time("scheduled", scheduled).Time("last_done", st.LastDone).
			Msg("fire already done or in flight; not running it again")
		if missed != nil && scheduled.Before(st.LastDone) {
			d.settleMissed(j, scheduled, false, missed, fmt.Sprintf("superseded by the newer fire at %s, which ran first", st.LastDone.Format(time.RFC3339)))
		} else if missed != nil {
			d.writeMissed(j, missed)
		}
		return
	}
	switch {
	case d.ctx.Err() != nil:
		// Cut short by shutdown: the intent stays, so the next start
		// re-evaluates the fire.
	case auditFailed(out):
		// A vendor may have acted without its outcome in the audit log:
		// keep the intent so the next start re-evaluates it.
		d.log.Error().Str("job", name).Time("scheduled", scheduled).
			Msg("audit log failed during the fire: no vendor call is made without its record; the intent stays in the run state for the next start")
		d.noteFailure("audit log write failed at " + d.now().Format(time.RFC3339) + "; vendor calls stopped until it is fixed")
	default:
		if out.Skipped && missed != nil {
			d.writeMissed(j, missed)
		}
		d.done(name, scheduled)
	}
	if out.Skipped {
		return
	}
	if failed := out.Failed(); len(failed) > 0 {
		ids := make([]string, len(failed))
		for i, f := range failed {
			ids[i] = f.Target + " (" + f.Outcome + ")"
		}
		if !auditFailed(out) { // that note says more
			d.noteFailure(failureLine(name, d.now(), ids))
		}
		d.log.Error().Str("job", name).Str("run_id", out.RunID).Strs("failed", ids).Msg("fire finished with failures")
		return
	}
	d.log.Info().Str("job", name).Str("run_id", out.RunID).Int("targets", len(out.Targets)).Msg("fire succeeded on every target")
}

// failureLine is the one-line status's last failure: job's fire that
// ended at at, failed on targets ("target (outcome)").
func failureLine(job string, at time.Time, targets []string) string {
	return fmt.Sprintf("%s at %s: %s", job, at.Format(time.RFC3339), strings.Join(targets, ", "))
}

func (d *Daemon) noteFailure(s string) {
	d.mu.Lock()
	d.lastFail = s
	d.mu.Unlock()
}

// leave ends a fire started by runFire: it releases the plan the fire ran
// under (closing it if a reload retired it and this was its last fire) and
// wakes Shutdown when the last fire ends.
func (d *Daemon) leave(p *plan) {
	d.mu.Lock()
	d.running--
	p.inflight--
	closePlan := p.retired && p.inflight == 0
	if d.closing && d.running == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
	d.mu.Unlock()
	if closePlan {
		p.close()
	}
}

// minRunway is the least time a late fire needs before its next fire to
// be worth starting.
const minRunway = 250 * time.Millisecond

// mayRun reports whether a fire that will not run should be settled as
// missed: it was neither done nor started already.
func (d *Daemon) mayRun(j *executor.Job, scheduled time.Time) bool {
	return state.ShouldRun(d.store.Job(j.Name), scheduled)
}

// missedRecords returns one missed record per target of a fire that will
// not run.
func (d *Daemon) missedRecords(j *executor.Job, scheduled time.Time, reason string) []audit.Record {
	recs := make([]audit.Record, len(j.Targets))
	for i, t := range j.Targets {
		recs[i] = audit.Record{Time: d.now().UTC(), Event: audit.EventMissed, Job: j.Name, RunID: executor.RunID(j.Name, scheduled),
			Scheduled: scheduled, Action: j.Action, Account: j.Account, Target: t, Outcome: audit.OutcomeMissed, Detail: reason}
	}
	return recs
}

// settleMissed audits the fire of j at fire as missed, with the older
// missed fires of a catch-up (missed, may be nil), in one durable step; if
// settle is set the fire is settled in the same step, so a crash never
// audits it twice.
func (d *Daemon) settleMissed(j *executor.Job, fire time.Time, settle bool, missed *catchUpMissed, reason string) {
	var recs []audit.Record
	if missed != nil {
		recs = append(recs, missed.records...)
	}
	recs = append(recs, d.missedRecords(j, fire, reason)...)
	var at time.Time
	if settle {
		at = fire
	}
	if err := d.store.Settle(j.Name, at, executor.RunID(j.Name, fire), recs); err != nil {
		d.log.Error().Err(err).Str("job", j.Name).Msg("audit log write failed")
		return
	}
	d.log.Warn().Str("job", j.Name).Time("scheduled", fire).Str("reason", reason).Msg("fire missed")
}

// writeMissed writes a catch-up's missed records when its fire did not
// claim them.
func (d *Daemon) writeMissed(j *executor.Job, missed *catchUpMissed) {
	if len(missed.records) == 0 {
		return
	}
	if err := d.store.Settle(j.Name, missed.settled, executor.RunID(j.Name, missed.settled), missed.records); err != nil {
		d.log.Error().Err(err).Str("job", j.Name).Msg("audit log write failed")
	}
}

func auditFailed(out executor.Outcome) bool {
	for _, t := range out.Targets {
		if errors.Is(t.Err, executor.ErrAudit) {
			return true
		}
	}
	return false
}

// Reload re-reads the config. On any error the running schedule stays as
// it is; the error is logged with its positions and audited. Unless force
// is set (SIGHUP), a file whose content has not changed is not reloaded.
func (d *Daemon) Reload(force bool) {
	if data, rerr := os.ReadFile(d.opts.ConfigPath); rerr == nil {
		sum := sha256.Sum256(data)
		if !force && hex.EncodeToString(sum[:]) == d.lastSeen {
			d.log.Debug().Msg("config file touched but unchanged since the last reload; not reloading")
			return
		}
		d.lastSeen = hex.EncodeToString(sum[:])
	}
	d.mu.Lock()
	running := d.plan.cfg
	d.mu.Unlock()
	cfg, err := loadAfter(d.opts.ConfigPath, d.opts.Resolver, d.now(), running)
	phase := "ready"
	if d.opts.OnReload != nil {
		d.opts.OnReload("reloading", d.Status())
		defer func() { d.opts.OnReload(phase, d.Status()) }()
	}
	if err == nil && clusterKey(cfg.Cluster) != clusterKey(d.plan.cfg.Cluster) {
		err = fmt.Errorf("cluster: changed: restart the daemon to join another etcd, prefix or node")
	}
	if err == nil && cfg.Audit.Path != d.plan.cfg.Audit.Path {
		err = fmt.Errorf("audit.path changed from %s to %s: restart the daemon to move the audit log", d.plan.cfg.Audit.Path, cfg.Audit.Path)
	}
	if err == nil && cfg.State.Dir != d.plan.cfg.State.Dir {
		err = fmt.Errorf("state.dir changed from %s to %s: restart the daemon to move the run state", d.plan.cfg.State.Dir, cfg.State.Dir)
	}
	var p *plan
	if err == nil {
		p, err = buildPlan(cfg, d.opts.Resolver, d.opts.Log)
	}
	if err != nil {
		d.log.Error().Str("config", d.opts.ConfigPath).Str("problems", err.Error()).Msg("reload rejected; keeping the current schedule")
		d.appendReload("failure", err.Error())
		phase = "rejected"
		return
	}
	for _, w := range cfg.Warnings() {
		d.log.Warn().Str("config", d.opts.ConfigPath).Msg(w)
	}
	d.mu.Lock()
	oldPlan := d.plan
	d.plan = p
	var added, removed, changed, kept []string
	for name, e := range d.entries {
		if cfg.Job(name) == nil {
			d.runner.Remove(e.id)
			delete(d.entries, name)
			removed = append(removed, name)
		}
	}
	for _, j := range cfg.Jobs {
		e, ok := d.entries[j.Name]
		fp := d.fingerprint(j)
		switch {
		case ok && e.fingerprint == fp:
			kept = append(kept, j.Name)
			// Keep the running schedule value: an @every job stays on the
			// grid the engine runs it on (anchored at its first load), so
			// deadlines and catch-up use the same instants.
			if old := oldPlan.cfg.Job(j.Name); old != nil && old != j { // a job the load took from the running config is the same
				j.Spec = old.Spec
			}
			continue
		case ok:
			d.runner.Remove(e.id)
			changed = append(changed, j.Name)
		default:
			added = append(added, j.Name)
		}
		if err := d.register(j); err != nil {
			d.log.Error().Err(err).Str("job", j.Name).Msg("reload: could not register job")
		}
	}
	// The replaced plan's clients close when its last in-flight fire ends.
	oldPlan.retired = true
	closeOld := oldPlan.inflight == 0
	if err := d.syncJobs(cfg, d.now()); err != nil {
		d.log.Error().Err(err).Msg("reload: run state not updated")
	}
	d.mu.Unlock()
	if closeOld {
		oldPlan.close()
	}
	sort.Strings(added)
	sort.Strings(removed)
	sort.Strings(changed)
	diff := fmt.Sprintf("added [%s] removed [%s] changed [%s] unchanged %d",
		strings.Join(added, " "), strings.Join(removed, " "), strings.Join(changed, " "), len(kept))
	d.log.Info().Strs("added", added).Strs("removed", removed).Strs("changed", changed).Int("unchanged", len(kept)).
		Int("jobs_taken_as_they_were", cfg.Reused()).Msg("config reloaded")
	d.windows.poke(passReload)
	d.appendReload("success", diff)
	go debug.FreeOSMemory() // the old plan's and the parse's garbage (see Start)
	d.setHTTP(cfg.HTTP)
	d.knownMetrics(cfg)
	d.setNotify(cfg)
}

func (d *Daemon) appendReload(outcome, detail string) {
	r := audit.Record{Time: d.now().UTC(), Event: "reload", Outcome: outcome, Detail: detail}
	if outcome != "success" {
		r.Error = detail
		r.Detail = ""
	}
	if err := d.audit.Append(r); err != nil {
		d.log.Error().Err(err).Msg("audit log write failed")
	}
}

// waitIdle stops new fires and waits until every fire has ended or timeout
// fires (nil: no timeout). It reports whether every fire ended.
func (d *Daemon) waitIdle(timeout <-chan time.Time) bool {
	d.mu.Lock()
	d.closing = true
	if d.running == 0 {
		d.mu.Unlock()
		return true
	}
	if d.idle == nil {
		d.idle = make(chan struct{})
	}
	idle := d.idle
	d.mu.Unlock()
	select {
	case <-idle:
		return true
	case <-timeout:
		return false
	}
}

// Status summarises the running schedule.
func (d *Daemon) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := Status{Jobs: len(d.entries), LastFailure: d.lastFail, Audit: d.auditProblem(), RunState: d.stateHealth.problem()}
	if d.cl != nil {
		st.Cluster = d.cl.role()
		if p := d.cl.problem(); p != "" {
			st.Cluster = p
		}
	}
	for name, e := range d.entries {
		t := d.runner.NextFire(e.id)
		if t.IsZero() {
			continue
		}
		if st.NextFire.IsZero() || t.Before(st.NextFire) {
			st.NextFire, st.NextJob = t, name
		}
	}
	return st
}

// Shutdown stops firing, waits up to the grace period for in-flight calls
// and closes everything. It reports what it had to abandon.
func (d *Daemon) Shutdown() error {
	d.log.Info().Dur("grace_ms", d.opts.Grace).Msg("shutting down: no new fires; waiting for in-flight calls")
	close(d.stopClock)
	<-d.clockDone    // no catch-up starts after this
	d.windows.halt() // no pass starts after this
	if d.cl != nil {
		d.cl.stopLoops() // nor a recovery or a leader's catch-up
	}
	stopped := d.runner.Stop()
	timer := time.NewTimer(d.opts.Grace)
	defer timer.Stop()
	var err error
	if !d.waitIdle(timer.C) {
		d.log.Error().Strs("abandoned", d.exec.Running()).Msg("grace period over; abandoning in-flight calls")
		d.cancel() // in-flight attempts end now and audit how they ended
		if !d.waitIdle(time.After(5 * time.Second)) {
			d.log.Error().Strs("abandoned", d.exec.Running()).Msg("in-flight calls did not end after cancellation")
		}
		err = fmt.Errorf("shutdown: abandoned in-flight calls after the %s grace period", d.opts.Grace)
	}
	select {
	case <-stopped.Done():
	case <-time.After(5 * time.Second):
	}
	d.cancel()
	d.windows.wait()
	if cerr := d.stopControl(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	d.mu.Lock()
	d.plan.close()
	d.mu.Unlock()
	if cerr := d.audit.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close audit log: %w", cerr))
	}
	d.hub.Close() // after the audit log: its last records reach the sinks
	closeStore := d.store.Close
	if d.cl != nil {
		closeStore = d.cl.close // the session too: its claims go at once
	}
	if cerr := closeStore(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close run state: %w", cerr))
	}
	if err == nil {
		d.log.Info().Msg("stopped cleanly")
	}
	return err
}
