package state

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/engine"
)

func mustParse(t testing.TB, spec string, loc *time.Location) engine.Schedule {
	t.Helper()
	s, err := engine.Parse(spec, loc, time.Time{})
	if err != nil {
		t.Fatalf("Parse(%q) = %v", spec, err)
	}
	return s
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func times(ss ...string) []time.Time {
	out := make([]time.Time, len(ss))
	for i, s := range ss {
		out[i] = utc(s)
	}
	return out
}

func missedTimes(c CatchUp) []time.Time {
	out := make([]time.Time, len(c.Missed))
	for i, m := range c.Missed {
		out[i] = m.Scheduled
	}
	return out
}

func sameTimes(a, b []time.Time) bool {
	return slices.EqualFunc(a, b, time.Time.Equal)
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name     string
		spec     string
		st       JobState
		now      string
		window   time.Duration
		run      string // "" = none
		missed   []time.Time
		reason   string // substring of every missed reason
		unlisted int
	}{
		{
			name: "down across one fire runs it",
			spec: "0 19 * * *", st: JobState{LastDone: utc("2026-03-02T19:00:00Z")},
			now: "2026-03-03T19:30:00Z", window: time.Hour,
			run: "2026-03-03T19:00:00Z",
		},
		{
			name: "down across many fires runs only the newest",
			spec: "0 19 * * *", st: JobState{LastDone: utc("2026-03-01T19:00:00Z")},
			now: "2026-03-05T19:10:00Z", window: time.Hour,
			run:    "2026-03-05T19:00:00Z",
			missed: times("2026-03-02T19:00:00Z", "2026-03-03T19:00:00Z", "2026-03-04T19:00:00Z"),
			reason: "older than catchup 1h",
		},
		{
			name: "older fires inside the window are superseded",
			spec: "*/10 * * * *", st: JobState{LastDone: utc("2026-03-02T10:00:00Z")},
			now: "2026-03-02T10:35:00Z", window: time.Hour,
			run:    "2026-03-02T10:30:00Z",
			missed: times("2026-03-02T10:10:00Z", "2026-03-02T10:20:00Z"),
			reason: "superseded by the newer missed fire at 2026-03-02T10:30:00Z",
		},
		{
			name: "newest older than the window runs nothing",
			spec: "0 19 * * *", st: JobState{LastDone: utc("2026-03-01T19:00:00Z")},
			now: "2026-03-03T21:00:00Z", window: time.Hour,
			missed: times("2026-03-02T19:00:00Z", "2026-03-03T19:00:00Z"),
			reason: "older than catchup 1h",
		},
		{
			name: "window exactly reached still runs",
			spec: "0 19 * * *", st: JobState{LastDone: utc("2026-03-01T19:00:00Z")},
			now: "2026-03-02T20:30:00Z", window: 90 * time.Minute,
			run: "2026-03-02T19:00:00Z",
		},
		{
			name: "window 0 never catches up",
			spec: "0 19 * * *", st: JobState{LastDone: utc("2026-03-01T19:00:00Z")},
			now: "2026-03-02T19:00:01Z", window: 0,
			missed: times("2026-03-02T19:00:00Z"),
			reason: "catch-up is off",
		},
		{
			name: "a fire at now counts, one at the reference does not",
			spec: "0 * * * *", st: JobState{LastDone: utc("2026-03-02T10:00:00Z")},
			now: "2026-03-02T11:00:00Z", window: time.Minute,
			run: "2026-03-02T11:00:00Z",
		},
		{
			name: "never fired: Since is the reference",
			spec: "0 19 * * *", st: JobState{Since: utc("2026-03-03T08:00:00Z")},
			now: "2026-03-03T19:30:00Z", window: time.Hour,
			run: "2026-03-03T19:00:00Z",
		},
		{
			name: "registered after the fire: nothing missed",
			spec: "0 19 * * *", st: JobState{Since: utc("2026-03-03T19:10:00Z")},
			now: "2026-03-03T19:30:00Z", window: time.Hour,
		},
		{
			name: "LastDone newer than Since wins",
			spec: "0 * * * *", st: JobState{Since: utc("2026-03-01T00:00:00Z"), LastDone: utc("2026-03-03T17:00:00Z")},
			now: "2026-03-03T18:30:00Z", window: time.Hour,
			run: "2026-03-03T18:00:00Z",
		},
		{
			name: "no reference: nothing to catch up",
			spec: "0 19 * * *", st: JobState{},
			now: "2026-03-03T19:30:00Z", window: time.Hour,
		},
		{
			name: "forward clock jump from 18:30 to 21:20",
			spec: "0 * * * *", st: JobState{LastDone: utc("2026-03-02T18:00:00Z")},
			now: "2026-03-02T21:20:00Z", window: time.Hour,
			run:    "2026-03-02T21:00:00Z",
			missed: times("2026-03-02T19:00:00Z", "2026-03-02T20:00:00Z"),
			reason: "older than catchup 1h",
		},
		{
			name: "backward clock jump: reference after now, nothing missed",
			spec: "0 * * * *", st: JobState{LastDone: utc("2026-03-02T21:00:00Z")},
			now: "2026-03-02T18:30:00Z", window: 24 * time.Hour,
		},
		{
			name: "fires left in flight are Recover's, and supersede older ones",
			spec: "*/10 * * * *", st: JobState{LastDone: utc("2026-03-02T10:00:00Z"),
				InFlight: []Intent{{RunID: "x", Scheduled: utc("2026-03-02T10:30:00Z")}}},
			now: "2026-03-02T10:35:00Z", window: time.Hour,
			missed: times("2026-03-02T10:10:00Z", "2026-03-02T10:20:00Z"),
			reason: "left in flight by a crash",
		},
		{
			name: "an older fire in flight does not stop the newest",
			spec: "*/10 * * * *", st: JobState{LastDone: utc("2026-03-02T10:00:00Z"),
				InFlight: []Intent{{RunID: "x", Scheduled: utc("2026-03-02T10:10:00Z")}}},
			now: "2026-03-02T10:35:00Z", window: time.Hour,
			run:    "2026-03-02T10:30:00Z",
			missed: times("2026-03-02T10:20:00Z"),
			reason: "superseded by the newer missed fire",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParse(t, tc.spec, time.UTC)
			now := utc(tc.now)
			c := Plan(s, tc.st, now, tc.window)
			var wantRun time.Time
			if tc.run != "" {
				wantRun = utc(tc.run)
			}
			if !c.Run.Equal(wantRun) {
				t.Errorf("Plan(%q, %v).Run = %v; want %v", tc.spec, tc.now, c.Run, wantRun)
			}
			if got := missedTimes(c); !sameTimes(got, tc.missed) {
				t.Errorf("Plan(%q, %v).Missed = %v; want %v", tc.spec, tc.now, got, tc.missed)
			}
			for _, m := range c.Missed {
				if !strings.Contains(m.Reason, tc.reason) {
					t.Errorf("missed %v reason %q; want it to contain %q", m.Scheduled, m.Reason, tc.reason)
				}
			}
			if c.Unlisted != tc.unlisted || c.UnlistedAtLeast {
				t.Errorf("Unlisted = %d (at least: %v); want %d", c.Unlisted, c.UnlistedAtLeast, tc.unlisted)
			}
			wantSettle := wantRun
			if wantSettle.IsZero() && len(tc.missed) > 0 {
				wantSettle = tc.missed[len(tc.missed)-1]
			}
			if !c.Settle.Equal(wantSettle) || c.Empty() != wantSettle.IsZero() {
				t.Errorf("Settle = %v; want %v", c.Settle, wantSettle)
			}
		})
	}
}

