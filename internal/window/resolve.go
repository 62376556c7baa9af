package window

import (
	"time"

	"github.com/cloudcron/scheduler/internal/holiday"
)

// Resolve returns the instant of wall time c on date d in loc by the
// fixed-time DST rule: a wall time that does not exist (a spring-forward
// gap) is the first instant after the gap; a wall time that exists twice
// (a fall-back repeat) is its first occurrence. moved reports the first
// case.
func Resolve(d holiday.Date, c Clock, loc *time.Location) (t time.Time, moved bool) {
	// The wall time as a UTC instant with the same fields.
	wall := time.Date(d.Year, d.Month, d.Day, 0, int(c), 0, 0, time.UTC)
	_, before := wall.Add(-26 * time.Hour).In(loc).Zone()
	_, after := wall.Add(26 * time.Hour).In(loc).Zone()
	var best time.Time
	for _, off := range []int{before, after} {
		cand := wall.Add(-time.Duration(off) * time.Second)
		if _, o := cand.In(loc).Zone(); o == off && (best.IsZero() || cand.Before(best)) {
			best = cand
		}
	}
	if !best.IsZero() {
		return best.In(loc), false
	}
	// A gap: the transition lies in (wall-after, wall-before]; find the
	// first instant at the later offset.
	lo := wall.Add(-time.Duration(after) * time.Second)
	hi := wall.Add(-time.Duration(before) * time.Second)
	for hi.Sub(lo) > time.Second {
		mid := lo.Add(hi.Sub(lo) / 2).Truncate(time.Second)
		if !mid.After(lo) {
			break
		}
		if _, o := mid.In(loc).Zone(); o == after {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi.In(loc), true
}
