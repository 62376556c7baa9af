package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cloudcron/scheduler/internal/control"
	"github.com/cloudcron/scheduler/internal/observe"
	"github.com/cloudcron/scheduler/internal/schedule"
)

// cmdStatus prints what the running daemon is doing, asked over its
// control socket in state.dir: exit 0, or 1 when no daemon answers.
func (e env) cmdStatus(args []string) int {
	fs, cfg, _ := e.flags("status", "status --config PATH [--json]")
	asJSON := fs.Bool("json", false, "print the status as JSON (the body of /api/v1/status)")
	if _, err := parse(fs, args); err != nil {
		return parseErr(err)
	}
	dir, err := schedule.StateDir(*cfg)
	if err != nil {
		fmt.Fprintln(e.stderr, "scheduler status:", err)
		return exitFailed
	}
	c, err := control.Dial(dir)
	if err != nil {
		fmt.Fprintln(e.stderr, "scheduler status:", err)
		return exitFailed
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	var st observe.Status
	if err := c.Get(ctx, "/v1/status", &st); err != nil {
		var ce *control.Error
		if errors.As(err, &ce) {
			fmt.Fprintln(e.stderr, "scheduler status:", ce.Message)
		} else {
			fmt.Fprintln(e.stderr, "scheduler status:", err)
		}
		return exitFailed
	}
	if *asJSON {
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintln(e.stdout, string(b))
		return exitOK
	}
	observe.WriteText(e.stdout, st)
	return exitOK
}
