package daemon

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/engine"
	"github.com/cloudcron/scheduler/internal/executor"
	"github.com/cloudcron/scheduler/internal/holiday"
	"github.com/cloudcron/scheduler/internal/observe"
	"github.com/cloudcron/scheduler/internal/schedule"
	"github.com/cloudcron/scheduler/internal/window"
)

// Audit events of the window reconciler.
const (
	// eventReconcile: a window action about to be issued (detail: the
	// state seen and wanted, and why), or a failed `after` gate (outcome
	// failure).
	eventReconcile = "reconcile"
	// eventOverride: an override set, cleared or expired.
	eventOverride = "override"
)

// Why a reconcile pass runs.
const (
	passStart    = "start"    // the daemon started
	passReload   = "reload"   // a reload replaced the schedule
	passOverride = "override" // an override was set or cleared
	passTimer    = "timer"    // an edge, a check_every tick, a re-read
)

// reread bounds the backoff of a target whose status read failed or
// showed a transitional state: the first re-read comes after rereadFirst,
// doubling up to the window's check_every.
const rereadFirst = 2 * time.Second

// seen is a target's actual state as the last status read judged it.
type seen int

const (
	seenUnknown seen = iota // not read yet, a read failed, or a state we cannot judge
	seenOn
	seenOff
	seenMoving // a transitional state (STARTING, STOPPING…)
)

func (s seen) String() string {
	return [...]string{"unknown", "on", "off", "moving"}[s]
}

// targetState is what the reconciler knows of one target.
type targetState struct {
	desired   window.Decision
	lastState window.State // desired state at the previous pass, for edges
	evaluated bool         // lastState is set
	seen      seen
	raw       string // the vendor's status value
	checkedAt time.Time
	err       string // the last read, gate or correction problem
	gateErr   string // the last gate failure audited, not repeated
	retryAt   time.Time
	backoff   time.Duration
}

// reconciler keeps each window's targets in their desired state (design.md
// "Cost-saving windows contract"). One goroutine runs passes: on start,
// after a reload, when an override changes, at each edge, for re-reads,
// and every check_every for windows under drift: enforce.
type reconciler struct {
	d     *Daemon
	nudge chan string // a pass reason; holds at most one
	stop  chan struct{}
	done  chan struct{}
	// checkEvery shortens check_every in tests; nil = the window's.
	checkEvery func(*schedule.Window) time.Duration

	mu        sync.Mutex
	targets   map[string]map[string]*targetState // window → target
	nextCheck map[string]time.Time               // enforce windows: next full read
	overrides []window.Override
}

func newReconciler(d *Daemon) *reconciler {
	return &reconciler{d: d, nudge: make(chan string, 1), stop: make(chan struct{}), done: make(chan struct{}),
		targets: map[string]map[string]*targetState{}, nextCheck: map[string]time.Time{}}
}

// poke asks for a pass; a pass already pending covers it.
func (r *reconciler) poke(reason string) {
	select {
	case r.nudge <- reason:
	default:
	}
}

// run is the reconciler's goroutine: a pass, then a wait for the next
// reason, until stop.
func (r *reconciler) run() {
	defer close(r.done)
	reason := passStart
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, ok := r.pass(reason)
		if !ok {
			return
		}
		if r.d.opts.windowPass != nil {
			r.d.opts.windowPass(reason)
		}
		if reason, ok = r.sleep(next, timer); !ok {
			return
		}
	}
}