func TestPlanDST(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	at := func(y int, mo time.Month, d, h, mi int) time.Time { return time.Date(y, mo, d, h, mi, 0, 0, berlin) }
	tests := []struct {
		name   string
		spec   string
		ref    time.Time
		now    time.Time
		window time.Duration
		run    time.Time
		missed []time.Time
	}{
		{
			name: "fixed 02:30 on the spring-forward day fires once, at 03:00 CEST",
			spec: "30 2 * * *", ref: at(2026, 3, 28, 12, 0), now: at(2026, 3, 29, 12, 0), window: 10 * time.Hour,
			run: utc("2026-03-29T01:00:00Z"),
		},
		{
			name: "fixed 02:30 on the spring-forward day, too old",
			spec: "30 2 * * *", ref: at(2026, 3, 28, 12, 0), now: at(2026, 3, 29, 12, 0), window: time.Hour,
			missed: times("2026-03-29T01:00:00Z"),
		},
		{
			name: "fixed 02:30 on the fall-back day fires once, at the first pass",
			spec: "30 2 * * *", ref: at(2026, 10, 24, 12, 0), now: at(2026, 10, 25, 12, 0), window: 12 * time.Hour,
			run: utc("2026-10-25T00:30:00Z"),
		},
		{
			name: "interval */30 across the fall-back hour counts both passes",
			spec: "*/30 * * * *", ref: at(2026, 10, 25, 0, 0), now: utc("2026-10-25T03:00:00Z"), window: 10 * time.Hour,
			run: utc("2026-10-25T03:00:00Z"), // 04:00 CET
			missed: times(
				"2026-10-24T22:30:00Z", "2026-10-24T23:00:00Z", "2026-10-24T23:30:00Z",
				"2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z", // 02:00, 02:30 CEST
				"2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z", // 02:00, 02:30 CET
				"2026-10-25T02:00:00Z", "2026-10-25T02:30:00Z"),
		},
		{
			name: "interval */30 across the spring-forward gap: gap wall times do not exist",
			spec: "*/30 * * * *", ref: at(2026, 3, 29, 1, 0), now: at(2026, 3, 29, 4, 0), window: 10 * time.Hour,
			run:    utc("2026-03-29T02:00:00Z"), // 04:00 CEST
			missed: times("2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Plan(mustParse(t, tc.spec, berlin), JobState{LastDone: tc.ref}, tc.now, tc.window)
			if !c.Run.Equal(tc.run) {
				t.Errorf("Run = %v; want %v", c.Run, tc.run)
			}
			if got := missedTimes(c); !sameTimes(got, tc.missed) {
				t.Errorf("Missed = %v; want %v", got, tc.missed)
			}
		})
	}
}

