package daemon

import (
	"context"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/control"
	"github.com/cloudcron/scheduler/internal/notify"
	"github.com/cloudcron/scheduler/internal/observe"
	"github.com/cloudcron/scheduler/internal/schedule"
)

// startObserve builds the record stream's fan-out and subscribes it to the
// audit log: every durable record reaches the sinks from here on. The
// status tracker first reads the log's tail (restoreTracker).
func (d *Daemon) startObserve() {
	d.tracker = observe.NewTracker()
	d.restoreTracker()
	d.metrics = observe.NewMetrics(Version())
	d.metrics.Loaded(d.started)
	d.metrics.SetStatus(d.Snapshot)
	d.metrics.SetAuditErrors(func() uint64 { return d.audit.Health().WriteErrors })
	d.notifier = notify.New(notify.Options{Log: d.opts.Log, Audit: d.audit.Append, Now: d.now})
	sinks := []observe.Sink{d.tracker, d.metrics, d.notifier}
	sinks = append(sinks, d.opts.Sinks...)
	d.hub = observe.NewHub(sinks...)
	d.audit.Subscribe(d.hub.Publish)
}

// restoreBytes bounds the audit log's tail the status is rebuilt from on
// start (see observe.Tracker.Restore).
var restoreBytes int64 = observe.DefaultRestoreBytes

// restoreTracker rebuilds the status from the audit log's newest records:
// a restarted daemon, or one that was killed, shows each job's last
// outcome, last success and the recent failures before its next fire. It
// runs before anything is appended on this start. A log it cannot read
// costs the history, never the start.
func (d *Daemon) restoreTracker() {
	jobs := make([]string, 0, len(d.plan.cfg.Jobs))
	for _, j := range d.plan.cfg.Jobs {
		jobs = append(jobs, j.Name)
	}
	began := time.Now()
	res, err := d.tracker.Restore(d.audit.Path(), jobs, restoreBytes)
	ev := d.log.Info()
	if err != nil {
		ev = d.log.Warn().Str("error", err.Error())
	}
	ev.Int("jobs_found", res.Jobs).Int("jobs", len(jobs)).Int("records", res.Records).Int64("bytes", res.Bytes).
		Int("files", res.Files).Int("skipped_lines", res.Skipped).Bool("complete", res.Found).
		Int64("took_ms", time.Since(began).Milliseconds()).Msg("status restored from the audit log's tail")
	if job, run, ok := d.tracker.NewestFailure(); ok {
		// STATUS= names the last failure as it did before the restart.
		var ids []string
		for _, t := range run.Targets {
			if t.Outcome != audit.OutcomeSuccess && t.Outcome != "" {
				ids = append(ids, t.Target+" ("+t.Outcome+")")
			}
		}
		d.noteFailure(failureLine(job, run.Time.In(d.now().Location()), ids))
	}
}

// knownMetrics makes the metrics' counters of cfg's accounts, windows and
// notify sinks exist at 0 (Metrics.Known): on start and after a reload.
func (d *Daemon) knownMetrics(cfg *schedule.Config) {
	accounts := make([]string, 0, len(cfg.Accounts))
	for name := range cfg.Accounts {
		accounts = append(accounts, name)
	}
	windows := make([]string, 0, len(cfg.Windows))
	for _, w := range cfg.Windows {
		windows = append(windows, w.Name)
	}
	sinks := make([]string, 0, len(cfg.Notify))
	for _, n := range cfg.Notify {
		sinks = append(sinks, n.Name)
	}
	d.metrics.Known(accounts, windows, sinks)
}

// setNotify points the notifier at cfg's notify sinks, their URLs and
// keys resolved. A sink whose secret cannot be read is left out and
// logged (validation checked them; the file may have changed since).
func (d *Daemon) setNotify(cfg *schedule.Config) {
	var out []notify.Config
	for _, n := range cfg.Notify {
		c := notify.Config{Name: n.Name, Type: n.Type, On: n.On, Jobs: n.Jobs}
		if len(c.On) == 0 {
			c.On = schedule.NotifyDefaultOn
		}
		u, err := d.opts.Resolver.Resolve(*n.URL)
		if err != nil {
			d.log.Error().Str("notify", n.Name).Str("error", err.Error()).Msg("notify sink left out: its url cannot be read")
			continue
		}
		c.URL = u.Reveal()
		if n.Secret != nil {
			k, err := d.opts.Resolver.Resolve(*n.Secret)
			if err != nil {
				d.log.Error().Str("notify", n.Name).Str("error", err.Error()).Msg("notify sink left out: its secret cannot be read")
				continue
			}
			c.Secret = k.Reveal()
		}
		out = append(out, c)
	}
	d.notifier.Configure(out)
}

// savedEvery is how often saved_hours_total counts the window targets
// kept off.
const savedEvery = 30 * time.Second

// startSaved counts saved hours until stopSaved.
func (d *Daemon) startSaved() {
	d.savedStop, d.savedDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(d.savedDone)
		d.metrics.RunSaved(d.savedStop, savedEvery, d.Snapshot)
	}()
}

// Metrics returns the daemon's Prometheus metrics, for what feeds them
// outside the record stream (the window reconciler's AddSavedHours).
func (d *Daemon) Metrics() *observe.Metrics { return d.metrics }

