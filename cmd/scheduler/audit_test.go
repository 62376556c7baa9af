package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
)

// runAudit runs the command line in-process.
func runAudit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), nil, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// sampleLog writes a small log into dir: two jobs, several outcomes, one
// record three days old.
func sampleLog(t *testing.T, path string) {
	t.Helper()
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	recs := []audit.Record{
		{Time: now.Add(-72 * time.Hour), Event: audit.EventAttempt, Job: "old-job", Target: "nb-0", Attempt: 1, Outcome: audit.OutcomeSuccess, HTTPStatus: 200},
		{Time: now.Add(-2 * time.Hour), Event: audit.EventRun, Job: "notebooks-off", Target: "nb-1"},
		{Time: now.Add(-2 * time.Hour), Event: audit.EventAttempt, Job: "notebooks-off", Target: "nb-1", Attempt: 1, Outcome: audit.OutcomeRetry,
			HTTPStatus: 503, VendorCode: "ModelArts.0001", Error: "otc: stop notebook nb-1: HTTP 503:\tservice\nunavailable " + strings.Repeat("x", 100)},
		{Time: now.Add(-2 * time.Hour), Event: audit.EventAttempt, Job: "notebooks-off", Target: "nb-1", Attempt: 2, Outcome: audit.OutcomeSuccess, HTTPStatus: 200},
		{Time: now.Add(-1 * time.Hour), Event: audit.EventAttempt, Job: "kafka-restart", Target: "1484848", Attempt: 1, Outcome: audit.OutcomeFailure, HTTPStatus: 403, VendorCode: "3000"},
		{Time: now.Add(-1 * time.Hour), Event: audit.EventReload, Detail: "jobs +1"},
	}
	for _, r := range recs {
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAuditList(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	sampleLog(t, path)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(`version: 1
audit: {path: audit.jsonl}
state: {dir: state}
accounts:
  sandbox: {vendor: sandbox}
jobs:
  - {name: j, schedule: "0 9 * * *", account: sandbox, action: modelarts.notebook.start, targets: [6fa459ea-ee8a-3ca4-894e-db77e160355e]}
`), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		args    []string
		targets []string // TARGET column of the rows, in order
	}{
		{"all", []string{"--path", path}, []string{"nb-0", "nb-1", "nb-1", "nb-1", "1484848", "-"}},
		{"from the config", []string{"--config", cfg}, []string{"nb-0", "nb-1", "nb-1", "nb-1", "1484848", "-"}},
		{"job", []string{"--path", path, "--job", "notebooks-off"}, []string{"nb-1", "nb-1", "nb-1"}},
		{"outcome", []string{"--path", path, "--outcome", "failure"}, []string{"1484848"}},
		{"since duration", []string{"--path", path, "--since", "24h"}, []string{"nb-1", "nb-1", "nb-1", "1484848", "-"}},
		{"since days", []string{"--path", path, "--since", "2d"}, []string{"nb-1", "nb-1", "nb-1", "1484848", "-"}},
		{"since rfc3339", []string{"--path", path, "--since", time.Now().Add(-90 * time.Minute).Format(time.RFC3339)}, []string{"1484848", "-"}},
		{"job and outcome", []string{"--job", "notebooks-off", "--outcome", "retry", "--path", path}, []string{"nb-1"}},
		{"no match", []string{"--path", path, "--job", "nope"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runAudit(t, append([]string{"audit"}, tc.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d; stderr %s", code, stderr)
			}
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			header := lines[0]
			for _, col := range []string{"TIME", "JOB", "EVENT", "TARGET", "ATTEMPT", "OUTCOME", "HTTP", "CODE", "ERROR"} {
				if !strings.Contains(header, col) {
					t.Errorf("header %q lacks %s", header, col)
				}
			}
			tcol := strings.Index(header, "TARGET")
			var got []string
			for _, row := range lines[1:] {
				if len(row) <= tcol || row[tcol-1] != ' ' {
					t.Fatalf("row %q is not aligned with the header %q", row, header)
				}
				got = append(got, strings.Fields(row[tcol:])[0])
			}
			if strings.Join(got, ",") != strings.Join(tc.targets, ",") {
				t.Errorf("targets = %v; want %v\n%s", got, tc.targets, out)
			}
		})
	}

	t.Run("error cell", func(t *testing.T) {
		_, out, _ := runAudit(t, "audit", "--path", path, "--outcome", "retry")
		row := strings.Split(out, "\n")[1]
		for _, want := range []string{"notebooks-off", "attempt", "nb-1", "retry", "503", "ModelArts.0001", "otc: stop notebook nb-1: HTTP 503: service unavailable xx", "…"} {
			if !strings.Contains(row, want) {
				t.Errorf("row %q lacks %q", row, want)
			}
		}
		if strings.Contains(row, strings.Repeat("x", 100)) {
			t.Errorf("row %q: error not truncated", row)
		}
	})
}

func TestAuditListJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sampleLog(t, path)
	code, out, stderr := runAudit(t, "audit", "--path", path, "--json", "--job", "notebooks-off")
	if code != exitOK {
		t.Fatalf("exit %d; stderr %s", code, stderr)
	}
	file, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("--json printed %d lines; want 3:\n%s", len(lines), out)
	}
	for _, l := range lines {
		var r audit.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Job != "notebooks-off" {
			t.Errorf("line %q: %v, job %q", l, err, r.Job)
		}
		// The lines are the log's own bytes, hash and all.
		if !bytes.Contains(file, []byte(l+"\n")) {
			t.Errorf("line %q is not a line of the log", l)
		}
	}
}

func TestAuditVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sampleLog(t, path)
	recs, _ := audit.ReadAll(path)

	code, out, stderr := runAudit(t, "audit", "verify", "--path", path)
	want := fmt.Sprintf("ok: 6 records in 1 file, seq 1..6, last hash %s\n", recs[5].Hash)
	if code != exitOK || out != want {
		t.Fatalf("verify = exit %d, %q (stderr %q); want 0, %q", code, out, stderr, want)
	}

	// Flip one byte of record 4's outcome.
	b, _ := os.ReadFile(path)
	lines := bytes.SplitAfter(b, []byte("\n"))
	off := len(lines[0]) + len(lines[1]) + len(lines[2])
	lines[3] = bytes.Replace(lines[3], []byte(`"success"`), []byte(`"successful"`), 1)
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runAudit(t, "audit", "verify", "--path", path)
	if code != exitFailed {
		t.Errorf("verify of an edited log: exit %d; want %d", code, exitFailed)
	}
	for _, w := range []string{"FAILED: record seq 4 was edited", path, "line 4", fmt.Sprintf("byte offset %d", off), "seq 4", "3 good records, seq 1..3"} {
		if !strings.Contains(out, w) {
			t.Errorf("verify output lacks %q:\n%s", w, out)
		}
	}

	// The listing still shows the records, the daemon would refuse the log.
	if code, _, _ := runAudit(t, "audit", "--path", path); code != exitOK {
		t.Errorf("audit list of an edited (still parseable) log: exit %d; want 0", code)
	}
}

