package service

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// listen binds a unixgram socket in a temporary directory, points
// NOTIFY_SOCKET at it and returns a channel of the datagrams it receives.
func listen(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("WATCHDOG_PID", "")
	msgs := make(chan string, 1024)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return msgs
}

func recv(t *testing.T, msgs <-chan string) string {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no datagram on NOTIFY_SOCKET")
		return ""
	}
}

func TestNotifyMessages(t *testing.T) {
	tests := []struct {
		name string
		send func() error
		want *regexp.Regexp
	}{
		{"ready", func() error { return Ready("3 jobs; next a at 2026-03-27T09:00:00Z") },
			regexp.MustCompile(`^READY=1\nSTATUS=3 jobs; next a at 2026-03-27T09:00:00Z$`)},
		{"ready without status", func() error { return Ready("") }, regexp.MustCompile(`^READY=1$`)},
		{"ready folds a multi-line status", func() error { return Ready("reload rejected:\n  bad cron") },
			regexp.MustCompile(`^READY=1\nSTATUS=reload rejected: bad cron$`)},
		{"reloading", Reloading, regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*\n$`)},
		{"stopping", Stopping, regexp.MustCompile(`^STOPPING=1\nSTATUS=stopping`)},
		{"status", func() error { return Status("2 jobs; last failure: none") },
			regexp.MustCompile(`^STATUS=2 jobs; last failure: none$`)},
	}
	msgs := listen(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.send(); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, msgs); !tc.want.MatchString(got) {
				t.Fatalf("datagram %q does not match %s", got, tc.want)
			}
		})
	}
}

func TestReloadingMonotonicIsNow(t *testing.T) {
	msgs := listen(t)
	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	first := recv(t, msgs)
	time.Sleep(2 * time.Millisecond)
	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	second := recv(t, msgs)
	usec := func(s string) string {
		m := regexp.MustCompile(`MONOTONIC_USEC=(\d+)`).FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("no MONOTONIC_USEC in %q", s)
		}
		return m[1]
	}
	a, b := usec(first), usec(second)
	if len(a) > len(b) || (len(a) == len(b) && a >= b) {
		t.Fatalf("MONOTONIC_USEC did not advance: %s then %s", a, b)
	}
}

func TestNoSocketIsNoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "1000")
	for name, f := range map[string]func() error{
		"ready":     func() error { return Ready("x") },
		"reloading": Reloading,
		"stopping":  Stopping,
		"status":    func() error { return Status("x") },
	} {
		if err := f(); err != nil {
			t.Errorf("%s without NOTIFY_SOCKET: %v", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := Watchdog(ctx, func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("Watchdog without NOTIFY_SOCKET should return at once")
	}
}

func TestNotifyErrorWhenSocketGone(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing.sock"))
	err := Ready("x")
	if err == nil || !strings.Contains(err.Error(), "sd_notify READY=1") {
		t.Fatalf("Ready to a missing socket: %v", err)
	}
}

func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	msgs := listen(t)
	t.Setenv("WATCHDOG_USEC", "20000") // 20ms: pings every 10ms
	// healthy answers from a script, one answer per tick: healthy three
	// times, wedged six, healthy again twice, then wedged. Every true
	// answer is one ping, a false answer none; the test counts the
	// datagrams, not the time between them.
	script := []bool{true, true, true, false, false, false, false, false, false, true, true}
	var mu sync.Mutex
	asked := 0
	scriptDone := make(chan struct{})
	healthy := func() bool {
		mu.Lock()
		defer mu.Unlock()
		asked++
		if asked == len(script)+1 {
			close(scriptDone)
		}
		return asked <= len(script) && script[asked-1]
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Watchdog(ctx, healthy) }()
	select {
	case <-scriptDone:
	case <-time.After(10 * time.Second):
		t.Fatal("Watchdog did not ask healthy once per tick")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watchdog did not return after cancel")
	}
	// Watchdog returned: every datagram it sent is queued on the socket
	// before this one.
	const sentinel = "TEST=end"
	c, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(sentinel)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	pings := 0
	for m := recv(t, msgs); m != sentinel; m = recv(t, msgs) {
		if m != "WATCHDOG=1" {
			t.Fatalf("datagram %q; want WATCHDOG=1", m)
		}
		pings++
	}
	want := 0
	for _, h := range script {
		if h {
			want++
		}
	}
	if pings != want {
		t.Errorf("%d pings for %d healthy answers out of %d; want one per healthy answer, none while unhealthy", pings, want, len(script))
	}
}

func TestWatchdogInterval(t *testing.T) {
	tests := []struct {
		name, socket, usec, pid string
		want                    time.Duration
		wantErr                 bool
	}{
		{"half of WatchdogSec", "/run/x", "30000000", "", 15 * time.Second, false},
		{"our pid", "/run/x", "2000000", "self", time.Second, false},
		{"another pid", "/run/x", "2000000", "1", 0, false},
		{"no watchdog", "/run/x", "", "", 0, false},
		{"no socket", "", "2000000", "", 0, false},
		{"garbage", "/run/x", "soon", "", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pid := tc.pid
			if pid == "self" {
				pid = strconv.Itoa(os.Getpid())
			}
			t.Setenv("NOTIFY_SOCKET", tc.socket)
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", pid)
			got, err := WatchdogInterval()
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("WatchdogInterval() = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