// setHTTP starts, moves or stops the optional listener to match cfg. A
// listener that cannot bind is logged; the daemon fires its schedule
// anyway.
func (d *Daemon) setHTTP(cfg schedule.HTTPConfig) {
	d.httpMu.Lock()
	defer d.httpMu.Unlock()
	if cfg.Listen != "" && !cfg.Loopback() {
		d.log.Warn().Str("listen", cfg.Listen).
			Msg("http.listen is not a loopback address (allow_non_loopback: true): the status page and /api/v1/status name accounts and targets to anyone who can reach it")
	}
	if d.http != nil && cfg.Listen == d.httpAddr {
		return
	}
	if d.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = d.http.Close(ctx)
		cancel()
		d.log.Info().Str("listen", d.httpAddr).Msg("http listener stopped")
		d.http, d.httpAddr = nil, ""
	}
	if cfg.Listen == "" {
		return
	}
	srv, err := observe.Listen(cfg.Listen, observe.Source{Status: d.Snapshot, Live: d.Health, Metrics: d.metrics})
	if err != nil {
		d.log.Error().Err(err).Msg("http listener not started: no /metrics or status page until the next reload or restart")
		return
	}
	d.http, d.httpAddr = srv, cfg.Listen
	d.log.Info().Str("listen", srv.Addr()).Msg("http listener: /metrics /livez /readyz /api/v1/status and the status page at /")
}

// HTTPAddr returns the address the optional listener is bound to, or "".
func (d *Daemon) HTTPAddr() string {
	d.httpMu.Lock()
	defer d.httpMu.Unlock()
	if d.http == nil {
		return ""
	}
	return d.http.Addr()
}

// startControl serves the control routes on <state.dir>/control.sock. A
// daemon that cannot open it still fires its schedule; it says why
// `scheduler status` will not reach it.
func (d *Daemon) startControl(stateDir string) {
	mux := http.NewServeMux()
	d.controlRoutes(mux)
	srv, err := control.Listen(stateDir, mux)
	if err != nil {
		d.log.Error().Err(err).Msg("control socket unavailable: `scheduler status` and other commands cannot reach this daemon")
		return
	}
	d.control = srv
}

// controlRoutes registers the control channel's routes: one line each (see
// the internal/control package doc).
func (d *Daemon) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/status", d.handleStatus)
	mux.HandleFunc("POST /v1/trigger", d.handleTrigger)
	mux.HandleFunc("GET /v1/overrides", d.handleOverrideList)     // overrides.go
	mux.HandleFunc("POST /v1/overrides", d.handleOverrideSet)     // overrides.go
	mux.HandleFunc("DELETE /v1/overrides", d.handleOverrideClear) // overrides.go
}

func (d *Daemon) handleStatus(w http.ResponseWriter, _ *http.Request) {
	control.WriteJSON(w, http.StatusOK, d.Snapshot())
}

// stopControl stops the HTTP listener and closes the control socket and removes it, letting requests
// in progress finish for up to 5 seconds.
func (d *Daemon) stopControl() error {
	if d.savedStop != nil {
		close(d.savedStop)
		<-d.savedDone
	}
	d.setHTTP(schedule.HTTPConfig{})
	nctx, ncancel := context.WithTimeout(context.Background(), 3*time.Second)
	d.notifier.Close(nctx)
	ncancel()
	if d.control == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return d.control.Close(ctx)
}

// Snapshot returns the daemon's status: the running schedule's jobs with
// their next fires, what the record stream said about them, and the
// daemon's health. It is the body of /v1/status and /api/v1/status.
func (d *Daemon) Snapshot() observe.Status {
	running := map[string]bool{}
	for _, k := range d.exec.Running() {
		job, _, _ := strings.Cut(k, " ")
		running[job] = true
	}
	st := observe.Status{Time: d.now().UTC(), Version: Version(), Config: d.opts.ConfigPath, Started: d.started,
		Jobs: []observe.Job{}, Windows: []observe.Window{}, Overrides: []observe.Override{},
		Throttled: []observe.Throttled{}, RecentFailures: nil}
	d.mu.Lock()
	cfg := d.plan.cfg
	st.Reload = observe.Reload{Time: d.started, Successful: true}
	for _, j := range cfg.Jobs {
		oj := observe.Job{Name: j.Name, Schedule: j.Schedule, Timezone: j.Loc.String(), Action: j.Action,
			Account: j.Account, Targets: append([]string{}, j.Targets...), Running: running[j.Name]}
		if e, ok := d.entries[j.Name]; ok {
			oj.NextFire = d.runner.NextFire(e.id)
		}
		st.Jobs = append(st.Jobs, oj)
	}
	d.mu.Unlock()
	d.fillWindows(&st, cfg)
	d.tracker.Fill(&st)
	if d.cl != nil {
		st.Cluster = d.cl.view()
	}
	st.Ready, st.Problem = d.ready(st.Problem)
	return st
}

// ready reports what /readyz says: the config is loaded (it is, once the
// daemon started), the audit log takes records, and the engine ticks.
func (d *Daemon) ready(problem string) (bool, string) {
	if err := d.audit.Err(); err != nil {
		return false, "audit log not writable: " + err.Error()
	}
	if !d.Health() {
		return false, "engine not ticking: no heartbeat in the last " + (heartbeatStale * heartbeatEvery).String()
	}
	if p := d.cl.problem(); p != "" {
		return false, p
	}
	return true, problem
}

// Version returns the module version the binary was built from, or
// "devel".
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
