package state

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/iofault"
)

// stored is what state.db holds, read from a copy of the file (the store
// keeps its database locked): every bucket's entries as raw JSON.
type stored map[string]map[string]string

func readStored(t *testing.T, dir string) stored {
	t.Helper()
	src, err := os.Open(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cp := filepath.Join(t.TempDir(), "copy.db")
	dst, err := os.Create(cp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	must(t, dst.Close())
	db, err := bolt.Open(cp, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("state.db is not a readable database: %v", err)
	}
	defer db.Close()
	out := stored{}
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			m := map[string]string{}
			out[string(name)] = m
			return b.ForEach(func(k, v []byte) error {
				m[string(k)] = string(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatalf("state.db: %v", err)
	}
	return out
}

// storedTail is the audit tail state.db records.
func (st stored) tail(t *testing.T) uint64 {
	t.Helper()
	var at auditTail
	if err := json.Unmarshal([]byte(st["meta"][string(keyAudit)]), &at); err != nil {
		t.Fatalf("stored audit tail %q: %v", st["meta"][string(keyAudit)], err)
	}
	return at.Seq
}

func (st stored) equal(o stored) bool {
	if len(st) != len(o) {
		return false
	}
	for b, m := range st {
		if len(m) != len(o[b]) {
			return false
		}
		for k, v := range m {
			if w, ok := o[b][k]; !ok || w != v {
				return false
			}
		}
	}
	return true
}

// TestCheckpointFailureKeepsOldState: when state.db cannot be written (a
// full disk) or its fsync fails (an I/O error), the failed checkpoint
// leaves the stored state as it was and a consistent database, no
// temporary file, and the error naming the file and the cause; the store
// keeps the changes in memory, retries on its own without a new change,
// and once writes work again the database catches up, without damage.
func TestCheckpointFailureKeepsOldState(t *testing.T) {
	for _, tc := range []struct {
		kind  iofault.Kind
		cause error
	}{
		{iofault.DiskFull, syscall.ENOSPC},
		{iofault.SyncFails, syscall.EINVAL},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			dir := t.TempDir()
			stateDir := filepath.Join(dir, "state")
			errs := make(chan error, 1000)
			recovered := make(chan struct{}, 10)
			j := openJournaledWith(t, dir, AttachOptions{
				Interval:  5 * time.Millisecond,
				OnError:   func(err error) { errs <- err },
				OnRecover: func() { recovered <- struct{}{} },
			})
			fire := func(at time.Time) Intent {
				in := intentAt("on", at, "n1")
				if ok, err := j.s.Claim(Claim{Job: "on", Intent: in, Records: runRecords("on", in)}); !ok || err != nil {
					t.Fatalf("Claim %s = %v, %v", in.RunID, ok, err)
				}
				must(t, j.log.Append(final("on", in, "n1", audit.OutcomeSuccess)))
				must(t, j.s.Done("on", in.Scheduled, in.RunID))
				return in
			}
			a := fire(t0)
			must(t, j.s.Checkpoint())
			before := readStored(t, stateDir)
			if !strings.Contains(before["jobs"]["on"], a.RunID) {
				t.Fatalf("stored job before the failure %q; want fire %s done", before["jobs"]["on"], a.RunID)
			}
			if seq, _ := j.log.Tail(); before.tail(t) != seq {
				t.Fatalf("stored tail %d before the failure; want %d", before.tail(t), seq)
			}

			restore, err := iofault.Break(filepath.Join(stateDir, FileName), tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			restored := false
			defer func() {
				if !restored {
					restore()
				}
			}()
			b := fire(t0.Add(time.Hour)) // its Done asks for a checkpoint
			waitErr := func(what string) error {
				t.Helper()
				select {
				case err := <-errs:
					return err
				case <-time.After(10 * time.Second):
					t.Fatalf("no checkpoint error reported %s", what)
					return nil
				}
			}
			err = waitErr("after the change")
			if !errors.Is(err, tc.cause) || !strings.Contains(err.Error(), filepath.Join(stateDir, FileName)) {
				t.Errorf("checkpoint error %q; want it to name %s and wrap %v", err, FileName, tc.cause)
			}
			waitErr("again: the store retries without a new change")
			if err := j.s.Checkpoint(); !errors.Is(err, tc.cause) {
				t.Errorf("Checkpoint while broken = %v; want %v", err, tc.cause)
			}
			if got := j.s.Job("on"); !got.LastDone.Equal(b.Scheduled) || len(got.InFlight) != 0 {
				t.Errorf("Job(on) in memory while the database fails = %+v; want done at %v", got, b.Scheduled)
			}
			if now := readStored(t, stateDir); !now.equal(before) {
				t.Errorf("failed checkpoints changed state.db:\n before %v\n after  %v", before, now)
			}
			if left := tempLeft(t, stateDir); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}

			must(t, restore())
			restored = true
			select {
			case <-recovered:
			case <-time.After(10 * time.Second):
				t.Fatal("no recovery reported after writes work again")
			}
			after := readStored(t, stateDir)
			if seq, _ := j.log.Tail(); after.tail(t) != seq {
				t.Errorf("stored tail %d after recovery; want %d", after.tail(t), seq)
			}
			var js jobRec
			if err := json.Unmarshal([]byte(after["jobs"]["on"]), &js); err != nil || !js.LastDone.Equal(b.Scheduled) || js.LastRunID != b.RunID {
				t.Errorf("stored job after recovery %q (%v); want done at %v", after["jobs"]["on"], err, b.Scheduled)
			}
			if len(after["intents"]) != 0 {
				t.Errorf("stored intents after recovery: %v; want none", after["intents"])
			}
			if left := tempLeft(t, stateDir); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}

			// The database goes on working, and a crash now loses nothing.
			c := fire(t0.Add(2 * time.Hour))
			must(t, j.s.Checkpoint())
			j.crash()
			r := openJournaled(t, dir)
			if got := r.s.Job("on"); !got.LastDone.Equal(c.Scheduled) || len(got.InFlight) != 0 {
				t.Errorf("Job(on) after a crash = %+v; want done at %v", got, c.Scheduled)
			}
			readStored(t, stateDir) // and the database is consistent
		})
	}
}
