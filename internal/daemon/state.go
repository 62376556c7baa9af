package daemon

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/executor"
	"github.com/cloudcron/scheduler/internal/schedule"
	"github.com/cloudcron/scheduler/internal/state"
	"github.com/cloudcron/scheduler/internal/state/etcdstore"
)

// clockTick is how often the daemon compares the wall clock with the
// monotonic clock to notice jumps (NTP steps, suspend/resume, a manual
// date change).
const clockTick = time.Second

// reissueFire is an interrupted start or stop to run again, on the targets
// that have no outcome yet.
type reissueFire struct {
	job       string
	scheduled time.Time
	targets   []string
	pending   state.PendingIntent // the intent, its targets the open ones
}

// recoverPending settles the intents a crash left without outcome, before
// anything else fires. Targets whose outcome reached the audit log before
// the crash (the crash hit between the last record and the run state's
// update) are settled as they are. For the others: a start or stop is
// re-issued when it is still current (the job's newest interrupted fire, no
// newer fire of the job due, inside the catch-up window), otherwise audited
// missed; a restart or kill is never re-issued blindly: it is audited
// unknown.
func (d *Daemon) recoverPending(cfg *schedule.Config, now time.Time) ([]reissueFire, error) {
	pending := d.store.Pending()
	if len(pending) == 0 {
		return nil, nil
	}
	runIDs := map[string]bool{}
	newest := map[string]time.Time{}
	for _, p := range pending {
		runIDs[p.RunID] = true
		if p.Scheduled.After(newest[p.Job]) {
			newest[p.Job] = p.Scheduled
		}
	}
	finished, err := finishedTargets(cfg.Audit.Path, runIDs)
	if err != nil {
		return nil, fmt.Errorf("read the audit log to recover interrupted fires: %w", err)
	}
	var reissue []reissueFire
	for _, p := range pending {
		// Another replica may have taken this fire over since Pending.
		if mine, err := d.store.Adopt(p); err != nil {
			return nil, fmt.Errorf("take over interrupted fire %s: %w", p.RunID, err)
		} else if !mine {
			continue
		}
		var open []string
		for _, t := range p.Targets {
			// Finished: the claimer (another replica) recorded the
			// target's outcome in etcd; its record is in that replica's
			// audit log.
			if !finished[p.RunID][t] && !slices.Contains(p.Finished, t) {
				open = append(open, t)
			}
		}
		if len(open) == 0 {
			d.log.Info().Str("job", p.Job).Str("run_id", p.RunID).Strs("outcomes_in_etcd", p.Finished).
				Msg("an interrupted fire had recorded every outcome before the crash; settling it")
			if err := d.store.Done(p.Job, p.Scheduled, p.RunID); err != nil {
				return nil, fmt.Errorf("settle interrupted fire %s: %w", p.RunID, err)
			}
			continue
		}
		p.Targets = open
		dec := state.Recover(p)
		j := cfg.Job(p.Job)
		switch {
		case dec.Reissue && j != nil && j.Action == p.Action && p.Scheduled.Equal(newest[p.Job]) &&
			now.Sub(p.Scheduled) <= j.CatchupD && !j.Spec.Next(p.Scheduled).Before(now):
			d.log.Warn().Str("job", p.Job).Str("run_id", p.RunID).Strs("targets", open).Msg(dec.Message)
			reissue = append(reissue, reissueFire{job: p.Job, scheduled: p.Scheduled, targets: open, pending: p})
			continue
		case dec.Reissue:
			reason := "interrupted by a restart; not re-issued: "
			switch {
			case j == nil:
				reason += "the job is no longer in the config"
			case j.Action != p.Action:
				reason += "the job's action changed"
			case !p.Scheduled.Equal(newest[p.Job]):
				reason += "superseded by a newer interrupted fire"
			case j.CatchupD == 0:
				reason += "catch-up is off (catchup 0)"
			case now.Sub(p.Scheduled) > j.CatchupD:
				reason += fmt.Sprintf("older than catchup %s", j.CatchupD)
			default:
				reason += "a newer fire of the job is already due"
			}
			dec = state.Decision{Outcome: audit.OutcomeMissed, Detail: reason, Message: reason}
			d.log.Warn().Str("job", p.Job).Str("run_id", p.RunID).Msg(reason)
		default:
			d.log.Error().Str("job", p.Job).Str("run_id", p.RunID).Strs("targets", open).Msg(dec.Message)
		}
		if err := d.store.Settle(p.Job, p.Scheduled, p.RunID, dec.Records(p, now)); err != nil {
			return nil, fmt.Errorf("audit recovery of %s: %w", p.RunID, err)
		}
	}
	return reissue, nil
}