// sleep returns the reason of the next pass: next came (passTimer; an
// hour went by, if next is zero), or a poke. Half a second before next, it
// opens the connections that the targets changing state then will need
// (prepareEdge). It returns false on stop.
func (r *reconciler) sleep(next time.Time, timer *time.Timer) (string, bool) {
	wait, early := time.Hour, time.Duration(0)
	if !next.IsZero() {
		wait = max(next.Sub(r.d.now()), 0)
		early = min(wait, engine.PrepareLead) // as the engine prepares a job's fire
	}
	for i, d := range []time.Duration{wait - early, early} {
		if i == 1 && !next.IsZero() {
			r.prepareEdge(next)
		}
		timer.Reset(d)
		var reason string
		select {
		case <-r.stop:
			return "", false
		case reason = <-r.nudge:
		case <-timer.C:
			reason = passTimer
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if reason != passTimer {
			return reason, true
		}
	}
	return passTimer, true
}

// prepareEdge tells each window's account how many of its targets change
// state at next, and so will be read and started or stopped: the account
// opens their connections now (account.prepare).
func (r *reconciler) prepareEdge(next time.Time) {
	r.mu.Lock()
	overrides := slices.Clone(r.overrides)
	r.mu.Unlock()
	p := r.d.current()
	now := r.d.now()
	at := time.Now().Add(next.Sub(now)) // the instant on the wall clock (the daemon's may be a test's)
	for _, w := range p.cfg.Windows {
		a := p.accounts[w.Account]
		if a == nil {
			continue
		}
		due := map[string]int{} // by action
		for _, t := range w.Targets {
			if ch, ok := w.Spec.NextChange(t, now, overrides); !ok || !ch.Equal(next) {
				continue
			}
			action := w.Resource + ".stop"
			if w.Spec.Desired(t, next, overrides).State == window.On {
				action = w.Resource + ".start"
			}
			due[action]++
		}
		for action, n := range due {
			a.prepare(action, at, n)
		}
	}
}

// startWindows starts the reconciler, with the overrides the run state
// holds; its first pass runs at once.
func (d *Daemon) startWindows() {
	d.windows = newReconciler(d)
	d.windows.checkEvery = d.opts.windowCheck
	d.windows.overrides = d.loadOverrides()
	go d.windows.run()
}

// halt asks the goroutine to stop after its current pass.
func (r *reconciler) halt() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
}

// wait waits for the goroutine to end.
func (r *reconciler) wait() { <-r.done }

// windowOrder returns the windows in start order: each after the windows
// it names in `after` (validation refused cycles).
func windowOrder(ws []*schedule.Window) []*schedule.Window {
	byName := map[string]*schedule.Window{}
	for _, w := range ws {
		byName[w.Name] = w
	}
	var out []*schedule.Window
	done := map[string]bool{}
	var visit func(w *schedule.Window)
	visit = func(w *schedule.Window) {
		if done[w.Name] {
			return
		}
		done[w.Name] = true
		for _, a := range w.After {
			if aw := byName[a]; aw != nil {
				visit(aw)
			}
		}
		out = append(out, w)
	}
	for _, w := range ws {
		visit(w)
	}
	return out
}

