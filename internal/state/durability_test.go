package state

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// syncLog replaces fsync for one test: it records the path of every file
// or folder synced, and fails the calls for which fail returns an error.
// These tests change a package variable: none of them runs in parallel.
type syncLog struct {
	mu    sync.Mutex
	paths []string
}

func hookFsync(t *testing.T, fail func(path string) error) *syncLog {
	t.Helper()
	l := &syncLog{}
	old := fsync
	fsync = func(f *os.File) error {
		l.mu.Lock()
		l.paths = append(l.paths, f.Name())
		l.mu.Unlock()
		if fail != nil {
			if err := fail(f.Name()); err != nil {
				return err
			}
		}
		return f.Sync()
	}
	t.Cleanup(func() { fsync = old })
	return l
}

func (l *syncLog) synced() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.paths...)
}

// tempLeft returns the temporary files in dir.
func tempLeft(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestStoreCommitsAreFsynced: state.db is fsynced by bbolt on every
// commit, which the store must not switch off; the new database's folder
// entry is fsynced after the rename that puts it in place.
func TestStoreCommitsAreFsynced(t *testing.T) {
	dir := t.TempDir()
	log := hookFsync(t, nil)
	s := mustOpen(t, dir)
	if s.db.NoSync || s.db.NoGrowSync {
		t.Fatalf("state.db opened with NoSync %v, NoGrowSync %v: commits would not be durable", s.db.NoSync, s.db.NoGrowSync)
	}
	var dirSynced bool
	for _, p := range log.synced() {
		dirSynced = dirSynced || filepath.Clean(p) == filepath.Clean(dir)
	}
	if !dirSynced {
		t.Errorf("creating %s fsynced %v; want its folder %s", FileName, log.synced(), dir)
	}
}

// TestWriteFileSyncOrder: the temporary file is fsynced before it is
// renamed over the old file, and the folder after.
func TestWriteFileSyncOrder(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	must(t, os.WriteFile(path, []byte("old"), 0o600))
	var atFileSync []byte
	log := hookFsync(t, func(p string) error {
		if filepath.Dir(p) == dir && strings.HasPrefix(filepath.Base(p), "f.json.tmp-") {
			atFileSync, _ = os.ReadFile(path)
		}
		return nil
	})
	must(t, writeFileSync(path, []byte("new")))
	got := log.synced()
	if len(got) != 2 || !strings.HasPrefix(filepath.Base(got[0]), "f.json.tmp-") || filepath.Clean(got[1]) != dir {
		t.Fatalf("fsynced %v; want the temporary file, then the folder", got)
	}
	if string(atFileSync) != "old" {
		t.Errorf("the file held %q when its replacement was fsynced; want the old content (rename after fsync)", atFileSync)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("content %q; want new", b)
	}
}

// TestWriteFileSyncFailureKeepsOldFile: when the write cannot be made
// durable or cannot be put in place, the old file is intact and no
// temporary file is left; a failed folder fsync is reported.
func TestWriteFileSyncFailureKeepsOldFile(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string) // before the write
		fail    func(path string) error
		wantOld bool // the old content must still be there
	}{
		{"fsync of the new file fails", nil, func(p string) error {
			if strings.Contains(filepath.Base(p), ".tmp-") {
				return syscall.EIO
			}
			return nil
		}, true},
		{"rename fails", func(t *testing.T, path string) {
			// A non-empty folder where the file should go: rename(2) refuses.
			must(t, os.Remove(path))
			must(t, os.MkdirAll(filepath.Join(path, "x"), 0o700))
		}, nil, false},
		{"fsync of the folder fails", nil, func(p string) error {
			if !strings.Contains(filepath.Base(p), ".") {
				return syscall.EIO
			}
			return nil
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.json")
			must(t, os.WriteFile(path, []byte("old"), 0o600))
			if tc.setup != nil {
				tc.setup(t, path)
			}
			hookFsync(t, tc.fail)
			if err := writeFileSync(path, []byte("new")); err == nil {
				t.Fatal("writeFileSync succeeded; want the failure reported")
			}
			if left := tempLeft(t, dir); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
			if tc.wantOld {
				if b, err := os.ReadFile(path); err != nil || string(b) != "old" {
					t.Errorf("after the failure the file holds %q (%v); want the old content", b, err)
				}
			}
		})
	}
}

// TestMigrationFailureKeepsOldState: a migration from state.json whose
// writes fail leaves the old file as it was and no temporary file; Open
// reports it, and the next Open migrates.
func TestMigrationFailureKeepsOldState(t *testing.T) {
	dir, old := validFile(t)
	v1Path := filepath.Join(dir, FileNameV1)
	hookFsync(t, func(p string) error {
		if strings.Contains(filepath.Base(p), ".tmp-") {
			return syscall.EIO
		}
		return nil
	})
	if s, err := Open(dir); err == nil {
		s.Close()
		t.Fatal("Open succeeded with every file fsync failing; want the migration's failure")
	} else if !errors.Is(err, syscall.EIO) {
		t.Errorf("Open = %v; want the fsync error", err)
	}
	if b, err := os.ReadFile(v1Path); err != nil || !bytes.Equal(b, old) {
		t.Fatalf("%s after a failed migration: %v; want the old file byte for byte", v1Path, err)
	}
	if left := tempLeft(t, dir); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	fsync = (*os.File).Sync
	s := mustOpen(t, dir)
	if got := s.Job("nightly-stop"); got.LastRunID != "nightly-stop@x" {
		t.Errorf("Job(nightly-stop) after the retried migration = %+v", got)
	}
	if p := s.Pending(); len(p) != 1 || p[0].RunID != "morning-start@1" {
		t.Errorf("Pending() after the retried migration = %+v; want the old file's intent", p)
	}
}
