package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors/ncp"
)

// launcher starts a daemon on a config whose secrets c provides.
type launcher func(dir, cfg string, c *cloud) (handle, error)

func inProcess(dir, cfg string, c *cloud) (handle, error) {
	return startInProcess(dir, cfg, c.resolver())
}

// childOr runs the binary when there is one, else the daemon in-process
// through daemon.Run (SIGHUP = a receive on its reload channel).
func (r *runner) childOr(dir, cfg string, c *cloud) (handle, error) {
	if r.cfg.Binary != "" {
		return startChild(r.cfg.Binary, dir, cfg, c.env())
	}
	return runInProcess(dir, cfg, c.resolver())
}

// fired is a daemon whose config has a fire at s, ready at least Lead
// before it.
type fired struct {
	h   handle
	c   *cloud
	s   time.Time
	dir string
}

func (f *fired) audit() string { return filepath.Join(f.dir, "audit.jsonl") }

func (f *fired) close() {
	if f.h != nil {
		_, _ = f.h.stop()
		f.h = nil
	}
	_ = f.c.Close()
}

// fireAt writes a config with a fire at a whole second s (write), starts
// a daemon on it (launch) and returns once the daemon is ready. s is
// chosen so that the daemon is ready at least Lead before it, from estimate
// (how long a start is expected to take); when the daemon is ready too late
// it is stopped and the attempt is repeated with a later s.
func (r *runner) fireAt(name string, latency, estimate time.Duration,
	write func(dir string, c *cloud, s time.Time) (string, error), launch launcher) (*fired, error) {
	for attempt := 1; attempt <= 3; attempt++ {
		dir, err := r.tempDir(name)
		if err != nil {
			return nil, err
		}
		c, err := newCloud(latency)
		if err != nil {
			return nil, err
		}
		margin := r.cfg.Lead + estimate + estimate/4 + 500*time.Millisecond
		s := time.Now().Add(margin).Truncate(time.Second).Add(time.Second)
		cfg, err := write(dir, c, s)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		h, err := launch(dir, cfg, c)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		if lead := s.Sub(h.readyAt()); lead >= r.cfg.Lead {
			r.progress("%s: ready %s after start, fire at ready+%s", name, h.readyAt().Sub(h.startedAt()).Round(time.Millisecond), lead.Round(time.Millisecond))
			return &fired{h: h, c: c, s: s, dir: dir}, nil
		}
		estimate = h.readyAt().Sub(h.startedAt())
		r.progress("%s: ready after %s, too close to the fire at %s; retrying with a later fire", name, estimate.Round(time.Millisecond), s.Format("15:04:05"))
		_, _ = h.stop()
		_ = c.Close()
	}
	return nil, errors.New("the daemon was never ready early enough before the fire")
}

// start: daemon.Start to Ready with cfg.Jobs jobs, shutdown, and a
// restart on the state the first start left.
func (r *runner) start() []Figure {
	const name = "start to READY"
	dir, err := r.tempDir("start")
	if err != nil {
		return failed(name, err)
	}
	c, err := newCloud(r.cfg.Latency)
	if err != nil {
		return failed(name, err)
	}
	defer c.Close()
	cfg, err := writeConfig(dir, account{url: c.URL()}, nil, idleJobs(r.cfg.Jobs, time.Now(), 0))
	if err != nil {
		return failed(name, err)
	}
	h, err := startInProcess(dir, cfg, c.resolver())
	if err != nil {
		return failed(name, err)
	}
	took := h.readyAt().Sub(h.startedAt())
	r.startTook = max(r.startTook, took)
	down, stopErr := h.stop()
	figs := []Figure{atMost(name, ms(took), "ms", 200, fmt.Sprintf("in-process daemon.Start → Ready, %d jobs, new state", r.cfg.Jobs))}
	if stopErr != nil {
		return append(figs, failed("shutdown", stopErr)...)
	}
	h, err = startInProcess(dir, cfg, c.resolver())
	if err != nil {
		return append(figs, failed("restart to READY", err)...)
	}
	again := h.readyAt().Sub(h.startedAt())
	r.startTook = max(r.startTook, again)
	down2, stopErr := h.stop()
	figs = append(figs,
		info("restart to READY", ms(again), "ms", "same config and state"),
		info("shutdown, idle", ms(max(down, down2)), "ms", "Shutdown() of the idle daemon, worst of 2"))
	if stopErr != nil {
		figs = append(figs, failed("shutdown", stopErr)...)
	}
	return figs
}

