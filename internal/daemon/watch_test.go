package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
)

const watchBase = `version: 1
audit: {path: %s}
state: {dir: %s}
accounts:
  sb: {vendor: sandbox}
jobs:
  - {name: %s, schedule: "0 9 * * *", account: sb, action: modelarts.notebook.start, targets: [x]}
`

// startWatched runs a daemon with Watch on a config at path (which may be
// a symlink) and returns its audit path and a stop function.
func startWatched(t *testing.T, path, auditPath string) func() {
	t.Helper()
	stop, _ := startWatchedWith(t, path, auditPath, 0)
	return stop
}

// startWatchedWith is startWatched with a debounce (0: the default) that
// also returns the daemon's debug log. It returns once the watcher is
// registered.
func startWatchedWith(t *testing.T, path, auditPath string, wait time.Duration) (func(), *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{ConfigPath: path, Log: zerolog.New(logs).Level(zerolog.DebugLevel), Watch: true, Grace: time.Second, debounce: wait}, nil)
	}()
	waitUntil(t, "the config watcher", func() bool { return strings.Contains(logs.String(), "watching the config file for changes") })
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}, logs
}

// replaceFile replaces path with data the way an editor saving by rename
// does, so that the daemon never reads a half-written file.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp-save"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// unchangedSkips counts the reloads the daemon skipped because the file's
// content had not changed.
func unchangedSkips(logs *syncBuf) int {
	return strings.Count(logs.String(), "touched but unchanged since the last reload")
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func reloads(t *testing.T, auditPath string) []audit.Record {
	t.Helper()
	recs, err := audit.ReadAll(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, r := range recs {
		if r.Event == audit.EventReload {
			out = append(out, r)
		}
	}
	return out
}

func TestWatchEditorRenameSave(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	auditPath := filepath.Join(dir, "audit.jsonl")
	write := func(p, job string) {
		if err := os.WriteFile(p, []byte(fmt.Sprintf(watchBase, auditPath, filepath.Join(dir, "state"), job)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(path, "one")
	stop := startWatched(t, path, auditPath)
	defer stop()
	// Save the way vim and many editors do: write a temp file, rename over.
	tmp := filepath.Join(dir, ".config.yaml.swp")
	write(tmp, "two")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a reload record", func() bool { return len(reloads(t, auditPath)) == 1 })
	r := reloads(t, auditPath)[0]
	if r.Outcome != audit.OutcomeSuccess || !strings.Contains(r.Detail, "added [two]") || !strings.Contains(r.Detail, "removed [one]") {
		t.Fatalf("reload record %+v; want success adding two and removing one", r)
	}
}

func TestWatchSymlinkSwap(t *testing.T) {
	// Kubernetes ConfigMap layout: config.yaml -> ..data/config.yaml, ..data -> ..v1
	dir := t.TempDir()
	auditPath := filepath.Join(dir, "audit.jsonl")
	mk := func(version, job string) {
		vdir := filepath.Join(dir, version)
		if err := os.Mkdir(vdir, 0o700); err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf(watchBase, auditPath, filepath.Join(dir, "state"), job)
		if err := os.WriteFile(filepath.Join(vdir, "config.yaml"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mk("..v1", "one")
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), path); err != nil {
		t.Fatal(err)
	}
	stop := startWatched(t, path, auditPath)
	defer stop()
	mk("..v2", "two")
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a reload record", func() bool { return len(reloads(t, auditPath)) == 1 })
	if r := reloads(t, auditPath)[0]; r.Outcome != audit.OutcomeSuccess || !strings.Contains(r.Detail, "added [two]") {
		t.Fatalf("reload record %+v; want success adding two", r)
	}
}

func TestWatchBurstReloadsOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	auditPath := filepath.Join(dir, "audit.jsonl")
	body := func(job string) []byte {
		return []byte(fmt.Sprintf(watchBase, auditPath, filepath.Join(dir, "state"), job))
	}
	if err := os.WriteFile(path, body("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The burst must fall inside one debounce window: with the default
	// 75 ms a loaded machine can pause longer between two writes (and the
	// daemon then reads a truncated file), so the window here is wide.
	stop, logs := startWatchedWith(t, path, auditPath, time.Second)
	defer stop()
	// 20 writes in quick succession, as a tool writing in chunks would.
	for i := 0; i < 20; i++ {
		if err := os.WriteFile(path, body(fmt.Sprintf("j%d", i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "a reload record", func() bool { return len(reloads(t, auditPath)) >= 1 })
	// Touching the file and writing it unchanged does not reload. The skip
	// is logged once the watcher's request for it is handled, after any
	// reload the burst could still have caused.
	skips := unchangedSkips(logs)
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, body("j19"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the unchanged write to be skipped", func() bool {
		return unchangedSkips(logs) > skips || len(reloads(t, auditPath)) > 1
	})
	rs := reloads(t, auditPath)
	if len(rs) != 1 || rs[0].Outcome != audit.OutcomeSuccess || !strings.Contains(rs[0].Detail, "added [j19]") {
		t.Fatalf("%d reload records %+v; want exactly one, a success ending at j19", len(rs), rs)
	}
}

func TestWatchMalformedEditKeepsSchedule(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	auditPath := filepath.Join(dir, "audit.jsonl")
	good := fmt.Sprintf(watchBase, auditPath, filepath.Join(dir, "state"), "one")
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	stop := startWatched(t, path, auditPath)
	defer stop()
	replaceFile(t, path, []byte(good+"  - {name: [unclosed\n"))
	waitUntil(t, "a reload record", func() bool { return len(reloads(t, auditPath)) == 1 })
	r := reloads(t, auditPath)[0]
	if r.Outcome != audit.OutcomeFailure || !strings.Contains(r.Error, path+":") || !strings.Contains(r.Error, "invalid YAML") {
		t.Fatalf("reload record %+v; want failure naming %s:LINE: invalid YAML", r, path)
	}
}

// TestConfigWatchFollowsItsTarget checks which events of the folder count
// for a config that is a symlink: writes to what it resolves to and to
// itself do, the audit log's appends beside it do not, and after the link
// is re-pointed (a rename onto its name) the new target counts and the old
// one no longer does.
func TestConfigWatchFollowsItsTarget(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a.yaml", "b.yaml", "audit.jsonl"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "config.yaml")
	if err := os.Symlink("a.yaml", link); err != nil {
		t.Fatal(err)
	}
	cw := newConfigWatch(link)
	ev := func(name string, op fsnotify.Op) fsnotify.Event {
		return fsnotify.Event{Name: filepath.Join(dir, name), Op: op}
	}
	check := func(e fsnotify.Event, want bool) {
		t.Helper()
		if got := cw.relevant(e); got != want {
			t.Errorf("relevant(%s) = %v; want %v", e, got, want)
		}
	}
	check(ev("a.yaml", fsnotify.Write), true)
	check(ev("audit.jsonl", fsnotify.Write), false)
	check(ev("b.yaml", fsnotify.Write), false)
	check(ev("config.yaml", fsnotify.Write), true)
	if err := os.Symlink("b.yaml", filepath.Join(dir, "tmp.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "tmp.yaml"), link); err != nil {
		t.Fatal(err)
	}
	check(ev("config.yaml", fsnotify.Create), true)
	check(ev("b.yaml", fsnotify.Write), true)
	check(ev("a.yaml", fsnotify.Write), false)
	check(ev("audit.jsonl", fsnotify.Create), false) // a rotation
}