// countingSchedule counts Next calls.
type countingSchedule struct {
	engine.Schedule
	calls int
}

func (c *countingSchedule) Next(t time.Time) time.Time {
	c.calls++
	return c.Schedule.Next(t)
}

func TestPlanSecondsJobDownADayIsBounded(t *testing.T) {
	s := &countingSchedule{Schedule: mustParse(t, "* * * * * *", time.UTC)}
	ref := utc("2026-03-02T00:00:00Z")
	now := ref.Add(24 * time.Hour)
	start := time.Now()
	c := Plan(s, JobState{LastDone: ref}, now, time.Hour)
	took := time.Since(start)
	if !c.Run.Equal(now) {
		t.Errorf("Run = %v; want %v", c.Run, now)
	}
	if len(c.Missed) != MaxListed {
		t.Fatalf("len(Missed) = %d; want %d", len(c.Missed), MaxListed)
	}
	if first, last := c.Missed[0].Scheduled, c.Missed[MaxListed-1].Scheduled; !first.Equal(now.Add(-100*time.Second)) || !last.Equal(now.Add(-time.Second)) {
		t.Errorf("Missed spans %v..%v; want the 100 seconds before now", first, last)
	}
	if want := 86400 - 1 - MaxListed; c.Unlisted != want || c.UnlistedAtLeast {
		t.Errorf("Unlisted = %d (at least %v); want exactly %d", c.Unlisted, c.UnlistedAtLeast, want)
	}
	if !strings.Contains(c.UnlistedReason, "older than catchup 1h") || !strings.Contains(c.UnlistedReason, "superseded") {
		t.Errorf("UnlistedReason = %q; want both reasons", c.UnlistedReason)
	}
	if s.calls > 86400+2000 {
		t.Errorf("Plan made %d Next calls for 86,400 missed fires", s.calls)
	}
	t.Logf("Plan over a day of seconds: %d Next calls, %v", s.calls, took)

	// A month down: counting stops at its budget and says so.
	s.calls = 0
	c = Plan(s, JobState{LastDone: ref}, ref.Add(30*24*time.Hour), time.Hour)
	if !c.UnlistedAtLeast || c.Unlisted < countLimit || len(c.Missed) != MaxListed {
		t.Errorf("a month down: Unlisted = %d (at least %v), %d listed; want ≥ %d, at least, %d listed",
			c.Unlisted, c.UnlistedAtLeast, len(c.Missed), countLimit, MaxListed)
	}
	if s.calls > countLimit+2000 {
		t.Errorf("a month down: %d Next calls; want about %d at most", s.calls, countLimit)
	}
	if got := c.String(); !strings.Contains(got, "or more missed") {
		t.Errorf("String() = %q; want it to say the count is a lower bound", got)
	}
}