// pass reads the targets that are due and corrects those whose state
// differs from the desired one: stops in reverse `after` order, then
// starts in order. It returns when the next pass is due (zero: none), and
// false when the daemon is closing.
func (r *reconciler) pass(reason string) (time.Time, bool) {
	p, ok := r.d.enter()
	if !ok {
		return time.Time{}, false
	}
	defer r.d.leave(p)
	cfg := p.cfg
	if r.d.cl != nil {
		var lead bool
		if reason, lead = r.d.cl.windowsPass(r, reason); !lead {
			return r.d.now().Add(time.Second), true // the leader reconciles; check again in a second
		}
	}
	if len(cfg.Windows) == 0 {
		r.mu.Lock()
		r.targets = map[string]map[string]*targetState{}
		r.mu.Unlock()
		return time.Time{}, true
	}
	now := r.d.now()
	order := windowOrder(cfg.Windows)
	r.expireOverrides(now)
	r.refreshCalendars(order)

	// Which targets to read: all of them on start, reload and override
	// changes; under enforce, all of a window at each check; otherwise
	// the targets whose desired state changed (an edge) and those waiting
	// for a re-read.
	r.mu.Lock()
	keep := map[string]bool{}
	type due struct {
		w      *schedule.Window
		target string
		why    string
	}
	var reads []due
	for _, w := range order {
		keep[w.Name] = true
		ts := r.targets[w.Name]
		if ts == nil {
			ts = map[string]*targetState{}
			r.targets[w.Name] = ts
		}
		for t := range ts {
			if !slices.Contains(w.Targets, t) {
				delete(ts, t)
			}
		}
		check := w.Drift == schedule.DriftEnforce && !now.Before(r.nextCheck[w.Name])
		if check || reason != passTimer {
			r.nextCheck[w.Name] = now.Add(r.every(w))
		}
		for _, t := range w.Targets {
			st := ts[t]
			if st == nil {
				st = &targetState{}
				ts[t] = st
			}
			st.desired = w.Spec.Desired(t, now, r.overrides)
			edge := st.evaluated && st.desired.State != st.lastState
			st.lastState, st.evaluated = st.desired.State, true
			why := ""
			switch {
			case reason != passTimer:
				why = reason
			case edge:
				why = "edge"
			case check:
				why = "drift check"
			case !st.retryAt.IsZero() && !now.Before(st.retryAt):
				why = "re-read"
			}
			if why != "" {
				reads = append(reads, due{w, t, why})
			}
		}
	}
	for name := range r.targets {
		if !keep[name] {
			delete(r.targets, name)
			delete(r.nextCheck, name)
		}
	}
	r.mu.Unlock()

	// Read every due target, in parallel, through the account's queue.
	why := map[string]string{} // window/target → why it was read
	var wg sync.WaitGroup
	for _, rd := range reads {
		why[rd.w.Name+"/"+rd.target] = rd.why
		wg.Go(func() { r.read(p, rd.w, rd.target) })
	}
	wg.Wait()

	// Each group of windows linked by `after` in its own goroutine, so
	// that a slow start in one does not hold up the others: stops in
	// reverse order, then starts in order.
	for _, group := range afterGroups(order) {
		wg.Go(func() {
			for i := len(group) - 1; i >= 0; i-- {
				r.correct(p, order, group[i], window.Off, why, now)
			}
			for _, w := range group {
				r.correct(p, order, w, window.On, why, now)
			}
		})
	}
	wg.Wait()
	return r.nextWake(cfg, order, now), true
}

// afterGroups splits windows (in start order) into the groups that
// `after` links, directly or not, each in start order.
func afterGroups(order []*schedule.Window) [][]*schedule.Window {
	root := map[string]string{}
	var find func(string) string
	find = func(n string) string {
		if p, ok := root[n]; ok && p != n {
			root[n] = find(p)
			return root[n]
		}
		root[n] = n
		return n
	}
	for _, w := range order {
		find(w.Name)
		for _, a := range w.After {
			root[find(a)] = find(w.Name)
		}
	}
	var groups [][]*schedule.Window
	index := map[string]int{}
	for _, w := range order {
		r := find(w.Name)
		i, ok := index[r]
		if !ok {
			i = len(groups)
			index[r] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], w)
	}
	return groups
}

// refreshCalendars re-reads the ICS holiday files that changed since the
// last pass; a file that no longer parses keeps its last good days.
func (r *reconciler) refreshCalendars(order []*schedule.Window) {
	for _, w := range order {
		f, ok := w.Spec.Holidays.(*holiday.File)
		if !ok {
			continue
		}
		changed, err := f.Refresh()
		switch {
		case err != nil:
			r.d.log.Warn().Err(err).Str("window", w.Name).Msg("holiday calendar not re-read; keeping its last good days")
		case changed:
			r.d.log.Info().Str("window", w.Name).Str("calendar", f.Path()).Msg("holiday calendar changed; re-read")
		}
	}
}

// every is the window's check_every (shortened in tests).
func (r *reconciler) every(w *schedule.Window) time.Duration {
	if r.checkEvery != nil {
		return r.checkEvery(w)
	}
	return w.CheckEveryD
}

