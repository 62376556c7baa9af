package main

import (
	"strings"
	"testing"
)

// The bench command itself is exercised by internal/bench; here only its
// wiring: help, and a bad scenario name refused before anything runs.
func TestBenchFlags(t *testing.T) {
	if code, _, stderr := runCLI(t, "bench", "--help"); code != exitOK || !strings.Contains(stderr, "Usage: scheduler bench") {
		t.Errorf("bench --help: exit %d, output %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, "bench", "--only", "bogus"); code != exitUsage || !strings.Contains(stderr, `unknown scenario "bogus"`) {
		t.Errorf("bench --only bogus: exit %d, output %q", code, stderr)
	}
}
