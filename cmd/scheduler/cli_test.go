package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/vendors"
)

var update = flag.Bool("update", false, "rewrite golden files")

// runCLI runs the command line in-process and returns exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := run(ctx, nil, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of loggers,
// as an *os.File is.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeConfig writes a schedule into a fresh folder; audit and state live beside it.
func writeConfig(t *testing.T, body string) (path, auditPath string) {
	t.Helper()
	dir := t.TempDir()
	path = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, filepath.Join(dir, "audit.jsonl")
}

func readAudit(t *testing.T, path string) []audit.Record {
	t.Helper()
	recs, err := audit.ReadAll(path)
	if err != nil {
		t.Fatalf("read audit log: %v", err)
	}
	return recs
}

// attempts returns the attempt records of one job, in order.
func attempts(recs []audit.Record, job string) []audit.Record {
	var out []audit.Record
	for _, r := range recs {
		if r.Job == job && r.Event == audit.EventAttempt {
			out = append(out, r)
		}
	}
	return out
}

// catalogueConfig has one sandbox job per catalogue action.
func catalogueConfig() string {
	var b strings.Builder
	b.WriteString(`version: 1
audit: {path: audit.jsonl}
state: {dir: state}
defaults:
  timeout: 5s
  retry: {initial_interval: 50ms, max_interval: 200ms, max_elapsed: 10s, max_attempts: 4}
accounts:
  sandbox:
    vendor: sandbox
    faults:
      - {target: "9000001", action: cdss.cmak.restart, kind: unavailable, times: 2}
      - {target: throttled, action: modelarts.notebook.stop, kind: throttle, times: 1, retry_after: 1s}
      - {target: doomed, action: dataforest.aiapp.kill, kind: reject}
jobs:
`)
	names := make([]string, 0, len(vendors.Catalogue))
	for a := range vendors.Catalogue {
		names = append(names, a)
	}
	sort.Strings(names)
	for _, a := range names {
		targets := `["7kHeVWhiRsxdRl0nXz04ri", "cMmEw7HCjVQdcHh3JVOptL"]`
		switch {
		case strings.HasPrefix(a, "cdss."):
			targets = `["1484848", "2000001"]` // serviceGroupInstanceNo: numeric
		case strings.HasPrefix(a, "scnet."):
			targets = `["1821067171420946434", "1821067171420946435"]`
		case strings.HasPrefix(a, "modelarts."):
			targets = `[6fa459ea-ee8a-3ca4-894e-db77e160355e, 0a1b2c3d-0000-4000-8000-000000000001]`
		}
		fmt.Fprintf(&b, "  - {name: %q, schedule: \"0 9 * * *\", account: sandbox, action: %s, targets: %s}\n", "job-"+a, a, targets)
	}
	b.WriteString(`  - {name: retried, schedule: "0 9 * * *", account: sandbox, action: cdss.cmak.restart, targets: ["9000001"]}
  - {name: throttled, schedule: "0 9 * * *", account: sandbox, action: modelarts.notebook.stop, targets: [throttled]}
  - {name: refused, schedule: "0 9 * * *", account: sandbox, action: dataforest.aiapp.kill, targets: [doomed]}
`)
	return b.String()
}

func TestTriggerEveryCatalogueActionSucceeds(t *testing.T) {
	path, auditPath := writeConfig(t, catalogueConfig())
	for action := range vendors.Catalogue {
		job := "job-" + action
		code, stdout, stderr := runCLI(t, "trigger", "--config", path, job)
		if code != exitOK {
			t.Fatalf("trigger %s: exit %d\nstdout:\n%s\nstderr:\n%s", job, code, stdout, stderr)
		}
		recs := attempts(readAudit(t, auditPath), job)
		if len(recs) != 2 {
			t.Fatalf("trigger %s: %d attempt records; want 2 (one per target): %+v", job, len(recs), recs)
		}
		for _, r := range recs {
			if r.Outcome != audit.OutcomeSuccess || r.Attempt != 1 || r.Action != action || r.Account != "sandbox" {
				t.Errorf("trigger %s: record %+v; want outcome success, attempt 1, action %s", job, r, action)
			}
			// A stop on a notebook the sandbox created stopped is answered
			// "already stopped" (ModelArts.6307, HTTP 400): a success.
			already := strings.Contains(r.Detail, "already")
			if (r.HTTPStatus < 200 || r.HTTPStatus > 299) && !already {
				t.Errorf("trigger %s: http_status %d, detail %q; want 2xx or already in target state", job, r.HTTPStatus, r.Detail)
			}
			if !strings.HasPrefix(r.RunID, job+"@") {
				t.Errorf("trigger %s: run_id %q", job, r.RunID)
			}
		}
	}
}