// lag: cfg.Due one-target jobs due in the same second among cfg.Jobs.
func (r *runner) lag() []Figure {
	const name = "fire lag"
	due := r.cfg.Due
	f, err := r.fireAt("lag", r.cfg.Latency, r.startTook, func(dir string, c *cloud, s time.Time) (string, error) {
		jobs := idleJobs(r.cfg.Jobs-due, s, 0)
		for i := range due {
			jobs = append(jobs, job{name: fmt.Sprintf("due-%06d", i), spec: atSecond(s), targets: []string{fmt.Sprintf("app-due-%06d", i)}})
		}
		return writeConfig(dir, account{url: c.URL(), concurrency: max(due, 8)}, nil, jobs)
	}, inProcess)
	if err != nil {
		return failed(name, err)
	}
	defer f.close()
	deadline := f.s.Add(r.cfg.FireWait)
	for time.Now().Before(deadline) && len(firstByTarget(f.c.actions(), "app-due-")) < due && r.sleep(50*time.Millisecond) {
	}
	r.sleep(200 * time.Millisecond) // a duplicate would show now
	if _, err := f.h.stop(); err != nil {
		r.note("lag: shutdown: %v", err)
	}
	f.h = nil
	reqs := f.c.actions()
	first := firstByTarget(reqs, "app-due-")
	extra := len(reqs) - len(first) // repeated or not-due requests
	lags := make([]float64, 0, len(first))
	for _, t := range first {
		lags = append(lags, ms(t.Sub(f.s)))
	}
	figs := []Figure{exactly("fires reaching the cloud", float64(len(first)), "count", float64(due),
		fmt.Sprintf("within %s of the fire", r.cfg.FireWait))}
	figs = append(figs, exactly("extra requests", float64(extra), "count", 0, "repeated, or for jobs not due"))
	ahead, after := 0, 0
	for _, a := range f.c.Accepted() {
		if a.Before(f.s) {
			ahead++
		} else {
			after++
		}
	}
	figs = append(figs, info("connections opened ahead", float64(ahead), "count", "accepted by the emulated cloud before the fire (the engine prepares a fire 500 ms ahead)"),
		info("connections opened after the fire", float64(after), "count", "dialed by the transport during the burst"))
	if len(lags) == 0 {
		return append(figs, failed(name, errors.New("no fire reached the cloud"))...)
	}
	s := sorted(lags)
	where := fmt.Sprintf("%d due of %d jobs, %s per call, scheduled → first request received", due, r.cfg.Jobs, r.cfg.Latency)
	return append([]Figure{
		info(name+" p50", percentile(s, 50), "ms", ""),
		atMost(name+" p99", percentile(s, 99), "ms", 20, where),
		info(name+" max", s[len(s)-1], "ms", ""),
	}, figs...)
}

// firstByTarget returns when each target with the prefix was first asked.
// reqs are in receive order.
func firstByTarget(reqs []requestT, prefix string) map[string]time.Time {
	m := map[string]time.Time{}
	for _, q := range reqs {
		if !strings.HasPrefix(q.Target, prefix) {
			continue
		}
		if _, ok := m[q.Target]; !ok {
			m[q.Target] = q.Time
		}
	}
	return m
}