func TestPlanDenseBurstIsBounded(t *testing.T) {
	// Every second of 09:00-09:59 and nothing else: the backwards search
	// doubles from 20:00 into a burst of 3,600 fires and must bisect.
	s := &countingSchedule{Schedule: mustParse(t, "* * 9 * * *", time.UTC)}
	ref := utc("2026-03-02T00:00:00Z")
	now := utc("2026-03-04T20:00:00Z")
	c := Plan(s, JobState{LastDone: ref}, now, time.Hour)
	if !c.Run.IsZero() || len(c.Missed) != MaxListed {
		t.Fatalf("Run = %v, %d missed; want none, %d", c.Run, len(c.Missed), MaxListed)
	}
	if last := c.Missed[MaxListed-1].Scheduled; !last.Equal(utc("2026-03-04T09:59:59Z")) {
		t.Errorf("newest missed = %v; want 09:59:59 on the 4th", last)
	}
	if want := 3*3600 - MaxListed; c.Unlisted != want {
		t.Errorf("Unlisted = %d; want %d", c.Unlisted, want)
	}
	t.Logf("%d Next calls", s.calls)
}

// TestPlanMatchesBruteForce compares Plan with a plain walk over every fire.
func TestPlanMatchesBruteForce(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	specs := []string{"*/7 * * * * *", "0 19 * * *", "*/30 * * * *", "30 2 * * *", "* * 9 * * *", "0 0 1 * *", "15 */2 * * * *"}
	rng := rand.New(rand.NewPCG(7, 11))
	base := time.Date(2026, 3, 20, 0, 0, 0, 0, berlin)
	for i := range 210 {
		spec := specs[i%len(specs)]
		s := mustParse(t, spec, berlin)
		ref := base.Add(time.Duration(rng.Int64N(int64(40 * 24 * time.Hour))))
		span := 3 * 24 * time.Hour
		if strings.Count(spec, " ") == 5 { // seconds-level: keep the brute force cheap
			span = 3 * time.Hour
		}
		now := ref.Add(time.Duration(rng.Int64N(int64(span))))
		window := []time.Duration{0, time.Minute, time.Hour, 48 * time.Hour}[rng.IntN(4)]
		var all []time.Time
		for f := s.Next(ref); !f.IsZero() && !f.After(now); f = s.Next(f) {
			all = append(all, f)
		}
		c := Plan(s, JobState{LastDone: ref}, now, window)
		var wantRun time.Time
		missed := all
		if n := len(all); n > 0 && window > 0 && now.Sub(all[n-1]) <= window {
			wantRun, missed = all[n-1], all[:n-1]
		}
		wantUnlisted := max(0, len(missed)-MaxListed)
		missed = missed[wantUnlisted:]
		if !c.Run.Equal(wantRun) || !sameTimes(missedTimes(c), missed) || c.Unlisted != wantUnlisted {
			t.Fatalf("Plan(%q, ref %v, now %v, window %v) = run %v, %d missed, %d unlisted; want run %v, %d missed, %d unlisted",
				spec, ref, now, window, c.Run, len(c.Missed), c.Unlisted, wantRun, len(missed), wantUnlisted)
		}
	}
}

