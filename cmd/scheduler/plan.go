package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cloudcron/scheduler/internal/control"
	"github.com/cloudcron/scheduler/internal/daemon"
	"github.com/cloudcron/scheduler/internal/plan"
	"github.com/cloudcron/scheduler/internal/schedule"
	"github.com/cloudcron/scheduler/internal/window"
)

// cmdPlan prints the coming day (or week) of a schedule: windows' edges,
// jobs' fires, holidays, DST days, overrides and savings.
func (e env) cmdPlan(args []string) int {
	fs, cfg, _ := e.flags("plan", "plan --config PATH [--week] [--from RFC3339] [--json] [--svg FILE]")
	week := fs.Bool("week", false, "plan the coming 7 days (default: the coming 24 hours)")
	from := fs.String("from", "", "plan from this instant (RFC3339); default now")
	asJSON := fs.Bool("json", false, "print the plan as one JSON object")
	svg := fs.String("svg", "", "also write a week chart to this SVG file")
	if _, err := parse(fs, args); err != nil {
		return parseErr(err)
	}
	start := time.Now()
	if *from != "" {
		t, err := time.Parse(time.RFC3339, *from)
		if err != nil {
			fmt.Fprintf(e.stderr, "scheduler plan: --from %q: want RFC3339 such as 2026-03-23T00:00:00+01:00\n", *from)
			return exitUsage
		}
		start = t
	}
	c, err := schedule.LoadFile(*cfg, schedule.Options{Anchor: start})
	if err != nil {
		printErr(e.stderr, err)
		return exitFailed
	}
	span := 24 * time.Hour
	if *week {
		span = 7 * 24 * time.Hour
	}
	var overrides []window.Override
	if len(c.Windows) > 0 {
		overrides = e.planOverrides(c)
	}
	p := plan.Build(c, start, start.Add(span), overrides)
	if *svg != "" {
		f, err := os.Create(*svg)
		if err == nil {
			err = p.SVG(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "scheduler plan: --svg: %v\n", err)
			return exitFailed
		}
	}
	if *asJSON {
		err = p.JSON(e.stdout)
	} else {
		err = p.Text(e.stdout)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "scheduler plan: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// planOverrides returns the overrides the running daemon holds, or none
// when it is not running (the plan then says what the schedule alone does,
// and a note on stderr says so).
func (e env) planOverrides(c *schedule.Config) []window.Override {
	cl, err := control.Dial(c.State.Dir)
	if err != nil {
		fmt.Fprintln(e.stderr, "scheduler plan: no running daemon to ask for overrides; planning the schedule alone")
		return nil
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	var out daemon.OverrideList
	if err := cl.Get(ctx, "/v1/overrides", &out); err != nil {
		fmt.Fprintln(e.stderr, "scheduler plan: overrides not read from the running daemon:", err)
		return nil
	}
	return out.Overrides
}
