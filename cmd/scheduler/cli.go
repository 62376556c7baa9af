package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/configs"
	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/daemon"
	"github.com/cloudcron/scheduler/internal/engine"
	"github.com/cloudcron/scheduler/internal/schedule"
	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/service"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

const defaultConfig = "/etc/scheduler/config.yaml"

const usage = `scheduler turns one YAML schedule into cloud lifecycle actions.

Usage:
  scheduler run      --config PATH             the daemon (SIGHUP reloads, SIGTERM stops)
  scheduler validate --config PATH             check a schedule; print every problem
  scheduler next     --config PATH [--job NAME] [--from RFC3339] [--count N] [--json]
                                               upcoming fire times in each job's zone
  scheduler trigger  --config PATH JOB         run one job's action now, once
  scheduler plan     --config PATH [--week] [--from RFC3339] [--json] [--svg FILE]
                                               the coming day or week: windows' edges, jobs'
                                               fires, holidays, DST days, overrides, savings
  scheduler override set WINDOW [--target ID] --state on|off (--until RFC3339 | --for DUR)
  scheduler override list | clear WINDOW [--target ID]
                                               hold a window or target on or off for a while
                                               on the running daemon
  scheduler demo     [--for DURATION]          the daemon on the demo schedule against
                                               the embedded emulated cloud; no credentials
  scheduler audit    [--config PATH | --path P] [--job NAME] [--since T] [--outcome O] [--json] | verify | repair
  scheduler status   --config PATH [--json]    what the running daemon is doing (exit 1: not running)
  scheduler bench    [--jobs N] [--due N] [--targets N] [--latency D] [--only S] [--json]
                                               measure fire lag, start, reload, memory and
                                               bursts against an emulated cloud

Run 'scheduler COMMAND --help' for a command's flags.
`

// env is what a command needs from the process; tests supply their own.
type env struct {
	ctx    context.Context
	reload <-chan struct{}
	stdout io.Writer
	stderr io.Writer
}

func run(ctx context.Context, reload <-chan struct{}, args []string, stdout, stderr io.Writer) int {
	e := env{ctx: ctx, reload: reload, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return e.cmdRun(rest)
	case "validate":
		return e.cmdValidate(rest)
	case "next":
		return e.cmdNext(rest)
	case "trigger":
		return e.cmdTrigger(rest)
	case "plan":
		return e.cmdPlan(rest)
	case "override":
		return e.cmdOverride(rest)
	case "demo":
		return e.cmdDemo(rest)
	case "audit":
		return e.cmdAudit(rest)
	case "bench":
		return e.cmdBench(rest)
	case "status":
		return e.cmdStatus(rest)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "scheduler: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

// flags builds a command's flag set with the shared --config and --log-level.
func (e env) flags(name, synopsis string) (*flag.FlagSet, *string, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	cfg := fs.String("config", defaultConfig, "schedule file")
	level := levelFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: scheduler %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs, cfg, level
}

// levelFlag adds --log-level to fs. The value is checked while the flags
// are parsed, so every command refuses a bad level the same way, whether
// or not it logs.
func levelFlag(fs *flag.FlagSet) *string {
	level := "info"
	fs.Func("log-level", "log level: debug, info, warn, error (default info)", func(s string) error {
		if _, err := zerolog.ParseLevel(s); err != nil || s == "" {
			return errors.New("use debug, info, warn or error")
		}
		level = s
		return nil
	})
	return &level
}

// parse parses flags that may come before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func parseErr(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// newLogger writes human-readable lines to a terminal and JSON otherwise
// (journald, files, pipes); on the journal each line carries its syslog
// priority so `journalctl -p err` shows failures only.
func newLogger(w io.Writer, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	// Millisecond timestamps: fire lag is a number users check.
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	out := w
	if f, ok := w.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		out = zerolog.ConsoleWriter{Out: f, TimeFormat: "15:04:05.000"}
	} else if ok {
		out = service.LogWriter(f)
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger(), nil
}

func (e env) cmdRun(args []string) int {
	fs, cfg, level := e.flags("run", "run --config PATH")
	if _, err := parse(fs, args); err != nil {
		return parseErr(err)
	}
	log, err := newLogger(e.stderr, *level)
	if err != nil {
		fmt.Fprintln(e.stderr, "scheduler:", err)
		return exitUsage
	}
	// SCHEDULER_CPUPROFILE=FILE profiles the daemon for its whole life (a
	// developer's aid: `scheduler bench --only burst` with it set profiles
	// the daemon that bench starts).
	if path := os.Getenv("SCHEDULER_CPUPROFILE"); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			fmt.Fprintln(e.stderr, "scheduler: SCHEDULER_CPUPROFILE:", err)
			return exitUsage
		}
		defer stop()
	}
	// systemd: READY=1 once the schedule is registered, RELOADING=1 and
	// READY=1 around reloads, STATUS=, the watchdog and STOPPING=1.
	n := &service.Notifier{Log: log}
	var served sync.WaitGroup
	defer served.Wait()
	opts := daemon.Options{ConfigPath: *cfg, Log: log, Watch: true,
		Ready:    func(st daemon.Status) { n.Ready(st.String()) },
		OnReload: func(phase string, st daemon.Status) { n.Reload(phase, st.String()) },
		// The audit log stopped or started writing: STATUS= says so now,
		// not at the next periodic refresh.
		OnAudit: func(st daemon.Status) { n.Status(st.String()) },
		// Likewise when this replica of a cluster is elected, loses the
		// leadership, is cut off from etcd or is back.
		OnCluster: func(st daemon.Status) { n.Status(st.String()) },
		Started: func(d *daemon.Daemon) {
			served.Go(func() { n.Serve(e.ctx, d.Health, func() string { return d.Status().String() }) })
		},
	}
	if err := daemon.Run(e.ctx, opts, e.reload); err != nil {
		printErr(e.stderr, err)
		return exitFailed
	}
	return exitOK
}