func TestShouldRun(t *testing.T) {
	done := utc("2026-03-02T19:00:00Z")
	st := JobState{LastDone: done, InFlight: []Intent{{RunID: "x", Scheduled: done.Add(2 * time.Hour)}}}
	tests := []struct {
		name      string
		st        JobState
		scheduled time.Time
		want      bool
	}{
		{"never done", JobState{}, done, true},
		{"after last done", st, done.Add(time.Hour), true},
		{"the fire already done (clock went back)", st, done, false},
		{"an older fire (clock went back further)", st, done.Add(-24 * time.Hour), false},
		{"same instant in another zone", st, done.In(mustZone(t, "Asia/Seoul")), false},
		{"a fire in flight", st, done.Add(2 * time.Hour), false},
	}
	for _, tc := range tests {
		if got := ShouldRun(tc.st, tc.scheduled); got != tc.want {
			t.Errorf("%s: ShouldRun(%v) = %v; want %v", tc.name, tc.scheduled, got, tc.want)
		}
	}
}

func TestBackwardJumpNeverRepeatsADoneFire(t *testing.T) {
	// The daemon ran the 19:00 fire; the clock is set back to 18:30 and the
	// engine offers 19:00 again. Plan sees nothing missed, ShouldRun says no.
	s := mustOpen(t, t.TempDir())
	sched := mustParse(t, "0 19 * * *", time.UTC)
	fire := utc("2026-03-02T19:00:00Z")
	must(t, s.Register("stop", fire.Add(-24*time.Hour)))
	must(t, s.Done("stop", fire, "stop@"+fire.Format(time.RFC3339)))
	now := utc("2026-03-02T18:30:00Z")
	if c := Plan(sched, s.Job("stop"), now, time.Hour); !c.Empty() {
		t.Errorf("Plan after a backward jump = %+v; want nothing", c)
	}
	next := sched.Next(now)
	if ShouldRun(s.Job("stop"), next) {
		t.Errorf("ShouldRun(%v) after it was done = true", next)
	}
	if tomorrow := sched.Next(next); !ShouldRun(s.Job("stop"), tomorrow) {
		t.Errorf("ShouldRun(%v) = false; want true", tomorrow)
	}
}

func TestMissedRecords(t *testing.T) {
	s := mustParse(t, "* * * * * *", time.UTC)
	ref := utc("2026-03-02T00:00:00Z")
	now := ref.Add(10 * time.Minute)
	c := Plan(s, JobState{LastDone: ref}, now, time.Hour)
	recs := c.MissedRecords("tick", now, func(job string, t time.Time) string { return job + "@" + t.Format(time.RFC3339) })
	if len(recs) != MaxListed+1 {
		t.Fatalf("%d records; want %d listed + 1 summary", len(recs), MaxListed)
	}
	sum := recs[0]
	if sum.Event != audit.EventMissed || sum.Outcome != audit.OutcomeMissed || !strings.Contains(sum.Detail, "499 older missed fires") {
		t.Errorf("summary record = %+v", sum)
	}
	last := recs[len(recs)-1]
	if last.RunID != "tick@2026-03-02T00:09:59Z" || !last.Scheduled.Equal(now.Add(-time.Second)) || last.Outcome != audit.OutcomeMissed ||
		!strings.Contains(last.Detail, "superseded") {
		t.Errorf("newest missed record = %+v", last)
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s", 2 * time.Minute: "2m",
		30 * time.Second: "30s", 25 * time.Hour: "25h", time.Hour + time.Second: "1h0m1s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q; want %q", d, got, want)
		}
	}
}

func BenchmarkPlanSecondsDownADay(b *testing.B) {
	s := mustParse(b, "* * * * * *", time.UTC)
	ref := utc("2026-03-02T00:00:00Z")
	st := JobState{LastDone: ref}
	for b.Loop() {
		Plan(s, st, ref.Add(24*time.Hour), time.Hour)
	}
}

func BenchmarkPlanSecondsDownAMonth(b *testing.B) {
	s := mustParse(b, "* * * * * *", time.UTC)
	ref := utc("2026-03-02T00:00:00Z")
	st := JobState{LastDone: ref}
	for b.Loop() {
		Plan(s, st, ref.Add(30*24*time.Hour), time.Hour)
	}
}

func BenchmarkPlanDailyDownAWeek(b *testing.B) {
	s := mustParse(b, "0 19 * * *", mustZone(b, "Europe/Berlin"))
	ref := utc("2026-03-02T00:00:00Z")
	st := JobState{LastDone: ref}
	for b.Loop() {
		Plan(s, st, ref.Add(7*24*time.Hour), time.Hour)
	}
}
