package schedule

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cloudcron/scheduler/internal/holiday"
	"github.com/cloudcron/scheduler/internal/vendors"
	"github.com/cloudcron/scheduler/internal/window"
)

// Window is one cost-saving window (design.md "Cost-saving windows
// contract"): the targets run inside its periods and are off outside.
type Window struct {
	Name       string         `yaml:"name"`
	Account    string         `yaml:"account"`
	Resource   string         `yaml:"resource"` // a kind with both .start and .stop in the catalogue
	Targets    []string       `yaml:"targets"`
	Timezone   string         `yaml:"timezone"`
	On         []Period       `yaml:"on"`
	OffDates   []string       `yaml:"off_dates"`
	Holidays   *HolidaySource `yaml:"holidays"`
	Drift      string         `yaml:"drift"` // enforce (default) | edges
	CheckEvery *Duration      `yaml:"check_every"`
	After      []string       `yaml:"after"`
	HourlyCost *float64       `yaml:"hourly_cost"`

	// Derived by the loader.
	Loc         *time.Location `yaml:"-"`
	Spec        *window.Window `yaml:"-"` // the desired-state schedule
	CheckEveryD time.Duration  `yaml:"-"` // default 5m
	Line        int            `yaml:"-"`
	Column      int            `yaml:"-"`
}

// Period is one `on` entry: days names the day it starts on.
type Period struct {
	Days string `yaml:"days"` // MON-FRI, SAT, MON,WED,FRI, SUN-SAT, *
	From string `yaml:"from"` // HH:MM
	To   string `yaml:"to"`   // HH:MM, 24:00 allowed; before from: ends the next day
}

// HolidaySource is `holidays: KR` (a built-in calendar) or
// `holidays: {ics: PATH}` (a file; relative to the schedule file).
type HolidaySource struct {
	Code string
	ICS  string

	Calendar holiday.Calendar // loaded by the validator
}

// Window kinds, default and bounds.
const (
	DriftEnforce      = "enforce"
	DriftEdges        = "edges"
	DefaultCheckEvery = 5 * time.Minute
	MinCheckEvery     = 10 * time.Second
)

var (
	drifts        = []string{DriftEnforce, DriftEdges}
	holidayType   = reflectTypeOfHoliday()
	dayNames      = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}
	daysHint      = "write days like MON-FRI, SAT, MON,WED,FRI or * (every day)"
	windowKinds   = resourceKinds()
	windowKindFix = "use a kind with both a start and a stop action: " + strings.Join(windowKinds, ", ")
)

// resourceKinds lists the catalogue kinds that have both .start and .stop.
func resourceKinds() []string {
	var kinds []string
	for name, info := range vendors.Catalogue {
		if info.Kind != vendors.Start {
			continue
		}
		kind := strings.TrimSuffix(name, ".start")
		if _, ok := vendors.Catalogue[kind+".stop"]; ok {
			kinds = append(kinds, kind)
		}
	}
	sort.Strings(kinds)
	return kinds
}

// StartAction and StopAction return the catalogue actions of the window's resource.
func (w *Window) StartAction() string { return w.Resource + ".start" }

// StopAction returns the catalogue stop action of the window's resource.
func (w *Window) StopAction() string { return w.Resource + ".stop" }

// Window returns the window called name, or nil.
func (c *Config) Window(name string) *Window {
	for _, w := range c.Windows {
		if w != nil && w.Name == name {
			return w
		}
	}
	return nil
}

// walkHoliday checks a holidays value: a scalar code or {ics: PATH}. In
// fast mode it fills v, a HolidaySource, as decoding would.
func (w *walker) walkHoliday(n *yaml.Node, v reflect.Value) *yaml.Node {
	const fix = "write holidays: KR (a built-in calendar such as KR, JP, CN, DE or DE-BY) or holidays: {ics: PATH}"
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!str" && n.Value != "":
	case n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[0].Value == "ics" &&
		n.Content[1].Kind == yaml.ScalarNode && n.Content[1].Value != "":
		l := w.push("ics")
		w.record(n.Content[0], n.Content[1])
		w.pop(l)
	default:
		w.addHere(n, "expected a calendar code or {ics: PATH}, got %s; %s", describe(n), fix)
		return nil
	}
	if !w.clean {
		if err := v.Addr().Interface().(*HolidaySource).UnmarshalYAML(n); err != nil {
			// Decode stops at an error here, or reports it: only the
			// clean mode does as it does.
			w.slow = true
		}
	}
	return n
}

// UnmarshalYAML reads a code or {ics: PATH}; the walker checked the shape.
func (h *HolidaySource) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		h.Code = n.Value
		return nil
	}
	var m struct {
		ICS string `yaml:"ics"`
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	h.ICS = m.ICS
	return nil
}

