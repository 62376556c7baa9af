package state

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 2, 19, 0, 0, 0, time.UTC)

func mustOpen(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenCreatesPrivateDirAndFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "state")
	s := mustOpen(t, dir)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("state dir mode = %o; want 700", perm)
	}
	if err := s.Register("nightly", t0); err != nil {
		t.Fatal(err)
	}
	fi, err = os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("state file mode = %o; want 600", perm)
	}
	must(t, s.Close())
	if _, _, err := ReadAuditTail(dir); err != nil {
		t.Errorf("ReadAuditTail of a closed state = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileNameV1)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a new state dir has a %s (err %v)", FileNameV1, err)
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	berlin := mustZone(t, "Europe/Berlin")
	sched1 := time.Date(2026, 3, 2, 8, 0, 0, 0, berlin)
	sched2 := sched1.Add(24 * time.Hour)
	in1 := Intent{RunID: "on@1", Scheduled: sched1, Action: "dataforest.app.start", Account: "ncp-prod",
		Targets: []string{"a", "b"}, Idempotent: true, Started: sched1.Add(time.Second)}
	in2 := Intent{RunID: "on@2", Scheduled: sched2, Action: "dataforest.app.start", Account: "ncp-prod",
		Targets: []string{"c"}, Idempotent: true, Started: sched2.Add(time.Second)}
	steps := []error{
		s.Register("on", t0),
		s.Register("on", t0.Add(time.Hour)), // keeps the first Since
		s.Register("off", t0.Add(2*time.Hour)),
		s.Begin("on", in2), // out of order: kept sorted by scheduled
		s.Begin("on", in1),
		s.Done("on", sched1, "on@1"),
		s.SetAuditTail(42, "abc123"),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	r := mustOpen(t, dir)
	on := r.Job("on")
	if !on.Since.Equal(t0) || !on.LastDone.Equal(sched1) || on.LastRunID != "on@1" {
		t.Errorf("Job(on) = since %v, last done %v %q; want %v, %v \"on@1\"", on.Since, on.LastDone, on.LastRunID, t0, sched1)
	}
	if len(on.InFlight) != 1 || !intentEqual(on.InFlight[0], in2) {
		t.Errorf("Job(on).InFlight = %+v; want [%+v]", on.InFlight, in2)
	}
	if off := r.Job("off"); !off.Since.Equal(t0.Add(2*time.Hour)) || !off.LastDone.IsZero() {
		t.Errorf("Job(off) = %+v; want since %v, never done", off, t0.Add(2*time.Hour))
	}
	if got := r.Job("unknown"); !got.Since.IsZero() || got.InFlight != nil {
		t.Errorf("Job(unknown) = %+v; want zero", got)
	}
	if seq, hash := r.AuditTail(); seq != 42 || hash != "abc123" {
		t.Errorf("AuditTail() = %d, %q; want 42, \"abc123\"", seq, hash)
	}
	if got := strings.Join(r.Jobs(), ","); got != "off,on" {
		t.Errorf("Jobs() = %s; want off,on", got)
	}
	p := r.Pending()
	if len(p) != 1 || p[0].Job != "on" || !intentEqual(p[0].Intent, in2) {
		t.Fatalf("Pending() = %+v; want the on@2 intent", p)
	}
	// Copies: changing them must not change the store.
	p[0].Targets[0] = "changed"
	on.InFlight[0].Targets[0] = "changed"
	if got := r.Job("on").InFlight[0].Targets[0]; got != "c" {
		t.Errorf("store shares memory with a returned value: target = %q", got)
	}
}

func intentEqual(a, b Intent) bool {
	return a.RunID == b.RunID && a.Scheduled.Equal(b.Scheduled) && a.Action == b.Action &&
		a.Account == b.Account && strings.Join(a.Targets, "\x00") == strings.Join(b.Targets, "\x00") &&
		a.Idempotent == b.Idempotent && a.Started.Equal(b.Started)
}

func TestDoneKeepsNewest(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	late, early := t0.Add(time.Hour), t0
	if err := s.Done("j", late, "j@late"); err != nil {
		t.Fatal(err)
	}
	// A slow older fire finishing after a newer one must not move LastDone back.
	if err := s.Begin("j", Intent{RunID: "j@early", Scheduled: early}); err != nil {
		t.Fatal(err)
	}
	if err := s.Done("j", early, "j@early"); err != nil {
		t.Fatal(err)
	}
	js := s.Job("j")
	if !js.LastDone.Equal(late) || js.LastRunID != "j@late" || len(js.InFlight) != 0 {
		t.Errorf("Job = %+v; want last done %v j@late, nothing in flight", js, late)
	}
}

func TestBeginSameRunIDReplaces(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	for _, targets := range [][]string{{"a"}, {"a", "b"}} {
		if err := s.Begin("j", Intent{RunID: "j@1", Scheduled: t0, Targets: targets}); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Job("j").InFlight; len(got) != 1 || len(got[0].Targets) != 2 {
		t.Errorf("InFlight = %+v; want the second intent only", got)
	}
}

func TestBadArguments(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	for name, err := range map[string]error{
		"register empty":  s.Register("", t0),
		"register zero":   s.Register("j", time.Time{}),
		"begin no run id": s.Begin("j", Intent{Scheduled: t0}),
		"begin no time":   s.Begin("j", Intent{RunID: "x"}),
		"done no time":    s.Done("j", time.Time{}, "x"),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if got := s.Jobs(); len(got) != 0 {
		t.Errorf("bad calls changed the state: jobs %v", got)
	}
}

func TestForget(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	must(t, s.Register("idle", t0))
	must(t, s.Done("idle", t0.Add(time.Hour), "idle@1"))
	must(t, s.Register("busy", t0))
	must(t, s.Done("busy", t0.Add(time.Hour), "busy@1"))
	must(t, s.Begin("busy", Intent{RunID: "busy@2", Scheduled: t0.Add(2 * time.Hour)}))

	must(t, s.Forget("idle"))
	must(t, s.Forget("busy"))
	must(t, s.Forget("never-known"))
	if got := strings.Join(s.Jobs(), ","); got != "busy" {
		t.Errorf("Jobs() after Forget = %s; want busy (it has a fire in flight)", got)
	}
	busy := s.Job("busy")
	if !busy.Since.IsZero() || !busy.LastDone.IsZero() || len(busy.InFlight) != 1 {
		t.Errorf("Job(busy) after Forget = %+v; want only the in-flight intent", busy)
	}
	// Re-added later: a fresh Since, so fires while it was absent are not caught up.
	readd := t0.Add(5 * time.Hour)
	must(t, s.Register("idle", readd))
	if got := s.Job("idle"); !got.Since.Equal(readd) || !got.LastDone.IsZero() {
		t.Errorf("Job(idle) after re-add = %+v; want since %v only", got, readd)
	}
	// The removed job's last fire completes: its entry goes once it is done
	// and forgotten again.
	must(t, s.Done("busy", t0.Add(2*time.Hour), "busy@2"))
	must(t, s.Forget("busy"))
	must(t, s.Close())
	r := mustOpen(t, dir)
	if got := strings.Join(r.Jobs(), ","); got != "idle" {
		t.Errorf("Jobs() after reopen = %s; want idle", got)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPendingIsWhatACrashLeft(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	must(t, s.Begin("j", Intent{RunID: "j@1", Scheduled: t0}))
	if p := s.Pending(); len(p) != 0 {
		t.Errorf("Pending() = %+v; want none: this process began it", p)
	}
	must(t, s.Close())

	r := mustOpen(t, dir)
	must(t, r.Begin("k", Intent{RunID: "k@1", Scheduled: t0.Add(-time.Hour)}))
	p := r.Pending()
	if len(p) != 1 || p[0].RunID != "j@1" {
		t.Fatalf("Pending() = %+v; want j@1 only", p)
	}
	must(t, r.Done("j", t0, "j@1"))
	if p := r.Pending(); len(p) != 0 {
		t.Errorf("Pending() after Done = %+v; want none", p)
	}
}

func TestClosed(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	must(t, s.Register("j", t0))
	must(t, s.Close())
	if err := s.Done("j", t0, "j@1"); !errors.Is(err, ErrClosed) {
		t.Errorf("Done after Close = %v; want ErrClosed", err)
	}
	if got := s.Job("j"); !got.Since.Equal(t0) {
		t.Errorf("Job after Close = %+v; want the last state", got)
	}
	must(t, s.Close()) // twice is fine
}

// validFile writes a good old-format (v1) state file into a new dir and
// returns the dir and the file's bytes.
func validFile(t *testing.T) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	d := &dataV1{Audit: auditTail{Seq: 7, Hash: "h7"}, Jobs: map[string]*JobState{
		"nightly-stop": {Since: t0, LastDone: t0.Add(time.Hour), LastRunID: "nightly-stop@x"},
		"morning-start": {Since: t0, InFlight: []Intent{{RunID: "morning-start@1", Scheduled: t0.Add(13 * time.Hour),
			Action: "scnet.notebook.start", Account: "a", Targets: []string{"n1", "n2"}, Idempotent: true}}},
	}}
	b, err := encodeV1(d)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(dir, FileNameV1), b, 0o600))
	return dir, b
}

func TestOpenRefusesBadFiles(t *testing.T) {
	_, good := validFile(t)
	tests := []struct {
		name    string
		content func() []byte
		kind    error
		problem string
	}{
		{"truncated", func() []byte { return good[:len(good)/2] }, ErrCorrupt, "not valid JSON"},
		{"torn to one byte", func() []byte { return good[:1] }, ErrCorrupt, "not valid JSON"},
		{"empty", func() []byte { return nil }, ErrCorrupt, "empty"},
		{"garbage", func() []byte { return []byte("\x00\x17garbage") }, ErrCorrupt, "not valid JSON"},
		{"edited value", func() []byte {
			return bytes.Replace(good, []byte("nightly-stop@x"), []byte("nightly-stop@y"), 1)
		}, ErrCorrupt, "checksum mismatch"},
		{"flipped digit", func() []byte {
			i := bytes.Index(good, []byte("T20:00:00Z"))
			b := bytes.Clone(good)
			b[i+2] = '1' // 20:00 -> 21:00
			return b
		}, ErrCorrupt, "checksum mismatch"},
		{"checksum removed", func() []byte {
			return bytes.Replace(good, []byte(`"checksum": "sha256:`), []byte(`"checksum": "x`), 1)
		}, ErrCorrupt, "checksum mismatch"},
		{"foreign object", func() []byte { return []byte(`{"jobs": {"a": 1}}`) }, ErrForeign, "no format marker"},
		{"foreign array", func() []byte { return []byte(`[1, 2]`) }, ErrForeign, "not a scheduler state file"},
		{"newer format", func() []byte {
			return bytes.Replace(good, []byte(FormatV1), []byte("scheduler-state/v9"), 1)
		}, ErrForeign, `format "scheduler-state/v9"`},
		{"valid checksum, unknown field", func() []byte {
			body := []byte(`{"audit":{"seq":0,"hash":""},"jobs":{},"extra":1}`)
			return fmt.Appendf(nil, `{"format":%q,"checksum":%q,"state":%s}`, FormatV1, checksum(body), body)
		}, ErrCorrupt, "invalid content"},
		{"valid checksum, intent without run id", func() []byte {
			body := []byte(`{"audit":{"seq":0,"hash":""},"jobs":{"j":{"in_flight":[{"run_id":"","scheduled":"2026-01-01T00:00:00Z"}]}}}`)
			return fmt.Appendf(nil, `{"format":%q,"checksum":%q,"state":%s}`, FormatV1, checksum(body), body)
		}, ErrCorrupt, "without run_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileNameV1)
			content := tc.content()
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir)
			if err == nil {
				s.Close()
				t.Fatalf("Open = nil error; want %v", tc.kind)
			}
			var fe *FileError
			if !errors.As(err, &fe) || !errors.Is(err, tc.kind) || fe.Path != path {
				t.Fatalf("Open = %v; want a FileError for %s wrapping %v", err, path, tc.kind)
			}
			msg := err.Error()
			for _, want := range []string{path, tc.problem, "aside", "fires already done may then repeat"} {
				if !strings.Contains(msg, want) {
					t.Errorf("Open error %q lacks %q", msg, want)
				}
			}
			// Never a silent reset: the file is untouched, no database was
			// made beside it, and the lock is released.
			if after, _ := os.ReadFile(path); !bytes.Equal(after, content) {
				t.Errorf("Open changed the refused file")
			}
			if _, err := os.Stat(filepath.Join(dir, FileName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Open created %s beside a refused state file", FileName)
			}
			must(t, os.Rename(path, path+".bad"))
			mustOpen(t, dir) // the lock was released; a fresh start works
		})
	}
}

func TestOpenAcceptsReformattedFile(t *testing.T) {
	// The checksum covers the content, not the whitespace: an operator
	// may pretty-print or compact the file with jq without breaking it.
	dir, good := validFile(t)
	var compact bytes.Buffer
	if err := json.Compact(&compact, good); err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(dir, FileNameV1), compact.Bytes(), 0o600))
	s := mustOpen(t, dir)
	if got := s.Job("nightly-stop"); got.LastRunID != "nightly-stop@x" {
		t.Errorf("Job after reformatting = %+v", got)
	}
}

