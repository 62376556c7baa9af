package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const evidenceConfig = `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
accounts:
  sb: {vendor: sandbox}
jobs:
  - {name: on, schedule: "0 9 1 1 *", account: sb, action: modelarts.notebook.start, targets: [nb-1, nb-2]}
`

// dirFiles is every file beside the audit log (not the lock files) with
// its content.
func dirFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".lock") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

func mustTrigger(t *testing.T, cfg string) {
	t.Helper()
	if code, out, errOut := runCLI(t, "trigger", "--config", cfg, "on"); code != exitOK {
		t.Fatalf("trigger: exit %d\n%s%s", code, out, errOut)
	}
}

// TestTriggerRecordsAreAnchored is issue 14 item 3: the records of
// `trigger` move the run state's tail, so deleting them is noticed.
func TestTriggerRecordsAreAnchored(t *testing.T) {
	cfg, auditPath := writeConfig(t, evidenceConfig)
	mustTrigger(t, cfg)
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
		t.Fatalf("trigger's records cut: exit %d, output %q; want exit 1 naming deleted records", code, out)
	}
	// trigger itself refuses the cut log too, and changes nothing.
	before := dirFiles(t, filepath.Dir(auditPath))
	code, _, errOut := runCLI(t, "trigger", "--config", cfg, "on")
	if code != exitFailed || !strings.Contains(errOut, "records were deleted") {
		t.Errorf("trigger on a cut log: exit %d, stderr %q; want a refusal", code, errOut)
	}
	if after := dirFiles(t, filepath.Dir(auditPath)); len(after) != len(before) || after["audit.jsonl"] != before["audit.jsonl"] {
		t.Error("the refused trigger changed the files beside the audit log")
	}
}

// TestRefusedStartKeepsEvidence is issue 14 items 1 and 5 end to end: 30
// bytes cut off the end of a log the run state counts in full. `run`
// refuses and changes nothing, `audit verify` names the incomplete last
// line, `audit repair` keeps every byte and starts a new segment, and the
// schedule runs again.
func TestRefusedStartKeepsEvidence(t *testing.T) {
	cfg, auditPath := writeConfig(t, evidenceConfig)
	dir := filepath.Dir(auditPath)
	for range 3 {
		mustTrigger(t, cfg)
	}
	b, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	cut := b[:len(b)-30]
	if err := os.WriteFile(auditPath, cut, 0o600); err != nil {
		t.Fatal(err)
	}
	torn := cut[strings.LastIndexByte(string(cut), '\n')+1:]
	before := dirFiles(t, dir)

	code, _, errOut := runCLI(t, "run", "--config", cfg)
	if code != exitFailed || !strings.Contains(errOut, "the last line is incomplete") || !strings.Contains(errOut, "scheduler audit repair --config "+cfg) {
		t.Fatalf("run: exit %d, stderr:\n%s\nwant a refusal naming the incomplete last line and the way out", code, errOut)
	}
	after := dirFiles(t, dir)
	for name, content := range before {
		if after[name] != content {
			t.Errorf("the refused start changed %s (%d bytes before, %d after)", name, len(content), len(after[name]))
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("the refused start created %s", name)
		}
	}
	code, out, _ := runCLI(t, "audit", "verify", "--config", cfg)
	if code != exitFailed || !strings.Contains(out, "the last line is incomplete") {
		t.Errorf("audit verify: exit %d, output %q; want the last line is incomplete", code, out)
	}

	code, out, errOut = runCLI(t, "audit", "repair", "--config", cfg, "--reason", "test: tail cut")
	if code != exitOK || !strings.Contains(out, "new chain segment") || !strings.Contains(out, "test: tail cut") {
		t.Fatalf("audit repair: exit %d\n%s%s", code, out, errOut)
	}
	now, _ := os.ReadFile(auditPath)
	if !strings.HasPrefix(string(now), string(cut[:len(cut)-len(torn)])) {
		t.Error("repair changed the complete lines")
	}
	sides, _ := filepath.Glob(auditPath + ".torn-*")
	if len(sides) != 1 {
		t.Fatalf("side files %v; want one", sides)
	}
	if kept, _ := os.ReadFile(sides[0]); string(kept) != string(torn) {
		t.Errorf("side file holds %q; want the incomplete line %q", kept, torn)
	}
	code, out, _ = runCLI(t, "audit", "verify", "--config", cfg)
	if code != exitOK || !strings.Contains(out, "new chain segment starts at seq") {
		t.Errorf("audit verify after repair: exit %d, output %q", code, out)
	}
	mustTrigger(t, cfg)
	if code, out, _ := runCLI(t, "audit", "verify", "--config", cfg); code != exitOK {
		t.Errorf("audit verify after a trigger: exit %d, output %q", code, out)
	}
	if code, out, _ := runCLI(t, "audit", "repair", "--config", cfg); code != exitOK || !strings.Contains(out, "nothing to repair") {
		t.Errorf("second repair: exit %d, output %q; want nothing to repair", code, out)
	}
}
