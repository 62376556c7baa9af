//go:build mutation

// Package mutation checks that the test suite kills a list of critical
// mutants: small changes to the code that a test must notice (each one
// survived once, or guards a property the project depends on). Run:
//
//	go test -tags mutation -v ./internal/mutation      (or .ci/mutants)
//
// Each mutant replaces one exact piece of one file (through go test
// -overlay: the working tree is never touched) and runs the tests that
// should kill it; the report says killed or survived for each. A mutant
// whose piece is no longer in the file fails the check: update the list
// when the code moves.
package mutation

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// mutant is one change and the tests that must kill it.
type mutant struct {
	name     string
	file     string // relative to the module root
	from, to string // from must occur exactly once in file
	pkg      string // package of the tests
	run      string // -run pattern
}

var mutants = []mutant{
	{"engine: DST fall-back rule without the one-second step", "internal/engine/schedule.go",
		"if seen := wall(start, prevOff).Add(-time.Second); lower.Before(seen) {",
		"if seen := wall(start, prevOff); lower.Before(seen) {",
		"./internal/engine", "^TestNextDST$"},
	{"state: bbolt commits without fsync (NoSync)", "internal/state/store.go",
		"\t\tNoFreelistSync: true,\n",
		"\t\tNoFreelistSync: true,\n\t\tNoSync:         true,\n",
		"./internal/state", "^TestStoreCommitsAreFsynced$"},
	{"state: writeFileSync renames without fsyncing the file", "internal/state/v1.go",
		"\tif err := fsync(f); err != nil {\n\t\treturn fail(err)\n\t}\n",
		"",
		"./internal/state", "^TestWriteFileSync"},
	{"state: new state.db's folder not fsynced", "internal/state/store.go",
		"\tif err == nil {\n\t\terr = syncDir(filepath.Dir(path))\n\t}\n",
		"",
		"./internal/state", "^TestStoreCommitsAreFsynced$"},
	{"state: failed save leaves its temporary file", "internal/state/v1.go",
		"\t\tf.Close()\n\t\tos.Remove(tmp)\n\t\treturn err\n",
		"\t\tf.Close()\n\t\treturn err\n",
		"./internal/state", "^(TestWriteFileSyncFailureKeepsOldFile|TestMigrationFailureKeepsOldState)$"},
	{"daemon: crash recovery counts a retry record as final", "internal/daemon/state.go",
		"final = r.Outcome != audit.OutcomeRetry",
		"final = true",
		"./internal/daemon", "^TestFinishedTargets$"},
	{"daemon: catch-up after a backward clock jump", "internal/daemon/state.go",
		"\tif j.Kind == state.JumpForward && d.cl.isLeader() {\n\t\tif _, err := d.catchUp(",
		"\tif j.Kind != state.NoJump && d.cl.isLeader() {\n\t\tif _, err := d.catchUp(",
		"./internal/daemon", "^TestClockJumpedBranches$"},
	{"daemon: timers not rebuilt after a clock jump", "internal/daemon/state.go",
		"func (d *Daemon) reregisterLocked() {\n",
		"func (d *Daemon) reregisterLocked() {\n\treturn\n",
		"./internal/daemon", "^(TestClockJumpedBranches|TestWatchReadingsHandlesJumps)$"},
	{"daemon: only forward clock jumps handled", "internal/daemon/state.go",
		"if j := det.ObserveReadings(read()); j.Kind != state.NoJump {",
		"if j := det.ObserveReadings(read()); j.Kind == state.JumpForward {",
		"./internal/daemon", "^TestWatchReadingsHandlesJumps$"},
	{"daemon: an unchanged config file is reloaded", "internal/daemon/daemon.go",
		"if !force && hex.EncodeToString(sum[:]) == d.lastSeen {",
		"if false && hex.EncodeToString(sum[:]) == d.lastSeen {",
		"./internal/daemon", "^TestWatchBurstReloadsOnce$"},
	{"audit: Close does not drain queued appends", "internal/audit/log.go",
		"\tl.closed = true\n\tl.drainLocked()\n",
		"\tl.closed = true\n",
		"./internal/audit", "^TestCloseDrainsQueuedAppends$"},
	{"audit: Reopen does not follow the moved file", "internal/audit/log.go",
		"\tif err := l.refresh(); err != nil {\n\t\treturn fmt.Errorf(\"audit: reopen: %w\", err)\n\t}\n",
		"",
		"./internal/audit", "^TestReopenOpensTheNewLiveFile$"},
	{"vendors: Scrub keeps a request id that held a secret", "internal/vendors/scrub.go",
		"\t\tve.RequestID = \"\"\n",
		"",
		"./internal/vendors", "^TestScrub$"},
	{"otc: concurrent callers do not share one token fetch", "internal/vendors/otc/iam.go",
		"\t\tf := ts.inflight\n",
		"\t\tvar f *tokenFetch\n",
		"./internal/vendors/otc", "^(TestIAMConcurrentCallsShareOneFetch|TestIAMWaiterSurvivesCancelledFetcher)$"},
	{"ratelimit: Retry-After ignored", "internal/ratelimit/ratelimit.go",
		"\tpause := retryAfter\n",
		"\tpause := time.Duration(0)\n",
		"./internal/ratelimit", "^TestThrottlePausesTheWholeAccount$"},
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
}

// goTest runs go test in root with args; ok is its success.
func goTest(root string, args ...string) (ok bool, out string) {
	cmd := exec.Command("go", append([]string{"test", "-count=1"}, args...)...)
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	return err == nil, string(b)
}

func TestMutants(t *testing.T) {
	root := moduleRoot(t)
	// The tests must pass on the code as it is, or a "kill" means nothing.
	runs := map[string][]string{}
	for _, m := range mutants {
		runs[m.pkg] = append(runs[m.pkg], m.run)
	}
	for pkg, rs := range runs {
		if ok, out := goTest(root, "-run", strings.Join(rs, "|"), pkg); !ok {
			t.Fatalf("the killing tests fail without a mutant (%s):\n%s", pkg, out)
		}
	}
	var mu sync.Mutex
	var killed, survived []string
	tmp := t.TempDir()
	for i, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(root, m.file)
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(src), m.from); n != 1 {
				t.Fatalf("stale mutant: %s holds %d copies of %q; want exactly 1 (update the list)", m.file, n, m.from)
			}
			mutated := filepath.Join(tmp, fmt.Sprintf("m%02d.go", i))
			if err := os.WriteFile(mutated, []byte(strings.Replace(string(src), m.from, m.to, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			overlay := filepath.Join(tmp, fmt.Sprintf("m%02d.json", i))
			b, _ := json.Marshal(map[string]map[string]string{"Replace": {path: mutated}})
			if err := os.WriteFile(overlay, b, 0o600); err != nil {
				t.Fatal(err)
			}
			ok, out := goTest(root, "-overlay", overlay, "-run", m.run, m.pkg)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case ok:
				survived = append(survived, m.name)
				t.Errorf("SURVIVED: %s (%s, go test -run '%s' %s passed)", m.name, m.file, m.run, m.pkg)
			case !strings.Contains(out, "--- FAIL"):
				t.Errorf("mutant did not build or the tests did not run: %s\n%s", m.name, out)
			default:
				killed = append(killed, m.name)
				t.Logf("killed: %s", m.name)
			}
		})
	}
	t.Cleanup(func() {
		t.Logf("mutants: %d killed, %d survived, %d in all", len(killed), len(survived), len(mutants))
		for _, s := range survived {
			t.Logf("survived: %s", s)
		}
	})
}