func TestLockConflict(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	_, err := Open(dir)
	lock := filepath.Join(dir, LockName)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v; want ErrLocked", err)
	}
	for _, want := range []string{lock, "pid " + strconv.Itoa(os.Getpid()), "another scheduler"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("lock error %q lacks %q", err, want)
		}
	}
	must(t, s.Close())
	mustOpen(t, dir)
}

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestHelperProcess is not a test: the kill tests run it in a child
// process, which writes state in a loop and prints each acknowledged step.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("STATE_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process for the kill tests")
	}
	s, err := Open(dir)
	if err != nil {
		fmt.Println("open error:", err)
		os.Exit(3)
	}
	start := s.Job("j").LastDone
	if start.IsZero() {
		start = t0
	}
	fmt.Println("ready")
	for i := 1; ; i++ {
		sched := start.Add(time.Duration(i) * time.Minute)
		id := "j@" + sched.Format(time.RFC3339)
		if err := s.Begin("j", Intent{RunID: id, Scheduled: sched, Action: "start", Targets: []string{"t"}, Idempotent: true}); err != nil {
			fmt.Println("begin error:", err)
			os.Exit(3)
		}
		fmt.Println("begun", sched.Format(time.RFC3339))
		if err := s.Done("j", sched, id); err != nil {
			fmt.Println("done error:", err)
			os.Exit(3)
		}
		fmt.Println("done", sched.Format(time.RFC3339))
	}
}

