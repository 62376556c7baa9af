package service

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// statusEvery is how often Serve refreshes STATUS=, whose "next fire"
// goes stale as jobs fire.
var statusEvery = 30 * time.Second

// Notifier reports one daemon's life to the service manager. Give its
// Ready and Reload methods to the daemon's Ready and OnReload hooks, then
// call Serve. A failed notification is logged as a warning, once per kind
// of message. The zero value logs nowhere.
type Notifier struct {
	Log zerolog.Logger

	mu     sync.Mutex
	reject string          // why the last reload was rejected; "" after an accepted one
	warned map[string]bool // message kinds whose failure was logged
}

// Ready sends READY=1 with status as STATUS=. Call it once the schedule
// is registered.
func (n *Notifier) Ready(status string) {
	n.check("ready", Ready(status))
}

// Reload reports a phase of a reload: "reloading" sends RELOADING=1;
// "ready" sends READY=1 with status; "rejected" sends READY=1 (the old
// schedule keeps running) with a STATUS= that says so until the next
// accepted reload. It has the signature of the daemon's OnReload hook
// with the status already formatted.
func (n *Notifier) Reload(phase, status string) {
	switch phase {
	case "reloading":
		n.check("reloading", Reloading())
		return
	case "rejected":
		n.mu.Lock()
		n.reject = "last reload rejected at " + time.Now().Format(time.DateTime) + ", see journalctl -p err"
		n.mu.Unlock()
	default:
		n.mu.Lock()
		n.reject = ""
		n.mu.Unlock()
	}
	n.check("ready", Ready(n.line(status)))
}

// Status sends STATUS= now, outside Serve's periodic refresh (the audit
// log stopped writing, a cluster replica's role changed), keeping the
// note about a rejected reload.
func (n *Notifier) Status(status string) {
	n.check("status", Status(n.line(status)))
}

// line appends the last reload rejection, if any, to status.
func (n *Notifier) line(status string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.reject == "" {
		return status
	}
	return status + "; " + n.reject
}

func (n *Notifier) check(kind string, err error) {
	if err == nil {
		return
	}
	n.mu.Lock()
	first := !n.warned[kind]
	if n.warned == nil {
		n.warned = map[string]bool{}
	}
	n.warned[kind] = true
	n.mu.Unlock()
	if first {
		n.Log.Warn().Err(err).Msg("could not notify the service manager")
	}
}

// Serve reports a running daemon until ctx is done: the watchdog pings
// while healthy returns true, and STATUS= is refreshed from status every 30
// seconds (its "next fire" goes stale as jobs fire). When ctx is done it
// sends STOPPING=1 and returns. Call it once the daemon has started, in its
// own goroutine, with the context whose end stops the daemon.
func (n *Notifier) Serve(ctx context.Context, healthy func() bool, status func() string) {
	watchdog := make(chan error, 1)
	go func() { watchdog <- Watchdog(ctx, healthy) }()
	t := time.NewTicker(statusEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			n.check("stopping", Stopping())
			n.check("watchdog", <-watchdog)
			return
		case <-t.C:
			n.check("status", Status(n.line(status())))
		}
	}
}