// printErr prints an error, one problem per line when it joins several.
func printErr(w io.Writer, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			printErr(w, e)
		}
		return
	}
	fmt.Fprintln(w, err)
}

func (e env) cmdValidate(args []string) int {
	fs, cfg, _ := e.flags("validate", "validate --config PATH")
	pos, err := parse(fs, args)
	if err != nil {
		return parseErr(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "scheduler validate: unexpected argument %q; give the schedule with --config %s\n", pos[0], pos[0])
		return exitUsage
	}
	c, err := daemon.Load(*cfg, secret.Resolver{}, time.Now())
	if err != nil {
		printErr(e.stderr, err)
		n := 1
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			n = len(j.Unwrap())
		}
		fmt.Fprintf(e.stderr, "%s: %d problem(s); the schedule was not accepted\n", *cfg, n)
		return exitFailed
	}
	for _, w := range c.Warnings() {
		fmt.Fprintf(e.stderr, "%s: WARNING: %s\n", *cfg, w)
	}
	if len(c.Windows) > 0 {
		fmt.Fprintf(e.stdout, "%s: valid: %s, %s, %s\n", *cfg, plural(len(c.Jobs), "job"), plural(len(c.Windows), "window"), plural(len(c.Accounts), "account"))
		return exitOK
	}
	fmt.Fprintf(e.stdout, "%s: valid: %s, %s\n", *cfg, plural(len(c.Jobs), "job"), plural(len(c.Accounts), "account"))
	return exitOK
}

func (e env) cmdNext(args []string) int {
	fs, cfg, _ := e.flags("next", "next --config PATH [--job NAME] [--from RFC3339] [--count N] [--json]")
	jobName := fs.String("job", "", "only this job")
	from := fs.String("from", "", "list fires after this instant (RFC3339); default now")
	count := fs.Int("count", 5, "fires per job")
	asJSON := fs.Bool("json", false, `one JSON object per line: {"job": NAME, "time": RFC3339}`)
	if _, err := parse(fs, args); err != nil {
		return parseErr(err)
	}
	if *count < 1 {
		fmt.Fprintln(e.stderr, "scheduler next: --count must be at least 1")
		return exitUsage
	}
	start := time.Now()
	if *from != "" {
		t, err := time.Parse(time.RFC3339, *from)
		if err != nil {
			fmt.Fprintf(e.stderr, "scheduler next: --from %q: want RFC3339 such as 2026-03-29T00:00:00+01:00\n", *from)
			return exitUsage
		}
		start = t
	}
	// @every counts from --from, as the daemon counts from its start.
	c, err := schedule.LoadFile(*cfg, schedule.Options{Anchor: start})
	if err != nil {
		printErr(e.stderr, err)
		return exitFailed
	}
	type fire struct {
		job  string
		zone string
		t    time.Time
	}
	var fires []fire
	found := false
	for _, j := range c.Jobs {
		if *jobName != "" && j.Name != *jobName {
			continue
		}
		found = true
		for _, t := range engine.Upcoming(j.Spec, start, *count) {
			fires = append(fires, fire{j.Name, j.Loc.String(), t})
		}
	}
	if !found {
		fmt.Fprintf(e.stderr, "scheduler next: no job named %q in %s\n", *jobName, *cfg)
		return exitFailed
	}
	sort.SliceStable(fires, func(a, b int) bool { return fires[a].t.Before(fires[b].t) })
	for _, f := range fires {
		if *asJSON {
			b, _ := json.Marshal(struct {
				Job  string `json:"job"`
				Time string `json:"time"`
			}{f.job, f.t.Format(time.RFC3339)})
			fmt.Fprintln(e.stdout, string(b))
			continue
		}
		fmt.Fprintf(e.stdout, "%s  %-24s %s\n", f.t.Format("2006-01-02 15:04:05 -07:00 Mon"), f.job, f.zone)
	}
	return exitOK
}

