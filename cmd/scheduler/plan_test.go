package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const planConfig = `version: 1
timezone: Europe/Berlin
audit: {path: audit.jsonl}
state: {dir: state}
accounts:
  lab: {vendor: sandbox}
windows:
  - name: lab-notebooks
    account: lab
    resource: modelarts.notebook
    targets: [nb-1]
    on: [{days: MON-FRI, from: "09:00", to: "19:00"}]
    holidays: DE-BY
    hourly_cost: 2
`

func TestPlanCommand(t *testing.T) {
	path, _ := writeConfig(t, planConfig)
	svg := filepath.Join(t.TempDir(), "week.svg")
	// The week of Corpus Christi 2026 (Thursday 06-04, a holiday in Bavaria).
	code, out, errOut := runCLI(t, "plan", "--config", path, "--week", "--from", "2026-06-01T00:00:00+02:00", "--json", "--svg", svg)
	if code != exitOK {
		t.Fatalf("plan exit %d; stderr %s", code, errOut)
	}
	var p struct {
		Windows []struct {
			Name    string
			Days    []struct{ Date, Kind, Note string }
			Edges   []struct{ State, Action string }
			OnHours float64  `json:"on_hours"`
			Savings *float64 `json:"savings"`
		}
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("plan --json output is not JSON: %v\n%s", err, out)
	}
	w := p.Windows[0]
	if len(w.Edges) != 8 || w.OnHours != 40 || w.Savings == nil || *w.Savings != 128*2 {
		t.Errorf("plan = %d edges, %vh on, savings %v; want 8 edges (Thursday off), 40h, 256", len(w.Edges), w.OnHours, w.Savings)
	}
	if len(w.Days) != 1 || w.Days[0].Date != "2026-06-04" || !strings.Contains(w.Days[0].Note, "Fronleichnam") {
		t.Errorf("days = %+v; want Corpus Christi marked", w.Days)
	}
	data, err := os.ReadFile(svg)
	if err != nil || !strings.HasPrefix(string(data), "<svg") || !strings.Contains(string(data), "Fronleichnam") {
		t.Errorf("--svg wrote %d bytes (%v); want a chart naming the holiday", len(data), err)
	}

	code, out, _ = runCLI(t, "plan", "--config", path, "--from", "2026-06-01T08:00:00+02:00")
	if code != exitOK || !strings.Contains(out, "2026-06-01 09:00 +02:00 Mon  on   modelarts.notebook.start   nb-1") ||
		strings.Contains(out, "2026-06-02 09:00") {
		t.Errorf("plan (a day) exit %d:\n%s\nwant Monday's edges only", code, out)
	}
	if code, _, errOut := runCLI(t, "plan", "--config", path, "--from", "monday"); code != exitUsage || !strings.Contains(errOut, "RFC3339") {
		t.Errorf("plan --from monday = %d, %q; want a usage error", code, errOut)
	}
}
