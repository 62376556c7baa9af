package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
)

// TestAuditOutageRecovers is issue 14 item 4: the disk under the audit log
// fills while the daemon runs. Fires are refused (no vendor call), the
// status line says why, the watchdog stops being fed after watchdog_after,
// and when space returns the daemon writes again by itself, fires again,
// and audits the fires it refused.
func TestAuditOutageRecovers(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	body := `version: 1
audit: {path: audit.jsonl, watchdog_after: 300ms}
state: {dir: state}
accounts:
  sb: {vendor: sandbox}
jobs:
  - {name: tick, schedule: "@every 1s", account: sb, action: modelarts.notebook.start, targets: [nb-1]}
`
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var full atomic.Bool
	write := func(f *os.File, b []byte) (int, error) {
		if full.Load() {
			return 0, syscall.ENOSPC
		}
		return f.Write(b)
	}
	old := heartbeatEvery
	heartbeatEvery = 20 * time.Millisecond // the heartbeat notices the outage's edges
	t.Cleanup(func() { heartbeatEvery = old })
	var statuses atomic.Value
	statuses.Store("")
	onAudit := func(st Status) { statuses.Store(statuses.Load().(string) + st.String() + "\n") }
	d, err := Start(Options{ConfigPath: cfg, Log: zerolog.Nop(), AuditWrite: write, AuditRetryInitial: 20 * time.Millisecond, AuditRetryMax: 50 * time.Millisecond, OnAudit: onAudit})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown()
	auditPath := filepath.Join(dir, "audit.jsonl")
	count := func(event, outcome string) int {
		recs, _ := audit.ReadAll(auditPath)
		n := 0
		for _, r := range recs {
			if r.Event == event && r.Outcome == outcome && r.Job == "tick" {
				n++
			}
		}
		return n
	}
	waitUntil(t, "a first fire", func() bool { return count(audit.EventAttempt, audit.OutcomeSuccess) >= 1 })

	full.Store(true)
	waitUntil(t, "a refused fire", func() bool { return d.audit.Health().Refused >= 1 })
	if st := d.Status().String(); !strings.Contains(st, "AUDIT LOG NOT WRITABLE") || !strings.Contains(st, "no space left") {
		t.Errorf("status line during the outage = %q", st)
	}
	waitUntil(t, "the watchdog to starve", func() bool { return !d.Health() })
	before := count(audit.EventAttempt, audit.OutcomeSuccess)

	full.Store(false)
	waitUntil(t, "the log to write again", func() bool { return d.audit.Health().OK })
	waitUntil(t, "the watchdog fed again", func() bool { return d.Health() })
	if st := d.Status().String(); strings.Contains(st, "AUDIT") {
		t.Errorf("status line after the outage = %q", st)
	}
	waitUntil(t, "a fire after the outage", func() bool { return count(audit.EventAttempt, audit.OutcomeSuccess) > before })
	waitUntil(t, "both edges told", func() bool { return strings.Count(statuses.Load().(string), "\n") >= 2 })
	if lines := strings.Split(statuses.Load().(string), "\n"); !strings.Contains(lines[0], "AUDIT LOG NOT WRITABLE") || strings.Contains(lines[1], "AUDIT") {
		t.Errorf("OnAudit statuses = %q; want the outage, then a clean line", lines)
	}
	if n := count(audit.EventAuditFailed, audit.OutcomeFailure); n < 1 {
		t.Errorf("%d audit_failed records for the refused fires; want at least 1", n)
	}
	if _, err := audit.Verify(auditPath); err != nil {
		t.Errorf("Verify = %v", err)
	}
	// /metrics counts every failed write and fsync the log counted.
	mfs, err := d.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got float64 = -1
	for _, mf := range mfs {
		if mf.GetName() == "scheduler_audit_write_errors_total" {
			got = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if want := d.audit.Health().WriteErrors; want < 1 || got != float64(want) {
		t.Errorf("scheduler_audit_write_errors_total = %v; want the audit log's count of failed writes, %d (at least 1)", got, want)
	}
}