// lone: one job due every second.
func (r *runner) lone() []Figure {
	const name = "lone fire lag"
	dir, err := r.tempDir("lone")
	if err != nil {
		return failed(name, err)
	}
	c, err := newCloud(r.cfg.Latency)
	if err != nil {
		return failed(name, err)
	}
	defer c.Close()
	cfg, err := writeConfig(dir, account{url: c.URL()}, nil, []job{{name: "lone", spec: "* * * * * *", targets: []string{"app-lone"}}})
	if err != nil {
		return failed(name, err)
	}
	h, err := startInProcess(dir, cfg, c.resolver())
	if err != nil {
		return failed(name, err)
	}
	want := r.cfg.Fires + 1 // the first fire (it dials the connection) is not counted
	deadline := time.Now().Add(time.Duration(want)*time.Second + r.cfg.FireWait)
	for len(c.actions()) < want && time.Now().Before(deadline) && r.sleep(50*time.Millisecond) {
	}
	if _, err := h.stop(); err != nil {
		r.note("lone: shutdown: %v", err)
	}
	reqs := c.actions()
	recs, err := readAudit(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		return failed(name, err)
	}
	var runs []record
	for _, rec := range recs {
		if rec.Event == "run" && rec.Job == "lone" {
			runs = append(runs, rec)
		}
	}
	// One target, one call per fire: the k-th intent goes with the k-th
	// request. A fire cut by the shutdown may lack its request.
	n := min(len(runs), len(reqs))
	if len(runs)-n > 1 || len(reqs)-n > 0 || n < 2 {
		return failed(name, fmt.Errorf("%d fires in the audit log but %d requests at the cloud", len(runs), len(reqs)))
	}
	var lags []float64
	for k := 1; k < n; k++ {
		lags = append(lags, ms(reqs[k].Time.Sub(runs[k].scheduled())))
	}
	s := sorted(lags)
	where := fmt.Sprintf("%d fires, %s per call, scheduled → request received; first fire not counted", len(lags), r.cfg.Latency)
	return []Figure{
		atMost(name+" p50", percentile(s, 50), "ms", 2, where),
		info(name+" p99", percentile(s, 99), "ms", ""),
	}
}

// reload: SIGHUP and rename-save → the audit reload record.
func (r *runner) reload() []Figure {
	const name = "reload"
	dir, err := r.tempDir("reload")
	if err != nil {
		return failed(name, err)
	}
	c, err := newCloud(r.cfg.Latency)
	if err != nil {
		return failed(name, err)
	}
	defer c.Close()
	acc := account{url: c.URL()}
	jobs := idleJobs(r.cfg.Jobs, time.Now(), 0)
	cfg, err := writeConfig(dir, acc, nil, jobs)
	if err != nil {
		return failed(name, err)
	}
	h, err := r.childOr(dir, cfg, c)
	if err != nil {
		return failed(name, err)
	}
	defer func() { _, _ = h.stop() }()
	mode := "in-process daemon.Run: reload channel, Options.Watch"
	if r.cfg.Binary != "" {
		mode = "scheduler run: SIGHUP, its folder watch"
	}
	t := &tail{path: filepath.Join(dir, "audit.jsonl")}
	if _, err := t.next(); err != nil {
		return failed(name, err)
	}
	isReload := func(rec record) bool { return rec.Event == "reload" }
	measure := func(trigger func() error) (float64, error) {
		t0 := time.Now()
		if err := trigger(); err != nil {
			return 0, err
		}
		seen, rec, err := t.waitFor(r.ctx, time.Minute, isReload)
		if err != nil {
			return 0, err
		}
		if rec.Outcome != "success" {
			return 0, fmt.Errorf("reload %s: %s", rec.Outcome, rec.Error)
		}
		time.Sleep(400 * time.Millisecond) // let the daemon settle (and a watcher's debounce pass)
		return ms(seen.Sub(t0)), nil
	}
	var hup, save []float64
	for range r.cfg.Reloads {
		d, err := measure(h.reload)
		if err != nil {
			return failed(name+", SIGHUP", err)
		}
		hup = append(hup, d)
	}
	tmp := filepath.Join(dir, ".config.yaml.swp")
	for i := range r.cfg.Reloads {
		// An editor's save: the new content in another file, renamed over
		// the config. One job's schedule changes.
		jobs[0].spec = fmt.Sprintf("%d 0 0 * * *", i+1)
		if err := writeConfigAt(tmp, acc, nil, jobs); err != nil {
			return failed(name, err)
		}
		d, err := measure(func() error { return os.Rename(tmp, cfg) })
		if err != nil {
			return failed(name+", rename-save", err)
		}
		save = append(save, d)
	}
	each := func(v []float64) string {
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = fmt.Sprintf("%.0f", x)
		}
		return strings.Join(parts, ", ") + " ms"
	}
	return []Figure{
		atMost(fmt.Sprintf("reload after SIGHUP, worst of %d", len(hup)), sorted(hup)[len(hup)-1], "ms", 150,
			fmt.Sprintf("%d jobs, → audit record in the file; each %s; %s", r.cfg.Jobs, each(hup), mode)),
		atMost(fmt.Sprintf("reload after rename-save, worst of %d", len(save)), sorted(save)[len(save)-1], "ms", 150,
			fmt.Sprintf("one job changed; each %s", each(save))),
	}
}

