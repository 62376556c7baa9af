package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cloudcron/scheduler/internal/control"
	"github.com/cloudcron/scheduler/internal/daemon"
	"github.com/cloudcron/scheduler/internal/schedule"
)

const overrideUsage = `override set WINDOW [--target ID] --state on|off (--until RFC3339 | --for DURATION)
       scheduler override list
       scheduler override clear WINDOW [--target ID]`

// cmdOverride sets, lists or clears a time-boxed override of a window or
// one of its targets on the running daemon, through its control socket.
func (e env) cmdOverride(args []string) int {
	fs, cfg, _ := e.flags("override", overrideUsage)
	target := fs.String("target", "", "one target of the window (default: every target)")
	stateFlag := fs.String("state", "", "set: on or off")
	until := fs.String("until", "", "set: when the override ends (RFC3339)")
	dur := fs.String("for", "", "set: how long the override holds, e.g. 2h (instead of --until)")
	asJSON := fs.Bool("json", false, "list: print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return parseErr(err)
	}
	usage := func(msg string) int {
		fmt.Fprintf(e.stderr, "scheduler override: %s\nUsage: scheduler %s\n", msg, overrideUsage)
		return exitUsage
	}
	if len(pos) == 0 {
		return usage("say set, list or clear")
	}
	verb := pos[0]
	var req daemon.OverrideRequest
	switch verb {
	case "set", "clear":
		if len(pos) != 2 {
			return usage(verb + " takes one WINDOW")
		}
		req.Window, req.Target = pos[1], *target
	case "list":
		if len(pos) != 1 {
			return usage("list takes no arguments")
		}
	default:
		return usage(fmt.Sprintf("unknown subcommand %q", verb))
	}
	if verb == "set" {
		if *stateFlag != "on" && *stateFlag != "off" {
			return usage("set needs --state on or --state off")
		}
		req.State = *stateFlag
		switch {
		case (*until == "") == (*dur == ""):
			return usage("set needs exactly one of --until RFC3339 and --for DURATION")
		case *until != "":
			t, err := time.Parse(time.RFC3339, *until)
			if err != nil {
				return usage(fmt.Sprintf("--until %q: want RFC3339 such as 2026-06-01T22:00:00+02:00", *until))
			}
			req.Until = t
		default:
			if d, err := time.ParseDuration(*dur); err != nil || d <= 0 {
				return usage(fmt.Sprintf("--for %q: want a positive duration such as 2h or 90m", *dur))
			}
			req.For = *dur
		}
	}
	dir, err := schedule.StateDir(*cfg)
	if err != nil {
		fmt.Fprintln(e.stderr, "scheduler override:", err)
		return exitFailed
	}
	c, err := control.Dial(dir)
	if err != nil {
		fmt.Fprintln(e.stderr, "scheduler override:", err)
		return exitFailed
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	var out daemon.OverrideList
	switch verb {
	case "set":
		err = c.Post(ctx, "/v1/overrides", req, &out)
	case "clear":
		err = c.Delete(ctx, "/v1/overrides", req, &out)
	default:
		err = c.Get(ctx, "/v1/overrides", &out)
	}
	if err != nil {
		var ce *control.Error
		if errors.As(err, &ce) {
			fmt.Fprintln(e.stderr, "scheduler override:", ce.Message)
		} else {
			fmt.Fprintln(e.stderr, "scheduler override:", err)
		}
		return exitFailed
	}
	if out.Message != "" {
		fmt.Fprintln(e.stdout, out.Message)
	}
	if verb == "list" {
		if *asJSON {
			b, _ := json.MarshalIndent(out.Overrides, "", "  ")
			fmt.Fprintln(e.stdout, string(b))
			return exitOK
		}
		if len(out.Overrides) == 0 {
			fmt.Fprintln(e.stdout, "no overrides")
		}
		for _, o := range out.Overrides {
			who := "every target"
			if o.Target != "" {
				who = o.Target
			}
			fmt.Fprintf(e.stdout, "%-24s %-40s %-3s until %s (set %s)\n", o.Window, who, o.State,
				o.Until.Local().Format(time.RFC3339), o.From.Local().Format(time.RFC3339))
		}
	}
	return exitOK
}
