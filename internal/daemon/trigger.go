package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/executor"
	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/state"
)

// TriggerOptions configures one manual run of a job.
type TriggerOptions struct {
	ConfigPath string
	Job        string
	Log        zerolog.Logger
	Resolver   secret.Resolver
	Now        func() time.Time
	Out        io.Writer // the per-target report
}

// Trigger runs one job's action now, once, with the job's retries and full
// auditing, and prints one line per target. It returns the fire's outcome;
// err is set only when the job could not be run at all.
func Trigger(ctx context.Context, o TriggerOptions) (executor.Outcome, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	cfg, err := Load(o.ConfigPath, o.Resolver, o.Now())
	if err != nil {
		return executor.Outcome{}, err
	}
	if cfg.Job(o.Job) == nil {
		names := make([]string, len(cfg.Jobs))
		for i, j := range cfg.Jobs {
			names[i] = j.Name
		}
		return executor.Outcome{}, fmt.Errorf("no job named %q in %s; jobs: %v", o.Job, o.ConfigPath, names)
	}
	p, err := buildPlan(cfg, o.Resolver, o.Log)
	if err != nil {
		return executor.Outcome{}, err
	}
	defer p.close()
	// The audit log has one writer: with no daemon running, trigger is it,
	// and its records are anchored in the run state like the daemon's
	// (the state's tail moves past them, so a deleted tail is noticed).
	store, err := state.Open(cfg.State.Dir)
	if err != nil {
		if errors.Is(err, state.ErrLocked) {
			return executor.Outcome{}, fmt.Errorf("%w\nA scheduler daemon is running on this schedule: it is the audit log's one writer, so trigger runs through it or not at all", err)
		}
		return executor.Outcome{}, fmt.Errorf("open run state: %w", err)
	}
	seq, hash := store.AuditTail()
	al, err := audit.OpenWith(cfg.Audit.Path, audit.Options{ExpectSeq: seq, ExpectHash: hash})
	if err != nil {
		_ = store.Close()
		return executor.Outcome{}, openAuditErr(err, o.ConfigPath)
	}
	if msg := al.Recovered(); msg != "" {
		o.Log.Warn().Str("audit", cfg.Audit.Path).Msg(msg)
	}
	// Replays what a crashed daemon left after the stored tail, so the
	// tail can move past it without losing an intent.
	if err := store.Attach(al, state.AttachOptions{AuditPath: cfg.Audit.Path}); err != nil {
		_ = al.Close()
		_ = store.Close()
		return executor.Outcome{}, fmt.Errorf("open run state: %w", err)
	}
	ex := executor.New(executor.Options{Log: o.Log, Audit: al, Now: o.Now, Concurrency: p.concurrency, Limiter: p.limiter})
	// A manual run is not a scheduled fire: its intent records say so, and
	// the daemon's run state leaves them out when it replays the log.
	out := ex.FireWith(ctx, p.jobs[o.Job], o.Now(), time.Time{}, func(rs []audit.Record) (bool, error) {
		for i := range rs {
			rs[i].Detail += "; " + state.ManualTrigger
		}
		return true, al.AppendBatch(rs)
	})
	cerr := al.Close()
	if serr := store.Close(); serr != nil && cerr == nil {
		return out, fmt.Errorf("record the audit tail in the run state: %w", serr)
	}
	if cerr != nil {
		return out, fmt.Errorf("close audit log: %w", cerr)
	}
	if o.Out != nil {
		for _, t := range out.Targets {
			line := fmt.Sprintf("%-8s %s %s attempts=%d", t.Outcome, o.Job, t.Target, t.Attempts)
			if t.Verify != "" {
				line += " verify=" + t.Verify
			}
			if t.State != "" {
				line += " state=" + t.State
			}
			if t.Err != nil {
				line += ": " + t.Err.Error()
			}
			fmt.Fprintln(o.Out, line)
		}
		fmt.Fprintf(o.Out, "run %s: %d of %d targets failed; audit: %s\n", out.RunID, len(out.Failed()), len(out.Targets), cfg.Audit.Path)
	}
	return out, nil
}
