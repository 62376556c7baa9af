package observe

import (
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
)

// Status is the body of GET /api/v1/status and of /v1/status on the
// control socket, and what the status page and `scheduler status` show.
// Times are RFC 3339; a zero time is omitted.
type Status struct {
	Time    time.Time `json:"time"`              // when the snapshot was taken
	Version string    `json:"version"`           // the binary's version
	Config  string    `json:"config"`            // the schedule file
	Started time.Time `json:"started,omitzero"`  // when the daemon started
	Ready   bool      `json:"ready"`             // what /readyz says
	Problem string    `json:"problem,omitempty"` // why it is not ready, or the newest daemon-wide problem

	Reload Reload `json:"reload"`
	// Cluster is this replica's view of the cluster (config cluster:);
	// absent on a single host.
	Cluster *Cluster `json:"cluster,omitempty"`

	Jobs      []Job       `json:"jobs"`
	Windows   []Window    `json:"windows"`
	Overrides []Override  `json:"overrides"`
	Throttled []Throttled `json:"throttled"`
	// RecentFailures are the newest failure-like records (failure, unknown,
	// verify_failed, missed; reload and notify failures), newest first.
	RecentFailures []audit.Record `json:"recent_failures"`
}

// Cluster is a replica's view of its cluster.
type Cluster struct {
	Node string `json:"node"` // this replica
	Role string `json:"role"` // "leader" or "replica"
	// Leader and Replicas are read from etcd at the snapshot: the
	// replicas holding a live session, in the order they joined; the
	// first leads. Empty when etcd could not be read (Problem says why).
	Leader   string   `json:"leader,omitempty"`
	Replicas []string `json:"replicas,omitempty"`
	Problem  string   `json:"problem,omitempty"`
}

// Reload is the outcome of the newest config load.
type Reload struct {
	Time       time.Time `json:"time,omitzero"`
	Successful bool      `json:"successful"`
	Error      string    `json:"error,omitempty"`
}

// Job is one job of the running schedule.
type Job struct {
	Name     string   `json:"name"`
	Schedule string   `json:"schedule"`
	Timezone string   `json:"timezone"`
	Action   string   `json:"action"`
	Account  string   `json:"account"`
	Targets  []string `json:"targets"`

	NextFire    time.Time `json:"next_fire,omitzero"`
	Running     bool      `json:"running"`
	LastSuccess time.Time `json:"last_success,omitzero"` // scheduled time of the newest fire that succeeded on every target
	Last        *Run      `json:"last,omitempty"`        // the newest fire, nil before the first
}

// Run is the outcome of one fire, as the audit records tell it.
type Run struct {
	RunID     string    `json:"run_id"`
	Scheduled time.Time `json:"scheduled,omitzero"`
	Time      time.Time `json:"time"`    // newest record of the fire
	Outcome   string    `json:"outcome"` // the worst target outcome so far; "running" before any
	Error     string    `json:"error,omitempty"`
	Targets   []Target  `json:"targets"`

	ix *runIndex // the tracker's index of Targets (see apply); nil in copies
}

// Target is one target's outcome in a Run.
type Target struct {
	Target   string `json:"target"`
	Outcome  string `json:"outcome"` // "" while the call is in flight
	Attempts int    `json:"attempts"`
	Error    string `json:"error,omitempty"`
	Verify   string `json:"verify,omitempty"` // verified, verify_failed, unverified
}

// Window is one cost-saving window (fed by the window reconciler).
type Window struct {
	Name     string         `json:"name"`
	Resource string         `json:"resource"`
	Account  string         `json:"account"`
	Timezone string         `json:"timezone"`
	NextEdge time.Time      `json:"next_edge,omitzero"`
	Targets  []WindowTarget `json:"targets"`
}

// WindowTarget is a window target's desired and actual state.
type WindowTarget struct {
	Target    string    `json:"target"`
	Desired   string    `json:"desired"`            // on | off
	Actual    string    `json:"actual"`             // on | off | unknown, as last read
	Override  string    `json:"override,omitempty"` // on | off while an override holds
	CheckedAt time.Time `json:"checked_at,omitzero"`
	Error     string    `json:"error,omitempty"` // the last status read or correction failure
}

// Override is a time-boxed override of a window or one of its targets.
type Override struct {
	Window string    `json:"window"`
	Target string    `json:"target,omitempty"` // "" for the whole window
	State  string    `json:"state"`            // on | off
	Until  time.Time `json:"until"`
	SetAt  time.Time `json:"set_at,omitzero"`
}

// Throttled is an account whose calls met its rate limit or a vendor 429.
type Throttled struct {
	Account string    `json:"account"`
	Total   uint64    `json:"total"` // since the daemon started
	Last    time.Time `json:"last"`
}
