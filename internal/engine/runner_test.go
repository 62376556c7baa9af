package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
)

// recorder collects the fires of one job: the scheduled instant the
// callback received and the (fake) clock when it was called.
type recorder struct {
	mu        sync.Mutex
	scheduled []time.Time
	called    []time.Time
}

func (r *recorder) fire(scheduled time.Time) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scheduled = append(r.scheduled, scheduled)
	r.called = append(r.called, now)
}

func (r *recorder) snapshot() (scheduled, called []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.scheduled...), append([]time.Time(nil), r.called...)
}

// check asserts the job fired exactly at want (RFC3339 with offset), and
// that each callback ran at the instant it was handed.
func (r *recorder) check(t *testing.T, job string, want []string) {
	t.Helper()
	scheduled, called := r.snapshot()
	if g, w := strings.Join(formatAll(scheduled), " "), strings.Join(want, " "); g != w {
		t.Errorf("%s: callbacks got scheduled\n %s\nwant\n %s", job, g, w)
	}
	for i := range scheduled {
		if !called[i].Equal(scheduled[i]) {
			t.Errorf("%s: fire %d scheduled %v ran at %v", job, i, scheduled[i], called[i])
		}
	}
}

func stopAndWait(t *testing.T, r *Runner) {
	t.Helper()
	<-r.Stop().Done()
}

// The fake clock of synctest starts at 2000-01-01 00:00 UTC, a Saturday.
func TestRunnerFiresAtScheduledInstants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if want := "2000-01-01T00:00:00Z"; start.UTC().Format(time.RFC3339) != want {
			t.Fatalf("fake clock starts at %v; want %s", start, want)
		}
		r := NewRunner(zerolog.Nop())
		var berlin, seoul, every recorder
		jobs := []struct {
			name, spec, zone string
			rec              *recorder
		}{
			{"berlin-weekdays", "0 9 * * MON-FRI", "Europe/Berlin", &berlin},
			{"seoul-daily", "30 8 * * *", "Asia/Seoul", &seoul},
			{"every-90m", "@every 90m", "UTC", &every},
		}
		ids := map[string]EntryID{}
		for _, j := range jobs {
			id, err := r.Add(j.name, mustParse(t, j.spec, mustZone(t, j.zone), start), j.rec.fire)
			if err != nil {
				t.Fatalf("Add(%s): %v", j.name, err)
			}
			ids[j.name] = id
		}
		if got, want := r.NextFire(ids["berlin-weekdays"]).Format(time.RFC3339), "2000-01-03T09:00:00+01:00"; got != want {
			t.Errorf("NextFire before Start = %s; want %s", got, want)
		}
		r.Start()
		time.Sleep(71*time.Hour + 59*time.Minute) // to Monday 2000-01-03 23:59 UTC
		synctest.Wait()

		berlin.check(t, "berlin-weekdays", []string{"2000-01-03T09:00:00+01:00"})
		seoul.check(t, "seoul-daily", []string{"2000-01-02T08:30:00+09:00", "2000-01-03T08:30:00+09:00", "2000-01-04T08:30:00+09:00"})
		var wantEvery []string
		for k := 1; k <= 47; k++ {
			wantEvery = append(wantEvery, start.Add(time.Duration(k)*90*time.Minute).UTC().Format(time.RFC3339))
		}
		every.check(t, "every-90m", wantEvery)

		for name, want := range map[string]string{
			"berlin-weekdays": "2000-01-04T09:00:00+01:00",
			"seoul-daily":     "2000-01-05T08:30:00+09:00",
			"every-90m":       "2000-01-04T00:00:00Z",
		} {
			if got := r.NextFire(ids[name]).Format(time.RFC3339); got != want {
				t.Errorf("NextFire(%s) = %s; want %s", name, got, want)
			}
		}
		if got := r.NextFire(EntryID(999)); !got.IsZero() {
			t.Errorf("NextFire(unknown) = %v; want zero", got)
		}
		stopAndWait(t, r)
	})
}

// A callback slower than the interval neither delays nor skips the next
// fires, and each run still gets its own scheduled instant.
func TestRunnerSlowCallbackKeepsScheduledTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRunner(zerolog.Nop())
		var rec recorder
		_, err := r.Add("slow", mustParse(t, "0 * * * * *", time.UTC, time.Time{}), func(s time.Time) {
			rec.fire(s)
			time.Sleep(150 * time.Second)
		})
		if err != nil {
			t.Fatal(err)
		}
		r.Start()
		time.Sleep(5*time.Minute + 30*time.Second)
		rec.check(t, "slow", []string{"2000-01-01T00:01:00Z", "2000-01-01T00:02:00Z", "2000-01-01T00:03:00Z",
			"2000-01-01T00:04:00Z", "2000-01-01T00:05:00Z"})
		ctx := r.Stop()
		synctest.Wait()
		if ctx.Err() != nil {
			t.Error("Stop's context is done while callbacks still run")
		}
		time.Sleep(150 * time.Second)
		synctest.Wait()
		if ctx.Err() == nil {
			t.Error("Stop's context is not done after the callbacks returned")
		}
	})
}

