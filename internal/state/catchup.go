package state

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cloudcron/scheduler/internal/engine"
)

// MaxListed is how many missed fires Plan lists individually, the newest
// ones; older missed fires are only counted (CatchUp.Unlisted).
const MaxListed = 100

// countLimit bounds the Next calls Plan spends counting the unlisted missed
// fires (about 15 ms for a seconds-level schedule); beyond it the count is a
// lower bound (CatchUp.UnlistedAtLeast).
const countLimit = 100_000

// Missed is a missed fire that is not run.
type Missed struct {
	Scheduled time.Time
	Reason    string // e.g. "older than catchup 1h" or "superseded by the newer missed fire at …"
}

// CatchUp is what Plan decided for one job.
type CatchUp struct {
	// Reference is max(LastDone, Since): fires after it and not after now
	// were missed.
	Reference time.Time
	// Run is the missed fire to run now, once; zero if none.
	Run time.Time
	// Missed are the newest missed fires that are not run, oldest first, at
	// most MaxListed; audit each as missed with its reason.
	Missed []Missed
	// Unlisted counts further missed fires, all older than Missed[0], that
	// are not listed; UnlistedAtLeast says counting stopped early and the
	// true number is larger.
	Unlisted        int
	UnlistedAtLeast bool
	// UnlistedReason is the reason that applies to every unlisted fire.
	UnlistedReason string
	// Settle is the newest fire this plan covers (Run, or else the newest
	// missed fire); zero if nothing was missed. When Run is zero, call
	// Store.Done with Settle once the missed fires are audited, so they are
	// not reported again on the next start.
	Settle time.Time
}

// Empty reports whether no fire was missed.
func (c CatchUp) Empty() bool { return c.Settle.IsZero() }

// Plan decides what to do about the fires of s that job state st missed
// up to now: the fires f with Reference < f ≤ now, except those with an
// intent in st.InFlight (Recover handles them). The newest of them runs
// once if now−f ≤ window (window 0: never); every other one is missed. A
// zero Reference (a job never registered) or a Reference at or after now
// (the clock went backwards) misses nothing. Plan does no I/O; it calls
// s.Next a bounded number of times (see MaxListed and countLimit).
func Plan(s engine.Schedule, st JobState, now time.Time, window time.Duration) CatchUp {
	ref := st.Since
	if st.LastDone.After(ref) {
		ref = st.LastDone
	}
	c := CatchUp{Reference: ref}
	if ref.IsZero() || !now.After(ref) {
		return c
	}
	inFlight := func(t time.Time) bool {
		return slices.ContainsFunc(st.InFlight, func(in Intent) bool { return in.Scheduled.Equal(t) })
	}
	var newestInFlight time.Time
	for _, in := range st.InFlight {
		if in.Scheduled.After(ref) && !in.Scheduled.After(now) && in.Scheduled.After(newestInFlight) {
			newestInFlight = in.Scheduled
		}
	}

	// The newest MaxListed+1 missed fires: one may run, MaxListed are listed.
	want := MaxListed + 1 + len(st.InFlight)
	fires, lo := newestFires(s, ref, now, want)
	fires = slices.DeleteFunc(fires, inFlight)
	older := 0
	if len(fires) > MaxListed+1 {
		older = len(fires) - (MaxListed + 1)
		fires = fires[older:]
	}
	if lo.After(ref) { // fires in (ref, lo] were not walked: count them
		n, complete := countFires(s, ref, lo, countLimit)
		for _, in := range st.InFlight {
			if in.Scheduled.After(ref) && !in.Scheduled.After(lo) {
				n--
			}
		}
		older += n
		c.UnlistedAtLeast = !complete
	}
	if len(fires) == 0 {
		return c
	}

	newest := fires[len(fires)-1]
	c.Settle = newest
	runnable := window > 0 && now.Sub(newest) <= window && newest.After(newestInFlight)
	if runnable {
		c.Run = newest
		fires = fires[:len(fires)-1]
	} else if len(fires) > MaxListed {
		older++
		fires = fires[1:]
	}
	reason := func(f time.Time) string {
		switch {
		case window <= 0:
			return "catch-up is off (catchup 0)"
		case now.Sub(f) > window:
			return "older than catchup " + shortDuration(window)
		case newestInFlight.After(f):
			return "superseded by the newer fire at " + newestInFlight.Format(time.RFC3339) + ", left in flight by a crash"
		default:
			return "superseded by the newer missed fire at " + newest.Format(time.RFC3339)
		}
	}
	c.Missed = make([]Missed, len(fires))
	for i, f := range fires {
		c.Missed[i] = Missed{Scheduled: f, Reason: reason(f)}
	}
	c.Unlisted = older
	if older > 0 {
		// The unlisted fires lie between the oldest missed fire and the
		// oldest listed one (or the run one); name the reasons of both ends.
		before := newest
		if len(fires) > 0 {
			before = fires[0]
		}
		r1, r2 := reason(s.Next(ref)), reason(before.Add(-time.Nanosecond))
		c.UnlistedReason = r1
		if r1 != r2 {
			c.UnlistedReason = r1 + ", or " + r2
		}
	}
	return c
}