// TestKill9 kills a writing process at random instants and checks that the
// state always opens (lock released by the kernel, file complete), that no
// acknowledged Done is lost, and that a Begin acknowledged without Done
// is pending.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 12 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "STATE_HELPER_DIR="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1<<16)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		if l := <-lines; l != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: helper said %q", round, l)
		}
		if _, err := Open(dir); !errors.Is(err, ErrLocked) {
			t.Errorf("round %d: Open while the helper runs = %v; want ErrLocked", round, err)
		}
		time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
		must(t, cmd.Process.Kill()) // SIGKILL
		cmd.Wait()
		var lastDone, lastBegun string
		for l := range lines {
			switch {
			case strings.HasPrefix(l, "done "):
				lastDone = strings.TrimPrefix(l, "done ")
			case strings.HasPrefix(l, "begun "):
				lastBegun = strings.TrimPrefix(l, "begun ")
			default:
				t.Fatalf("round %d: helper said %q", round, l)
			}
		}
		s, err := Open(dir)
		if err != nil {
			t.Fatalf("round %d: Open after kill -9 = %v", round, err)
		}
		js := s.Job("j")
		if lastDone != "" {
			want, _ := time.Parse(time.RFC3339, lastDone)
			if js.LastDone.Before(want) {
				t.Errorf("round %d: LastDone = %v; acknowledged done %v lost", round, js.LastDone, want)
			}
		}
		if lastBegun > lastDone {
			want, _ := time.Parse(time.RFC3339, lastBegun)
			if !js.LastDone.Equal(want) {
				p := s.Pending()
				if len(p) != 1 || !p[0].Scheduled.Equal(want) {
					t.Errorf("round %d: begun %v not done: Pending() = %+v; want it", round, want, p)
				}
			}
		}
		// Settle what the crash left, as the daemon would.
		for _, p := range s.Pending() {
			must(t, s.Done(p.Job, p.Scheduled, p.RunID))
		}
		t.Logf("round %d: killed after done %s, begun %s; state has %v", round, lastDone, lastBegun, js.LastDone.Format(time.RFC3339))
		must(t, s.Close())
	}
}

