package window

import "time"

// Override holds a window, or one of its targets, in a state from From
// until Until, whatever the schedule says.
type Override struct {
	Window string    `json:"window"`
	Target string    `json:"target,omitempty"` // "": every target of the window
	State  State     `json:"state"`
	From   time.Time `json:"from"`  // when it was set
	Until  time.Time `json:"until"` // when it ends by itself
}

// Holds reports whether o is in force at t.
func (o Override) Holds(t time.Time) bool {
	return !t.Before(o.From) && t.Before(o.Until)
}

// Applies reports whether o concerns target of window.
func (o Override) Applies(window, target string) bool {
	return o.Window == window && (o.Target == "" || o.Target == target)
}

// Decision is the desired state of one target at one instant, and why.
type Decision struct {
	State    State
	Reason   string    // "in a period", "outside the periods", "holiday: …", "off date …", "override"
	Override *Override // the override in force, if any
}

// Desired returns the state target of w should be in at t. An override
// of the target beats one of the whole window; among overrides of the
// same reach the one set last wins; without one in force the schedule
// decides.
func (w *Window) Desired(target string, t time.Time, overrides []Override) Decision {
	var win *Override
	for i := range overrides {
		o := &overrides[i]
		if !o.Applies(w.Name, target) || !o.Holds(t) {
			continue
		}
		if win == nil || (o.Target != "" && win.Target == "") ||
			(o.Target != "" == (win.Target != "") && o.From.After(win.From)) {
			win = o
		}
	}
	if win != nil {
		return Decision{State: win.State, Reason: "override", Override: win}
	}
	s, why := w.Scheduled(t)
	return Decision{State: s, Reason: why}
}

// NextChange returns the first instant strictly after t at which the
// desired state of target may change: a schedule edge, or the start or
// end of an override. It returns false when there is none within a year.
func (w *Window) NextChange(target string, t time.Time, overrides []Override) (time.Time, bool) {
	next, ok := time.Time{}, false
	if e, found := w.NextEdge(t); found {
		next, ok = e.At, true
	}
	for _, o := range overrides {
		if !o.Applies(w.Name, target) {
			continue
		}
		for _, at := range []time.Time{o.From, o.Until} {
			if at.After(t) && (!ok || at.Before(next)) {
				next, ok = at, true
			}
		}
	}
	return next, ok
}