func TestRunnerAddWhileRunningAndRemove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRunner(zerolog.Nop())
		r.Start()
		time.Sleep(30 * time.Minute)
		var rec recorder
		id, err := r.Add("quarter", mustParse(t, "*/15 * * * *", mustZone(t, "Asia/Seoul"), time.Time{}), rec.fire)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(59 * time.Minute) // to 10:29 Seoul
		synctest.Wait()
		r.Remove(id)
		time.Sleep(time.Hour)
		synctest.Wait()
		rec.check(t, "quarter", []string{"2000-01-01T09:45:00+09:00", "2000-01-01T10:00:00+09:00",
			"2000-01-01T10:15:00+09:00"})
		if got := r.NextFire(id); !got.IsZero() {
			t.Errorf("NextFire after Remove = %v; want zero", got)
		}
		stopAndWait(t, r)
	})
}

func TestRunnerRestartAfterStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRunner(zerolog.Nop())
		var rec recorder
		if _, err := r.Add("hourly", mustParse(t, "@hourly", time.UTC, time.Time{}), rec.fire); err != nil {
			t.Fatal(err)
		}
		r.Start()
		time.Sleep(90 * time.Minute) // fires 01:00
		stopAndWait(t, r)
		time.Sleep(2 * time.Hour) // stopped through 02:00 and 03:00
		r.Start()
		time.Sleep(100 * time.Minute) // fires 04:00 and 05:00
		synctest.Wait()
		rec.check(t, "hourly", []string{"2000-01-01T01:00:00Z", "2000-01-01T04:00:00Z", "2000-01-01T05:00:00Z"})
		stopAndWait(t, r)
	})
}

func TestRunnerLogsAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf syncBuffer
		r := NewRunner(zerolog.New(&buf).Level(zerolog.DebugLevel))
		var rec recorder
		var calls atomic.Int32
		_, err := r.Add("flaky", mustParse(t, "@hourly", time.UTC, time.Time{}), func(s time.Time) {
			if calls.Add(1) == 1 {
				panic("boom")
			}
			rec.fire(s)
		})
		if err != nil {
			t.Fatal(err)
		}
		r.Start()
		time.Sleep(2*time.Hour + time.Minute)
		synctest.Wait()
		stopAndWait(t, r)

		rec.check(t, "flaky", []string{"2000-01-01T02:00:00Z"})
		var sawPanic, sawCronDebug bool
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if rec["component"] != "engine" {
				t.Errorf("log line without component=engine: %s", line)
			}
			switch rec["message"] {
			case "panic":
				sawPanic = rec["level"] == "error" && strings.Contains(rec["error"].(string), "boom")
			case "wake", "run", "start", "schedule":
				if rec["level"] != "debug" {
					t.Errorf("cron's %q logged at %v; want debug", rec["message"], rec["level"])
				}
				sawCronDebug = true
			}
		}
		if !sawPanic {
			t.Errorf("no error record for the panicking callback in:\n%s", buf.String())
		}
		if !sawCronDebug {
			t.Errorf("no debug record from cron in:\n%s", buf.String())
		}
	})
}

func TestRunnerAddRejectsNil(t *testing.T) {
	r := NewRunner(zerolog.Nop())
	if _, err := r.Add("x", nil, func(time.Time) {}); err == nil {
		t.Error("Add with a nil schedule succeeded")
	}
	if _, err := r.Add("x", mustParse(t, "@daily", time.UTC, time.Time{}), nil); err == nil {
		t.Error("Add with a nil callback succeeded")
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cron is woken wakeLead before each fire: a fire due less than that
// after a Start or an Add still runs, once, at its instant, and the early
// wake does not hand the same fire out again.
func TestRunnerFireJustAfterStartAndAdd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRunner(zerolog.Nop())
		var early, added recorder
		time.Sleep(time.Second - wakeLead/2) // 00:00:00.995
		if _, err := r.Add("early", mustParse(t, "* * * * * *", time.UTC, time.Time{}), early.fire); err != nil {
			t.Fatal(err)
		}
		r.Start()
		time.Sleep(time.Second) // 00:00:01.995
		if _, err := r.Add("added", mustParse(t, "* * * * * *", time.UTC, time.Time{}), added.fire); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2*time.Second + wakeLead) // past 00:00:04
		stopAndWait(t, r)
		early.check(t, "early", []string{"2000-01-01T00:00:01Z", "2000-01-01T00:00:02Z", "2000-01-01T00:00:03Z", "2000-01-01T00:00:04Z"})
		added.check(t, "added", []string{"2000-01-01T00:00:02Z", "2000-01-01T00:00:03Z", "2000-01-01T00:00:04Z"})
	})
}

