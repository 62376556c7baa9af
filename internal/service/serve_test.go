package service

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// fakeDaemon reloads by reporting the phases a real daemon reports to its
// OnReload hook.
type fakeDaemon struct {
	n       *Notifier
	healthy atomic.Bool
}

func (f *fakeDaemon) reload(accept bool) {
	f.n.Reload("reloading", "")
	if accept {
		f.n.Reload("ready", "2 jobs")
		return
	}
	f.n.Reload("rejected", "1 jobs")
}

// next returns the next datagram that is neither a watchdog ping nor a
// periodic STATUS= refresh.
func next(t *testing.T, msgs <-chan string) string {
	t.Helper()
	for {
		if m := recv(t, msgs); m != "WATCHDOG=1" && !strings.HasPrefix(m, "STATUS=") {
			return m
		}
	}
}

// nextStatus returns the next periodic STATUS= refresh.
func nextStatus(t *testing.T, msgs <-chan string) string {
	t.Helper()
	for {
		if m := recv(t, msgs); strings.HasPrefix(m, "STATUS=") {
			return m
		}
	}
}

func TestServe(t *testing.T) {
	msgs := listen(t)
	t.Setenv("WATCHDOG_USEC", "20000")
	old := statusEvery
	statusEvery = 50 * time.Millisecond
	t.Cleanup(func() { statusEvery = old })

	n := &Notifier{}
	d := &fakeDaemon{n: n}
	d.healthy.Store(true)
	n.Ready("1 jobs")
	if got := recv(t, msgs); got != "READY=1\nSTATUS=1 jobs" {
		t.Fatalf("first datagram %q", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Serve(ctx, d.healthy.Load, func() string { return "status now" }); close(done) }()

	if got := recv(t, msgs); got != "WATCHDOG=1" {
		t.Fatalf("got %q; want a watchdog ping first", got)
	}
	d.reload(false)
	if got := next(t, msgs); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("got %q; want RELOADING=1", got)
	}
	if got := next(t, msgs); !strings.HasPrefix(got, "READY=1\nSTATUS=1 jobs; last reload rejected at ") {
		t.Fatalf("got %q; want READY=1 with the rejection", got)
	}
	if got := nextStatus(t, msgs); !strings.HasPrefix(got, "STATUS=status now; last reload rejected") {
		t.Fatalf("got %q; want the refreshed status to keep the rejection", got)
	}
	d.reload(true)
	next(t, msgs) // RELOADING=1
	if got := next(t, msgs); got != "READY=1\nSTATUS=2 jobs" {
		t.Fatalf("got %q; want READY=1 after an accepted reload, rejection cleared", got)
	}
	if got := nextStatus(t, msgs); got != "STATUS=status now" {
		t.Fatalf("got %q; want the refreshed status", got)
	}

	cancel()
	if got := next(t, msgs); !strings.HasPrefix(got, "STOPPING=1") {
		t.Fatalf("got %q; want STOPPING=1", got)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestNotifierWarnsOncePerKind(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone.sock"))
	var buf bytes.Buffer
	n := &Notifier{Log: zerolog.New(&buf)}
	n.Ready("a")
	n.Ready("b")
	n.Reload("reloading", "")
	if got := strings.Count(buf.String(), "could not notify the service manager"); got != 2 {
		t.Fatalf("%d warnings; want one for ready and one for reloading:\n%s", got, buf.String())
	}
}
