package emulator

import (
	"sort"
	"time"
)

// Resource kinds, as SetState takes them.
const (
	KindDFNotebook    = "dataforest.notebook"
	KindDFAIApp       = "dataforest.aiapp"
	KindDFApp         = "dataforest.app"
	KindCDSSCMAK      = "cdss.cmak"
	KindCDSSBroker    = "cdss.broker"
	KindCDSSZookeeper = "cdss.zookeeper"
	KindSCNetNotebook = "scnet.notebook"
	KindOTCNotebook   = "modelarts.notebook"
)

// initialState is where a resource starts when first used (design.md:
// notebooks stopped, apps and clusters running; DF notebooks have no
// start or stop, only restart, so they start running).
var initialState = map[string]string{
	KindDFNotebook:    "RUNNING",
	KindDFAIApp:       "RUNNING",
	KindDFApp:         "RUNNING",
	KindCDSSCMAK:      "green",
	KindCDSSBroker:    "green",
	KindCDSSZookeeper: "green",
	KindSCNetNotebook: "Terminated",
	KindOTCNotebook:   "STOPPED",
}

// failureStates are the states that make a resource broken when set with
// SetState: its next start or restart lands there again.
var failureStates = map[string]map[string]bool{
	KindDFNotebook:    {"FAILED": true},
	KindDFApp:         {"FAILED": true},
	KindCDSSCMAK:      {"red": true},
	KindCDSSBroker:    {"red": true},
	KindCDSSZookeeper: {"red": true},
	KindSCNetNotebook: {"Failed": true},
	KindOTCNotebook:   {"START_FAILED": true, "ERROR": true},
}

// actionKinds maps an action name (catalogue or read) to the resource
// kind State reads.
var actionKinds = map[string]string{
	"dataforest.notebook.restart":   KindDFNotebook,
	"dataforest.notebook.getDetail": KindDFNotebook,
	"dataforest.notebook.getList":   KindDFNotebook,
	"dataforest.aiapp.kill":         KindDFAIApp,
	"dataforest.aiapp.getDetail":    KindDFAIApp,
	"dataforest.aiapp.getList":      KindDFAIApp,
	"dataforest.app.start":          KindDFApp,
	"dataforest.app.stop":           KindDFApp,
	"dataforest.app.getDetail":      KindDFApp,
	"dataforest.app.getList":        KindDFApp,
	"cdss.cmak.restart":             KindCDSSCMAK,
	"cdss.kafka.restart":            KindCDSSBroker,
	"scnet.notebook.start":          KindSCNetNotebook,
	"scnet.notebook.stop":           KindSCNetNotebook,
	"scnet.notebook.list":           KindSCNetNotebook,
	"scnet.notebook.detail":         KindSCNetNotebook,
	"modelarts.notebook.start":      KindOTCNotebook,
	"modelarts.notebook.stop":       KindOTCNotebook,
	"modelarts.notebook.get":        KindOTCNotebook,
}

type resKey struct{ kind, id string }

// resource is one emulated resource. Transitions are lazy: pending becomes
// state once the clock passes until.
type resource struct {
	kind, id string
	state    string
	prev     string // state before the last action (ModelArts previous_state)
	pending  string
	until    time.Time
	broken   string // failure state the next start or restart lands in
	created  time.Time
	updated  time.Time
}

// settle applies a due transition.
func (r *resource) settle(now time.Time) {
	if r.pending != "" && !now.Before(r.until) {
		r.state = r.pending
		r.pending = ""
		r.updated = r.until
	}
}

// begin moves r into a transitional state that becomes target after
// delay. up marks a start or restart, which a broken resource fails.
func (r *resource) begin(now time.Time, delay time.Duration, transitional, target string, up bool) {
	r.prev = r.state
	if up && r.broken != "" {
		target = r.broken
	}
	r.state = transitional
	r.pending = target
	r.until = now.Add(delay)
	r.updated = now
	r.settle(now)
}

// set puts r in state at once.
func (r *resource) set(now time.Time, state string) {
	r.prev = r.state
	r.state = state
	r.pending = ""
	r.updated = now
}

// resLocked returns the resource, creating it in its initial state on
// first use and settling due transitions. c.mu must be held.
func (c *Cloud) resLocked(kind, id string, now time.Time) *resource {
	k := resKey{kind, id}
	r, ok := c.resources[k]
	if !ok {
		r = &resource{kind: kind, id: id, state: initialState[kind], created: now, updated: now}
		c.resources[k] = r
	}
	r.settle(now)
	return r
}

// listLocked returns the known resources of a kind, by id, settled.
func (c *Cloud) listLocked(kind string, now time.Time) []*resource {
	var out []*resource
	for k, r := range c.resources {
		if k.kind == kind {
			r.settle(now)
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// State returns the current state of the resource an action addresses,
// creating the resource on first use like any call would. action is a
// catalogue action name or a read action name; "cdss.cluster.restart"
// reports "green" when CMAK, Kafka and ZooKeeper are all green and
// "orange" otherwise. An unknown action returns "".
func (c *Cloud) State(action, target string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	if action == "cdss.cluster.restart" || action == "cdss.cluster.getClusterStatus" || action == "cdss.cluster.getClusterInfo" {
		for _, kind := range []string{KindCDSSCMAK, KindCDSSBroker, KindCDSSZookeeper} {
			if s := c.resLocked(kind, target, now).state; s != "green" {
				return s
			}
		}
		return "green"
	}
	kind, ok := actionKinds[action]
	if !ok {
		return ""
	}
	return c.resLocked(kind, target, now).state
}

// SetState puts a resource in a state at once, creating it if needed and
// cancelling a pending transition; kind is one of the Kind constants. A
// failure state (see the package doc) also makes the resource's next start
// or restart fail into that state.
func (c *Cloud) SetState(kind, id, state string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	r := c.resLocked(kind, id, now)
	r.set(now, state)
	r.broken = ""
	if failureStates[kind][state] {
		r.broken = state
	}
}
