package schedule

import (
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/cloudcron/scheduler/internal/secret"
)

// HTTPConfig is the optional listener (design.md "Observability and
// notification contract"): /metrics, /livez, /readyz, /api/v1/status and
// the status page. Absent or empty listen: no listener.
type HTTPConfig struct {
	Listen string `yaml:"listen"` // host:port, e.g. 127.0.0.1:9464
	// AllowNonLoopback lets listen name an address other than loopback.
	// The page and the status name accounts and targets; the daemon
	// prints a warning on every start and reload.
	AllowNonLoopback bool `yaml:"allow_non_loopback"`
}

// Loopback reports whether Listen binds to loopback addresses only.
func (h HTTPConfig) Loopback() bool {
	host, _, err := net.SplitHostPort(h.Listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// Notify is one notification sink.
type Notify struct {
	Name   string      `yaml:"name"`
	Type   string      `yaml:"type"`   // slack | teams | webhook
	URL    *secret.Ref `yaml:"url"`    // a secret: webhook URLs carry their token
	Secret *secret.Ref `yaml:"secret"` // webhook only: HMAC-SHA256 key
	On     []string    `yaml:"on"`     // events that notify; default NotifyDefaultOn
	Jobs   []string    `yaml:"jobs"`   // only these jobs and windows; default all
}

// Notification types and events.
var (
	NotifyTypes = []string{"slack", "teams", "webhook"}
	// NotifyEvents are the values `on` takes: a record outcome (failure,
	// verify_failed, unknown, missed), a record event (reconcile, override,
	// notify), or a daemon-wide fact (reload_failed, audit_failed).
	NotifyEvents = []string{"failure", "verify_failed", "unknown", "missed", "reconcile", "override",
		"reload_failed", "audit_failed"}
	// NotifyDefaultOn is what a sink without `on` notifies about.
	NotifyDefaultOn = []string{"failure", "verify_failed", "unknown", "missed", "reload_failed", "audit_failed"}
)

func (v *validator) checkObserve() {
	c := v.c
	if c.HTTP.Listen != "" {
		p := child("http", "listen")
		host, port, err := net.SplitHostPort(c.HTTP.Listen)
		switch {
		case err != nil || port == "":
			v.errAt(p, "%q is not host:port; write e.g. 127.0.0.1:9464", c.HTTP.Listen)
		case host == "":
			v.errAt(p, "%q listens on every address; name one, e.g. 127.0.0.1:%s (any other than loopback also needs http.allow_non_loopback: true)", c.HTTP.Listen, port)
		case !c.HTTP.Loopback() && !c.HTTP.AllowNonLoopback:
			v.errAt(p, "%q is not a loopback address: the status page names accounts and targets; set http.allow_non_loopback: true to serve it there anyway (behind a firewall or proxy)", c.HTTP.Listen)
		}
	}
	first := map[string]int{}
	for i, n := range c.Notify {
		if n == nil {
			continue
		}
		base := index("notify", i)
		if v.need(base, "name", n.Name == "", "every notify entry needs a unique name, used in logs and audit records") {
			if f, dup := first[n.Name]; dup {
				v.errAt(child(base, "name"), "duplicate notify name %q; first defined at line %d", n.Name, v.node(child(index("notify", f), "name")).Line)
			} else {
				first[n.Name] = i
			}
		}
		if v.need(base, "type", n.Type == "", "set type: slack, teams or webhook") && !oneOf(n.Type, NotifyTypes) {
			v.errAt(child(base, "type"), "unknown type %q; %s", n.Type, hint(n.Type, NotifyTypes))
		}
		v.need(base, "url", n.URL == nil, "set url: {env: NAME} (the webhook URL is a secret: it carries its token)")
		if n.Secret != nil && n.Type != "webhook" && oneOf(n.Type, NotifyTypes) {
			v.errKey(child(base, "secret"), "secret signs webhook bodies only; remove it from this %s entry", n.Type)
		}
		for k, e := range n.On {
			if !oneOf(e, NotifyEvents) {
				v.errAt(index(child(base, "on"), k), "unknown event %q; use one of %s", e, strings.Join(NotifyEvents, ", "))
			}
		}
		for k, j := range n.Jobs {
			if c.Window(j) == nil && !slices.ContainsFunc(c.Jobs, func(x *Job) bool { return x != nil && x.Name == j }) {
				v.errAt(index(child(base, "jobs"), k), "no job or window named %q", j)
			}
		}
		if v.opts.CheckSecrets {
			for f, r := range map[string]*secret.Ref{"url": n.URL, "secret": n.Secret} {
				if r == nil {
					continue
				}
				val, err := v.opts.Resolver.Resolve(*r)
				if err != nil {
					v.addAt(r.Line, r.Column, child(base, f), "%s", err.Error())
					continue
				}
				if u := val.Reveal(); f == "url" && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
					// Never echo it: the value is a secret.
					v.addAt(r.Line, r.Column, child(base, f), "the value of %s is not an http(s) URL", describeRef(*r))
				}
			}
		}
	}
}

// describeRef names where a secret comes from, never its value.
func describeRef(r secret.Ref) string {
	switch {
	case r.Env != "":
		return "environment variable " + r.Env
	case r.File != "":
		return "file " + r.File
	}
	return "credential " + r.Credential
}