// supersedeReissue settles re-issue r as missed at now: the job's next
// fire, at next, is due or too close for the re-issue to be worth
// starting, and runs instead.
func (d *Daemon) supersedeReissue(r reissueFire, now, next time.Time) error {
	reason := fmt.Sprintf("interrupted by a restart; not re-issued: a newer fire of the job is due at %s", next.Format(time.RFC3339))
	d.log.Warn().Str("job", r.job).Str("run_id", r.pending.RunID).Msg(reason)
	dec := state.Decision{Outcome: audit.OutcomeMissed, Detail: reason, Message: reason}
	if err := d.store.Settle(r.job, r.scheduled, r.pending.RunID, dec.Records(r.pending, now)); err != nil {
		return fmt.Errorf("audit recovery of %s: %w", r.pending.RunID, err)
	}
	return nil
}

// finishedTargets reads the newest two files of the audit log and returns,
// for each of runIDs, the targets that have a final record: an attempt
// that ended (success, failure, unknown), or a skip, abandon, recover or
// missed record.
func finishedTargets(path string, runIDs map[string]bool) (map[string]map[string]bool, error) {
	files, err := audit.Files(path)
	if err != nil {
		return nil, err
	}
	if len(files) > 2 {
		files = files[len(files)-2:]
	}
	out := map[string]map[string]bool{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
		for r, err := range audit.Records(fh) {
			if err != nil || !runIDs[r.RunID] || r.Target == "" {
				continue
			}
			final := false
			switch r.Event {
			case audit.EventAttempt:
				final = r.Outcome != audit.OutcomeRetry
			case audit.EventSkip, audit.EventAbandon, audit.EventRecover, audit.EventMissed:
				final = true
			}
			if final {
				if out[r.RunID] == nil {
					out[r.RunID] = map[string]bool{}
				}
				out[r.RunID][r.Target] = true
			}
		}
		fh.Close()
	}
	return out, nil
}

// syncJobs registers every configured job in the run state and forgets
// jobs that are no longer configured, in one write.
func (d *Daemon) syncJobs(cfg *schedule.Config, now time.Time) error {
	register := make([]string, len(cfg.Jobs))
	for i, j := range cfg.Jobs {
		register[i] = j.Name
	}
	var forget []string
	for _, name := range d.store.Jobs() {
		if cfg.Job(name) == nil {
			forget = append(forget, name)
		}
	}
	if err := d.store.Sync(forget, register, now); err != nil {
		return fmt.Errorf("run state: %w", err)
	}
	return nil
}

// catchUpMissed are the missed records of a catch-up plan whose newest
// fire runs: they are written with that fire's intent, in one durable
// step, so a crash never writes them twice nor names a superseding fire
// that never ran.
type catchUpMissed struct {
	records []audit.Record
	settled time.Time // the newest missed fire in records; zero if none
	fire    time.Time // the catch-up fire
}

// catchUp plans every job's missed fires at now: the newest one inside the
// catch-up window runs (in the background), the others are audited as
// missed. Jobs in skip are left alone (they are being re-issued). It
// returns, for each fire it started, a channel closed once that fire is
// claimed (see goFire).
func (d *Daemon) catchUp(cfg *schedule.Config, now time.Time, skip map[string]bool) ([]<-chan struct{}, error) {
	var claims []<-chan struct{}
	job, err := d.jobStates()
	if err != nil {
		return nil, err
	}
	for _, j := range cfg.Jobs {
		if skip[j.Name] {
			continue
		}
		c := state.Plan(j.Spec, job(j.Name), now, j.CatchupD)
		if c.Empty() {
			continue
		}
		recs := c.MissedRecords(j.Name, now, executor.RunID)
		var settled time.Time
		for i := range recs {
			recs[i].Action, recs[i].Account = j.Action, j.Account
			if recs[i].Scheduled.After(settled) {
				settled = recs[i].Scheduled
			}
		}
		if !c.Run.IsZero() {
			d.log.Warn().Str("job", j.Name).Time("scheduled", c.Run).Str("plan", c.String()).Msg("catching up a missed fire")
			claims = append(claims, d.goFire(j.Name, c.Run, nil, &catchUpMissed{records: recs, settled: settled, fire: c.Run}))
			continue
		}
		d.log.Warn().Str("job", j.Name).Str("plan", c.String()).Msg("missed fires not caught up")
		if err := d.store.Settle(j.Name, c.Settle, executor.RunID(j.Name, c.Settle), recs); err != nil {
			return claims, fmt.Errorf("audit missed fires of %s: %w", j.Name, err)
		}
		crashPoint("catchup-settled")
	}
	return claims, nil
}