// rss: the binary with cfg.Jobs idle jobs.
func (r *runner) rss() []Figure {
	if r.cfg.Binary == "" {
		return skipped("RSS, idle", "needs the scheduler binary (scheduler bench runs itself)")
	}
	const name = "start to READY=1, binary"
	dir, err := r.tempDir("rss")
	if err != nil {
		return failed(name, err)
	}
	c, err := newCloud(r.cfg.Latency)
	if err != nil {
		return failed(name, err)
	}
	defer c.Close()
	cfg, err := writeConfig(dir, account{url: c.URL()}, nil, idleJobs(r.cfg.Jobs, time.Now(), 0))
	if err != nil {
		return failed(name, err)
	}
	ch, err := startChild(r.cfg.Binary, dir, cfg, c.env())
	if err != nil {
		return failed(name, err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_, _ = ch.stop()
		}
	}()
	pid := ch.pid()
	took := ch.readyAt().Sub(ch.startedAt())
	cpuReady, err1 := procCPU(pid)
	r.sleep(time.Second)
	cpu0, err2 := procCPU(pid)
	r.sleep(r.cfg.Idle)
	cpu1, err3 := procCPU(pid)
	rss, hwm, err4 := procMem(pid)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return failed(name, err)
	}
	down, stopErr := ch.stop()
	stopped = true
	idlePct := 100 * float64(cpu1-cpu0) / float64(r.cfg.Idle)
	figs := []Figure{
		atMost(name, ms(took), "ms", 200, fmt.Sprintf("exec → sd_notify READY=1, %d jobs; the emulated cloud is in the bench process", r.cfg.Jobs)),
		info("CPU until READY=1", ms(cpuReady), "ms", "user+sys, /proc/PID/stat"),
		info("CPU in the second after READY=1", ms(cpu0-cpuReady), "ms", ""),
		atMost("RSS, idle", float64(rss)/mb, "MB", 30, fmt.Sprintf("VmRSS %s after READY=1", (time.Second+r.cfg.Idle).Round(time.Second))),
		atMost("peak RSS (VmHWM)", float64(hwm)/mb, "MB", 30, "since exec"),
		atMost("CPU while idle", idlePct, "%", 1, fmt.Sprintf("%s of CPU over %s, from 1 s after READY=1 (10 ms ticks)", (cpu1-cpu0).Round(time.Millisecond), r.cfg.Idle)),
		info("shutdown, idle", ms(down), "ms", "SIGTERM → exit"),
	}
	if stopErr != nil {
		figs = append(figs, failed("shutdown", stopErr)...)
	}
	return figs
}

