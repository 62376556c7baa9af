// Package engine computes fire times and drives them with robfig/cron/v3.
//
// Parse reads a job's schedule (5 cron fields, 6 with leading seconds, or a
// descriptor such as @daily or @every 10m) with robfig/cron's parser, and
// the returned Schedule computes fire times itself in the job's zone, with
// the DST rule of Vixie cron and cronie:
//
//   - A fixed-time spec (none of the seconds, minute and hour fields begins
//     with * or ?; also @daily, @midnight, @weekly, @monthly, @yearly and
//     @annually) fires once per matching wall time: a wall time inside a
//     spring-forward gap fires at the first instant after the gap, a wall
//     time in a repeated fall-back hour fires at its first occurrence only.
//   - An interval spec (one of those fields begins with *, or @hourly)
//     follows elapsed time: it fires at every instant whose wall time
//     matches, so wall times inside a gap never fire and both passes through
//     a repeated hour fire.
//   - @every D fires at anchor + k*D (k ≥ 1), whatever the zone does.
//
// When both day-of-month and day-of-week are restricted, a day matching
// either fires; a field written */n counts as restricted (robfig/cron).
// Next searches at most five years ahead and returns the zero time for a
// spec that never fires (such as 0 0 30 2 *).
//
// Runner drives schedules with a cron.Cron and hands each callback the
// exact instant it was scheduled for.
package engine

