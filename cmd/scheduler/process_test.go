package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds the scheduler once per test run and returns its path.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("process tests build and run the real binary")
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "scheduler-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "scheduler")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = err
			binPath = string(out)
		}
	})
	if binErr != nil {
		t.Fatalf("build: %v\n%s", binErr, binPath)
	}
	return binPath
}

// daemonProc is the real binary running `scheduler run`.
type daemonProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

func startDaemon(t *testing.T, config string) *daemonProc {
	t.Helper()
	p := &daemonProc{stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(binary(t), "run", "--config", config, "--log-level", "debug")
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
}

func countAttempts(path, job, outcome string) int {
	recs, err := audit.ReadAll(path)
	if err != nil {
		return 0
	}
	n := 0
	for _, r := range recs {
		if r.Event == audit.EventAttempt && r.Job == job && (outcome == "" || r.Outcome == outcome) {
			n++
		}
	}
	return n
}

const secondsConfig = `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
defaults:
  timeout: 2s
  retry: {initial_interval: 100ms, max_interval: 200ms, max_elapsed: 1s, max_attempts: 3}
accounts:
  sandbox: {vendor: sandbox}
jobs:
  - {name: every-second, schedule: "* * * * * *", account: sandbox, action: cdss.cmak.restart, targets: ["1484848"]}
`

// TestRunFiresAndStopsCleanlyOnSIGTERM runs the real daemon, lets a
// seconds-level job fire, measures the lag between the scheduled instant and
// the first attempt, then stops it with SIGTERM.
func TestRunFiresAndStopsCleanlyOnSIGTERM(t *testing.T) {
	cfg, auditPath := writeConfig(t, secondsConfig)
	p := startDaemon(t, cfg)
	waitFor(t, 15*time.Second, "three successful fires", func() bool {
		return countAttempts(auditPath, "every-second", audit.OutcomeSuccess) >= 3
	})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit 20s after SIGTERM\n%s", p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "stopped cleanly") {
		t.Errorf("no clean-stop line in the log:\n%s", p.stderr.String())
	}
	recs, err := audit.ReadAll(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Event != audit.EventAttempt {
			continue
		}
		if seen[r.RunID] {
			t.Errorf("run_id %s has two attempt records; the fire ran twice", r.RunID)
		}
		seen[r.RunID] = true
		if r.Scheduled.Nanosecond() != 0 {
			t.Errorf("scheduled %v is not on a whole second", r.Scheduled)
		}
		start := r.Time.Add(-time.Duration(r.DurationMS) * time.Millisecond)
		if lag := start.Sub(r.Scheduled); lag < 0 || lag > 500*time.Millisecond {
			t.Errorf("fire %s started %v after its scheduled instant; want < 500ms", r.RunID, lag)
		}
	}
}

// TestRunReloadsOnSIGHUPAndKeepsRunningOnBadEdit edits the schedule of a
// running daemon: a broken edit is rejected and audited while the old
// schedule keeps firing; a good edit takes effect.
func TestRunReloadsOnSIGHUPAndKeepsRunningOnBadEdit(t *testing.T) {
	cfg, auditPath := writeConfig(t, secondsConfig)
	p := startDaemon(t, cfg)
	waitFor(t, 15*time.Second, "a first fire", func() bool { return countAttempts(auditPath, "every-second", "") >= 1 })

	if err := os.WriteFile(cfg, []byte(strings.Replace(secondsConfig, "cdss.cmak.restart", "cdss.cmak.explode", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "a failed reload record", func() bool { return hasReload(auditPath, audit.OutcomeFailure) })
	before := countAttempts(auditPath, "every-second", "")
	waitFor(t, 10*time.Second, "the old schedule to keep firing", func() bool {
		return countAttempts(auditPath, "every-second", "") >= before+2
	})
	if !strings.Contains(p.stderr.String(), "reload rejected") || !strings.Contains(p.stderr.String(), "config.yaml:10:") {
		t.Errorf("log lacks the rejected reload with file:line:\n%s", p.stderr.String())
	}

	good := strings.Replace(secondsConfig, "every-second", "renamed", 1)
	if err := os.WriteFile(cfg, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the renamed job to fire", func() bool { return countAttempts(auditPath, "renamed", "") >= 1 })
	if !hasReload(auditPath, audit.OutcomeSuccess) {
		t.Error("no successful reload record")
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.done; err != nil {
		t.Fatalf("exit: %v", err)
	}
}

func hasReload(path, outcome string) bool {
	recs, _ := audit.ReadAll(path)
	for _, r := range recs {
		if r.Event == audit.EventReload && r.Outcome == outcome {
			return true
		}
	}
	return false
}
