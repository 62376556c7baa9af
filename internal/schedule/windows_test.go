package schedule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/window"
)

// windowsBase is a schedule with a sandbox account and no jobs; each case
// appends its windows: section (line 9 onwards).
const windowsBase = `version: 1
timezone: Europe/Berlin
audit: {path: audit.jsonl}
state: {dir: state}
accounts:
  lab: {vendor: sandbox}
jobs: []
`

const ncpAccount = "  lab: {vendor: ncp, access_key: {env: AK}, secret_key: {env: SK}}\n"

var windowsAnchor = time.Date(2026, 3, 23, 8, 0, 0, 0, time.UTC)

func loadWindows(t *testing.T, windows string, dir string) (*Config, error) {
	t.Helper()
	base := windowsBase
	if strings.HasPrefix(windows, "#ncp\n") { // the account is ncp's, not the sandbox
		base = strings.Replace(base, "  lab: {vendor: sandbox}\n", ncpAccount, 1)
		windows = strings.TrimPrefix(windows, "#ncp\n")
	}
	return Load("w.yaml", []byte(base+windows), Options{Anchor: windowsAnchor, Dir: dir})
}

func TestWindowsValid(t *testing.T) {
	dir := t.TempDir()
	ics := "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20260324\nSUMMARY:Offsite\nEND:VEVENT\n"
	if err := os.WriteFile(filepath.Join(dir, "company.ics"), []byte(ics), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadWindows(t, `windows:
  - name: lab-db
    account: lab
    resource: dataforest.app
    targets: [db-1]
    on: [{days: MON-FRI, from: "08:30", to: "19:30"}]
    holidays: {ics: company.ics}
    drift: edges
  - name: lab-notebooks
    account: lab
    resource: modelarts.notebook
    targets: [nb-1, nb-2]
    timezone: Asia/Seoul
    on:
      - {days: MON-FRI, from: "09:00", to: "19:00"}
      - {days: SAT, from: "22:00", to: "02:00"}
    off_dates: [2026-12-24, "2026-12-31"]
    holidays: KR
    check_every: 30s
    after: [lab-db]
    hourly_cost: 1.20
`, dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	db, nb := cfg.Window("lab-db"), cfg.Window("lab-notebooks")
	if db == nil || nb == nil {
		t.Fatalf("windows not found: %+v", cfg.Windows)
	}
	if db.Loc.String() != "Europe/Berlin" || db.Drift != DriftEdges || db.CheckEveryD != DefaultCheckEvery {
		t.Errorf("lab-db = zone %v, drift %s, check_every %v; want the config's zone, edges, the default 5m", db.Loc, db.Drift, db.CheckEveryD)
	}
	if nb.Loc.String() != "Asia/Seoul" || nb.Drift != DriftEnforce || nb.CheckEveryD != 30*time.Second || *nb.HourlyCost != 1.2 {
		t.Errorf("lab-notebooks = zone %v, drift %s, check_every %v, cost %v", nb.Loc, nb.Drift, nb.CheckEveryD, *nb.HourlyCost)
	}
	if nb.StartAction() != "modelarts.notebook.start" || nb.StopAction() != "modelarts.notebook.stop" {
		t.Errorf("actions = %s, %s", nb.StartAction(), nb.StopAction())
	}
	// The specs answer: the ICS offsite day is off, Seollal is off.
	offsite := time.Date(2026, 3, 24, 10, 0, 0, 0, db.Loc)
	if d := db.Spec.Desired("db-1", offsite, nil); d.State != window.Off || !strings.Contains(d.Reason, "Offsite") {
		t.Errorf("lab-db on the ICS day = %v (%s); want off for the offsite", d.State, d.Reason)
	}
	seollal := time.Date(2026, 2, 17, 10, 0, 0, 0, nb.Loc)
	if d := nb.Spec.Desired("nb-1", seollal, nil); d.State != window.Off || !strings.Contains(d.Reason, "Seollal") {
		t.Errorf("lab-notebooks on Seollal = %v (%s); want off", d.State, d.Reason)
	}
	if d := nb.Spec.Desired("nb-1", time.Date(2026, 12, 24, 10, 0, 0, 0, nb.Loc), nil); d.State != window.Off {
		t.Errorf("lab-notebooks on an off date = %v; want off", d.State)
	}
	if d := nb.Spec.Desired("nb-1", time.Date(2026, 3, 24, 10, 0, 0, 0, nb.Loc), nil); d.State != window.On {
		t.Errorf("lab-notebooks on a Tuesday morning = %v; want on", d.State)
	}
}

func TestWindowsBad(t *testing.T) {
	nb := func(extra string) string {
		return "windows:\n  - name: nb\n    account: lab\n    resource: modelarts.notebook\n    targets: [nb-1]\n" +
			"    on: [{days: MON-FRI, from: \"09:00\", to: \"19:00\"}]\n" + extra
	}
	tests := []struct {
		name      string
		windows   string
		line, col int
		path, msg string
	}{
		{"target in two windows", nb("") + "  - name: nb2\n    account: lab\n    resource: modelarts.notebook\n    targets: [nb-2, nb-1]\n    on: [{days: SAT, from: \"09:00\", to: \"19:00\"}]\n",
			17, 21, "windows[1].targets[1]", `target "nb-1" is already in window nb (line 12)`},
		{"from equals to", "windows:\n  - name: nb\n    account: lab\n    resource: modelarts.notebook\n    targets: [nb-1]\n    on: [{days: MON-FRI, from: \"09:00\", to: \"09:00\"}]\n",
			13, 45, "windows[0].on[0].to", `from equals to (09:00)`},
		{"unknown calendar", nb("    holidays: XX\n"), 14, 15, "windows[0].holidays", `unknown holiday calendar "XX"`},
		{"missing ics", nb("    holidays: {ics: nope.ics}\n"), 14, 21, "windows[0].holidays.ics", "no such file"},
		{"holidays list", nb("    holidays: [KR]\n"), 14, 15, "windows[0].holidays", "expected a calendar code or {ics: PATH}"},
		{"resource without stop", "#ncp\nwindows:\n  - name: nb\n    account: lab\n    resource: dataforest.notebook\n    targets: [nb-1]\n    on: [{days: MON-FRI, from: \"09:00\", to: \"19:00\"}]\n",
			11, 15, "windows[0].resource", "no start and stop actions (only dataforest.notebook.restart)"},
		{"unknown resource", strings.Replace(nb(""), "modelarts.notebook", "modelarts.notebok", 1), 11, 15, "windows[0].resource", `did you mean "modelarts.notebook"?`},
		{"never on", nb("") + "  - name: nb2\n    account: lab\n    resource: modelarts.notebook\n    targets: [nb-2]\n    on: [{days: SAT, from: \"09:00\", to: \"19:00\"}]\n    off_dates: [2026-03-28]\n    holidays: {ics: all-saturdays.ics}\n",
			18, 9, "windows[1].on", "never on"},
		{"after cycle", nb("    after: [nb2]\n") + "  - name: nb2\n    account: lab\n    resource: modelarts.notebook\n    targets: [nb-2]\n    on: [{days: SAT, from: \"09:00\", to: \"19:00\"}]\n    after: [nb]\n",
			20, 13, "windows[1].after[0]", "after makes a cycle: nb → nb2 → nb"},
		{"after unknown", nb("    after: [nb3]\n"), 14, 13, "windows[0].after[0]", `unknown window "nb3"`},
		{"check_every too short", nb("    check_every: 5s\n"), 14, 18, "windows[0].check_every", "at least 10s"},
		{"bad drift", nb("    drift: enforced\n"), 14, 12, "windows[0].drift", `did you mean "enforce"?`},
		{"bad days", strings.Replace(nb(""), "MON-FRI", "MON-FRY", 1), 13, 17, "windows[0].on[0].days", `unknown day "FRY"`},
		{"bad clock", strings.Replace(nb(""), `"19:00"`, `"7pm"`, 1), 13, 45, "windows[0].on[0].to", "HH:MM"},
		{"bad off date", nb("    off_dates: [2026-13-01]\n"), 14, 17, "windows[0].off_dates[0]", "YYYY-MM-DD"},
		{"wrong vendor", "#ncp\n" + nb(""), 11, 15, "windows[0].resource", "belongs to vendor otc"},
	}
	dir := t.TempDir()
	var sat strings.Builder
	for d := time.Date(2026, 3, 28, 0, 0, 0, 0, time.UTC); d.Year() < 2028; d = d.AddDate(0, 0, 7) {
		sat.WriteString("BEGIN:VEVENT\nDTSTART;VALUE=DATE:" + d.Format("20060102") + "\nEND:VEVENT\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "all-saturdays.ics"), []byte(sat.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadWindows(t, tc.windows, dir)
			if err == nil {
				t.Fatalf("Load: no error; want %s", tc.msg)
			}
			probs := problemsOf(t, err)
			if len(probs) != 1 {
				t.Errorf("Load reported %d problems; want one:\n%v", len(probs), err)
			}
			fe := probs[0]
			if fe.Line != tc.line || fe.Col != tc.col || fe.Path != tc.path || !strings.Contains(fe.Msg, tc.msg) || fe.File != "w.yaml" {
				t.Errorf("Load error =\n%v\nwant w.yaml:%d:%d: %s: …%s…", err, tc.line, tc.col, tc.path, tc.msg)
			}
		})
	}
}

func TestWindowNameClashesWithJob(t *testing.T) {
	data := strings.Replace(windowsBase, "jobs: []\n", `jobs:
  - {name: nb, schedule: "0 9 * * *", account: lab, action: modelarts.notebook.start, targets: [x]}
`, 1) + "windows:\n  - name: nb\n    account: lab\n    resource: modelarts.notebook\n    targets: [nb-1]\n    on: [{days: MON-FRI, from: \"09:00\", to: \"19:00\"}]\n"
	_, err := Load("w.yaml", []byte(data), Options{Anchor: windowsAnchor})
	if err == nil || !strings.Contains(err.Error(), `w.yaml:10:11: windows[0].name: window name "nb" is also a job's name (line 8)`) {
		t.Fatalf("Load error = %v; want the clash named at windows[0].name", err)
	}
}

func TestManualStopFault(t *testing.T) {
	win := "windows:\n  - name: nb\n    account: lab\n    resource: modelarts.notebook\n    targets: [nb-1]\n    on: [{days: \"*\", from: \"00:00\", to: \"24:00\"}]\n"
	with := func(fault string) string {
		return strings.Replace(windowsBase, "  lab: {vendor: sandbox}\n", "  lab:\n    vendor: sandbox\n    faults: ["+fault+"]\n", 1) + win
	}
	if _, err := Load("w.yaml", []byte(with("{target: nb-1, action: modelarts.notebook.stop, kind: manual_stop, delay: 25s}")), Options{Anchor: windowsAnchor}); err != nil {
		t.Fatalf("a manual_stop fault on a window's target: %v", err)
	}
	for _, tc := range []struct{ fault, path, msg string }{
		{"{target: nb-1, action: modelarts.notebook.stop, kind: manual_stop}", "accounts.lab.faults[0].delay", "needs action"},
		{"{target: nb-1, action: modelarts.notebook.start, kind: manual_stop, delay: 5s}", "accounts.lab.faults[0].action", "needs a stop action"},
		{"{action: modelarts.notebook.stop, kind: manual_stop, delay: 5s}", "accounts.lab.faults[0].target", "missing"},
	} {
		_, err := Load("w.yaml", []byte(with(tc.fault)), Options{Anchor: windowsAnchor})
		if err == nil {
			t.Fatalf("fault %s: no error", tc.fault)
		}
		if fe := problemsOf(t, err)[0]; fe.Path != tc.path || !strings.Contains(fe.Msg, tc.msg) {
			t.Errorf("fault %s: error %v; want %s: …%s…", tc.fault, err, tc.path, tc.msg)
		}
	}
}

func TestWindowTargetAlsoInAJobWarns(t *testing.T) {
	data := strings.Replace(windowsBase, "jobs: []\n", `jobs:
  - {name: nb-off, schedule: "0 19 * * *", account: lab, action: modelarts.notebook.stop, targets: [nb-1, other]}
`, 1) + "windows:\n  - name: nb\n    account: lab\n    resource: modelarts.notebook\n    targets: [nb-1]\n    on: [{days: MON-FRI, from: \"09:00\", to: \"19:00\"}]\n"
	c, err := Load("w.yaml", []byte(data), Options{Anchor: windowsAnchor})
	if err != nil {
		t.Fatal(err)
	}
	ws := c.Warnings()
	if len(ws) != 1 || !strings.Contains(ws[0], "target nb-1 of window nb is also acted on by job nb-off (modelarts.notebook.stop, line 8)") {
		t.Fatalf("Warnings = %q; want one naming the target, window and job", ws)
	}
}
