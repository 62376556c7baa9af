// Package bench measures the scheduler against the emulated cloud with a
// set per-call latency: the figures of issue 10 ("everything due at 09:00
// at once"), each with its target and a PASS/FAIL verdict computed from
// the measured number. `scheduler bench` runs it; so do the Benchmark
// functions of this package (go test -run '^$' -bench . ./internal/bench).
//
// How the cloud is reached: every scenario starts an emulator.Cloud in the
// benchmark's own process, answering each request after Config.Latency,
// and points an ncp account of the generated config at it (endpoints
// dataforest and cdss, the emulator's throwaway keys passed as {env: …}
// secrets). The daemon therefore runs its real NCP client, signer, rate
// limiter and executor, exactly as a `vendor: sandbox` account would, but
// the cloud lives outside the daemon: a child `scheduler run` process
// measures the daemon's own memory and CPU, and every lag is read from the
// time the emulator received the request.
//
// Scenarios (Config.Only picks some):
//
//	start      in-process daemon.Start to the Ready callback with Config.Jobs jobs; shutdown; restart on the same state
//	lag        Config.Due one-target jobs due in the same second among Config.Jobs: scheduled instant → first request received
//	lone       one job due every second: the same lag over Config.Fires fires
//	reload     SIGHUP and an editor's rename-save of a Config.Jobs config → the audit "reload" record in the file
//	rss        `scheduler run` as a child with Config.Jobs idle jobs: start → READY=1, VmRSS, VmHWM, CPU while idle
//	burst      one job with Config.Targets targets, concurrency Config.BurstConcurrency, Config.BurstLatency per call:
//	           duration / (N·L/C), peak RSS and CPU per vendor call of the child process
//	ratelimit  Config.RateTargets targets on an account with rate_limit {per_second: 4, burst: 1}
//
// reload, rss and burst run the real binary (Config.Binary) when one is
// given; without it rss is skipped and reload and burst run in-process
// (no memory or CPU figures).
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Scenario names, in the order Run runs them.
var Scenarios = []string{"start", "lag", "floor", "lone", "reload", "rss", "burst", "ratelimit"}

// Config sizes the benchmark. Zero fields take the values.
type Config struct {
	Jobs             int           // jobs loaded in start, lag, reload and rss; default 10 000
	Due              int           // of them due in the same second in lag; default 1 000
	Targets          int           // targets of the burst job; default 10 000
	Latency          time.Duration // the emulated cloud's time per call, except in burst; default 1ms
	BurstLatency     time.Duration // time per call in burst; default 20ms
	BurstConcurrency int           // account concurrency in burst; default 64
	Fires            int           // fires measured in lone; default 20
	RateTargets      int           // targets in ratelimit; default 32
	Reloads          int           // reloads of each kind in reload; default 3
	Idle             time.Duration // CPU window of rss; default 5s
	// Lead is how long before a measured fire the daemon must be READY;
	// default 2s. A daemon that is READY later is restarted on a config
	// whose fire is later.
	Lead time.Duration
	// FireWait bounds how long a scenario waits for the fires it measures;
	// default 2m.
	FireWait time.Duration
	// Binary is the scheduler executable for the child-process scenarios;
	// "" skips rss and runs reload and burst in-process.
	Binary   string
	Dir      string    // parent of the benchmark's temporary folder; default os.TempDir()
	Keep     bool      // keep the temporary folder (configs, audit logs, daemon logs)
	Only     []string  // scenario names; empty = all
	Progress io.Writer // one line per step; nil = silent
}

func (c *Config) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Jobs, 10000)
	def(&c.Due, 1000)
	def(&c.Targets, 10000)
	def(&c.BurstConcurrency, 64)
	def(&c.Fires, 20)
	def(&c.RateTargets, 32)
	def(&c.Reloads, 3)
	defD(&c.Latency, time.Millisecond)
	defD(&c.BurstLatency, 20*time.Millisecond)
	defD(&c.Idle, 5*time.Second)
	defD(&c.Lead, 2*time.Second)
	defD(&c.FireWait, 2*time.Minute)
	if c.Due > c.Jobs {
		c.Jobs = c.Due
	}
}

