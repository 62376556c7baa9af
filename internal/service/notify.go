package service

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notify sends state to the service manager. It returns nil when
// NOTIFY_SOCKET is unset.
func notify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %s: %w", firstLine(state), err)
	}
	return nil
}

// Ready tells the service manager that startup (or a reload) is finished,
// with status as the one-line STATUS= shown by `systemctl status`. An empty
// status sends READY=1 alone.
func Ready(status string) error {
	return notify(daemon.SdNotifyReady + statusLine(status))
}

// Reloading tells the service manager that the configuration is being
// re-read. Call Ready when the reload is done, whether or not the new
// configuration was accepted. The message carries MONOTONIC_USEC, which
// systemd 253 and later require for Type=notify-reload and older versions
// ignore.
func Reloading() error {
	return notify(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
}

// Stopping tells the service manager that shutdown has begun.
func Stopping() error {
	return notify(daemon.SdNotifyStopping + statusLine("stopping: waiting for in-flight calls"))
}

// Status updates the one-line STATUS= shown by `systemctl status`.
func Status(line string) error {
	return notify(strings.TrimPrefix(statusLine(line), "\n"))
}

// statusLine returns "\nSTATUS=line" with line folded onto one line, or ""
// for an empty line.
func statusLine(line string) string {
	line = strings.Join(strings.Fields(line), " ")
	if line == "" {
		return ""
	}
	return "\nSTATUS=" + line
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// WatchdogInterval returns how often Watchdog pings: half of WATCHDOG_USEC,
// or 0 when the watchdog is not enabled for this process (WATCHDOG_USEC
// unset, or WATCHDOG_PID names another process) or NOTIFY_SOCKET is unset.
func WatchdogInterval() (time.Duration, error) {
	if !notifySocketSet() {
		return 0, nil
	}
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0, fmt.Errorf("systemd watchdog: %w", err)
	}
	return d / 2, nil
}

// Watchdog sends WATCHDOG=1 at half of the interval systemd set with
// WatchdogSec= for as long as ctx is live, but only when healthy returns
// true: a wedged process stops pinging and systemd restarts it. It pings
// once right away if healthy, and returns nil when ctx is done or at once
// when the watchdog is not enabled. A ping that cannot be sent is not
// fatal; the next tick tries again, and the last send error is returned
// when ctx ends.
func Watchdog(ctx context.Context, healthy func() bool) error {
	every, err := WatchdogInterval()
	if err != nil || every <= 0 {
		return err
	}
	var last error
	ping := func() {
		if healthy() {
			if err := notify(daemon.SdNotifyWatchdog); err != nil {
				last = err
			}
		}
	}
	ping()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return last
		case <-t.C:
			ping()
		}
	}
}

func notifySocketSet() bool { return os.Getenv("NOTIFY_SOCKET") != "" }
