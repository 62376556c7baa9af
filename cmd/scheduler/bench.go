package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"

	"github.com/cloudcron/scheduler/internal/bench"
)

const benchSynopsis = "bench [--jobs N] [--due N] [--targets N] [--latency D] [--only SCENARIO[,…]] [--json]"

// cmdBench measures the daemon against the emulated cloud (issue 10's
// figures) and prints each figure with its target and verdict. It exits 0
// when every target is met, 1 otherwise.
func (e env) cmdBench(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var cfg bench.Config
	fs.IntVar(&cfg.Jobs, "jobs", 10000, "jobs loaded in start, lag, reload and rss")
	fs.IntVar(&cfg.Due, "due", 1000, "of them, one-target jobs due in the same second in lag")
	fs.IntVar(&cfg.Targets, "targets", 10000, "targets of the one job in burst")
	fs.DurationVar(&cfg.Latency, "latency", time.Millisecond, "the emulated cloud's time per call (burst: --burst-latency)")
	fs.DurationVar(&cfg.BurstLatency, "burst-latency", 20*time.Millisecond, "time per call in burst")
	fs.IntVar(&cfg.BurstConcurrency, "concurrency", 64, "account concurrency in burst")
	fs.IntVar(&cfg.Fires, "fires", 20, "fires measured in lone")
	fs.IntVar(&cfg.Reloads, "reloads", 3, "reloads of each kind in reload")
	fs.DurationVar(&cfg.Idle, "idle", 5*time.Second, "CPU window of rss")
	fs.StringVar(&cfg.Dir, "dir", "", "parent of the temporary folder (default: the system's)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep configs, audit logs and daemon logs")
	only := fs.String("only", "", "run these scenarios only, comma-separated: "+strings.Join(bench.Scenarios, ", "))
	asJSON := fs.Bool("json", false, "print the report as JSON")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (its daemons: start, lag, lone, ratelimit; the emulated cloud of all) to FILE; SCHEDULER_CPUPROFILE=FILE profiles the child daemon of rss, reload and burst")
	traceFile := fs.String("trace", "", "write an execution trace of this process to FILE (go tool trace)")
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: scheduler %s\n\n"+
			"Measures the daemon against an emulated cloud that answers every call after --latency:\n"+
			"fire lag of --due jobs due in the same second among --jobs, a lone job's lag, start to READY,\n"+
			"reload, RSS and idle CPU of a `scheduler run` child, a --targets burst against N·L/C, and a\n"+
			"rate-limited job. Prints each figure with its target; exits 1 if any target is missed.\n\nFlags:\n", benchSynopsis)
		fs.PrintDefaults()
	}
	if pos, err := parse(fs, args); err != nil {
		return parseErr(err)
	} else if len(pos) > 0 {
		fs.Usage()
		return exitUsage
	}
	if *only != "" {
		cfg.Only = []string{*only}
	}
	if !*quiet {
		cfg.Progress = e.stderr
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintln(e.stderr, "scheduler bench:", err)
			return exitUsage
		}
		defer stop()
	}
	if *traceFile != "" {
		stop, err := startTrace(*traceFile)
		if err != nil {
			fmt.Fprintln(e.stderr, "scheduler bench:", err)
			return exitUsage
		}
		defer stop()
	}
	// The child-process scenarios run this very binary as `scheduler run`.
	if exe, err := os.Executable(); err == nil {
		cfg.Binary = exe
	}
	rep, err := bench.Run(e.ctx, cfg)
	if rep != nil {
		if *asJSON {
			_ = rep.WriteJSON(e.stdout)
		} else {
			_ = rep.WriteTable(e.stdout)
		}
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "scheduler bench:", err)
		if rep == nil {
			return exitUsage
		}
		return exitFailed
	}
	if !rep.Passed() {
		return exitFailed
	}
	return exitOK
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

func startTrace(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--trace: %w", err)
	}
	if err := trace.Start(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("--trace: %w", err)
	}
	return func() { trace.Stop(); _ = f.Close() }, nil
}