// read reads one target's status and judges it. A failed read or a state
// that cannot be judged leaves the target unknown, a transitional state
// moving; both schedule a re-read with backoff and are never drift.
func (r *reconciler) read(p *plan, w *schedule.Window, target string) {
	a := p.accounts[w.Account]
	var raw, problem string
	s := seenUnknown
	if a == nil || a.verifiers[w.StartAction()] == nil || a.verifiers[w.StartAction()].Status == nil {
		problem = fmt.Sprintf("account %s documents no status read for %s", w.Account, w.Resource)
	} else {
		on, off := a.verifiers[w.StartAction()], a.verifiers[w.StopAction()]
		ctx, cancel := context.WithTimeout(r.d.ctx, max(p.cfg.Defaults.Timeout.D(), time.Second)*2)
		v, err := r.d.exec.Read(ctx, w.Account, func(ctx context.Context) (string, error) { return on.Status(ctx, target) })
		cancel()
		raw = v
		switch {
		case err != nil:
			problem = "status read failed: " + err.Error()
		case on.Judge != nil && on.Judge(v) == executor.Reached:
			s = seenOn
		case off != nil && off.Judge != nil && off.Judge(v) == executor.Reached:
			s = seenOff
		case on.Judge != nil && on.Judge(v) == executor.Pending, off != nil && off.Judge != nil && off.Judge(v) == executor.Pending:
			s = seenMoving
		default:
			problem = fmt.Sprintf("state %q is neither on nor off; waiting", v)
		}
	}
	now := r.d.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.targets[w.Name][target]
	if st == nil {
		return
	}
	st.seen, st.raw, st.checkedAt, st.err = s, raw, now, problem
	if s == seenOn || s == seenOff {
		st.retryAt, st.backoff = time.Time{}, 0
		return
	}
	if st.backoff == 0 {
		st.backoff = rereadFirst
	} else {
		st.backoff = min(st.backoff*2, max(r.every(w), rereadFirst))
	}
	st.retryAt = now.Add(st.backoff)
	if problem != "" {
		r.d.log.Warn().Str("window", w.Name).Str("target", target).Str("problem", problem).Dur("reread_in_ms", st.backoff).Msg("window target not judged; reading again later")
	}
}

// correct issues want (start or stop) to the targets of w that want it and
// were seen in the other state, once the `after` gate holds, and verifies.
func (r *reconciler) correct(p *plan, order []*schedule.Window, w *schedule.Window, want window.State, why map[string]string, now time.Time) {
	r.mu.Lock()
	var todo []string
	for _, t := range w.Targets {
		st := r.targets[w.Name][t]
		if st == nil || st.desired.State != want || why[w.Name+"/"+t] == "" {
			continue
		}
		if (want == window.On && st.seen == seenOff) || (want == window.Off && st.seen == seenOn) {
			todo = append(todo, t)
		}
	}
	gate := ""
	if len(todo) > 0 {
		gate = r.gateLocked(order, w, want)
	}
	r.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	action := w.StartAction()
	if want == window.Off {
		action = w.StopAction()
	}
	if gate != "" {
		r.gateFailed(w, todo, action, gate, now)
		return
	}
	a := p.accounts[w.Account]
	do := a.actions[action]
	if do == nil {
		r.d.log.Error().Str("window", w.Name).Str("action", action).Msg("account offers no such action")
		return
	}
	recs := make([]audit.Record, 0, len(todo))
	r.mu.Lock()
	for _, t := range todo {
		st := r.targets[w.Name][t]
		st.gateErr = ""
		recs = append(recs, audit.Record{Time: now.UTC(), Event: eventReconcile, Job: w.Name,
			RunID: executor.RunID(w.Name, now), Scheduled: now.In(w.Loc), Action: action, Account: w.Account, Target: t,
			Detail: fmt.Sprintf("seen %s (%s), wanted %s (%s); %s", st.seen, st.raw, want, st.desired.Reason, why[w.Name+"/"+t])})
	}
	r.mu.Unlock()
	if err := r.d.audit.AppendBatch(recs); err != nil {
		r.d.log.Error().Err(err).Str("window", w.Name).Msg("audit log write failed; not acting")
		return
	}
	d := p.cfg.Defaults
	j := &executor.Job{Name: w.Name, Action: action, Account: w.Account, Targets: todo, Do: do,
		Timeout: d.Timeout.D(), Overlap: executor.OverlapAllow, Idempotent: true,
		Retry: executor.RetryPolicy{InitialInterval: d.Retry.InitialInterval.D(), MaxInterval: d.Retry.MaxInterval.D(),
			MaxElapsed: d.Retry.MaxElapsed.D(), MaxAttempts: *d.Retry.MaxAttempts}}
	if v := a.verifiers[action]; v != nil {
		vv := *v
		vv.Timeout = d.VerifyTimeout.D()
		j.Verify = &vv
	}
	r.d.log.Info().Str("window", w.Name).Str("action", action).Strs("targets", todo).Msg("window: correcting targets")
	out := r.d.exec.FireWith(r.d.ctx, j, now, time.Time{}, nil)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, to := range out.Targets {
		st := r.targets[w.Name][to.Target]
		if st == nil {
			continue
		}
		st.checkedAt, st.raw = r.d.now(), to.State
		if to.Outcome == audit.OutcomeSuccess && (to.Verify == audit.OutcomeVerified || to.Verify == "") {
			st.seen, st.err = seenOff, ""
			if want == window.On {
				st.seen = seenOn
			}
			continue
		}
		st.seen = seenUnknown
		st.err = fmt.Sprintf("%s %s", action, to.Outcome)
		if to.Err != nil {
			st.err += ": " + to.Err.Error()
		}
		st.backoff = max(st.backoff*2, rereadFirst)
		st.retryAt = r.d.now().Add(min(st.backoff, max(r.every(w), rereadFirst)))
	}
}