// String returns the code or "ics:PATH".
func (h *HolidaySource) String() string {
	if h.ICS != "" {
		return "ics:" + h.ICS
	}
	return h.Code
}

// parseDays parses a period's days into a weekday set.
func parseDays(s string) ([7]bool, error) {
	var set [7]bool
	s = strings.ToUpper(strings.TrimSpace(s))
	if s == "*" {
		for i := range set {
			set[i] = true
		}
		return set, nil
	}
	day := func(n string) (int, error) {
		if i := slices.Index(dayNames, strings.TrimSpace(n)); i >= 0 {
			return i, nil
		}
		return 0, fmt.Errorf("unknown day %q; %s", n, daysHint)
	}
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		lo, err := day(a)
		if err != nil {
			return set, err
		}
		hi := lo
		if isRange {
			if hi, err = day(b); err != nil {
				return set, err
			}
		}
		for i := lo; ; i = (i + 1) % 7 { // FRI-MON wraps over the weekend
			set[i] = true
			if i == hi {
				break
			}
		}
	}
	return set, nil
}

// checkWindows validates the windows and builds each one's Spec.
func (v *validator) checkWindows(accounts []string) {
	c := v.c
	first := map[string]int{}
	owner := map[string]string{} // target → "window (line N)"
	for i, w := range c.Windows {
		if w == nil {
			continue
		}
		base := index("windows", i)
		if n := v.w.val(base); n != nil {
			w.Line, w.Column = n.Line, n.Column
		}
		if v.need(base, "name", w.Name == "", "every window needs a unique name") {
			if msg := NameProblem(w.Name); msg != "" {
				v.errAt(child(base, "name"), "%s", msg)
			} else if f, dup := first[w.Name]; dup {
				v.errAt(child(base, "name"), "duplicate window name %q; first defined at line %d", w.Name, v.node(child(index("windows", f), "name")).Line)
			} else if j, dup := v.firstJob[w.Name]; dup {
				v.errAt(child(base, "name"), "window name %q is also a job's name (line %d); audit records name both the same way: rename one", w.Name, v.node(child(index("jobs", j), "name")).Line)
			} else {
				first[w.Name] = i
			}
		}
		var acc *Account
		if v.need(base, "account", w.Account == "", v.accountFix) {
			acc = c.Accounts[w.Account]
			if acc == nil && !v.bad(child("accounts", w.Account)) {
				v.errAt(child(base, "account"), "unknown account %q; %s", w.Account, v.guessAccount(w.Account, accounts).hint)
			}
		}
		if v.need(base, "resource", w.Resource == "", windowKindFix) && !slices.Contains(windowKinds, w.Resource) {
			_, hasStart := vendors.Catalogue[w.Resource+".start"]
			switch {
			case hasStart:
				v.errAt(child(base, "resource"), "resource %q has no stop action, so a window cannot turn it off; %s", w.Resource, windowKindFix)
			case slices.ContainsFunc(catalogNames, func(a string) bool { return strings.HasPrefix(a, w.Resource+".") }):
				v.errAt(child(base, "resource"), "resource %q has no start and stop actions (only %s); %s", w.Resource, strings.Join(kindActions(w.Resource), ", "), windowKindFix)
			default:
				v.errAt(child(base, "resource"), "unknown resource %q; %s", w.Resource, hint(w.Resource, windowKinds))
			}
		} else if acc != nil && acc.Vendor != "sandbox" && oneOf(acc.Vendor, vendorNames) && vendors.Catalogue[w.StartAction()].Vendor != acc.Vendor {
			v.errAt(child(base, "resource"), "resource %q belongs to vendor %s, but account %q is vendor %s", w.Resource, vendors.Catalogue[w.StartAction()].Vendor, w.Account, acc.Vendor)
		}

		tp := child(base, "targets")
		if len(w.Targets) == 0 && !v.bad(tp) {
			v.need(base, "targets", true, "list the ids the window keeps on and off, e.g. targets: [id1, id2]")
		}
		for k, t := range w.Targets {
			p := index(tp, k)
			if v.bad(p) {
				continue
			}
			if strings.TrimSpace(t) == "" {
				v.errAt(p, "empty target id")
				continue
			}
			key := w.Account + "/" + t
			if prev, dup := owner[key]; dup {
				v.errAt(p, "target %q is already in window %s; a target belongs to one window at most: remove it from one of them", t, prev)
				continue
			}
			owner[key] = fmt.Sprintf("%s (line %d)", w.Name, v.node(p).Line)
			if msg := targetProblem(w.StartAction(), t); msg != "" {
				v.errAt(p, "%s", msg)
			}
		}

		w.Loc = c.Loc
		if w.Timezone != "" {
			if loc, err := v.zone(w.Timezone); err != nil {
				v.errAt(child(base, "timezone"), "%s", err.Error())
			} else {
				w.Loc = loc
			}
		}
		spec := &window.Window{Name: w.Name, Loc: w.Loc, OffDates: map[holiday.Date]bool{}}
		onOK := v.checkPeriods(w, base, spec)
		for k, s := range w.OffDates {
			d, err := holiday.ParseDate(s)
			if err != nil {
				v.errAt(index(child(base, "off_dates"), k), "%s; e.g. off_dates: [2026-12-24]", err.Error())
				continue
			}
			spec.OffDates[d] = true
		}
		if h := w.Holidays; h != nil {
			v.loadCalendar(h, child(base, "holidays"))
			spec.Holidays = h.Calendar
		}
		switch w.Drift {
		case "":
			w.Drift = DriftEnforce
		case DriftEnforce, DriftEdges:
		default:
			v.errAt(child(base, "drift"), "unknown drift %q; %s (enforce: put drifted targets back every check_every; edges: act only at edges, on start and on reload)", w.Drift, hint(w.Drift, drifts))
		}
		w.CheckEveryD = DefaultCheckEvery
		if p := child(base, "check_every"); v.set(p) && w.CheckEvery != nil {
			if d := w.CheckEvery.D(); d < MinCheckEvery {
				v.errAt(p, "check_every %s is too short; at least %s (every check reads each target's status from the vendor)", d, MinCheckEvery)
			} else {
				w.CheckEveryD = d
			}
		}
		if w.HourlyCost != nil && (*w.HourlyCost < 0 || *w.HourlyCost != *w.HourlyCost) {
			v.errAt(child(base, "hourly_cost"), "must be 0 or more (the cost of one target for one hour, any currency)")
		}
		if onOK {
			if st, _ := spec.Scheduled(v.anchor); st == window.Off {
				if _, ok := spec.NextEdge(v.anchor); !ok {
					v.errAt(child(base, "on"), "the window is never on in the coming year (every day it runs on is off); check on, off_dates and holidays")
				}
			}
		}
		w.Spec = spec
	}
	v.checkAfter(first)
}

