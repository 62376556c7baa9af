package state_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/state"
	"github.com/cloudcron/scheduler/internal/state/statetest"
)

// TestContract runs the run-state contract against the embedded store,
// opened as the daemon opens it: Open, the audit log checked against the
// stored tail, Attach.
func TestContract(t *testing.T) {
	statetest.Run(t, func(t *testing.T) statetest.Opener {
		dir := filepath.Join(t.TempDir(), "state")
		return func(t *testing.T, auditPath string) (state.RunState, func() error) {
			t.Helper()
			s, err := state.Open(dir)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			seq, hash := s.AuditTail()
			l, err := audit.OpenWith(auditPath, audit.Options{ExpectSeq: seq, ExpectHash: hash})
			if err != nil {
				s.Close()
				t.Fatalf("open audit log: %v", err)
			}
			if err := s.Attach(l, state.AttachOptions{AuditPath: auditPath}); err != nil {
				s.Close()
				l.Close()
				t.Fatalf("Attach: %v", err)
			}
			return s, func() error { return errors.Join(s.Close(), l.Close()) }
		}
	})
}
