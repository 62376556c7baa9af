package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/iofault"
	"github.com/cloudcron/scheduler/internal/state"
)

// TestRunStateWriteFailureRecovers: state.db stops taking writes (a full
// disk) while the daemon runs. Fires go on (the audit log is the run
// state's journal), the log and the status line say why the database is
// behind, and once writes work again the daemon writes it by itself, says
// so, and the run state it leaves covers every fire.
func TestRunStateWriteFailureRecovers(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	body := `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
accounts:
  sb: {vendor: sandbox}
jobs:
  - {name: tick, schedule: "@every 1s", account: sb, action: modelarts.notebook.start, targets: [nb-1]}
`
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	var statuses syncBuf // systemd STATUS= lines, at the outage's edges
	d, err := Start(Options{ConfigPath: cfg, Log: zerolog.New(&logs), OnAudit: func(st Status) {
		statuses.Write([]byte(st.String() + "\n"))
	}})
	if err != nil {
		t.Fatal(err)
	}
	running := true
	defer func() {
		if running {
			d.Shutdown()
		}
	}()
	auditPath := filepath.Join(dir, "audit.jsonl")
	successes := func() []audit.Record {
		recs, _ := audit.ReadAll(auditPath)
		var out []audit.Record
		for _, r := range recs {
			if r.Event == audit.EventAttempt && r.Outcome == audit.OutcomeSuccess && r.Job == "tick" {
				out = append(out, r)
			}
		}
		return out
	}
	waitUntil(t, "a first fire", func() bool { return len(successes()) >= 1 })

	dbPath := filepath.Join(dir, "state", state.FileName)
	restore, err := iofault.Break(dbPath, iofault.DiskFull)
	if err != nil {
		t.Fatal(err)
	}
	restored := false
	defer func() {
		if !restored {
			restore()
		}
	}()
	const failed = "run-state checkpoint failed; the audit log still holds every fire, retrying"
	waitUntil(t, "the failed checkpoint to be logged", func() bool { return strings.Contains(logs.String(), failed) })
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, failed) && (!strings.Contains(line, "no space left on device") || !strings.Contains(line, dbPath)) {
			t.Errorf("log line %s; want the file and the cause", line)
		}
	}
	if st := d.Status().String(); !strings.Contains(st, "RUN STATE NOT WRITABLE") || !strings.Contains(st, "no space left") {
		t.Errorf("status line while state.db fails = %q", st)
	}
	waitUntil(t, "STATUS= to say the run state is not writable", func() bool {
		return strings.Contains(statuses.String(), "RUN STATE NOT WRITABLE")
	})
	during := len(successes())
	waitUntil(t, "two more fires while state.db fails", func() bool { return len(successes()) >= during+2 })

	if err := restore(); err != nil {
		t.Fatal(err)
	}
	restored = true
	waitUntil(t, "the recovery to be logged", func() bool { return strings.Contains(logs.String(), "run-state checkpoint written again") })
	if st := d.Status().String(); strings.Contains(st, "RUN STATE") {
		t.Errorf("status line after recovery = %q", st)
	}
	waitUntil(t, "STATUS= to drop the outage", func() bool {
		lines := strings.Split(strings.TrimSpace(statuses.String()), "\n")
		return !strings.Contains(lines[len(lines)-1], "RUN STATE")
	})
	running = false
	if err := d.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	last := successes()
	newest := last[len(last)-1].Scheduled
	st, err := state.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if js := st.Job("tick"); js.LastDone.Before(newest) || len(js.InFlight) != 0 {
		t.Errorf("run state after the outage %+v; want done through %v, nothing in flight", js, newest)
	}
	if seq, _ := st.AuditTail(); seq < last[len(last)-1].Seq {
		t.Errorf("stored audit tail %d; want at least %d", seq, last[len(last)-1].Seq)
	}
}
