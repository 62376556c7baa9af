package daemon

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/cloudcron/scheduler/internal/control"
	"github.com/cloudcron/scheduler/internal/state"
	"github.com/cloudcron/scheduler/internal/window"
)

// maxOverride bounds how long an override may hold: one set by mistake
// does not keep a notebook running for a year.
const maxOverride = 90 * 24 * time.Hour

// OverrideRequest is the body of POST /v1/overrides (set) and DELETE
// /v1/overrides (clear; State, Until and For unused).
type OverrideRequest struct {
	Window string    `json:"window"`
	Target string    `json:"target,omitempty"`
	State  string    `json:"state,omitempty"` // on | off
	Until  time.Time `json:"until,omitzero"`
	For    string    `json:"for,omitempty"` // a Go duration, from now; instead of Until
}

// OverrideList is the body of GET /v1/overrides and the answer to a set
// or clear: the overrides in force.
type OverrideList struct {
	Overrides []window.Override `json:"overrides"`
	Message   string            `json:"message,omitempty"`
}

// overrideStore is the part of the run state that keeps overrides
// (state.Store's overrides.go; a cluster store implements the same three
// methods to carry them).
type overrideStore interface {
	Overrides() ([]state.Override, error)
	SetOverride(state.Override) error
	ClearOverride(window, target string) (bool, error)
}

// errNoOverrideStore: the run state in use keeps no overrides.
var errNoOverrideStore = fmt.Errorf("this daemon's run state cannot keep overrides")

func (d *Daemon) overrideStore() (overrideStore, error) {
	if s, ok := d.store.(overrideStore); ok {
		return s, nil
	}
	return nil, errNoOverrideStore
}

// loadOverrides reads the overrides the run state holds.
func (d *Daemon) loadOverrides() []window.Override {
	ost, err := d.overrideStore()
	if err != nil {
		return nil
	}
	stored, err := ost.Overrides()
	if err != nil {
		d.log.Error().Err(err).Msg("cannot read the windows' overrides; windows follow their schedule alone")
		return nil
	}
	var out []window.Override
	for _, o := range stored {
		s, err := window.ParseState(o.State)
		if err != nil {
			continue
		}
		out = append(out, window.Override{Window: o.Window, Target: o.Target, State: s, From: o.From, Until: o.Until})
	}
	return out
}

func (d *Daemon) handleOverrideList(w http.ResponseWriter, _ *http.Request) {
	control.WriteJSON(w, http.StatusOK, OverrideList{Overrides: d.activeOverrides()})
}

func (d *Daemon) activeOverrides() []window.Override {
	now := d.now()
	d.windows.mu.Lock()
	defer d.windows.mu.Unlock()
	out := []window.Override{}
	for _, o := range d.windows.overrides {
		if now.Before(o.Until) {
			out = append(out, o)
		}
	}
	return out
}

// checkWindowTarget checks that window exists and, if target is set, that
// it is one of its targets.
func (d *Daemon) checkWindowTarget(name, target string) string {
	d.mu.Lock()
	cfg := d.plan.cfg
	d.mu.Unlock()
	sw := cfg.Window(name)
	if sw == nil {
		var names []string
		for _, w := range cfg.Windows {
			names = append(names, w.Name)
		}
		if len(names) == 0 {
			return fmt.Sprintf("no window %q: the running schedule has no windows", name)
		}
		return fmt.Sprintf("no window %q; the running schedule's windows: %v", name, names)
	}
	if target != "" && !slices.Contains(sw.Targets, target) {
		return fmt.Sprintf("window %s has no target %q; its targets: %v", name, target, sw.Targets)
	}
	return ""
}