func TestTriggerRetriesTransientFault(t *testing.T) {
	path, auditPath := writeConfig(t, catalogueConfig())
	code, stdout, stderr := runCLI(t, "trigger", "--config", path, "retried")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	recs := attempts(readAudit(t, auditPath), "retried")
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%d:%s:%d", r.Attempt, r.Outcome, r.HTTPStatus))
		if r.RunID != recs[0].RunID {
			t.Errorf("attempt %d has run_id %q; want %q shared by every attempt", r.Attempt, r.RunID, recs[0].RunID)
		}
	}
	want := []string{"1:retry:503", "2:retry:503", "3:success:200"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("attempts = %v; want %v", got, want)
	}
}

func TestTriggerHonoursRetryAfter(t *testing.T) {
	path, auditPath := writeConfig(t, catalogueConfig())
	code, stdout, stderr := runCLI(t, "trigger", "--config", path, "throttled")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	recs := attempts(readAudit(t, auditPath), "throttled")
	if len(recs) != 2 || recs[0].HTTPStatus != 429 || recs[1].Outcome != audit.OutcomeSuccess {
		t.Fatalf("records %+v; want a 429 retry then success", recs)
	}
	// The second attempt started no earlier than Retry-After (1s) after the first ended.
	firstEnd := recs[0].Time
	secondStart := recs[1].Time.Add(-time.Duration(recs[1].DurationMS) * time.Millisecond)
	if gap := secondStart.Sub(firstEnd); gap < 950*time.Millisecond {
		t.Fatalf("second attempt %v after the 429; want ≥ 1s (Retry-After)", gap)
	}
}

func TestTriggerPermanentFailureExitsNonZero(t *testing.T) {
	path, auditPath := writeConfig(t, catalogueConfig())
	code, stdout, stderr := runCLI(t, "trigger", "--config", path, "refused")
	if code == exitOK {
		t.Fatalf("exit 0 after a permanent failure\n%s\n%s", stdout, stderr)
	}
	if !strings.Contains(stderr, "refused failed on doomed") {
		t.Errorf("stderr does not name the failed target:\n%s", stderr)
	}
	recs := attempts(readAudit(t, auditPath), "refused")
	if len(recs) != 1 || recs[0].Outcome != audit.OutcomeFailure || recs[0].HTTPStatus != 403 {
		t.Fatalf("records %+v; want exactly one attempt, failure, HTTP 403", recs)
	}
	if !strings.Contains(recs[0].Error, "not allowed or not exists") {
		t.Errorf("error %q does not carry the vendor message", recs[0].Error)
	}
}

func TestTriggerUnknownJob(t *testing.T) {
	path, _ := writeConfig(t, catalogueConfig())
	code, _, stderr := runCLI(t, "trigger", "--config", path, "nope")
	if code != exitFailed || !strings.Contains(stderr, `no job named "nope"`) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestValidate(t *testing.T) {
	good, _ := writeConfig(t, catalogueConfig())
	if code, stdout, stderr := runCLI(t, "validate", "--config", good); code != exitOK || !strings.Contains(stdout, "valid") {
		t.Fatalf("valid config: exit %d\n%s\n%s", code, stdout, stderr)
	}
	bad, _ := writeConfig(t, `version: 1
audit: {path: a.jsonl}
state: {dir: s}
accounts:
  sb: {vendor: sandbox}
jobs:
  - name: a
    schedule: "61 * * * *"
    account: sb
    action: modelarts.notebook.start
    targets: [x]
  - name: b
    schedul: "0 9 * * *"
    account: sb
    action: modelarts.notebook.explode
    targets: [x]
`)
	code, _, stderr := runCLI(t, "validate", "--config", bad)
	if code != exitFailed {
		t.Fatalf("invalid config: exit %d; want %d", code, exitFailed)
	}
	for _, want := range []string{
		bad + ":8:", "jobs[0].schedule",
		bad + ":13:", "schedul", "did you mean",
		bad + ":15:", "jobs[1].action",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("validate output lacks %q:\n%s", want, stderr)
		}
	}
}

