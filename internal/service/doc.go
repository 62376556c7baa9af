// Package service makes the scheduler a well-behaved systemd service.
//
// The notify helpers (Ready, Reloading, Stopping, Status) and the Watchdog
// runner speak the sd_notify protocol through go-systemd's daemon package.
// Each is a no-op that returns nil when NOTIFY_SOCKET is unset, so the same
// binary runs unchanged in a terminal, in a container or under systemd.
//
// LogWriter prefixes each log line with its syslog priority ("<3>" for
// errors, as sd-daemon.h defines) when stderr is connected to the journal,
// so `journalctl -p err -u scheduler` shows failures only.
package service