// kindActions lists the catalogue actions of a resource kind.
func kindActions(kind string) []string {
	var out []string
	for _, a := range catalogNames {
		if strings.HasPrefix(a, kind+".") {
			out = append(out, a)
		}
	}
	return out
}

// checkPeriods checks the window's `on` and fills spec.On; it reports
// whether every period is valid.
func (v *validator) checkPeriods(w *Window, base string, spec *window.Window) bool {
	op := child(base, "on")
	if len(w.On) == 0 {
		if !v.bad(op) {
			v.need(base, "on", true, `list the periods the targets run in, e.g. on: [{days: MON-FRI, from: "09:00", to: "19:00"}]`)
		}
		return false
	}
	ok := true
	for k, p := range w.On {
		pb := index(op, k)
		if v.bad(pb) {
			ok = false
			continue
		}
		var per window.Period
		var err error
		if v.need(pb, "days", p.Days == "", daysHint) {
			if per.Days, err = parseDays(p.Days); err != nil {
				v.errAt(child(pb, "days"), "%s", err.Error())
				ok = false
			}
		} else {
			ok = false
		}
		clock := func(field, s string) (window.Clock, bool) {
			if !v.need(pb, field, s == "", `write times as "HH:MM" in quotes, e.g. from: "09:00"`) {
				return 0, false
			}
			c, err := window.ParseClock(s)
			if err != nil {
				v.errAt(child(pb, field), "%s; write times as \"HH:MM\" in quotes", err.Error())
				return 0, false
			}
			return c, true
		}
		from, okF := clock("from", p.From)
		to, okT := clock("to", p.To)
		switch {
		case !okF || !okT:
			ok = false
		case from == 1440:
			v.errAt(child(pb, "from"), `from cannot be 24:00; use "00:00" of the next day`)
			ok = false
		case from == to:
			v.errAt(child(pb, "to"), `from equals to (%s), so the period is empty; for a whole day write from: "00:00", to: "24:00"`, p.From)
			ok = false
		}
		per.From, per.To = from, to
		spec.On = append(spec.On, per)
	}
	return ok
}