func TestConcurrentChanges(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	const jobs, fires = 4, 10
	errs := make(chan error, jobs)
	for j := range jobs {
		go func() {
			name := "job" + strconv.Itoa(j)
			for i := 1; i <= fires; i++ {
				sched := t0.Add(time.Duration(i) * time.Minute)
				id := name + "@" + strconv.Itoa(i)
				if err := s.Begin(name, Intent{RunID: id, Scheduled: sched}); err != nil {
					errs <- err
					return
				}
				_ = s.Job(name)
				if err := s.Done(name, sched, id); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range jobs {
		must(t, <-errs)
	}
	must(t, s.Close())
	r := mustOpen(t, dir)
	for j := range jobs {
		js := r.Job("job" + strconv.Itoa(j))
		if !js.LastDone.Equal(t0.Add(fires*time.Minute)) || len(js.InFlight) != 0 {
			t.Errorf("job%d = %+v; want all %d fires done", j, js, fires)
		}
	}
}

// BenchmarkBeginDone measures one fire's two durable writes.
func BenchmarkBeginDone(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 50; i++ { // a realistic number of jobs in the file
		s.Register("job"+strconv.Itoa(i), t0)
	}
	i := 0
	for b.Loop() {
		i++
		sched := t0.Add(time.Duration(i) * time.Second)
		id := "job1@" + strconv.Itoa(i)
		if err := s.Begin("job1", Intent{RunID: id, Scheduled: sched, Targets: []string{"a", "b"}}); err != nil {
			b.Fatal(err)
		}
		if err := s.Done("job1", sched, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSyncNew registers 10 000 jobs in a new run state: the first
// start of a daemon with a big schedule.
func BenchmarkSyncNew(b *testing.B) {
	names := make([]string, 10000)
	for i := range names {
		names[i] = fmt.Sprintf("job-%06d", (i*7919)%len(names)) // not in key order
	}
	for b.Loop() {
		b.StopTimer()
		s, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.Sync(nil, names, t0); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}
