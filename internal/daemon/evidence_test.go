package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
)

// TestSecondDaemonOnSameAuditLogRefused is issue 14 item 2: two daemons
// with their own state.dir but one audit file. The second is refused with
// a clear message and changes nothing; the first keeps its log; trigger
// runs through the daemon, or takes the same lock.
func TestSecondDaemonOnSameAuditLogRefused(t *testing.T) {
	dir := t.TempDir()
	auditPath := filepath.Join(dir, "shared", "audit.jsonl")
	write := func(name, stateDir string) string {
		p := filepath.Join(dir, name)
		body := "version: 1\naudit: {path: " + auditPath + "}\nstate: {dir: " + stateDir + "}\n" +
			"accounts:\n  sb: {vendor: sandbox}\njobs:\n" +
			"  - {name: on, schedule: \"0 9 1 1 *\", account: sb, action: modelarts.notebook.start, targets: [nb-1]}\n"
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.yaml", "state-a")
	b := write("b.yaml", "state-b")
	d, err := Start(Options{ConfigPath: a, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown()
	before, _ := os.ReadFile(auditPath)
	d2, err := Start(Options{ConfigPath: b, Log: zerolog.Nop()})
	if err == nil {
		d2.Shutdown()
		t.Fatal("a second daemon on the same audit log started")
	}
	if !errors.Is(err, audit.ErrBusy) || !strings.Contains(err.Error(), "in use by another scheduler process") || !strings.Contains(err.Error(), "one writer") {
		t.Errorf("second daemon: %v; want the audit log named as in use", err)
	}
	if after, _ := os.ReadFile(auditPath); string(after) != string(before) {
		t.Error("the refused daemon changed the audit log")
	}
	// trigger on the running daemon's schedule runs through the daemon.
	var out strings.Builder
	o, err := Trigger(context.Background(), TriggerOptions{ConfigPath: a, Job: "on", Log: zerolog.Nop(), Out: &out})
	if err != nil || len(o.Targets) != 1 || o.Targets[0].Outcome != audit.OutcomeSuccess || !strings.Contains(out.String(), "written by the running daemon") {
		t.Errorf("trigger through the daemon = %+v, %v; output %q", o, err, out.String())
	}
	recs, _ := audit.ReadAll(auditPath)
	manual := 0
	for _, r := range recs {
		if r.Event == audit.EventRun && strings.HasSuffix(r.Detail, "manual trigger") && r.Job == "on" {
			manual++
		}
	}
	if manual != 1 {
		t.Errorf("%d manual run records in the daemon's log; want 1", manual)
	}
	// trigger on the other schedule (no daemon on state-b) takes the audit
	// log's lock itself, and is refused.
	before, _ = os.ReadFile(auditPath)
	_, err = Trigger(context.Background(), TriggerOptions{ConfigPath: b, Job: "on", Log: zerolog.Nop()})
	if !errors.Is(err, audit.ErrBusy) {
		t.Errorf("trigger beside the daemon's audit log: %v; want ErrBusy", err)
	}
	if after, _ := os.ReadFile(auditPath); string(after) != string(before) {
		t.Error("the refused trigger changed the audit log")
	}
	if err := d.audit.Append(audit.Record{Event: audit.EventReload}); err != nil {
		t.Errorf("the first daemon cannot write after the refusals: %v", err)
	}
}