// burst: one job with cfg.Targets targets.
func (r *runner) burst() []Figure {
	const name = "burst duration / N·L/C"
	n, l, conc := r.cfg.Targets, r.cfg.BurstLatency, r.cfg.BurstConcurrency
	bound := time.Duration(n) * l / time.Duration(conc)
	launch := inProcess
	if r.cfg.Binary != "" {
		launch = func(dir, cfg string, c *cloud) (handle, error) { return startChild(r.cfg.Binary, dir, cfg, c.env()) }
	}
	f, err := r.fireAt("burst", l, 0, func(dir string, c *cloud, s time.Time) (string, error) {
		return writeConfig(dir, account{url: c.URL(), concurrency: conc}, nil,
			[]job{{name: "burst", spec: atSecond(s), targets: targetsN("app-burst", n)}})
	}, launch)
	if err != nil {
		return failed(name, err)
	}
	defer f.close()
	ch, isChild := f.h.(*child)
	var cpu0 time.Duration
	if isChild {
		r.sleep(time.Until(f.s.Add(-100 * time.Millisecond)))
		cpu0, _ = procCPU(ch.pid())
	}
	finals, last, err := r.waitFinals(f.audit(), "burst", n, f.s.Add(r.cfg.FireWait+2*bound))
	if err != nil {
		return failed(name, err)
	}
	var cpu1 time.Duration
	var hwm uint64
	var procErr error
	if isChild {
		var err1, err2 error
		cpu1, err1 = procCPU(ch.pid())
		_, hwm, err2 = procMem(ch.pid())
		procErr = errors.Join(err1, err2)
	}
	if _, err := f.h.stop(); err != nil {
		r.note("burst: shutdown: %v", err)
	}
	f.h = nil
	calls := len(f.c.actions())
	ok := 0
	for _, rec := range finals {
		if rec.Outcome == "success" {
			ok++
		}
	}
	figs := []Figure{}
	if len(finals) < n {
		figs = append(figs, failed(name, fmt.Errorf("%d of %d targets settled within %s of the fire", len(finals), n, r.cfg.FireWait+2*bound))...)
	} else {
		wall := last.Sub(f.s)
		figs = append(figs, atMost(name, float64(wall)/float64(bound), "x", 1.15,
			fmt.Sprintf("scheduled → last outcome audited %s; bound %d×%s/%d = %s", wall.Round(time.Millisecond), n, l, conc, bound)))
	}
	figs = append(figs, exactly("burst targets succeeded", float64(ok), "count", float64(n), fmt.Sprintf("%d requests reached the cloud", calls)))
	switch {
	case !isChild:
		figs = append(figs, skipped("burst peak RSS", "in-process run (no binary)")...)
	case procErr != nil:
		figs = append(figs, failed("burst peak RSS", procErr)...)
	default:
		figs = append(figs, atMost("burst peak RSS (VmHWM)", float64(hwm)/mb, "MB", 60, "of the scheduler run process"))
		if calls > 0 {
			per := (cpu1 - cpu0) / time.Duration(calls)
			figs = append(figs, info("CPU per vendor call", float64(per)/float64(time.Microsecond), "µs",
				fmt.Sprintf("%s user+sys of the daemon process / %d calls", (cpu1-cpu0).Round(time.Millisecond), calls)))
		}
	}
	return figs
}

// waitFinals follows an audit log until every one of n targets of job has
// its final record, or until deadline. It returns the final records by
// target and the time of the latest one.
func (r *runner) waitFinals(path, job string, n int, deadline time.Time) (map[string]record, time.Time, error) {
	t := &tail{path: path}
	finals := map[string]record{}
	var last time.Time
	for len(finals) < n && time.Now().Before(deadline) {
		recs, err := t.next()
		if err != nil {
			return nil, time.Time{}, err
		}
		for _, rec := range recs {
			if rec.Job == job && rec.final() {
				finals[rec.Target] = rec
				if tt := rec.time(); tt.After(last) {
					last = tt
				}
			}
		}
		if !r.sleep(20 * time.Millisecond) {
			break
		}
	}
	return finals, last, nil
}

