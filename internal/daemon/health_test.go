package daemon

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// healthConfig is a schedule with one sandbox job per name that never fires
// during a test.
func healthConfig(names ...string) string {
	s := `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
accounts:
  sandbox: {vendor: sandbox}
jobs:
`
	for _, n := range names {
		s += "  - {name: " + n + `, schedule: "0 0 1 1 *", account: sandbox, action: cdss.cmak.restart, targets: ["1484848"]}` + "\n"
	}
	return s
}

func writeConfig(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func startTest(t *testing.T, opts Options) *Daemon {
	t.Helper()
	opts.Log = zerolog.Nop()
	opts.Grace = time.Second
	d, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Shutdown() })
	return d
}

// eventually polls cond every millisecond for up to five seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHealthFollowsTheEngineLoop(t *testing.T) {
	old := heartbeatEvery
	heartbeatEvery = 10 * time.Millisecond
	t.Cleanup(func() { heartbeatEvery = old })

	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, healthConfig("cmak"))
	d := startTest(t, Options{ConfigPath: path})
	if !d.Health() {
		t.Fatal("Health() = false right after Start")
	}
	d.hbMu.Lock()
	first := d.hbLast
	d.hbMu.Unlock()
	eventually(t, "the engine fires a heartbeat", func() bool {
		d.hbMu.Lock()
		defer d.hbMu.Unlock()
		return d.hbLast.After(first)
	})
	if st := d.Status(); st.Jobs != 1 || st.NextJob != "cmak" {
		t.Fatalf("Status() = %+v; the heartbeat must not count as a job", st)
	}

	// A daemon wedged on its own lock stops beating and turns unhealthy.
	d.mu.Lock()
	eventually(t, "Health() turns false while the daemon lock is held", func() bool { return !d.Health() })
	d.mu.Unlock()
	eventually(t, "Health() recovers once the lock is free", d.Health)

	// An engine that no longer runs its loop turns unhealthy as well.
	<-d.runner.Stop().Done()
	eventually(t, "Health() turns false after the engine stopped", func() bool { return !d.Health() })
	d.runner.Start() // for Shutdown in cleanup
}

func TestOnReloadPhases(t *testing.T) {
	type call struct {
		phase string
		jobs  int
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, healthConfig("a"))
	d := startTest(t, Options{ConfigPath: path, OnReload: func(phase string, st Status) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{phase, st.Jobs})
	}})

	tests := []struct {
		name   string
		config string
		want   []call
	}{
		{"accepted edit adds a job", healthConfig("a", "b"), []call{{"reloading", 1}, {"ready", 2}}},
		{"unchanged config", healthConfig("a", "b"), []call{{"reloading", 2}, {"ready", 2}}},
		{"bad edit keeps the old schedule", "version: 1\njobs: [", []call{{"reloading", 2}, {"rejected", 2}}},
		{"fixed again", healthConfig("b"), []call{{"reloading", 2}, {"ready", 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			calls = nil
			mu.Unlock()
			writeConfig(t, path, tc.config)
			d.Reload(true)
			mu.Lock()
			defer mu.Unlock()
			if len(calls) != len(tc.want) {
				t.Fatalf("OnReload calls = %v; want %v", calls, tc.want)
			}
			for i := range calls {
				if calls[i] != tc.want[i] {
					t.Fatalf("OnReload calls = %v; want %v", calls, tc.want)
				}
			}
		})
	}
}

func TestStartedGetsTheRunningDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, healthConfig("a", "b"))
	var order []string
	var got *Daemon
	d := startTest(t, Options{ConfigPath: path,
		Ready: func(st Status) { order = append(order, "ready") },
		Started: func(d *Daemon) {
			order = append(order, "started")
			got = d
			if st := d.Status(); st.Jobs != 2 || !d.Health() {
				t.Errorf("in Started: Status() = %+v, Health() = %v", st, d.Health())
			}
		},
	})
	if got != d || len(order) != 2 || order[0] != "ready" || order[1] != "started" {
		t.Fatalf("hooks ran %v with %p; want [ready started] with %p", order, got, d)
	}
}