// The fires of one instant wait in the gate together and leave it at the
// instant, not before; a fire whose instant passed does not wait.
func TestGateReleasesAtTheInstant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		at := time.Now().Add(50 * time.Millisecond)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var left []time.Time
		for range 5 {
			wg.Go(func() {
				if g.wait(at, nil) != released {
					t.Error("wait refused an instant 50ms ahead")
				}
				mu.Lock()
				left = append(left, time.Now())
				mu.Unlock()
			})
		}
		wg.Wait()
		for _, l := range left {
			if !l.Equal(at) {
				t.Errorf("left the gate at %v, want %v", l, at)
			}
		}
		if g.wait(time.Now().Add(tooFar+time.Millisecond), nil) != clockBack {
			t.Error("wait accepted an instant further than the early wake explains (the clock went back)")
		}
		before := time.Now()
		g.wait(before.Add(-time.Second), nil)
		if !time.Now().Equal(before) {
			t.Error("a past instant waited")
		}
		if len(g.waits) != 0 {
			t.Errorf("gate keeps %d instants after they came", len(g.waits))
		}
	})
}

// BenchmarkReregister10000 re-registers every one of 10 000 jobs of a
// running Runner (a reload that changes them all, a clock jump): one op is
// the whole batch. With one cron.Cron, which sorts all its entries after
// each Add and Remove, it took 4.4 s; spread over shards, 0.3 s.
func BenchmarkReregister10000(b *testing.B) {
	r := NewRunner(zerolog.Nop())
	s, err := Parse("0 9 * * *", time.UTC, time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]EntryID, 10000)
	for i := range ids {
		if ids[i], err = r.Add("j", s, func(time.Time) {}); err != nil {
			b.Fatal(err)
		}
	}
	r.Start()
	defer r.Stop()
	for b.Loop() {
		for i := range ids {
			r.Remove(ids[i])
			if ids[i], err = r.Add("j", s, func(time.Time) {}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestRunnerStartFromHandsOverFiresDueBeforeItBegan: cron's goroutine
// may begin well after the instant StartFrom names (a loaded machine);
// every fire in between runs at once, in order, each once, and the
// schedule then goes on at its instants.
func TestRunnerStartFromHandsOverFiresDueBeforeItBegan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRunner(zerolog.Nop())
		var rec recorder
		if _, err := r.Add("quarter", mustParse(t, "*/15 * * * *", time.UTC, time.Time{}), rec.fire); err != nil {
			t.Fatal(err)
		}
		from := time.Now()           // 00:00: what catch-up covered
		time.Sleep(50 * time.Minute) // start-up stalls past three fires
		r.StartFrom(from)
		time.Sleep(26 * time.Minute) // to 01:16
		synctest.Wait()
		scheduled, called := rec.snapshot()
		if g, w := strings.Join(formatAll(scheduled), " "),
			"2000-01-01T00:15:00Z 2000-01-01T00:30:00Z 2000-01-01T00:45:00Z 2000-01-01T01:00:00Z 2000-01-01T01:15:00Z"; g != w {
			t.Fatalf("fires\n %s\nwant\n %s", g, w)
		}
		began := from.Add(50 * time.Minute)
		for i, c := range called {
			want := scheduled[i]
			if want.Before(began) {
				want = began // due before cron began: at once
			}
			if !c.Equal(want) {
				t.Errorf("fire %s ran at %s; want %s", scheduled[i].Format("15:04"), c.Format("15:04:05"), want.Format("15:04:05"))
			}
		}
		stopAndWait(t, r)
	})
}

// BenchmarkAddMemory reports the heap a registered job costs the runner
// (its entry and cron's), with 10 000 jobs of distinct schedules.
func BenchmarkAddMemory(b *testing.B) {
	specs := make([]Schedule, 10000)
	for i := range specs {
		s, err := Parse(fmt.Sprintf("%d %d 9 * * *", i%60, (i/60)%60), time.UTC, time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		specs[i] = s
	}
	var perJob float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r := NewRunner(zerolog.Nop())
		for i, s := range specs {
			if _, err := r.Add("job-"+strconv.Itoa(i), s, func(time.Time) {}); err != nil {
				b.Fatal(err)
			}
		}
		r.Start()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perJob = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(len(specs))
		runtime.KeepAlive(r)
		<-r.Stop().Done()
	}
	b.ReportMetric(perJob, "B/job")
}

