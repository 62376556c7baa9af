// Package window computes a cost-saving window's desired state: whether
// its targets should run at an instant, as a pure function of the window
// (periods, zone, off dates, holiday calendar), the instant and the
// overrides in force. It does no I/O and reads no clock; the daemon's
// reconciler gives it both.
//
// A period runs from its `from` wall time on each of its days to its `to`
// wall time, on the same day when to > from and on the next day when to <
// from (an overnight span; `days` names the day it starts). Wall times
// follow the fixed-time DST rule of the jobs: a wall time inside a
// spring-forward gap means the first instant after the gap, a wall time
// in a repeated fall-back hour means its first occurrence.
//
// An off date or a holiday of the calendar turns the whole civil day (in
// the window's zone) off: periods that start on it do not run, and an
// overnight period from the day before stops at its midnight. A make-up
// working day of the calendar (CN's 调休) runs the periods of a working
// day: every period whose days include one of Monday to Friday.
//
// Periods that overlap or touch merge: the window has an edge only where
// the state changes.
package window

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cloudcron/scheduler/internal/holiday"
)

// State is a target's power state as a window sees it.
type State int

const (
	// Off: the target should be stopped.
	Off State = iota
	// On: the target should be running.
	On
)

// String returns "on" or "off".
func (s State) String() string {
	if s == On {
		return "on"
	}
	return "off"
}

// ParseState parses "on" or "off".
func ParseState(s string) (State, error) {
	switch strings.ToLower(s) {
	case "on":
		return On, nil
	case "off":
		return Off, nil
	}
	return Off, fmt.Errorf("state %q: want on or off", s)
}

// Clock is a wall time of day in minutes after midnight, 0 to 1440 (24:00,
// the midnight that ends the day, allowed for `to` only).
type Clock int

// ParseClock parses "HH:MM" (00:00 to 24:00).
func ParseClock(s string) (Clock, error) {
	var h, m int
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("%q is not a time of day written HH:MM", s)
	}
	if _, err := fmt.Sscanf(s, "%02d:%02d", &h, &m); err != nil || h > 24 || m > 59 || (h == 24 && m != 0) {
		return 0, fmt.Errorf("%q is not a time of day written HH:MM (00:00 to 24:00)", s)
	}
	return Clock(h*60 + m), nil
}

// String returns c as HH:MM.
func (c Clock) String() string { return fmt.Sprintf("%02d:%02d", int(c)/60, int(c)%60) }

// Period is one span of a week in which the targets run.
type Period struct {
	Days     [7]bool // indexed by time.Weekday: the days it starts on
	From, To Clock   // To <= From crosses midnight (From == To is refused by validation)
}

// Overnight reports whether the period ends on the day after it starts.
func (p Period) Overnight() bool { return p.To <= p.From && p.To != 1440 }

// Window is one window's schedule.
type Window struct {
	Name     string
	Loc      *time.Location
	On       []Period
	OffDates map[holiday.Date]bool
	Holidays holiday.Calendar // nil: none
}

// Interval is a span [Start, End) in which the targets run. StartMoved
// and EndMoved report a wall time that fell in a DST gap.
type Interval struct {
	Start, End           time.Time
	StartMoved, EndMoved bool
}

// DayOff says why a civil date is off in w, or "" when it is not.
func (w *Window) DayOff(d holiday.Date) string {
	if w.OffDates[d] {
		return "off date " + d.String()
	}
	if w.Holidays != nil {
		if day, ok := w.Holidays.Lookup(d); ok && day.Kind == holiday.Off {
			return "holiday: " + day.Name
		}
	}
	return ""
}

// periodsOn returns the periods that start on d (none on a day off).
func (w *Window) periodsOn(d holiday.Date) []Period {
	if w.DayOff(d) != "" {
		return nil
	}
	workday := false
	if w.Holidays != nil {
		if day, ok := w.Holidays.Lookup(d); ok && day.Kind == holiday.Workday {
			workday = true
		}
	}
	wd := d.Weekday()
	var out []Period
	for _, p := range w.On {
		applies := p.Days[wd]
		if workday {
			applies = p.Days[time.Monday] || p.Days[time.Tuesday] || p.Days[time.Wednesday] || p.Days[time.Thursday] || p.Days[time.Friday]
		}
		if applies {
			out = append(out, p)
		}
	}
	return out
}