// loadCalendar loads a window's holiday calendar.
func (v *validator) loadCalendar(h *HolidaySource, path string) {
	if h.ICS != "" {
		p := h.ICS
		if !filepath.IsAbs(p) && v.opts.Dir != "" {
			p = filepath.Join(v.opts.Dir, p)
		}
		f, err := holiday.OpenFile(p)
		if err != nil {
			v.errAt(child(path, "ics"), "%s; give a readable .ics file of all-day events (relative paths are relative to the schedule file)", err.Error())
			return
		}
		h.Calendar = f
		return
	}
	cal, err := holiday.Builtin(h.Code)
	if err != nil {
		v.errAt(path, "%s", err.Error())
		return
	}
	h.Calendar = cal
}

// checkAfter checks that every `after` names another window and that the
// windows form no cycle.
func (v *validator) checkAfter(first map[string]int) {
	c := v.c
	for i, w := range c.Windows {
		if w == nil {
			continue
		}
		for k, a := range w.After {
			p := index(child(index("windows", i), "after"), k)
			switch _, ok := first[a]; {
			case a == w.Name:
				v.errAt(p, "window %q cannot come after itself; remove it from after", a)
			case !ok:
				names := make([]string, 0, len(first))
				for n := range first {
					names = append(names, n)
				}
				sort.Strings(names)
				v.errAt(p, "unknown window %q; %s", a, hint(a, names))
			}
		}
	}
	// Depth-first search for cycles; report each cycle once, at the
	// `after` entry that closes it.
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var visit func(name string)
	visit = func(name string) {
		color[name] = grey
		stack = append(stack, name)
		i := first[name]
		for k, a := range c.Windows[i].After {
			if _, ok := first[a]; !ok || a == name {
				continue
			}
			switch color[a] {
			case grey:
				at := slices.Index(stack, a)
				cycle := append(slices.Clone(stack[at:]), a)
				v.errAt(index(child(index("windows", i), "after"), k), "after makes a cycle: %s; remove one of these", strings.Join(cycle, " → "))
			case white:
				visit(a)
			}
		}
		stack = stack[:len(stack)-1]
		color[name] = black
	}
	names := make([]string, 0, len(first))
	for n := range first {
		names = append(names, n)
	}
	sort.Slice(names, func(a, b int) bool { return first[names[a]] < first[names[b]] })
	for _, n := range names {
		if color[n] == white {
			visit(n)
		}
	}
}

func reflectTypeOfHoliday() reflect.Type { return reflect.TypeFor[HolidaySource]() }

// users names what may use an account, in messages.
func (v *validator) users() string {
	if len(v.c.Windows) > 0 {
		return "job or window"
	}
	return "job"
}

// manualStopActions are the actions a manual_stop fault accepts (the
// emulator's ManualStopActions).
var manualStopActions = []string{"dataforest.app.stop", "modelarts.notebook.stop", "scnet.notebook.stop"}

// checkManualStop checks a sandbox fault of kind manual_stop: the emulated
// cloud stops a running target by itself every delay (a demo of drift).
func (v *validator) checkManualStop(base string, f Fault) {
	const fix = "a manual_stop fault needs action (a stop action: dataforest.app.stop, modelarts.notebook.stop or scnet.notebook.stop), target and delay, e.g. {target: ID, action: modelarts.notebook.stop, kind: manual_stop, delay: 2m}"
	if v.need(base, "action", f.Action == "", fix) && !slices.Contains(manualStopActions, f.Action) {
		v.errAt(child(base, "action"), "kind manual_stop needs a stop action; %s", fix)
	}
	v.need(base, "target", f.Target == "", fix)
	p := child(base, "delay")
	switch {
	case v.bad(p):
	case f.Delay == nil || f.Delay.D() == 0:
		if v.set(p) {
			v.errAt(p, "must be greater than 0 for kind manual_stop")
		} else {
			v.need(base, "delay", true, fix)
		}
	case f.Delay.D() < 0:
		v.errAt(p, "negative duration %s; must be greater than 0", f.Delay.D())
	}
	if p := child(base, "retry_after"); v.set(p) {
		v.errKey(p, "retry_after applies to kind throttle or unavailable only")
	}
}

// windowWarnings names window targets that a job also starts or stops:
// the job's edge and the window's desired state would undo each other.
func (c *Config) windowWarnings() []string {
	var out []string
	for _, w := range c.Windows {
		if w == nil {
			continue
		}
		for _, j := range c.Jobs {
			if j == nil || j.Account != w.Account || (j.Action != w.StartAction() && j.Action != w.StopAction()) {
				continue
			}
			for _, t := range j.Targets {
				if slices.Contains(w.Targets, t) {
					out = append(out, fmt.Sprintf("windows: target %s of window %s is also acted on by job %s (%s, line %d): the job's edges and the window's desired state will undo each other; remove it from one of them",
						t, w.Name, j.Name, j.Action, j.Line))
				}
			}
		}
	}
	return out
}