// Each fire is prepared wakeLead before its instant (the daemon opens the
// connections a burst needs then), in order, and then runs at its instant.
func TestRunnerPreparesEachFireBeforeItIsDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRunner(zerolog.Nop())
		var mu sync.Mutex
		var prepared []string
		r.SetPrepare(func(name string, scheduled time.Time) {
			mu.Lock()
			defer mu.Unlock()
			prepared = append(prepared, fmt.Sprintf("%s %s at -%v", name, scheduled.UTC().Format("15:04:05"), time.Until(scheduled)))
		})
		var rec recorder
		if _, err := r.Add("tick", mustParse(t, "*/2 * * * * *", time.UTC, time.Time{}), rec.fire); err != nil {
			t.Fatal(err)
		}
		r.Start()
		time.Sleep(4*time.Second + time.Millisecond)
		stopAndWait(t, r)
		rec.check(t, "tick", []string{"2000-01-01T00:00:02Z", "2000-01-01T00:00:04Z"})
		mu.Lock()
		defer mu.Unlock()
		want := []string{"tick 00:00:02 at -500ms", "tick 00:00:04 at -500ms"}
		if strings.Join(prepared, ", ") != strings.Join(want, ", ") {
			t.Errorf("prepared %q; want %q", prepared, want)
		}
	})
}

// A fire that is waiting for its instant when its job is removed (a
// reload, a clock jump), or when the Runner stops, does not run; Stop does
// not wait for its instant.
func TestRunnerWaitingFireEndsOnRemoveAndStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRunner(zerolog.Nop())
		waiting := make(chan string, 2)
		r.SetPrepare(func(name string, _ time.Time) { waiting <- name })
		var removed, stopped recorder
		id, err := r.Add("removed", mustParse(t, "0 * * * * *", time.UTC, time.Time{}), removed.fire)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Add("stopped", mustParse(t, "0 * * * * *", time.UTC, time.Time{}), stopped.fire); err != nil {
			t.Fatal(err)
		}
		r.Start()
		<-waiting
		<-waiting // both wait in the gate for 00:01:00
		r.Remove(id)
		time.Sleep(wakeLead + time.Millisecond) // 00:01:00.001
		if s, _ := removed.snapshot(); len(s) != 0 {
			t.Errorf("a job removed while its fire waited for its instant fired at %v", s)
		}
		stopped.check(t, "stopped", []string{"2000-01-01T00:01:00Z"})
		<-waiting // 00:01:59.5: the next fire waits
		before := time.Now()
		stopAndWait(t, r)
		if d := time.Since(before); d != 0 {
			t.Errorf("Stop waited %v for a fire not yet due", d)
		}
		time.Sleep(time.Second)
		stopped.check(t, "stopped", []string{"2000-01-01T00:01:00Z"})
	})
}

// While a fire waits in the gate for its instant, cron already holds the
// fire after it; NextFire still names the waiting one (the status's "next
// fire" would otherwise skip it for half a second).
func TestNextFireWhileAFireWaitsForItsInstant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRunner(zerolog.Nop())
		var rec recorder
		id, err := r.Add("tick", mustParse(t, "*/2 * * * * *", time.UTC, time.Time{}), rec.fire)
		if err != nil {
			t.Fatal(err)
		}
		r.Start()
		at := func() string { return r.NextFire(id).UTC().Format("15:04:05") }
		time.Sleep(time.Second) // 00:00:01: before the early wake
		if got := at(); got != "00:00:02" {
			t.Errorf("NextFire at 00:00:01 = %s; want 00:00:02", got)
		}
		time.Sleep(700 * time.Millisecond) // 00:00:01.7: the fire waits in the gate
		synctest.Wait()
		if got := at(); got != "00:00:02" {
			t.Errorf("NextFire while the 00:00:02 fire waits = %s; want 00:00:02", got)
		}
		time.Sleep(300*time.Millisecond + time.Millisecond) // past 00:00:02
		synctest.Wait()
		if got := at(); got != "00:00:04" {
			t.Errorf("NextFire after the 00:00:02 fire = %s; want 00:00:04", got)
		}
		stopAndWait(t, r)
		rec.check(t, "tick", []string{"2000-01-01T00:00:02Z"})
	})
}
