// Package plan lays out what a schedule will do over a span of time (the
// coming day or week): every edge and action of each window, every fire
// of each job, the days that are holidays, off dates, make-up working days
// or DST change days, the overrides in force, and each window's on- and
// off-hours with the savings estimate. It reads no clock and does no I/O;
// Text, JSON and SVG render a Plan.
package plan

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloudcron/scheduler/internal/engine"
	"github.com/cloudcron/scheduler/internal/holiday"
	"github.com/cloudcron/scheduler/internal/schedule"
	"github.com/cloudcron/scheduler/internal/window"
)

// Plan is what a schedule does from From to To.
type Plan struct {
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Zone    string    `json:"zone"` // the config's zone, the chart's axis
	Windows []Window  `json:"windows"`
	Jobs    []Fire    `json:"jobs"`
}

// Window is one window's plan.
type Window struct {
	Name       string   `json:"name"`
	Account    string   `json:"account"`
	Resource   string   `json:"resource"`
	Zone       string   `json:"zone"`
	Drift      string   `json:"drift"`
	CheckEvery string   `json:"check_every"`
	After      []string `json:"after,omitempty"`
	Targets    []string `json:"targets"`
	Days       []Day    `json:"days"`  // every day of the span that has something to say
	Edges      []Edge   `json:"edges"` // in time order
	// Intervals are the spans the targets run in, clipped to the plan,
	// for the whole window (targets with an override of their own have
	// their own Edges).
	Intervals []Interval `json:"intervals"`
	OnHours   float64    `json:"on_hours"`  // per target, overrides of the whole window included
	OffHours  float64    `json:"off_hours"` // per target
	// HourlyCost is the window's hourly_cost, nil when not set; Savings is
	// OffHours × HourlyCost × len(Targets), against running all the time.
	HourlyCost *float64 `json:"hourly_cost,omitempty"`
	Savings    *float64 `json:"savings,omitempty"`
	// Overrides in force during the plan.
	Overrides []window.Override `json:"overrides,omitempty"`
	// Notes are warnings, such as a calendar without data for a year.
	Notes []string `json:"notes,omitempty"`
}

// Day is a day of a window's zone with a mark.
type Day struct {
	Date string `json:"date"` // YYYY-MM-DD in the window's zone
	Kind string `json:"kind"` // holiday | off_date | workday (make-up) | dst
	Note string `json:"note"`
}

// Edge is a change of desired state, and the action it takes.
type Edge struct {
	Time    time.Time `json:"time"` // in the window's zone
	State   string    `json:"state"`
	Action  string    `json:"action"`
	Targets []string  `json:"targets"`
	Note    string    `json:"note,omitempty"` // DST, override
}

// Interval is a span in which the targets run.
type Interval struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Fire is one fire of a job.
type Fire struct {
	Job     string    `json:"job"`
	Time    time.Time `json:"time"` // in the job's zone
	Zone    string    `json:"zone"`
	Action  string    `json:"action"`
	Targets []string  `json:"targets"`
	Note    string    `json:"note,omitempty"`
}

// Build plans cfg from from to to, with the overrides in force.
func Build(cfg *schedule.Config, from, to time.Time, overrides []window.Override) *Plan {
	p := &Plan{From: from.In(cfg.Loc), To: to.In(cfg.Loc), Zone: cfg.Loc.String()}
	for _, w := range cfg.Windows {
		p.Windows = append(p.Windows, buildWindow(w, from, to, overrides))
	}
	for _, j := range cfg.Jobs {
		for t := j.Spec.Next(from.Add(-time.Nanosecond)); !t.IsZero() && t.Before(to); t = j.Spec.Next(t) {
			p.Jobs = append(p.Jobs, Fire{Job: j.Name, Time: t, Zone: j.Loc.String(), Action: j.Action,
				Targets: j.Targets, Note: fireNote(j, t)})
			if len(p.Jobs) > 100000 {
				break // an @every 1s job over a week: enough to show
			}
		}
	}
	sort.SliceStable(p.Jobs, func(a, b int) bool { return p.Jobs[a].Time.Before(p.Jobs[b].Time) })
	return p
}

// fireNote marks a fire on a DST change day of the job's zone.
func fireNote(j *schedule.Job, t time.Time) string {
	if note := dstDay(holiday.DateOf(t), j.Loc); note != "" {
		if spec, ok := j.Spec.(*engine.Spec); ok && spec.Kind() == engine.KindFixed {
			return note + "; fixed-time rule"
		}
		return note
	}
	return ""
}

// dstDay says whether the zone changes its offset on date d.
func dstDay(d holiday.Date, loc *time.Location) string {
	start := time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, loc)
	end := time.Date(d.Year, d.Month, d.Day+1, 0, 0, 0, 0, loc)
	_, o1 := start.Zone()
	_, o2 := end.Zone()
	switch {
	case o2 > o1:
		return "DST starts (clocks go forward)"
	case o2 < o1:
		return "DST ends (clocks go back)"
	}
	return ""
}

