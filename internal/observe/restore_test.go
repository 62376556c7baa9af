package observe

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
)

// restoreLog writes fires to a real audit log at path (rotating past
// maxBytes) while a tracker follows it live, as the daemon's does; it
// returns that tracker.
func restoreLog(t *testing.T, path string, maxBytes int64, write func(app func(...audit.Record))) *Tracker {
	t.Helper()
	l, err := audit.OpenWith(path, audit.Options{MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	live := NewTracker()
	h := NewHub(live)
	l.Subscribe(h.Publish)
	write(func(rs ...audit.Record) {
		for i := range rs {
			rs[i].Time = rs[i].Time.UTC() // as the daemon writes them
		}
		if err := l.AppendBatch(rs); err != nil {
			t.Fatal(err)
		}
	})
	h.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return live
}

// statusJSON is what Fill shows of jobs, as the status's JSON.
func filled(t testing.TB, tr *Tracker, jobs ...string) (jobsJSON, failuresJSON string, st Status) {
	t.Helper()
	for _, j := range jobs {
		st.Jobs = append(st.Jobs, Job{Name: j})
	}
	tr.Fill(&st)
	j, err := json.Marshal(st.Jobs)
	if err != nil {
		t.Fatal(err)
	}
	f, err := json.Marshal(st.RecentFailures)
	if err != nil {
		t.Fatal(err)
	}
	return string(j), string(f), st
}

func logSize(t testing.TB, path string) int64 {
	t.Helper()
	files, err := audit.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// TestRestoreMatchesTheLiveView writes a long, rotated log: a job that
// succeeds, one whose last success is far back and that now fails on one
// of two targets, one killed in the middle of a fire (an intent without
// outcome), a throttled call and a rejected reload. A tracker restored
// from the log's tail shows what the tracker that followed it live shows
// about jobs and failures, without the throttling and the reload (they
// are about the process since it started), and it read only the newest
// files.
func TestRestoreMatchesTheLiveView(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	seoul, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 1, 9, 0, 0, 0, seoul)
	live := restoreLog(t, path, 64<<10, func(app func(...audit.Record)) {
		at := func(h int) time.Time { return base.Add(time.Duration(h) * time.Minute) }
		// far back: an old job's fires, "flaky" succeeds once, then a long
		// history of "fine".
		for i := -200; i < 0; i++ {
			app(fire("old", at(i), 0, map[string][]audit.Record{"o": {{Outcome: audit.OutcomeSuccess}}})...)
		}
		app(fire("flaky", at(0), time.Second, map[string][]audit.Record{"a": {{Outcome: audit.OutcomeSuccess}}, "b": {{Outcome: audit.OutcomeSuccess}}})...)
		for i := 1; i <= 600; i++ {
			app(fire("fine", at(i), 10*time.Millisecond, map[string][]audit.Record{"x": {{Outcome: audit.OutcomeSuccess, HTTPStatus: 200}}})...)
		}
		// the recent past: flaky fails on b 25 times (one throttled retry).
		for i := 601; i <= 625; i++ {
			app(fire("flaky", at(i), time.Second, map[string][]audit.Record{
				"a": {{Outcome: audit.OutcomeSuccess}},
				"b": {{Outcome: audit.OutcomeRetry, HTTPStatus: 429, Error: "429 throttled"}, {Outcome: audit.OutcomeFailure, HTTPStatus: 403, Error: "403 not allowed #" + time.Duration(i).String()}},
			})...)
		}
		app(audit.Record{Event: audit.EventReload, Outcome: audit.OutcomeFailure, Error: "config.yaml:3:1: bad"})
		// "cut" succeeded, then was killed during its next fire.
		app(fire("cut", at(626), 0, map[string][]audit.Record{"n": {{Outcome: audit.OutcomeSuccess}}})...)
		app(fire("cut", at(627), 0, map[string][]audit.Record{"n": nil})...)
		app(fire("fine", at(628), 10*time.Millisecond, map[string][]audit.Record{"x": {{Outcome: audit.OutcomeSuccess, HTTPStatus: 200}}})...)
	})
	files, _ := audit.Files(path)
	if len(files) < 4 {
		t.Fatalf("%d files; want a rotated log", len(files))
	}

	jobs := []string{"fine", "flaky", "cut", "never"}
	wantJobs, wantFailures, _ := filled(t, live, jobs...)
	got := NewTracker()
	res, err := got.Restore(path, jobs, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	gotJobs, gotFailures, st := filled(t, got, jobs...)
	if gotJobs != wantJobs {
		t.Errorf("restored jobs:\n%s\nwant (live):\n%s", gotJobs, wantJobs)
	}
	if gotFailures != wantFailures || len(st.RecentFailures) != recentFailures {
		t.Errorf("restored failures:\n%s\nwant (live):\n%s", gotFailures, wantFailures)
	}
	flaky, cut := st.Jobs[1], st.Jobs[2]
	if flaky.Last == nil || flaky.Last.Outcome != audit.OutcomeFailure || flaky.Last.Error == "" || !flaky.LastSuccess.Equal(base) {
		t.Errorf("flaky = %+v; want its newest failure with the error and its success far back at %v", flaky, base)
	}
	if cut.Last == nil || cut.Last.Outcome != "running" || cut.LastSuccess.IsZero() {
		t.Errorf("cut = %+v; want the fire in flight when it was killed, and its earlier success", cut)
	}
	if len(st.Throttled) != 0 || !st.Reload.Time.IsZero() {
		t.Errorf("restored throttled %+v, reload %+v; want neither (they count since the start)", st.Throttled, st.Reload)
	}
	// "never" never fired: the whole log was read for it.
	if res.Jobs != 3 || res.Found || res.Files != len(files) || res.Bytes != logSize(t, path) {
		t.Errorf("restore read %+v; want 3 jobs found, reading all %d files for the job that never fired", res, len(files))
	}

	// Without "never" it stops at flaky's success, far back; without flaky
	// too, after the newest files.
	got = NewTracker()
	res, err = got.Restore(path, []string{"fine", "flaky", "cut"}, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if j, f, _ := filled(t, got, jobs...); j != wantJobs || f != wantFailures || !res.Found || !res.Stopped || res.Bytes >= logSize(t, path) {
		t.Errorf("restore of found jobs read %+v (log %d bytes); want it to stop early with the same view", res, logSize(t, path))
	}
	got = NewTracker()
	res, err = got.Restore(path, []string{"fine", "cut"}, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Found || res.Files > 2 {
		t.Errorf("restore of recent jobs read %+v; want it to stop in the newest two files", res)
	}
	if _, f, _ := filled(t, got); f != wantFailures {
		t.Errorf("recent failures after an early stop:\n%s\nwant\n%s", f, wantFailures)
	}

	// The budget bounds it: the newest fires, not the old success.
	got = NewTracker()
	res, err = got.Restore(path, jobs, 16<<10)
	if err != nil {
		t.Fatal(err)
	}
	if res.Found || res.Bytes > 64<<10+16<<10 || res.Files != 1 {
		t.Errorf("restore within 16 KiB read %+v; want the live file's tail only", res)
	}
	if _, _, st := filled(t, got, jobs...); st.Jobs[0].Last == nil || st.Jobs[0].Last.Outcome != audit.OutcomeSuccess {
		t.Errorf("within the budget, fine = %+v; want its newest fire", st.Jobs[0])
	}
}

// BenchmarkRestore measures a restart's status restore from a log larger
// than the budget, with 10 000 jobs of which one never fired: the
// worst case, reading the whole DefaultRestoreBytes.
func BenchmarkRestore(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.jsonl")
	l, err := audit.OpenWith(path, audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	jobs := make([]string, 10000)
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	var size int64
	for i := 0; size < 2*DefaultRestoreBytes; i++ {
		var batch []audit.Record
		for j := range jobs {
			jobs[j] = "job-" + strconv.Itoa(j)
			batch = append(batch, fire(jobs[j], at.Add(time.Duration(i)*time.Hour), time.Second, map[string][]audit.Record{
				"6fa459ea-ee8a-3ca4-894e-db77e160355e": {{Outcome: audit.OutcomeSuccess, HTTPStatus: 200, RequestID: "req-0123456789abcdef"}}})...)
			if len(batch) >= 1000 {
				if err := l.AppendBatch(batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		if err := l.AppendBatch(batch); err != nil {
			b.Fatal(err)
		}
		size = logSize(b, path)
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	jobs = append(jobs, "never-fired")
	b.ResetTimer()
	for b.Loop() {
		res, err := NewTracker().Restore(path, jobs, DefaultRestoreBytes)
		if err != nil || res.Jobs != 10000 {
			b.Fatalf("restore: %+v, %v", res, err)
		}
		b.ReportMetric(float64(res.Bytes)/(1<<20), "MiB_read")
		b.ReportMetric(float64(res.Records), "records")
	}
}

// bigFire returns the records of one fire of job with n targets, each
// intent then a success, in the order the daemon writes them (intents in
// one batch, outcomes as targets end), and the target names in order.
func bigFire(job string, scheduled time.Time, n int) []audit.Record {
	run := job + "@" + scheduled.Format(time.RFC3339)
	out := make([]audit.Record, 0, 2*n)
	for i := range n {
		out = append(out, audit.Record{Time: scheduled, Event: audit.EventRun, Job: job, RunID: run, Scheduled: scheduled,
			Action: "dataforest.app.start", Account: "ncp", Target: "app-" + strconv.Itoa(i)})
	}
	for i := range n {
		out = append(out, audit.Record{Time: scheduled.Add(time.Second), Event: audit.EventAttempt, Attempt: 1, Job: job, RunID: run,
			Scheduled: scheduled, Action: "dataforest.app.start", Account: "ncp", Target: "app-" + strconv.Itoa(i),
			Outcome: audit.OutcomeSuccess, HTTPStatus: 200})
	}
	return out
}

// BenchmarkTrackBigFire follows one fire of 10 000 targets live, record by
// record, as the status tracker does during a burst.
func BenchmarkTrackBigFire(b *testing.B) {
	recs := bigFire("burst", time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), 10000)
	for b.Loop() {
		tr := NewTracker()
		for _, r := range recs {
			tr.Observe(Batch{Records: []audit.Record{r}})
		}
		_, _, st := filled(b, tr, "burst")
		if l := st.Jobs[0].Last; l == nil || l.Outcome != audit.OutcomeSuccess || len(l.Targets) != 10000 {
			b.Fatalf("last run = %+v", l)
		}
	}
}

// BenchmarkRestoreBigFire restores the status of a job whose newest two
// fires had 10 000 targets each.
func BenchmarkRestoreBigFire(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.jsonl")
	l, err := audit.OpenWith(path, audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for i := range 2 {
		if err := l.AppendBatch(bigFire("burst", at.Add(time.Duration(i)*time.Hour), 10000)); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		tr := NewTracker()
		res, err := tr.Restore(path, []string{"burst"}, DefaultRestoreBytes)
		if err != nil || res.Jobs != 1 {
			b.Fatalf("restore: %+v, %v", res, err)
		}
		_, _, st := filled(b, tr, "burst")
		if l := st.Jobs[0].Last; l == nil || l.Outcome != audit.OutcomeSuccess || len(l.Targets) != 10000 || st.Jobs[0].LastSuccess.IsZero() {
			b.Fatalf("last run = %+v", l)
		}
	}
}
