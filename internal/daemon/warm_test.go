package daemon

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/vendors/emulator"
)

// TestBurstGoesOutOnConnectionsOpenedAhead: a job with 12 targets, due in
// a second or two: its account opens the 12 connections the calls need
// before the instant (the engine prepares each fire half a second ahead),
// and every call, the verifying status reads included, goes out on them:
// the emulated cloud accepts no connection at or after the instant.
func TestBurstGoesOutOnConnectionsOpenedAhead(t *testing.T) {
	cloud := emulator.New(emulator.Options{TransitionDelay: -1})
	if err := cloud.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close() })
	creds := cloud.Credentials()
	at := time.Now().UTC().Truncate(time.Second).Add(2 * time.Second)
	targets := make([]string, 12)
	for i := range targets {
		targets[i] = fmt.Sprintf("app-%02d", i)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	writeConfig(t, path, fmt.Sprintf(`version: 1
timezone: UTC
audit: {path: audit.jsonl}
state: {dir: state}
accounts:
  n:
    vendor: ncp
    access_key: {env: NCP_AK}
    secret_key: {env: NCP_SK}
    concurrency: 16
    endpoints: {dataforest: %q, cdss: %q}
jobs:
  - {name: burst, schedule: "%d %d %d * * *", account: n, action: dataforest.app.start, verify: true, targets: [%s]}
`, cloud.URL(), cloud.URL(), at.Second(), at.Minute(), at.Hour(), strings.Join(targets, ", ")))
	d, err := Start(Options{ConfigPath: path, Resolver: credsResolver(creds), Log: zerolog.Nop(), Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = d.Shutdown()
		}
	})

	started := map[string]time.Time{}
	deadline := time.Now().Add(30 * time.Second)
	for len(started) < len(targets) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d targets started by %v", len(started), len(targets), at)
		}
		time.Sleep(20 * time.Millisecond)
		for _, q := range cloud.Requests() {
			if q.Action == "dataforest.app.start" {
				started[q.Target] = q.Time
			}
		}
	}
	for len(d.exec.Running()) > 0 { // the verifying reads
		if time.Now().After(deadline) {
			t.Fatalf("still running: %v", d.exec.Running())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopped = true
	if err := d.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for target, when := range started {
		if when.Before(at) {
			t.Errorf("%s started at %v, before its instant %v", target, when, at)
		}
	}
	accepted := cloud.Accepted()
	if len(accepted) != len(targets) {
		t.Errorf("the emulated cloud accepted %d connections; want %d, one per call in flight", len(accepted), len(targets))
	}
	for i, a := range accepted {
		if !a.Before(at) {
			t.Errorf("connection %d was accepted %v after the instant; want all opened before it", i+1, a.Sub(at))
		}
	}
	if reads := len(cloud.Requests()) - len(targets); reads == 0 {
		t.Error("no status read after the starts: the job's verify did not run")
	}
}
