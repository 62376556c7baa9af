package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cloudcron/scheduler/internal/audit"
)

const papercutConfig = `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
accounts:
  sb: {vendor: sandbox}
jobs:
  - {name: a, schedule: "0 9 * * *", account: sb, action: modelarts.notebook.start, targets: [x]}
  - {name: b, schedule: "0 9 * * *", account: sb, action: modelarts.notebook.start, targets: [x]}
`

// TestValidatePositionalFile: `validate FILE` is an error that shows the
// fix, not a silent check of the default path.
func TestValidatePositionalFile(t *testing.T) {
	path, _ := writeConfig(t, papercutConfig)
	code, stdout, stderr := runCLI(t, "validate", path)
	if code != exitUsage || !strings.Contains(stderr, "--config "+path) || strings.Contains(stdout+stderr, defaultConfig) {
		t.Fatalf("validate FILE: exit %d\nstdout %q\nstderr %q\nwant usage error suggesting --config %s", code, stdout, stderr, path)
	}
}

// TestTriggerJobCount: no job or two jobs say what is wrong.
func TestTriggerJobCount(t *testing.T) {
	path, _ := writeConfig(t, papercutConfig)
	code, _, stderr := runCLI(t, "trigger", "--config", path)
	if code != exitUsage || !strings.Contains(stderr, "name the job to run") {
		t.Errorf("trigger without a job: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "trigger", "--config", path, "a", "b")
	if code != exitUsage || !strings.Contains(stderr, "one job at a time") || !strings.Contains(stderr, `"a", "b"`) {
		t.Errorf("trigger with two jobs: exit %d, stderr %q", code, stderr)
	}
}

// TestLogLevelCheckedEverywhere: every subcommand that takes --log-level
// refuses a bad one the same way.
func TestLogLevelCheckedEverywhere(t *testing.T) {
	path, _ := writeConfig(t, papercutConfig)
	for _, args := range [][]string{
		{"run", "--config", path}, {"validate", "--config", path}, {"next", "--config", path},
		{"trigger", "--config", path, "a"}, {"demo", "--for", "1s"}, {"audit", "--config", path},
		{"audit", "verify", "--config", path},
	} {
		code, _, stderr := runCLI(t, append(args, "--log-level", "loud")...)
		if code != exitUsage || !strings.Contains(stderr, `invalid value "loud" for flag -log-level: use debug, info, warn or error`) {
			t.Errorf("%s --log-level loud: exit %d, stderr %q", strings.Join(args, " "), code, stderr)
		}
	}
}

// TestDemoForZero: --for 0s is an error, not "run forever".
func TestDemoForZero(t *testing.T) {
	for _, d := range []string{"0s", "-1m"} {
		code, _, stderr := runCLI(t, "demo", "--for", d)
		if code != exitUsage || !strings.Contains(stderr, "--for must be more than 0") {
			t.Errorf("demo --for %s: exit %d, stderr %q", d, code, stderr)
		}
	}
}

// TestAuditVerifyOneFile: "1 file", not "1 files".
func TestAuditVerifyOneFile(t *testing.T) {
	path := t.TempDir() + "/audit.jsonl"
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(audit.Record{Event: audit.EventAttempt, Job: "a"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	code, stdout, _ := runCLI(t, "audit", "verify", "--path", path)
	if code != exitOK || !strings.Contains(stdout, "ok: 1 record in 1 file,") {
		t.Errorf("audit verify: exit %d, stdout %q; want 1 record in 1 file", code, stdout)
	}
}

// TestValidatePrintsWarnings: an account with insecure_http: true is
// valid, and validate says loudly what it costs.
func TestValidatePrintsWarnings(t *testing.T) {
	path, _ := writeConfig(t, `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
accounts:
  n: {vendor: ncp, access_key: {env: PATH}, secret_key: {env: PATH}, insecure_http: true, endpoints: {dataforest: "http://10.1.2.3"}}
jobs:
  - {name: a, schedule: "0 9 * * *", account: n, action: dataforest.notebook.restart, targets: [x]}
`)
	code, _, stderr := runCLI(t, "validate", "--config", path)
	if code != exitOK || !strings.Contains(stderr, "WARNING: accounts.n: insecure_http: true") {
		t.Errorf("validate: exit %d, stderr %q; want valid with a warning", code, stderr)
	}
}

// TestDemoKeepsAnEditedSchedule: `demo --dir` on a folder that already has
// demo.yaml runs the schedule found there instead of overwriting the
// user's edits.
func TestDemoKeepsAnEditedSchedule(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/demo.yaml"
	code, _, errOut := runCLI(t, "demo", "--for", "1s", "--dir", dir)
	if code != exitOK {
		t.Fatalf("first demo: exit %d\n%s", code, errOut)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := append([]byte("# my edit\n"), b...)
	if err := os.WriteFile(path, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "demo", "--for", "1s", "--dir", dir)
	if code != exitOK {
		t.Fatalf("second demo: exit %d\n%s", code, errOut)
	}
	if now, _ := os.ReadFile(path); string(now) != string(edited) {
		t.Errorf("demo overwrote the edited %s", path)
	}
	if !strings.Contains(out, "keeping the schedule already in") {
		t.Errorf("demo output %q; want it to say it kept the existing schedule", out)
	}
}

// TestLogDurationKeysCarryUnit: zerolog writes a Dur field as a bare
// number of milliseconds, so its key must say so (`lag_ms`); a reader of
// the JSON log cannot guess the unit of `lag: 12.9`.
func TestLogDurationKeysCarryUnit(t *testing.T) {
	re := regexp.MustCompile(`\.Dur\("([^"]*)"`)
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			if !strings.HasSuffix(string(m[1]), "_ms") {
				t.Errorf("%s: log field %q is a duration in milliseconds; name it %s_ms", path, m[1], m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