func TestAuditDamagedLineListing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sampleLog(t, path)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-`) // a torn tail
	f.Close()
	code, out, stderr := runAudit(t, "audit", "--path", path)
	if code != exitFailed || !strings.Contains(stderr, "line 7") || !strings.Contains(stderr, "audit verify") {
		t.Errorf("exit %d, stderr %q; want 1 and the damaged line named", code, stderr)
	}
	if n := strings.Count(out, "\n"); n != 7 {
		t.Errorf("printed %d lines; want the header and 6 records", n)
	}
	code, out, _ = runAudit(t, "audit", "verify", "--path", path)
	if code != exitFailed || !strings.Contains(out, "last line") {
		t.Errorf("verify of a torn tail: exit %d, %q", code, out)
	}
}

func TestAuditVerifyRotated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.OpenWith(path, audit.Options{MaxBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if err := l.Append(audit.Record{Event: audit.EventAttempt, Job: "j", Target: fmt.Sprint(i), Error: strings.Repeat("e", 200)}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	files, _ := audit.Files(path)
	code, out, _ := runAudit(t, "audit", "verify", "--path", path)
	if code != exitOK || !strings.HasPrefix(out, fmt.Sprintf("ok: 12 records in %d files, seq 1..12", len(files))) || len(files) < 3 {
		t.Errorf("verify = %d %q; want ok over %d files", code, out, len(files))
	}
	if code, out, _ := runAudit(t, "audit", "--path", path, "--json"); code != exitOK || strings.Count(out, "\n") != 12 {
		t.Errorf("audit --json over rotated files: exit %d, %d lines; want 12", code, strings.Count(out, "\n"))
	}
	os.Remove(files[1])
	code, out, _ = runAudit(t, "audit", "verify", "--path", path)
	if code != exitFailed || !strings.Contains(out, files[1]+" missing") {
		t.Errorf("verify without %s: exit %d, %q", files[1], code, out)
	}
}

func TestAuditUsage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sampleLog(t, path)
	tests := []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"audit", "--help"}, exitOK, "Usage: scheduler audit"},
		{[]string{"audit", "verify", "--help"}, exitOK, "Usage: scheduler audit verify"},
		{[]string{"audit", "--path", path, "--since", "yesterday"}, exitUsage, "--since"},
		{[]string{"audit", "--path", path, "--outcome", "great"}, exitUsage, "--outcome"},
		{[]string{"audit", "--path", path, "--config", "x.yaml"}, exitUsage, "not both"},
		{[]string{"audit", "verify", "--path", path, "--config", "x.yaml"}, exitUsage, "not both"},
		{[]string{"audit", "--path", path, "verify"}, exitUsage, "unexpected argument"},
		{[]string{"audit", "--path", filepath.Join(t.TempDir(), "none.jsonl")}, exitFailed, "no audit log"},
		{[]string{"audit", "verify", "--path", filepath.Join(t.TempDir(), "none.jsonl")}, exitFailed, "no such file"},
		{[]string{"audit", "--config", filepath.Join(t.TempDir(), "none.yaml")}, exitFailed, "--path"},
	}
	for _, tc := range tests {
		code, _, stderr := runAudit(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.inStderr) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.inStderr)
		}
	}
}

// Records cut from the end of the log leave a valid chain; with --config,
// verify compares the log's end with the tail the run state recorded.
func TestAuditVerifyCatchesTruncatedTail(t *testing.T) {
	cfg, auditPath := writeConfig(t, secondsConfig)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, nil, []string{"run", "--config", cfg}, &stderr, &stderr) }()
	deadline := time.Now().Add(15 * time.Second)
	for countAttempts(auditPath, "every-second", audit.OutcomeSuccess) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no fires:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("run exit %d:\n%s", code, stderr.String())
	}
	if code, out, errOut := runCLI(t, "audit", "verify", "--config", cfg); code != exitOK {
		t.Fatalf("intact log: exit %d\n%s%s", code, out, errOut)
	}
	b, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	if err := os.WriteFile(auditPath, []byte(strings.Join(lines[:len(lines)-2], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, "audit", "verify", "--config", cfg)
	if code != exitFailed || !strings.Contains(out, "records were deleted from the end") {
		t.Fatalf("truncated log: exit %d, output %q; want exit 1 naming deleted records", code, out)
	}
}

// verify can read the live log while the daemon writes its last line (a
// reader can see part of a write): it reads an incomplete last line again
// before it calls it torn. One that stays incomplete (a crash) is still
// reported, after tornRechecks reads.
func TestAuditVerifyRereadsALineBeingWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sampleLog(t, path)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(full, []byte("\n"))
	cut := len(full) - len(lines[len(lines)-2])/2 // half of record 6 written
	old := tornPause
	t.Cleanup(func() { tornPause = old })

	if err := os.WriteFile(path, full[:cut], 0o600); err != nil {
		t.Fatal(err)
	}
	pauses := 0
	tornPause = func() {
		pauses++
		if pauses == 2 { // the write ends while verify waits
			if err := os.WriteFile(path, full, 0o600); err != nil {
				t.Error(err)
			}
		}
	}
	code, out, stderr := runAudit(t, "audit", "verify", "--path", path)
	if code != exitOK || !strings.HasPrefix(out, "ok: 6 records in 1 file") || pauses != 2 {
		t.Errorf("verify while the last line is written: exit %d, %q (stderr %q), %d pauses; want ok after 2", code, out, stderr, pauses)
	}

	if err := os.WriteFile(path, full[:cut], 0o600); err != nil {
		t.Fatal(err)
	}
	pauses = 0
	tornPause = func() { pauses++ }
	code, out, _ = runAudit(t, "audit", "verify", "--path", path)
	if code != exitFailed || !strings.Contains(out, "the last line is incomplete") || pauses != tornRechecks {
		t.Errorf("verify of a line left incomplete: exit %d, %q, %d pauses; want FAILED after %d", code, out, pauses, tornRechecks)
	}
}
