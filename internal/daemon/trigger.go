package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/control"
	"github.com/cloudcron/scheduler/internal/executor"
	"github.com/cloudcron/scheduler/internal/schedule"
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
	// A running daemon is the audit log's one writer: the job runs there,
	// under the schedule it runs and with the secrets it holds.
	if dir, err := schedule.StateDir(o.ConfigPath); err == nil {
		if c, err := control.Dial(dir); err == nil {
			defer c.Close()
			return triggerRemote(ctx, c, o)
		} else if !errors.Is(err, control.ErrNotRunning) {
			return executor.Outcome{}, fmt.Errorf("reach the running daemon: %w", err)
		}
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
	report(o, out, cfg.Audit.Path)
	return out, nil
}

// report prints the per-target lines of a manual run.
func report(o TriggerOptions, out executor.Outcome, auditPath string) {
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
		fmt.Fprintf(o.Out, "run %s: %d of %d targets failed; audit: %s\n", out.RunID, len(out.Failed()), len(out.Targets), auditPath)
	}
}

// triggerRequest and triggerAnswer are the body and answer of POST
// /v1/trigger on the control socket.
type triggerRequest struct {
	Job string `json:"job"`
}

type triggerTarget struct {
	Target   string `json:"target"`
	Outcome  string `json:"outcome"`
	Attempts int    `json:"attempts"`
	Verify   string `json:"verify,omitempty"`
	State    string `json:"state,omitempty"`
	Error    string `json:"error,omitempty"`
}

type triggerAnswer struct {
	RunID   string          `json:"run_id"`
	Audit   string          `json:"audit"`
	Targets []triggerTarget `json:"targets"`
}

// triggerRemote asks the running daemon to run the job and waits for the
// fire to end.
func triggerRemote(ctx context.Context, c *control.Client, o TriggerOptions) (executor.Outcome, error) {
	c.SetTimeout(0) // a fire lasts as long as its retries
	var a triggerAnswer
	if err := c.Post(ctx, "/v1/trigger", triggerRequest{Job: o.Job}, &a); err != nil {
		return executor.Outcome{}, fmt.Errorf("trigger through the running daemon (%s): %w", c.Path(), err)
	}
	out := executor.Outcome{RunID: a.RunID}
	for _, t := range a.Targets {
		to := executor.TargetOutcome{Target: t.Target, Outcome: t.Outcome, Attempts: t.Attempts, Verify: t.Verify, State: t.State}
		if t.Error != "" {
			to.Err = errors.New(t.Error)
		}
		out.Targets = append(out.Targets, to)
	}
	report(o, out, a.Audit+" (written by the running daemon)")
	return out, nil
}

// handleTrigger runs one job of the running schedule now, once, as
// `scheduler trigger` does without a daemon: a manual run, audited by the
// daemon's own log, under the job's overlap policy.
func (d *Daemon) handleTrigger(w http.ResponseWriter, r *http.Request) {
	var req triggerRequest
	if !control.DecodeJSON(w, r, &req) {
		return
	}
	p, ok := d.enter()
	if !ok {
		control.WriteError(w, http.StatusServiceUnavailable, "the daemon is shutting down; trigger refused")
		return
	}
	defer d.leave(p)
	j := p.jobs[req.Job]
	if j == nil {
		names := make([]string, 0, len(p.cfg.Jobs))
		for _, cj := range p.cfg.Jobs {
			names = append(names, cj.Name)
		}
		control.WriteError(w, http.StatusNotFound, fmt.Sprintf("no job named %q in the running schedule; jobs: %v", req.Job, names))
		return
	}
	d.log.Info().Str("job", req.Job).Msg("manual trigger through the control socket")
	// The fire belongs to the daemon, not to the request: a client that
	// goes away does not cancel it; Shutdown does.
	out := d.exec.FireWith(d.ctx, j, d.now(), time.Time{}, func(rs []audit.Record) (bool, error) {
		for i := range rs {
			rs[i].Detail += "; " + state.ManualTrigger
		}
		return true, d.audit.AppendBatch(rs)
	})
	a := triggerAnswer{RunID: out.RunID, Audit: p.cfg.Audit.Path}
	for _, t := range out.Targets {
		tt := triggerTarget{Target: t.Target, Outcome: t.Outcome, Attempts: t.Attempts, Verify: t.Verify, State: t.State}
		if t.Err != nil {
			tt.Error = t.Err.Error()
		}
		a.Targets = append(a.Targets, tt)
	}
	control.WriteJSON(w, http.StatusOK, a)
}