// bulkStates is a run state that reads every job's state at once: the
// etcd store, where reading job by job costs one round trip each.
type bulkStates interface {
	JobStates() (map[string]state.JobState, error)
}

// jobStates returns the jobs' state as one read found it, for a pass over
// every job (catch-up): in a cluster one range read of etcd rather than one
// read per job (thousands of jobs took seconds). An error means etcd did
// not answer: nothing could be claimed anyway.
func (d *Daemon) jobStates() (func(string) state.JobState, error) {
	b, ok := d.store.(bulkStates)
	if !ok {
		return d.store.Job, nil
	}
	m, err := b.JobStates()
	if err != nil {
		return nil, err
	}
	return func(name string) state.JobState { return m[name] }, nil
}

// crashAt names the point at which the process kills itself with SIGKILL,
// from SCHEDULER_TEST_CRASH_AT: the kill -9 tests land a crash exactly in
// the window they test. Unset in production.
var crashAt = os.Getenv("SCHEDULER_TEST_CRASH_AT")

func crashPoint(name string) {
	if crashAt != "" && crashAt == name {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

// holdAt holds start-up at a named point for a while, from
// SCHEDULER_TEST_HOLD_AT=point:duration (e.g. "recovered:1500ms"): the
// process tests make start-up span fires deterministically, however fast
// the machine is. Unset in production.
var holdAt = os.Getenv("SCHEDULER_TEST_HOLD_AT")

func holdPoint(name string) {
	point, d, ok := strings.Cut(holdAt, ":")
	if !ok || point != name {
		return
	}
	if hold, err := time.ParseDuration(d); err == nil && hold > 0 {
		time.Sleep(hold)
	}
}

// goFire runs one fire outside the engine (catch-up, re-issue), tracked so
// that Shutdown waits for it. reissue and missed: see runFire. The channel
// it returns is closed once the fire's claim is decided (its intent and
// records durable, or refused), or when the fire ends without one.
func (d *Daemon) goFire(name string, scheduled time.Time, reissue []string, missed *catchUpMissed) <-chan struct{} {
	claimed := make(chan struct{})
	began := sync.OnceFunc(func() { close(claimed) })
	p, ok := d.enter()
	if !ok {
		began()
		return claimed
	}
	go func() {
		defer d.leave(p)
		defer began()
		d.runFire(p, name, scheduled, reissue, missed, began)
	}()
	return claimed
}

// claim returns the executor's BeginFunc for one fire: it claims the fire
// in the run state and writes its run records (and a catch-up's missed
// records) in one durable step, before any vendor call. The fire does not
// run when it is already done (also after the clock went backwards) or in
// flight; a re-issue (reissue) runs despite its own intent, left in flight
// by a crash, which it replaces.
func (d *Daemon) claim(j *executor.Job, scheduled, next time.Time, reissue bool, missed *catchUpMissed, began func()) executor.BeginFunc {
	return func(runRecords []audit.Record) (bool, error) {
		if began != nil {
			defer began()
		}
		c := state.Claim{
			Job: j.Name,
			Intent: state.Intent{
				RunID:      executor.RunID(j.Name, scheduled),
				Scheduled:  scheduled,
				Action:     j.Action,
				Account:    j.Account,
				Targets:    j.Targets,
				Idempotent: j.Idempotent,
				Started:    d.now(),
			},
			Reissue: reissue,
			Records: runRecords,
		}
		if missed != nil && len(missed.records) > 0 {
			c.Records = append(slices.Clip(missed.records), runRecords...)
			c.Settled = missed.settled
		}
		if missed != nil {
			crashPoint("catchup-before-claim")
		}
		var ok bool
		var err error
		if d.cl != nil {
			ok, err = d.claimCluster(c, next.Add(-minRunway))
		} else {
			ok, err = d.store.Claim(c)
		}
		if ok && missed != nil {
			crashPoint("catchup-claimed")
		}
		switch {
		case err != nil && d.cl != nil && !errors.Is(err, audit.ErrClosed) && d.audit.Err() == nil:
			// Not claimed: a replica that reaches etcd runs the fire, or,
			// if none does, the leader catches it up.
			msg := "etcd did not answer the claim before the job's next fire: not running the fire here"
			if errors.Is(err, etcdstore.ErrNoSession) {
				msg = "cut off from etcd: not claiming the fire; a replica that reaches etcd runs it"
			}
			d.log.Warn().Err(err).Str("job", j.Name).Time("scheduled", scheduled).Msg(msg)
			return false, nil
		case err != nil:
			d.log.Error().Err(err).Str("job", j.Name).Time("scheduled", scheduled).
				Msg("cannot record the fire's intent; skipping the fire rather than acting unrecorded")
		}
		return ok, err
	}
}

// done records a fire's outcome in the run state. Its records are in the
// audit log already; the run state's database follows at its next
// checkpoint.
func (d *Daemon) done(name string, scheduled time.Time) {
	if err := d.store.Done(name, scheduled, executor.RunID(name, scheduled)); err != nil {
		d.log.Error().Err(err).Str("job", name).Time("scheduled", scheduled).
			Msg("cannot record the fire's outcome in the run state; it may be re-evaluated after a restart")
	}
}

// watchClock notices wall-clock jumps. After a forward jump the missed
// fires are caught up; after either kind the engine's timers are rebuilt
// from the new wall time. Fires already done never run again (begin).
func (d *Daemon) watchClock(stop <-chan struct{}) {
	t := time.NewTicker(clockTick)
	defer t.Stop()
	base := time.Now()
	d.watchReadings(stop, t.C, func() (time.Time, time.Duration) {
		now := time.Now() // both clocks
		return now, now.Sub(base)
	})
}

// watchReadings takes a wall and a monotonic reading from read at start and
// on every tick, and handles each jump between two readings.
func (d *Daemon) watchReadings(stop <-chan struct{}, tick <-chan time.Time, read func() (time.Time, time.Duration)) {
	det := state.NewJumpDetector(state.DefaultJumpThreshold)
	det.ObserveReadings(read())
	for {
		select {
		case <-stop:
			return
		case <-tick:
			if j := det.ObserveReadings(read()); j.Kind != state.NoJump {
				d.clockJumped(j)
			}
		}
	}
}

// clockJumped rebuilds every job's timer after a wall-clock jump and, after
// a forward jump only, catches up the fires the jump skipped. After a
// backward jump nothing is caught up: the fires coming round again are
// refused by the run state (ShouldRun).
func (d *Daemon) clockJumped(j state.Jump) {
	d.log.Warn().Str("kind", j.Kind.String()).Dur("skew_ms", j.Skew).Time("from", j.From).Time("to", j.To).
		Msg("wall clock jumped; rebuilding timers")
	d.mu.Lock()
	cfg := d.plan.cfg
	d.reregisterLocked()
	d.mu.Unlock()
	if j.Kind == state.JumpForward && d.cl.isLeader() {
		if _, err := d.catchUp(cfg, d.now(), nil); err != nil {
			d.log.Error().Err(err).Msg("catch-up after a clock jump failed")
		}
	}
}

// reregisterLocked re-adds every job to the engine so that its next fire
// is computed from the current wall time. d.mu must be held.
func (d *Daemon) reregisterLocked() {
	for _, j := range d.plan.cfg.Jobs {
		if e, ok := d.entries[j.Name]; ok {
			d.runner.Remove(e.id)
		}
		if err := d.register(j); err != nil {
			d.log.Error().Err(err).Str("job", j.Name).Msg("could not re-register job")
		}
	}
}
