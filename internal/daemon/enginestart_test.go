package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
)

// TestFireDueWhileEngineStartsIsNotLost holds start-up for 1.5 s between
// catch-up's instant and the engine's start, as a loaded machine does
// when cron's goroutines begin late: the fires of a job due every second
// in that time are the engine's and each runs; no second from the hold
// on is left without a record. (The kill -9 test found one lost this way
// in a full -race run: "has no audit record at all: silently lost".)
func TestFireDueWhileEngineStartsIsNotLost(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	body := `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
accounts:
  sb: {vendor: sandbox}
jobs:
  - {name: tick, schedule: "* * * * * *", account: sb, action: modelarts.notebook.start, targets: [nb-1], overlap: allow}
`
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	old := holdAt
	holdAt = "engine:1500ms"
	t.Cleanup(func() { holdAt = old })
	d, err := Start(Options{ConfigPath: cfg, Log: zerolog.Nop(), Grace: 5 * time.Second})
	holdAt = old
	if err != nil {
		t.Fatal(err)
	}
	ready := time.Now()
	// Every whole second from one before READY (inside the hold: after
	// catch-up's instant, before the engine began) to two after it.
	first := ready.Add(-time.Second).Truncate(time.Second).Add(time.Second)
	last := ready.Add(2 * time.Second).Truncate(time.Second)
	scheduled := map[time.Time]bool{}
	waitUntil(t, "the fires up to two seconds after READY", func() bool {
		recs, err := audit.ReadAll(filepath.Join(dir, "audit.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Job == "tick" && r.Event == audit.EventRun {
				scheduled[r.Scheduled.UTC()] = true
			}
		}
		return scheduled[last.UTC()]
	})
	if err := d.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for s := first; !s.After(last); s = s.Add(time.Second) {
		if !scheduled[s.UTC()] {
			t.Errorf("the fire of %s (READY at %s) has no intent: lost while the engine started", s.Format("15:04:05.000"), ready.Format("15:04:05.000"))
		}
	}
}