func (e env) cmdTrigger(args []string) int {
	fs, cfg, level := e.flags("trigger", "trigger --config PATH JOB")
	pos, err := parse(fs, args)
	if err != nil {
		return parseErr(err)
	}
	switch {
	case len(pos) == 0:
		fmt.Fprintf(e.stderr, "scheduler trigger: name the job to run: scheduler trigger --config %s JOB\n", *cfg)
		return exitUsage
	case len(pos) > 1:
		q := make([]string, len(pos))
		for i, p := range pos {
			q[i] = fmt.Sprintf("%q", p)
		}
		fmt.Fprintf(e.stderr, "scheduler trigger: one job at a time; got %d: %s\n", len(pos), strings.Join(q, ", "))
		return exitUsage
	}
	log, err := newLogger(e.stderr, *level)
	if err != nil {
		fmt.Fprintln(e.stderr, "scheduler:", err)
		return exitUsage
	}
	out, err := daemon.Trigger(e.ctx, daemon.TriggerOptions{ConfigPath: *cfg, Job: pos[0], Log: log, Out: e.stdout})
	if err != nil {
		printErr(e.stderr, err)
		return exitFailed
	}
	if failed := out.Failed(); len(failed) > 0 {
		ids := make([]string, len(failed))
		for i, f := range failed {
			ids[i] = f.Target
		}
		fmt.Fprintf(e.stderr, "scheduler trigger: %s failed on %s\n", pos[0], strings.Join(ids, ", "))
		return exitFailed
	}
	return exitOK
}

func (e env) cmdDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	dur := fs.Duration("for", 0, "stop after this long (default: until Ctrl-C)")
	dir := fs.String("dir", "", "folder for the demo schedule, audit log and state (default: a new temporary folder)")
	level := levelFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: scheduler demo [--for DURATION] [--dir DIR]\n\nRuns the daemon on configs/demo.yaml against an emulated cloud started in-process on loopback.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if _, err := parse(fs, args); err != nil {
		return parseErr(err)
	}
	forSet := false
	fs.Visit(func(f *flag.Flag) { forSet = forSet || f.Name == "for" })
	if forSet && *dur <= 0 {
		fmt.Fprintf(e.stderr, "scheduler demo: --for must be more than 0 (got %s); leave it out to run until Ctrl-C\n", *dur)
		return exitUsage
	}
	log, err := newLogger(e.stderr, *level)
	if err != nil {
		fmt.Fprintln(e.stderr, "scheduler:", err)
		return exitUsage
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "scheduler-demo-")
		if err != nil {
			fmt.Fprintln(e.stderr, "scheduler demo:", err)
			return exitFailed
		}
		*dir = d
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		fmt.Fprintln(e.stderr, "scheduler demo:", err)
		return exitFailed
	}
	path := filepath.Join(*dir, "demo.yaml")
	// An existing demo.yaml is the user's (perhaps edited) schedule: run
	// it, never overwrite it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case errors.Is(err, os.ErrExist):
		fmt.Fprintf(e.stdout, "scheduler demo: keeping the schedule already in %s (delete it to start from the demo schedule)\n", path)
	case err != nil:
		fmt.Fprintln(e.stderr, "scheduler demo:", err)
		return exitFailed
	default:
		_, err = f.Write(configs.Demo)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			fmt.Fprintln(e.stderr, "scheduler demo:", err)
			return exitFailed
		}
	}
	fmt.Fprintf(e.stdout, "scheduler demo: schedule %s\n  audit log: %s\n  edit the schedule and send SIGHUP to reload; Ctrl-C to stop\n",
		path, filepath.Join(*dir, "audit.jsonl"))
	ctx := e.ctx
	if *dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *dur)
		defer cancel()
	}
	err = daemon.Run(ctx, daemon.Options{ConfigPath: path, Log: log, Grace: 10 * time.Second, Watch: true}, e.reload)
	summarize(e.stdout, filepath.Join(*dir, "audit.jsonl"))
	if err != nil {
		printErr(e.stderr, err)
		return exitFailed
	}
	return exitOK
}

// summarize prints how many attempts ended in each outcome, per job.
func summarize(w io.Writer, path string) {
	recs, err := audit.ReadAll(path)
	if err != nil {
		fmt.Fprintf(w, "audit log %s: %v\n", path, err)
		return
	}
	type key struct{ job, outcome string }
	counts := map[key]int{}
	var jobs []string
	for _, r := range recs {
		if r.Job == "" {
			continue
		}
		k := key{r.Job, r.Outcome}
		if r.Event == "reconcile" && r.Outcome == "" { // a window's correction, before its attempts
			k.outcome = "reconcile"
		}
		if _, seen := counts[key{r.Job, ""}]; !seen {
			counts[key{r.Job, ""}] = 0
			jobs = append(jobs, r.Job)
		}
		counts[k]++
	}
	sort.Strings(jobs)
	fmt.Fprintf(w, "\naudit log %s: %d records\n", path, len(recs))
	for _, j := range jobs {
		var parts []string
		for _, o := range []string{"reconcile", "success", "retry", "failure", "skipped", "missed", "unknown"} {
			if n := counts[key{j, o}]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s=%d", o, n))
			}
		}
		fmt.Fprintf(w, "  %-28s %s\n", j, strings.Join(parts, " "))
	}
}

// plural writes n and noun, with an s unless n is 1: "1 file", "2 files".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