func buildWindow(w *schedule.Window, from, to time.Time, overrides []window.Override) Window {
	spec := w.Spec
	pw := Window{Name: w.Name, Account: w.Account, Resource: w.Resource, Zone: w.Loc.String(),
		Drift: w.Drift, CheckEvery: w.CheckEveryD.String(), After: w.After, Targets: w.Targets, HourlyCost: w.HourlyCost}
	for _, o := range overrides {
		if o.Window == w.Name && o.Until.After(from) && o.From.Before(to) {
			pw.Overrides = append(pw.Overrides, o)
		}
	}
	// Days with a mark.
	years := map[int]bool{}
	for d := holiday.DateOf(from.In(w.Loc)); !holiday.DateOf(to.In(w.Loc)).Before(d); d = d.AddDays(1) {
		if !time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, w.Loc).Before(to) {
			break
		}
		years[d.Year] = true
		if spec.OffDates[d] {
			pw.Days = append(pw.Days, Day{d.String(), "off_date", "off date"})
		}
		if spec.Holidays != nil {
			if day, ok := spec.Holidays.Lookup(d); ok {
				kind := "holiday"
				if day.Kind == holiday.Workday {
					kind = "workday"
				}
				pw.Days = append(pw.Days, Day{d.String(), kind, day.Name})
			}
		}
		if note := dstDay(d, w.Loc); note != "" {
			pw.Days = append(pw.Days, Day{d.String(), "dst", note})
		}
	}
	if spec.Holidays != nil {
		var ys []int
		for y := range years {
			ys = append(ys, y)
		}
		sort.Ints(ys)
		for _, y := range ys {
			if !spec.Holidays.Covers(y) {
				pw.Notes = append(pw.Notes, "holiday calendar "+spec.Holidays.Name()+" has no data for "+strconv.Itoa(y)+": no holidays are taken off that year")
			}
		}
	}

	// Each target's timeline: the schedule's edges and the overrides'
	// bounds, each judged with Desired. Targets with the same timeline
	// share edges.
	type timeline struct {
		edges   []Edge
		on      time.Duration
		targets []string
	}
	var lines []*timeline
	byKey := map[string]*timeline{}
	for _, target := range w.Targets {
		tl := &timeline{}
		points := []time.Time{from}
		for _, e := range spec.Edges(from, to) {
			points = append(points, e.At)
		}
		for _, o := range overrides {
			if o.Applies(w.Name, target) {
				for _, at := range []time.Time{o.From, o.Until} {
					if at.After(from) && at.Before(to) {
						points = append(points, at)
					}
				}
			}
		}
		sort.Slice(points, func(a, b int) bool { return points[a].Before(points[b]) })
		var prev window.State = -1
		var since time.Time
		for i, at := range points {
			if i > 0 && at.Equal(points[i-1]) {
				continue
			}
			d := spec.Desired(target, at, overrides)
			if d.State == prev {
				continue
			}
			if prev == window.On {
				tl.on += at.Sub(since)
			}
			if d.State == window.On {
				since = at
			}
			if i > 0 { // the state at from is not an edge
				tl.edges = append(tl.edges, Edge{Time: at.In(w.Loc), State: d.State.String(), Action: action(w, d.State), Note: edgeNote(spec, at, d)})
			}
			prev = d.State
		}
		if prev == window.On {
			tl.on += to.Sub(since)
		}
		key := edgesKey(tl.edges)
		if have, ok := byKey[key]; ok {
			have.targets = append(have.targets, target)
			continue
		}
		tl.targets = []string{target}
		byKey[key] = tl
		lines = append(lines, tl)
	}
	total := to.Sub(from)
	var onAll time.Duration
	for _, tl := range lines {
		onAll += tl.on * time.Duration(len(tl.targets))
		for _, e := range tl.edges {
			e.Targets = tl.targets
			pw.Edges = append(pw.Edges, e)
		}
	}
	sort.SliceStable(pw.Edges, func(a, b int) bool { return pw.Edges[a].Time.Before(pw.Edges[b].Time) })
	if n := len(w.Targets); n > 0 {
		perTarget := onAll / time.Duration(n)
		pw.OnHours = round2(perTarget.Hours())
		pw.OffHours = round2((total - perTarget).Hours())
		if w.HourlyCost != nil {
			s := round2((total - perTarget).Hours() * *w.HourlyCost * float64(n))
			pw.Savings = &s
		}
	}
	// The whole window's on-intervals (window-level overrides included),
	// for the chart.
	var start time.Time
	on := false
	points := []time.Time{from}
	for _, e := range spec.Edges(from, to) {
		points = append(points, e.At)
	}
	for _, o := range pw.Overrides {
		if o.Target == "" {
			points = append(points, o.From, o.Until)
		}
	}
	sort.Slice(points, func(a, b int) bool { return points[a].Before(points[b]) })
	for _, at := range points {
		if at.Before(from) || !at.Before(to) {
			continue
		}
		s := spec.Desired("", at, overrides).State == window.On
		if s && !on {
			start = at
		}
		if !s && on {
			pw.Intervals = append(pw.Intervals, Interval{start, at})
		}
		on = s
	}
	if on {
		pw.Intervals = append(pw.Intervals, Interval{start, to})
	}
	return pw
}

func action(w *schedule.Window, s window.State) string {
	if s == window.On {
		return w.StartAction()
	}
	return w.StopAction()
}

func edgeNote(spec *window.Window, at time.Time, d window.Decision) string {
	var notes []string
	if d.Override != nil {
		notes = append(notes, "override until "+d.Override.Until.In(spec.Loc).Format("2006-01-02 15:04"))
	}
	for _, e := range spec.Edges(at, at.Add(time.Nanosecond)) {
		if e.Note != "" {
			notes = append(notes, e.Note)
		}
	}
	if d.Override == nil && (strings.HasPrefix(d.Reason, "holiday") || strings.HasPrefix(d.Reason, "off date")) {
		notes = append(notes, d.Reason)
	}
	return strings.Join(notes, "; ")
}

func edgesKey(es []Edge) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.Time.UTC().Format(time.RFC3339Nano))
		b.WriteString(e.State)
		b.WriteString(e.Note)
		b.WriteByte('|')
	}
	return b.String()
}

func round2(f float64) float64 {
	if f < 0 {
		return -round2(-f)
	}
	return float64(int64(f*100+0.5)) / 100
}