import (
	"math/big"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is a parsed job schedule in its zone. It satisfies cron.Schedule.
type Schedule interface {
	// Next returns the first fire strictly after t, or the zero time if
	// there is none.
	Next(t time.Time) time.Time
}

// Kind says which DST rule a schedule follows.
type Kind int

const (
	// KindFixed is a fixed-time spec: gap fires move to the end of the gap,
	// repeated wall times fire once.
	KindFixed Kind = iota + 1
	// KindInterval is an interval spec: it follows elapsed time.
	KindInterval
	// KindEvery is @every D: anchor + k*D, unaffected by DST.
	KindEvery
)

// String returns "fixed", "interval" or "every".
func (k Kind) String() string {
	switch k {
	case KindFixed:
		return "fixed"
	case KindInterval:
		return "interval"
	case KindEvery:
		return "every"
	}
	return "unknown"
}

// horizon bounds how far Next searches before it gives up.
const horizonYears = 5

// Spec is the Schedule that Parse returns.
type Spec struct {
	spec string
	kind Kind
	loc  *time.Location

	// Cron kinds: robfig's bit fields, evaluated over civil (wall) times
	// represented as UTC instants, where no DST exists.
	civil cron.SpecSchedule

	// KindEvery.
	every  time.Duration
	anchor time.Time
}

var _ cron.Schedule = (*Spec)(nil)

func newCronSpec(spec string, kind Kind, ss *cron.SpecSchedule) *Spec {
	s := &Spec{spec: spec, kind: kind, civil: *ss}
	s.civil.Location = time.UTC
	return s
}

// Parse parses a job's schedule spec in loc. anchor is the instant @every
// schedules count from (the daemon's start; `next --from`); a zero anchor
// counts from 0001-01-01 UTC. A nil loc is UTC. The returned Schedule is a
// *Spec. Errors are short, lowercase, name the bad field and say how to fix
// it, without repeating the whole spec: the caller adds the job's context.
func Parse(spec string, loc *time.Location, anchor time.Time) (Schedule, error) {
	s, err := parseSpec(spec)
	if err != nil {
		return nil, err
	}
	if loc == nil {
		loc = time.UTC
	}
	s.loc = loc
	s.anchor = anchor
	return s, nil
}

// IsFixedTime reports whether spec is a valid fixed-time spec (see the
// package doc); it is false for interval specs, @every and invalid specs.
func IsFixedTime(spec string) bool {
	s, err := parseSpec(spec)
	return err == nil && s.kind == KindFixed
}

// String returns the spec as written.
func (s *Spec) String() string { return s.spec }

// Kind returns the DST rule the schedule follows.
func (s *Spec) Kind() Kind { return s.kind }

// Location returns the zone the schedule is evaluated in.
func (s *Spec) Location() *time.Location { return s.loc }

// Next returns the first fire strictly after t, in the schedule's zone, or
// the zero time if there is none within five years.
func (s *Spec) Next(t time.Time) time.Time {
	if s.kind == KindEvery {
		return s.nextEvery(t).In(s.loc)
	}
	return s.nextCron(t)
}

// nextEvery returns anchor + k*every for the smallest k ≥ 1 with a result
// strictly after t.
func (s *Spec) nextEvery(t time.Time) time.Time {
	if t.Before(s.anchor) {
		return s.anchor.Add(s.every)
	}
	d := t.Sub(s.anchor)
	if d < maxDuration {
		k := d/s.every + 1
		if k <= maxDuration/s.every { // anchor + k*every representable as a Duration
			return s.anchor.Add(k * s.every)
		}
	}
	// More than 292 years apart (a zero anchor): count in big integers.
	diff := new(big.Int).Sub(unixNano(t), unixNano(s.anchor))
	k := diff.Quo(diff, big.NewInt(int64(s.every)))
	k.Add(k, big.NewInt(1))
	off := k.Mul(k, big.NewInt(int64(s.every)))
	off.Add(off, unixNano(s.anchor))
	sec, ns := new(big.Int).QuoRem(off, big.NewInt(1e9), new(big.Int))
	return time.Unix(sec.Int64(), ns.Int64())
}

const maxDuration = time.Duration(1<<63 - 1)

func unixNano(t time.Time) *big.Int {
	n := big.NewInt(t.Unix())
	n.Mul(n, big.NewInt(1e9))
	return n.Add(n, big.NewInt(int64(t.Nanosecond())))
}

// nextCron walks the zone's periods of constant UTC offset from the one
// holding t. Within a period the wall clock is the instant plus the offset,
// so robfig's own Next over civil times (a UTC SpecSchedule, where there is
// no DST) finds the first matching wall time; it fires in this period if
// its instant is before the period ends, else the search moves on.
//
// Fixed-time specs add two rules at a period's start: after a forward jump,
// a match among the skipped wall times fires at the start (the first
// instant after the gap); after a backward jump, the repeated wall times
// (already shown by the previous period) are not matched again.
func (s *Spec) nextCron(t time.Time) time.Time {
	limit := t.AddDate(horizonYears, 0, 0)
	off, start, end := zonePeriod(t, s.loc)
	prevOff, havePrev := 0, false
	if !start.IsZero() {
		prevOff, _, _ = zonePeriod(start.Add(-time.Second), s.loc)
		havePrev = true
	}
	after := t // fires must be strictly after this instant
	for {
		if s.kind == KindFixed && havePrev && start.After(t) && off > prevOff {
			gapFrom := wall(start, prevOff) // first skipped wall time
			if c := s.civil.Next(gapFrom.Add(-time.Second)); !c.IsZero() && c.Before(wall(start, off)) {
				return start.In(s.loc)
			}
		}
		lower := wall(after, off)
		if s.kind == KindFixed && havePrev && off < prevOff {
			// Repeated wall times began before start; skip them.
			if seen := wall(start, prevOff).Add(-time.Second); lower.Before(seen) {
				lower = seen
			}
		}
		c := s.civil.Next(lower)
		if c.IsZero() {
			return time.Time{}
		}
		at := c.Add(-time.Duration(off) * time.Second)
		if end.IsZero() || at.Before(end) {
			return at.In(s.loc)
		}
		if end.After(limit) {
			return time.Time{}
		}
		prevOff, havePrev = off, true
		start = end
		off, _, end = zonePeriod(start, s.loc)
		after = start.Add(-time.Second) // transitions fall on whole seconds
	}
}

// zonePeriod returns the UTC offset (seconds east) of loc at u and the
// bounds of the period around u that time.Time.ZoneBounds reports: start
// is zero when unknown, end is zero when the offset never changes again.
//
// ZoneBounds can be wrong for years served by a zone's POSIX TZ footer
// rule: in a leap year it ends the period at Dec 31 00:00 UTC, even for
// instants after that (golang/go#81583), and it can report a start after u
// for zones without DST (golang/go#58682). Such an end is moved to the
// first instant after u whose zone differs, or to the next UTC new year
// (where ZoneBounds is right again) if the zone is the same there; a
// boundary where nothing changes is harmless to nextCron.
func zonePeriod(u time.Time, loc *time.Location) (off int, start, end time.Time) {
	lu := u.In(loc)
	name, off := lu.Zone()
	start, end = lu.ZoneBounds()
	if start.After(u) {
		start = time.Time{}
	}
	if end.IsZero() || end.After(u) {
		return off, start, end
	}
	same := func(v time.Time) bool {
		n, o := v.In(loc).Zone()
		return n == name && o == off
	}
	hi := time.Date(u.UTC().Year()+1, time.January, 1, 0, 0, 0, 0, time.UTC)
	if same(hi) {
		return off, start, hi
	}
	lo := u // same(lo); !same(hi): bisect to the second
	for hi.Sub(lo) > time.Second {
		mid := lo.Add(hi.Sub(lo) / 2).Truncate(time.Second)
		if !mid.After(lo) {
			break
		}
		if same(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return off, start, hi
}

// wall returns the wall time of instant t at UTC offset off (seconds east),
// as a UTC time with the same fields.
func wall(t time.Time, off int) time.Time {
	return t.UTC().Add(time.Duration(off) * time.Second)
}

// Upcoming returns up to n fires of s strictly after from, fewer if the
// schedule ends.
func Upcoming(s Schedule, from time.Time, n int) []time.Time {
	var out []time.Time
	t := from
	for range n {
		t = s.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}
