package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/observe"
)

const statusConfig = `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
defaults:
  timeout: 2s
  retry: {initial_interval: 50ms, max_interval: 100ms, max_elapsed: 1s, max_attempts: 2}
accounts:
  sandbox:
    vendor: sandbox
    faults:
      - {target: doomed, action: dataforest.aiapp.kill, kind: reject}
jobs:
  - {name: fine, schedule: "* * * * * *", account: sandbox, action: cdss.cmak.restart, targets: ["1484848"]}
  - {name: broken, schedule: "* * * * * *", account: sandbox, action: dataforest.aiapp.kill, targets: [doomed]}
  - {name: yearly, schedule: "0 9 1 1 *", timezone: Asia/Seoul, account: sandbox, action: cdss.cmak.restart, targets: ["2000001"]}
`

// startInProcess runs `scheduler run` in-process until the test ends or
// stop is called; stop returns its exit code.
func startInProcess(t *testing.T, cfg string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, []string{"run", "--config", cfg, "--log-level", "warn"}, &out, &out) }()
	var code *int
	stop = func() int {
		if code == nil {
			cancel()
			c := <-done
			code = &c
		}
		return *code
	}
	t.Cleanup(func() { stop() })
	return stop
}

func statusJSON(t *testing.T, cfg string) (observe.Status, bool) {
	t.Helper()
	code, stdout, _ := runCLI(t, "status", "--config", cfg, "--json")
	if code != exitOK {
		return observe.Status{}, false
	}
	var st observe.Status
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("status --json printed no status: %v\n%s", err, stdout)
	}
	return st, true
}

func findJob(st observe.Status, name string) *observe.Job {
	for i := range st.Jobs {
		if st.Jobs[i].Name == name {
			return &st.Jobs[i]
		}
	}
	return nil
}

// TestStatusFromRunningDaemon asks a running daemon for its status over
// the control socket: the failing job shows its failure and error, the
// good one its last success, the yearly one its next fire in its zone;
// once the daemon stops, the socket is gone and status exits 1 saying so.
func TestStatusFromRunningDaemon(t *testing.T) {
	cfg, _ := writeConfig(t, statusConfig)
	sock := filepath.Join(filepath.Dir(cfg), "state", "control.sock")

	code, _, stderr := runCLI(t, "status", "--config", cfg)
	if code != exitFailed || !strings.Contains(stderr, "no running daemon: "+sock+" not found") {
		t.Fatalf("status with no daemon: exit %d, stderr %q; want 1 and the socket path", code, stderr)
	}

	stop := startInProcess(t, cfg)
	var st observe.Status
	waitFor(t, 15*time.Second, "status to show a failed and a successful fire", func() bool {
		var ok bool
		st, ok = statusJSON(t, cfg)
		if !ok {
			return false
		}
		b, f := findJob(st, "broken"), findJob(st, "fine")
		return b != nil && b.Last != nil && b.Last.Outcome == "failure" && f != nil && !f.LastSuccess.IsZero()
	})
	if !st.Ready || st.Version == "" || st.Started.IsZero() {
		t.Errorf("status header = ready %v, version %q, started %v; want ready, a version and a start time", st.Ready, st.Version, st.Started)
	}
	b := findJob(st, "broken")
	if b.Last.Error == "" || len(b.Last.Targets) != 1 || b.Last.Targets[0].Target != "doomed" || !b.LastSuccess.IsZero() {
		t.Errorf("broken job = %+v; want a failure with its error on target doomed and no success", *b.Last)
	}
	y := findJob(st, "yearly")
	if y == nil || y.Timezone != "Asia/Seoul" || y.NextFire.IsZero() || y.Last != nil {
		t.Errorf("yearly job = %+v; want a next fire, its zone and no run", y)
	} else if loc, _ := time.LoadLocation("Asia/Seoul"); y.NextFire.In(loc).Hour() != 9 {
		t.Errorf("yearly next fire %v is not 09:00 in Seoul", y.NextFire)
	}
	if len(st.RecentFailures) == 0 || st.RecentFailures[0].Job != "broken" {
		t.Errorf("recent failures = %+v; want the broken job's failures", st.RecentFailures)
	}

	code, stdout, stderr := runCLI(t, "status", "--config", cfg)
	if code != exitOK {
		t.Fatalf("status: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"ready", "JOBS (3)", "broken", "failure", "yearly", "RECENT FAILURES"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status text lacks %q:\n%s", want, stdout)
		}
	}

	if c := stop(); c != exitOK {
		t.Fatalf("run exit = %d; want 0", c)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket left after a clean stop: %v", err)
	}
	code, _, stderr = runCLI(t, "status", "--config", cfg)
	if code != exitFailed || !strings.Contains(stderr, "no running daemon") || !strings.Contains(stderr, "scheduler run") {
		t.Errorf("status after stop: exit %d, stderr %q; want 1 and how to start it", code, stderr)
	}
}
