package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/state/etcdstore/etcdtest"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
)

// TestClusterOutcomeInEtcd: a replica dies (SIGKILL) right after the
// first target of a two-target start recorded its outcome, before the
// fire is done. The survivor, which cannot read the dead replica's audit
// log, finds that outcome in etcd: it re-issues the start on the other
// target only. From the emulated cloud's request log: the first target was
// started exactly once (before outcomes reached etcd it was re-issued too).
func TestClusterOutcomeInEtcd(t *testing.T) {
	bin := binary(t)
	srv := etcdtest.Start(t)
	cloud := emulator.New(emulator.Options{TransitionDelay: -1})
	// Each call takes half a second: the second target's call is still in
	// flight when n1 kills itself after recording the first one's outcome.
	cloud.Inject(emulator.Fault{Kind: emulator.FaultDelay, Delay: 500 * time.Millisecond})
	if err := cloud.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close() })
	creds := cloud.Credentials()
	targets := []string{"6fa459ea-ee8a-3ca4-894e-db77e160355e", "0b3e5c1d-2f4a-4b6c-8d9e-0a1b2c3d4e5f"}
	// One fire, a few seconds from now; the next a minute later. The
	// account makes one call at a time, so the second target's call waits
	// for the first target's outcome.
	at := time.Now().Add(4 * time.Second).Truncate(time.Second)
	config := func(node string) string {
		return fmt.Sprintf(`version: 1
timezone: UTC
audit: {path: audit.jsonl}
state: {dir: state}
defaults:
  timeout: 2s
  catchup: 30s
  retry: {initial_interval: 50ms, max_interval: 100ms, max_elapsed: 1s, max_attempts: 3}
cluster:
  node: %s
  etcd: {endpoints: [%s], prefix: /outcome-test/, lease_ttl: 2s}
accounts:
  otc:
    vendor: otc
    region: eu-de
    project_id: %s
    access_key: {env: KILL_OTC_AK}
    secret_key: {env: KILL_OTC_SK}
    endpoints: {modelarts: %s, iam: %[4]s}
    concurrency: 1
jobs:
  - {name: nb-on, schedule: "%d * * * * *", account: otc, action: modelarts.notebook.start, targets: [%s, %s]}
`, node, srv.Endpoint(), creds.OTCProjectID, cloud.URL(), at.Second(), targets[0], targets[1])
	}
	env := append(os.Environ(), "KILL_OTC_AK="+creds.OTCAccessKey, "KILL_OTC_SK="+creds.OTCSecretKey)
	run := func(node string, extra ...string) (*daemonProc, string) {
		cfg, auditPath := writeConfig(t, config(node))
		p := &daemonProc{stderr: &syncBuffer{}, done: make(chan error, 1)}
		p.cmd = exec.Command(bin, "run", "--config", cfg)
		p.cmd.Env = append(env, extra...)
		p.cmd.Stderr, p.cmd.Stdout = p.stderr, p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
			if t.Failed() {
				t.Logf("%s:\n%s", node, p.stderr.String())
			}
		})
		return p, auditPath
	}

	// n1 runs alone, so it claims the fire, and kills itself once the
	// first target's outcome is in its audit log and in etcd.
	n1, log1 := run("n1", "SCHEDULER_TEST_CRASH_AT=outcome-recorded")
	select {
	case <-n1.done:
	case <-time.After(time.Until(at) + 30*time.Second):
		t.Fatalf("n1 did not reach its crash point after the fire at %s", at.Format(time.TimeOnly))
	}
	recs1, _ := audit.ReadAll(log1)
	var first string
	for _, r := range recs1 {
		if r.Event == audit.EventAttempt && r.Outcome == audit.OutcomeSuccess {
			first = r.Target
		}
	}
	if first == "" {
		t.Fatalf("n1 died without a successful attempt in its log: %+v", recs1)
	}
	second := targets[0]
	if first == second {
		second = targets[1]
	}
	for _, r := range recs1 {
		if r.Target == second && r.Event == audit.EventAttempt && r.Outcome != audit.OutcomeRetry {
			t.Fatalf("n1 recorded both outcomes before it died; the test needs the second call in flight: %+v", recs1)
		}
	}

	// n2 takes the fire over when n1's lease expires.
	n2, log2 := run("n2")
	t.Cleanup(func() {
		_ = n2.cmd.Process.Signal(os.Interrupt)
	})
	finished := func(target string) bool {
		recs, _ := audit.ReadAll(log2)
		for _, r := range recs {
			if r.Target == target && (r.Event == audit.EventAttempt && r.Outcome != audit.OutcomeRetry || r.Event == audit.EventRecover) {
				return true
			}
		}
		return false
	}
	waitFor(t, 20*time.Second, "n2 to settle the second target of n1's fire", func() bool { return finished(second) })
	if !strings.Contains(n2.stderr.String(), "re-issuing it") {
		t.Errorf("n2 did not say it re-issues the interrupted start")
	}
	recs2, _ := audit.ReadAll(log2)
	for _, r := range recs2 {
		if r.Target == first {
			t.Errorf("n2 wrote a record about %s, whose outcome n1 had recorded: %+v", first, r)
		}
	}
	starts := map[string]int{}
	for _, q := range cloud.Requests() {
		if q.Action == "modelarts.notebook.start" {
			starts[q.Target]++
		}
	}
	if starts[first] != 1 {
		t.Errorf("%s was started %d times; want once: n1 recorded its outcome in etcd before it died", first, starts[first])
	}
	// The second call was in flight when n1 died: it may have reached the
	// cloud, and n2 re-issues it (the delivery rule).
	if starts[second] < 1 || starts[second] > 2 {
		t.Errorf("%s was started %d times; want once by n2's re-issue, plus at most once by n1's call in flight", second, starts[second])
	}
	if _, err := audit.Verify(filepath.Clean(log2)); err != nil {
		t.Errorf("n2's audit log does not verify: %v", err)
	}
}