// gateLocked checks w's `after` gate for want: a start needs every target
// of the windows w comes after seen running; a stop needs every target of
// the windows that come after w seen stopped. It returns what fails, or "".
func (r *reconciler) gateLocked(order []*schedule.Window, w *schedule.Window, want window.State) string {
	var names []string
	need := seenOn
	if want == window.On {
		names = w.After
	} else {
		need = seenOff
		for _, o := range order {
			if slices.Contains(o.After, w.Name) {
				names = append(names, o.Name)
			}
		}
	}
	for _, n := range names {
		ts := r.targets[n]
		keys := make([]string, 0, len(ts))
		for t := range ts {
			keys = append(keys, t)
		}
		sort.Strings(keys)
		for _, t := range keys {
			if st := ts[t]; st.seen != need {
				verb := "verified running"
				if need == seenOff {
					verb = "verified stopped"
				}
				return fmt.Sprintf("window %s: target %s is not %s (seen %s %s)", n, t, verb, st.seen, st.raw)
			}
		}
	}
	return ""
}

// gateFailed audits a failed gate once per target until it changes; the
// chain stops there: the targets stay as they are and the windows after
// them see them not in the wanted state.
func (r *reconciler) gateFailed(w *schedule.Window, todo []string, action, gate string, now time.Time) {
	var recs []audit.Record
	r.mu.Lock()
	for _, t := range todo {
		st := r.targets[w.Name][t]
		st.err = "after gate: " + gate
		if st.gateErr == gate {
			continue
		}
		st.gateErr = gate
		recs = append(recs, audit.Record{Time: now.UTC(), Event: eventReconcile, Job: w.Name,
			RunID: executor.RunID(w.Name, now), Scheduled: now.In(w.Loc), Action: action, Account: w.Account, Target: t,
			Outcome: audit.OutcomeFailure, Error: "after gate failed: " + gate,
			Detail: fmt.Sprintf("seen %s (%s), wanted %s; not acting, and the windows after it wait", st.seen, st.raw, st.desired.State)})
		// Read again soon: the gate may open.
		st.backoff = max(st.backoff*2, rereadFirst)
		st.retryAt = now.Add(min(st.backoff, max(r.every(w), rereadFirst)))
	}
	r.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	r.d.log.Warn().Str("window", w.Name).Str("action", action).Str("gate", gate).Msg("window: after gate failed; not acting")
	if err := r.d.audit.AppendBatch(recs); err != nil {
		r.d.log.Error().Err(err).Msg("audit log write failed")
	}
}

// nextWake returns the earliest of: each window's next change of desired
// state (edges, override bounds), each enforce window's next check, and
// each target's re-read.
func (r *reconciler) nextWake(cfg *schedule.Config, order []*schedule.Window, now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, w := range order {
		for _, t := range w.Targets {
			if at, ok := w.Spec.NextChange(t, now, r.overrides); ok {
				earlier(at)
			}
			if st := r.targets[w.Name][t]; st != nil {
				earlier(st.retryAt)
			}
		}
		if w.Drift == schedule.DriftEnforce {
			earlier(r.nextCheck[w.Name])
		}
	}
	return next
}