// newestFires returns every fire of s in (lo, now] for a lo ≥ ref chosen
// so that there are at least want of them (fewer only when lo == ref), and
// not many more: it widens the window backwards from now by doubling, and
// bisects when a doubling lands in a dense burst.
func newestFires(s engine.Schedule, ref, now time.Time, want int) (fires []time.Time, lo time.Time) {
	limit := 4 * want // most fires one walk may visit
	span := now.Sub(ref)
	prev := now // (prev, now] holds fewer than want fires
	for d := time.Second; ; {
		lo = now.Add(-d)
		if d >= span {
			lo = ref
		}
		fs, complete := firesIn(s, lo, now, limit)
		if complete && (len(fs) >= want || lo.Equal(ref)) {
			return fs, lo
		}
		if !complete {
			// Too many in (lo, prev]: find a lower bound between them.
			a, b := lo, prev // count(a) > limit, count(b) < want
			for b.Sub(a) > time.Nanosecond {
				m := a.Add(b.Sub(a) / 2)
				fs, complete := firesIn(s, m, now, limit)
				switch {
				case !complete:
					a = m
				case len(fs) >= want:
					return fs, m
				default:
					b = m
				}
			}
			fs, _ := firesIn(s, b, now, limit) // not reached for distinct fires
			return fs, b
		}
		prev = lo
		if d > span/2 {
			d = span
		} else {
			d *= 2
		}
	}
}

// firesIn returns the fires of s in (lo, hi], stopping after max of them;
// complete is false when there were more.
func firesIn(s engine.Schedule, lo, hi time.Time, max int) (fires []time.Time, complete bool) {
	for t := lo; ; {
		t = s.Next(t)
		if t.IsZero() || t.After(hi) {
			return fires, true
		}
		if len(fires) == max {
			return fires, false
		}
		fires = append(fires, t)
	}
}

// countFires counts the fires of s in (lo, hi], stopping after max.
func countFires(s engine.Schedule, lo, hi time.Time, max int) (n int, complete bool) {
	for t := lo; ; {
		t = s.Next(t)
		if t.IsZero() || t.After(hi) {
			return n, true
		}
		if n == max {
			return n, false
		}
		n++
	}
}

// ShouldRun reports whether the fire scheduled at scheduled may run: false
// when it is at or before LastDone (done fires never run again, also when
// the clock went backwards) or when an intent for it is in flight.
func ShouldRun(st JobState, scheduled time.Time) bool {
	if !scheduled.After(st.LastDone) {
		return false
	}
	return !slices.ContainsFunc(st.InFlight, func(in Intent) bool { return in.Scheduled.Equal(scheduled) })
}

// shortDuration formats d like time.Duration.String without zero units:
// "1h", "1h30m", "90s" becomes "1m30s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// String summarises the plan for a log line.
func (c CatchUp) String() string {
	if c.Empty() {
		return "nothing missed"
	}
	var b strings.Builder
	if !c.Run.IsZero() {
		fmt.Fprintf(&b, "run %s", c.Run.Format(time.RFC3339))
	} else {
		b.WriteString("run nothing")
	}
	n := len(c.Missed) + c.Unlisted
	more := ""
	if c.UnlistedAtLeast {
		more = " or more"
	}
	fmt.Fprintf(&b, "; %d%s missed", n, more)
	return b.String()
}