func (d *Daemon) handleOverrideSet(w http.ResponseWriter, r *http.Request) {
	var req OverrideRequest
	if !control.DecodeJSON(w, r, &req) {
		return
	}
	if msg := d.checkWindowTarget(req.Window, req.Target); msg != "" {
		control.WriteError(w, http.StatusNotFound, msg)
		return
	}
	st, err := window.ParseState(req.State)
	if err != nil {
		control.WriteError(w, http.StatusBadRequest, "--state: "+err.Error())
		return
	}
	now := d.now()
	until := req.Until
	if req.For != "" {
		dur, err := time.ParseDuration(req.For)
		if err != nil || dur <= 0 {
			control.WriteError(w, http.StatusBadRequest, fmt.Sprintf("--for %q: want a positive duration such as 2h or 90m", req.For))
			return
		}
		until = now.Add(dur)
	}
	switch {
	case until.IsZero():
		control.WriteError(w, http.StatusBadRequest, "say how long the override holds: --until RFC3339 or --for DURATION")
		return
	case !until.After(now):
		control.WriteError(w, http.StatusBadRequest, fmt.Sprintf("--until %s is not in the future", until.Format(time.RFC3339)))
		return
	case until.Sub(now) > maxOverride:
		control.WriteError(w, http.StatusBadRequest, fmt.Sprintf("an override holds %s at most; edit the window's schedule for longer changes", maxOverride))
		return
	}
	o := window.Override{Window: req.Window, Target: req.Target, State: st, From: now, Until: until}
	ostore, err := d.overrideStore()
	if err != nil {
		control.WriteError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if err := ostore.SetOverride(state.Override{Window: o.Window, Target: o.Target, State: o.State.String(), From: o.From, Until: o.Until}); err != nil {
		d.log.Error().Err(err).Msg("override not stored")
		control.WriteError(w, http.StatusInternalServerError, "override not stored in the run state: "+err.Error())
		return
	}
	d.windows.mu.Lock()
	d.windows.overrides = slices.DeleteFunc(d.windows.overrides, func(x window.Override) bool {
		return x.Window == o.Window && x.Target == o.Target
	})
	d.windows.overrides = append(d.windows.overrides, o)
	d.windows.mu.Unlock()
	d.auditOverride(o, "set", now)
	d.windows.poke(passOverride)
	control.WriteJSON(w, http.StatusOK, OverrideList{Overrides: d.activeOverrides(),
		Message: fmt.Sprintf("override set: %s %s until %s", describeOverride(o), o.State, o.Until.Format(time.RFC3339))})
}

func (d *Daemon) handleOverrideClear(w http.ResponseWriter, r *http.Request) {
	var req OverrideRequest
	if !control.DecodeJSON(w, r, &req) {
		return
	}
	if msg := d.checkWindowTarget(req.Window, req.Target); msg != "" {
		control.WriteError(w, http.StatusNotFound, msg)
		return
	}
	ostore, err := d.overrideStore()
	if err != nil {
		control.WriteError(w, http.StatusInternalServerError, err.Error())
		return
	}
	found, err := ostore.ClearOverride(req.Window, req.Target)
	if err != nil {
		control.WriteError(w, http.StatusInternalServerError, "override not cleared in the run state: "+err.Error())
		return
	}
	now := d.now()
	var gone []window.Override
	d.windows.mu.Lock()
	d.windows.overrides = slices.DeleteFunc(d.windows.overrides, func(x window.Override) bool {
		if x.Window == req.Window && x.Target == req.Target {
			gone = append(gone, x)
			return true
		}
		return false
	})
	d.windows.mu.Unlock()
	if !found && len(gone) == 0 {
		who := "window " + req.Window
		if req.Target != "" {
			who += " target " + req.Target
		}
		control.WriteError(w, http.StatusNotFound, "no override of "+who)
		return
	}
	for _, o := range gone {
		if now.Before(o.Until) {
			d.auditOverride(o, "cleared", now)
		}
	}
	d.windows.poke(passOverride)
	control.WriteJSON(w, http.StatusOK, OverrideList{Overrides: d.activeOverrides(), Message: "override cleared"})
}

func describeOverride(o window.Override) string {
	if o.Target != "" {
		return "window " + o.Window + " target " + o.Target
	}
	return "window " + o.Window
}