// startDays returns the civil dates whose periods can cover [from, to).
func (w *Window) startDays(from, to time.Time) (first, last holiday.Date) {
	return holiday.DateOf(from.In(w.Loc)).AddDays(-2), holiday.DateOf(to.In(w.Loc)).AddDays(1)
}

// Intervals returns the merged on-intervals of the schedule (no
// overrides) that meet [from, to), unclipped, in order.
func (w *Window) Intervals(from, to time.Time) []Interval {
	first, last := w.startDays(from, to)
	var raw []Interval
	for d := first; !last.Before(d); d = d.AddDays(1) {
		for _, p := range w.periodsOn(d) {
			start, startMoved := Resolve(d, p.From, w.Loc)
			endDay, endClock := d, p.To
			if p.To == 1440 || p.To <= p.From {
				endDay = d.AddDays(1)
				if p.To == 1440 {
					endClock = 0
				}
			}
			end, endMoved := Resolve(endDay, endClock, w.Loc)
			if endDay != d && endClock > 0 && w.DayOff(endDay) != "" {
				end, endMoved = Resolve(endDay, 0, w.Loc) // the day off starts at its midnight
			}
			if start.Before(end) {
				raw = append(raw, Interval{start, end, startMoved, endMoved})
			}
		}
	}
	sort.Slice(raw, func(i, j int) bool { return raw[i].Start.Before(raw[j].Start) })
	var out []Interval
	for _, iv := range raw {
		if n := len(out); n > 0 && !iv.Start.After(out[n-1].End) {
			if iv.End.After(out[n-1].End) {
				out[n-1].End, out[n-1].EndMoved = iv.End, iv.EndMoved
			}
			continue
		}
		out = append(out, iv)
	}
	// Keep those that meet [from, to).
	kept := out[:0]
	for _, iv := range out {
		if iv.End.After(from) && iv.Start.Before(to) {
			kept = append(kept, iv)
		}
	}
	return kept
}

// Scheduled returns the state the schedule alone wants at t, and why.
func (w *Window) Scheduled(t time.Time) (State, string) {
	for _, iv := range w.Intervals(t, t.Add(time.Nanosecond)) {
		if !t.Before(iv.Start) && t.Before(iv.End) {
			return On, "in a period"
		}
	}
	if why := w.DayOff(holiday.DateOf(t.In(w.Loc))); why != "" {
		return Off, why
	}
	return Off, "outside the periods"
}

// Edge is an instant where the schedule's state changes.
type Edge struct {
	At    time.Time
	State State  // the state from At on
	Note  string // a DST note when the wall time was moved, else ""
}

// Edges returns the schedule's edges in [from, to), in order.
func (w *Window) Edges(from, to time.Time) []Edge {
	var out []Edge
	for _, iv := range w.Intervals(from.Add(-time.Nanosecond), to) {
		if !iv.Start.Before(from) && iv.Start.Before(to) {
			out = append(out, Edge{At: iv.Start, State: On, Note: dstNote(iv.Start, iv.StartMoved, w.Loc)})
		}
		if !iv.End.Before(from) && iv.End.Before(to) {
			out = append(out, Edge{At: iv.End, State: Off, Note: dstNote(iv.End, iv.EndMoved, w.Loc)})
		}
	}
	return out
}

// NextEdge returns the first edge of the schedule strictly after t, or
// false if there is none within a year and a week.
func (w *Window) NextEdge(t time.Time) (Edge, bool) {
	const step = 8 * 24 * time.Hour
	for from := t.Add(time.Nanosecond); from.Before(t.Add(373 * 24 * time.Hour)); from = from.Add(step) {
		if e := w.Edges(from, from.Add(step)); len(e) > 0 {
			return e[0], true
		}
	}
	return Edge{}, false
}

// dstNote says when an edge's instant is not its plain wall time: the
// wall time fell in a spring-forward gap (moved), or it exists twice and
// the edge is its first occurrence.
func dstNote(t time.Time, moved bool, loc *time.Location) string {
	if moved {
		return "wall time skipped by DST; at the first instant after the gap"
	}
	_, now := t.In(loc).Zone()
	for _, d := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
		// The same wall time d later exists if the offset dropped by d.
		if _, o := t.Add(d).In(loc).Zone(); time.Duration(now-o)*time.Second == d {
			return "wall time repeated by DST; at its first occurrence"
		}
	}
	return ""
}

// MarshalText writes "on" or "off".
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads "on" or "off".
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