func TestNextGoldenAcrossDST(t *testing.T) {
	path, _ := writeConfig(t, `version: 1
timezone: Europe/Berlin
audit: {path: a.jsonl}
state: {dir: s}
accounts:
  sb: {vendor: sandbox}
jobs:
  - {name: berlin-0230, schedule: "30 2 * * *", account: sb, action: modelarts.notebook.start, targets: [x]}
  - {name: berlin-half-hourly, schedule: "*/30 * * * *", account: sb, action: modelarts.notebook.stop, targets: [x]}
  - {name: newyork-0130, schedule: "30 1 * * *", timezone: America/New_York, account: sb, action: scnet.notebook.start, targets: [y]}
  - {name: seoul-weekdays, schedule: "0 9 * * MON-FRI", timezone: Asia/Seoul, account: sb, action: scnet.notebook.stop, targets: [y]}
`)
	for _, tc := range []struct{ name, from string }{
		{"spring", "2026-03-28T22:00:00Z"},
		{"fall", "2026-10-24T22:00:00Z"},
		{"newyork-fall", "2026-11-01T04:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "next", "--config", path, "--from", tc.from, "--count", "4", "--json")
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			golden := filepath.Join("testdata", "next-"+tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cmd/scheduler -update)", err)
			}
			if stdout != string(want) {
				t.Fatalf("next --json from %s:\n%s\nwant:\n%s", tc.from, stdout, want)
			}
			for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
				var v struct{ Job, Time string }
				if err := json.Unmarshal([]byte(line), &v); err != nil || v.Job == "" {
					t.Fatalf("line %q is not {job,time}: %v", line, err)
				}
				if _, err := time.Parse(time.RFC3339, v.Time); err != nil {
					t.Fatalf("time %q is not RFC3339: %v", v.Time, err)
				}
			}
		})
	}
}

// TestNextHandChecked pins instants worked out by hand (and with Python's
// zoneinfo) for both DST transitions, independent of the golden files.
func TestNextHandChecked(t *testing.T) {
	path, _ := writeConfig(t, `version: 1
timezone: Europe/Berlin
audit: {path: a.jsonl}
state: {dir: s}
accounts:
  sb: {vendor: sandbox}
jobs:
  - {name: fixed, schedule: "30 2 * * *", account: sb, action: modelarts.notebook.start, targets: [x]}
  - {name: hourly, schedule: "0 * * * *", account: sb, action: modelarts.notebook.stop, targets: [x]}
`)
	tests := []struct {
		job, from string
		count     int
		want      []string
	}{
		// Spring forward 2026-03-29 02:00 CET → 03:00 CEST: 02:30 does not exist, fires once right after the gap.
		{"fixed", "2026-03-28T12:00:00+01:00", 2, []string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"}},
		// Fall back 2026-10-25 03:00 CEST → 02:00 CET: 02:30 happens twice, fires once at the first.
		{"fixed", "2026-10-24T12:00:00+02:00", 2, []string{"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"}},
		// Interval: no 02:00 on the spring day; both 02:00s on the fall day.
		{"hourly", "2026-03-29T00:30:00+01:00", 3, []string{"2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"}},
		{"hourly", "2026-10-25T00:30:00+02:00", 4, []string{"2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"}},
	}
	for _, tc := range tests {
		code, stdout, stderr := runCLI(t, "next", "--config", path, "--job", tc.job, "--from", tc.from, "--count", fmt.Sprint(tc.count), "--json")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var v struct{ Time string }
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Fatal(err)
			}
			got = append(got, v.Time)
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("next --job %s --from %s = %v; want %v", tc.job, tc.from, got, tc.want)
		}
	}
}

func TestHelpForEveryCommand(t *testing.T) {
	for _, cmd := range []string{"run", "validate", "next", "trigger", "demo"} {
		code, _, stderr := runCLI(t, cmd, "--help")
		if code != exitOK || !strings.Contains(stderr, "Usage: scheduler "+cmd) {
			t.Errorf("%s --help: exit %d, output %q", cmd, code, stderr)
		}
	}
	if code, _, _ := runCLI(t, "bogus"); code != exitUsage {
		t.Errorf("unknown command: exit %d; want %d", code, exitUsage)
	}
}