// expireOverrides drops overrides that have ended, auditing each.
func (r *reconciler) expireOverrides(now time.Time) {
	r.mu.Lock()
	var keep []window.Override
	var gone []window.Override
	for _, o := range r.overrides {
		if now.Before(o.Until) {
			keep = append(keep, o)
		} else {
			gone = append(gone, o)
		}
	}
	r.overrides = keep
	r.mu.Unlock()
	for _, o := range gone {
		if ost, err := r.d.overrideStore(); err != nil {
			r.d.log.Error().Err(err).Msg("expired override not cleared in the run state")
		} else if _, err := ost.ClearOverride(o.Window, o.Target); err != nil {
			r.d.log.Error().Err(err).Msg("expired override not cleared in the run state")
		}
		r.d.auditOverride(o, "expired", now)
	}
}

// auditOverride writes an override record: set, cleared or expired.
func (d *Daemon) auditOverride(o window.Override, what string, now time.Time) {
	who := "every target"
	if o.Target != "" {
		who = "target " + o.Target
	}
	rec := audit.Record{Time: now.UTC(), Event: eventOverride, Job: o.Window, Target: o.Target, Outcome: "",
		Detail: fmt.Sprintf("%s: %s held %s until %s", what, who, o.State, o.Until.UTC().Format(time.RFC3339))}
	if err := d.audit.Append(rec); err != nil {
		d.log.Error().Err(err).Msg("audit log write failed")
	}
}

// windowStates is a copy of what the reconciler knows, for status.
type windowTargetView struct {
	Window, Target   string
	Desired, Actual  string
	Raw, Reason, Err string
	Override         string
	CheckedAt        time.Time
}

// views returns each window target's state, sorted by window and target.
func (r *reconciler) views() []windowTargetView {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []windowTargetView
	for w, ts := range r.targets {
		for t, st := range ts {
			v := windowTargetView{Window: w, Target: t, Desired: st.desired.State.String(), Actual: st.seen.String(),
				Raw: st.raw, Reason: st.desired.Reason, Err: st.err, CheckedAt: st.checkedAt}
			if st.desired.Override != nil {
				v.Override = st.desired.Override.State.String()
			}
			out = append(out, v)
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Window != out[b].Window {
			return out[a].Window < out[b].Window
		}
		return strings.Compare(out[a].Target, out[b].Target) < 0
	})
	return out
}

// fillWindows adds the windows and overrides to a status snapshot.
func (d *Daemon) fillWindows(st *observe.Status, cfg *schedule.Config) {
	if d.windows == nil {
		return
	}
	now := d.now()
	views := d.windows.views()
	d.windows.mu.Lock()
	overrides := slices.Clone(d.windows.overrides)
	d.windows.mu.Unlock()
	for _, w := range cfg.Windows {
		ow := observe.Window{Name: w.Name, Resource: w.Resource, Account: w.Account, Timezone: w.Loc.String(), Targets: []observe.WindowTarget{}}
		for _, t := range w.Targets {
			if at, ok := w.Spec.NextChange(t, now, overrides); ok && (ow.NextEdge.IsZero() || at.Before(ow.NextEdge)) {
				ow.NextEdge = at
			}
			wt := observe.WindowTarget{Target: t, Desired: w.Spec.Desired(t, now, overrides).State.String(), Actual: "unknown"}
			for _, v := range views {
				if v.Window == w.Name && v.Target == t {
					wt.Actual, wt.Override, wt.CheckedAt, wt.Error = v.Actual, v.Override, v.CheckedAt, v.Err
				}
			}
			ow.Targets = append(ow.Targets, wt)
		}
		st.Windows = append(st.Windows, ow)
	}
	for _, o := range overrides {
		if now.Before(o.Until) {
			st.Overrides = append(st.Overrides, observe.Override{Window: o.Window, Target: o.Target, State: o.State.String(), Until: o.Until, SetAt: o.From})
		}
	}
}