// Verdicts of a Figure.
const (
	Pass  = "PASS"
	Fail  = "FAIL"
	Info  = ""      // no target: informational
	Error = "ERROR" // not measured: the scenario failed (Note says why)
	Skip  = "SKIP"  // not measured on purpose (Note says why)
)

// Figure is one measured number.
type Figure struct {
	Scenario string  `json:"scenario"`
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`             // ms, s, MB, x, %, µs, count
	Target   string  `json:"target,omitempty"` // e.g. "<= 20 ms"
	Verdict  string  `json:"verdict,omitempty"`
	Note     string  `json:"note,omitempty"`
}

// Report is the result of Run.
type Report struct {
	Started  time.Time         `json:"started"`
	Env      map[string]string `json:"env"`
	Settings map[string]string `json:"settings"`
	Figures  []Figure          `json:"figures"`
	Notes    []string          `json:"notes,omitempty"`
}

// Passed reports whether no figure failed or errored.
func (r *Report) Passed() bool {
	for _, f := range r.Figures {
		if f.Verdict == Fail || f.Verdict == Error {
			return false
		}
	}
	return true
}

// WriteJSON writes the report as one indented JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as an aligned table, then its notes.
func (r *Report) WriteTable(w io.Writer) error {
	var set []string
	for _, k := range settingOrder {
		if v, ok := r.Settings[k]; ok {
			set = append(set, k+"="+v)
		}
	}
	fmt.Fprintf(w, "scheduler bench  %s  %s\n", r.Started.Format(time.RFC3339), envLine(r.Env))
	fmt.Fprintf(w, "settings: %s\n\n", strings.Join(set, " "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tfigure\tvalue\ttarget\tverdict\tnote")
	for _, f := range r.Figures {
		val := "-"
		if f.Verdict != Error && f.Verdict != Skip {
			val = formatValue(f.Value, f.Unit)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Scenario, f.Name, val, f.Target, f.Verdict, f.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintln(w, "note:", n)
		}
	}
	_, err := fmt.Fprintf(w, "\n%s\n", summary(r))
	return err
}

var settingOrder = []string{"jobs", "due", "targets", "latency", "burst_latency", "burst_concurrency", "fires", "rate_targets", "reloads", "idle", "lead", "binary", "only"}

func envLine(env map[string]string) string {
	return fmt.Sprintf("%s %s/%s, %s CPUs", env["go"], env["os"], env["arch"], env["cpus"])
}

func summary(r *Report) string {
	var pass, fail, errs int
	for _, f := range r.Figures {
		switch f.Verdict {
		case Pass:
			pass++
		case Fail:
			fail++
		case Error:
			errs++
		}
	}
	return fmt.Sprintf("%d PASS, %d FAIL, %d ERROR", pass, fail, errs)
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "count":
		return fmt.Sprintf("%.0f", v)
	case "x":
		return fmt.Sprintf("%.2f×", v)
	case "ms":
		if v >= 10000 {
			return fmt.Sprintf("%.2f s", v/1000)
		}
		if v >= 100 {
			return fmt.Sprintf("%.0f ms", v)
		}
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

func formatTarget(v float64, unit string) string {
	switch unit {
	case "count":
		return fmt.Sprintf("%.0f", v)
	case "x":
		return fmt.Sprintf("%g×", v)
	}
	return fmt.Sprintf("%g %s", v, unit)
}

// Run runs the scenarios cfg selects and reports their figures. A scenario
// that cannot measure (the config is refused, the daemon does not start,
// fires never arrive) reports ERROR figures; Run returns an error only for
// a bad Config or when ctx ends.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	only := map[string]bool{}
	for _, s := range cfg.Only {
		for _, name := range strings.Split(s, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if name == "cpu" { // CPU per vendor call is a figure of burst
				name = "burst"
			}
			if !contains(Scenarios, name) {
				return nil, fmt.Errorf("unknown scenario %q; want one of %s", name, strings.Join(Scenarios, ", "))
			}
			only[name] = true
		}
	}
	root, err := os.MkdirTemp(cfg.Dir, "scheduler-bench-")
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, root: root, ctx: ctx}
	rep := &Report{Started: time.Now(), Env: map[string]string{
		"go": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH, "cpus": fmt.Sprint(runtime.NumCPU()),
	}, Settings: map[string]string{
		"jobs": fmt.Sprint(cfg.Jobs), "due": fmt.Sprint(cfg.Due), "targets": fmt.Sprint(cfg.Targets),
		"latency": cfg.Latency.String(), "burst_latency": cfg.BurstLatency.String(),
		"burst_concurrency": fmt.Sprint(cfg.BurstConcurrency), "fires": fmt.Sprint(cfg.Fires),
		"rate_targets": fmt.Sprint(cfg.RateTargets), "reloads": fmt.Sprint(cfg.Reloads),
		"idle": cfg.Idle.String(), "lead": cfg.Lead.String(), "binary": cfg.Binary,
	}}
	if len(cfg.Only) > 0 {
		rep.Settings["only"] = strings.Join(cfg.Only, ",")
	}
	wants := func(name string) bool { return len(only) == 0 || only[name] }
	if cfg.Binary == "" && (wants("rss") || wants("reload") || wants("burst")) {
		rep.Notes = append(rep.Notes, "no scheduler binary: rss skipped; reload and burst ran in-process (burst without RSS and CPU)")
	}
	run := map[string]func() []Figure{
		"start": r.start, "lag": r.lag, "floor": r.floor, "lone": r.lone, "reload": r.reload,
		"rss": r.rss, "burst": r.burst, "ratelimit": r.ratelimit,
	}
	for _, name := range Scenarios {
		if !wants(name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		r.progress("%s: start", name)
		t0 := time.Now()
		figs := run[name]()
		for i := range figs {
			figs[i].Scenario = name
		}
		rep.Figures = append(rep.Figures, figs...)
		r.progress("%s: done in %s", name, time.Since(t0).Round(time.Millisecond))
	}
	rep.Notes = append(rep.Notes, r.notes...)
	if cfg.Keep {
		rep.Notes = append(rep.Notes, "files kept in "+root)
	} else {
		_ = os.RemoveAll(root)
	}
	return rep, ctx.Err()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runner holds what the scenarios of one Run share.
type runner struct {
	cfg   Config
	root  string
	ctx   context.Context
	notes []string
	// startTook is the longest in-process start seen with cfg.Jobs jobs; it
	// sizes the margin before lag's fire.
	startTook time.Duration
	dirs      int
}

func (r *runner) progress(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "bench: "+format+"\n", args...)
	}
}

func (r *runner) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// tempDir returns a new folder for one daemon's config, audit log and state.
func (r *runner) tempDir(name string) (string, error) {
	r.dirs++
	dir := fmt.Sprintf("%s/%02d-%s", r.root, r.dirs, name)
	return dir, os.MkdirAll(dir, 0o700)
}

// Figure constructors.

func atMost(name string, v float64, unit string, limit float64, note string) Figure {
	f := Figure{Name: name, Value: v, Unit: unit, Target: "<= " + formatTarget(limit, unit), Verdict: Pass, Note: note}
	if math.IsNaN(v) || v > limit {
		f.Verdict = Fail
	}
	return f
}

func exactly(name string, v float64, unit string, want float64, note string) Figure {
	f := Figure{Name: name, Value: v, Unit: unit, Target: "= " + formatTarget(want, unit), Verdict: Pass, Note: note}
	if v != want {
		f.Verdict = Fail
	}
	return f
}

func info(name string, v float64, unit, note string) Figure {
	return Figure{Name: name, Value: v, Unit: unit, Verdict: Info, Note: note}
}

func failed(name string, err error) []Figure {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i] + " …"
	}
	if len(msg) > 300 {
		msg = msg[:300] + " …"
	}
	return []Figure{{Name: name, Verdict: Error, Note: msg}}
}

func skipped(name, why string) []Figure {
	return []Figure{{Name: name, Verdict: Skip, Note: why}}
}

// sleep waits d or until the run is cancelled; it reports whether the run
// goes on.
func (r *runner) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.ctx.Done():
		return false
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