// ratelimit: cfg.RateTargets targets on an account paced at 4/s, burst 1.
func (r *runner) ratelimit() []Figure {
	const name = "rate-limited targets succeeded"
	n := r.cfg.RateTargets
	const limit = "{per_second: 4, burst: 1}"
	// A fast API gets a short per-call timeout; the retries are the issue's.
	policy := []string{"timeout: 1s", "retry: {max_attempts: 5}"}
	f, err := r.fireAt("ratelimit", r.cfg.Latency, 0, func(dir string, c *cloud, s time.Time) (string, error) {
		return writeConfig(dir, account{url: c.URL(), rateLimit: limit}, policy,
			[]job{{name: "paced", spec: atSecond(s), targets: targetsN("app-rate", n)}})
	}, inProcess)
	if err != nil {
		return failed(name, err)
	}
	defer f.close()
	// 4/s and whatever retries: give it the whole retry budget.
	finals, last, err := r.waitFinals(f.audit(), "paced", n, f.s.Add(r.cfg.FireWait+time.Duration(n)*time.Second/4))
	if err != nil {
		return failed(name, err)
	}
	if _, err := f.h.stop(); err != nil {
		r.note("ratelimit: shutdown: %v", err)
	}
	f.h = nil
	recs, err := readAudit(f.audit())
	if err != nil {
		return failed(name, err)
	}
	attempts := 0
	for _, rec := range recs {
		if rec.Job == "paced" && rec.Event == "attempt" {
			attempts++
		}
	}
	ok, firstErr := 0, ""
	for _, rec := range finals {
		if rec.Outcome == "success" {
			ok++
		} else if firstErr == "" {
			firstErr = rec.Error
		}
	}
	calls := len(f.c.actions())
	note := fmt.Sprintf("%d targets, rate_limit %s, %s", n, limit, strings.Join(policy, ", "))
	if len(finals) < n {
		note += fmt.Sprintf("; %d never settled", n-len(finals))
	}
	if firstErr != "" {
		note += "; e.g. " + firstErr
	}
	figs := []Figure{
		exactly(name, float64(ok), "count", float64(n), note),
		exactly("attempts spent", float64(attempts), "count", float64(n), fmt.Sprintf("%d requests reached the cloud", calls)),
	}
	if !last.IsZero() {
		figs = append(figs, info("rate-limited fire duration", ms(last.Sub(f.s)), "ms",
			fmt.Sprintf("scheduled → last outcome; %d calls at 4/s take ≥ %s", n, time.Duration(n-1)*time.Second/4)))
	}
	return figs
}

// floor: what any daemon on this machine pays for --due signed calls to
// the emulated cloud at one instant, with none of the daemon's own work
// (no audit log, run state, executor or engine): the vendor client alone,
// called from --due goroutines released together, once on new connections
// (as at a daily 09:00) and once more on the connections the first round
// left open. The lag scenario's figures cannot go below the first.
func (r *runner) floor() []Figure {
	const name = "floor"
	c, err := newCloud(r.cfg.Latency)
	if err != nil {
		return failed(name, err)
	}
	defer c.Close()
	cr := c.Credentials()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: r.cfg.Due}}
	defer hc.CloseIdleConnections()
	cl, err := ncp.New(ncp.Config{AccessKey: secret.New(cr.NCPAccessKey), SecretKey: secret.New(cr.NCPSecretKey),
		DataForestURL: c.URL(), CDSSURL: c.URL(), HTTPClient: hc})
	if err != nil {
		return failed(name, err)
	}
	var figs []Figure
	for round, what := range []string{"new connections", "kept-alive connections"} {
		var ready, done sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, r.cfg.Due)
		for i := range r.cfg.Due {
			ready.Add(1)
			done.Go(func() {
				ready.Done()
				<-start
				if _, err := cl.StartApp(context.Background(), fmt.Sprintf("app-floor-%d-%06d", round, i)); err != nil {
					errs <- err
				}
			})
		}
		ready.Wait()
		before := len(c.actions())
		t0 := time.Now()
		close(start)
		done.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return failed(name, err)
		}
		reqs := c.actions()[before:]
		if len(reqs) != r.cfg.Due {
			return failed(name, fmt.Errorf("%d calls made, %d reached the cloud", r.cfg.Due, len(reqs)))
		}
		var lags []float64
		for _, q := range reqs {
			lags = append(lags, ms(q.Time.Sub(t0)))
		}
		s := sorted(lags)
		figs = append(figs,
			info(fmt.Sprintf("%s p50, %s", name, what), percentile(s, 50), "ms", ""),
			info(fmt.Sprintf("%s p99, %s", name, what), percentile(s, 99), "ms",
				fmt.Sprintf("%d calls released at once by the vendor client alone, %s per call, released → request received", r.cfg.Due, r.cfg.Latency)))
	}
	return figs
}
