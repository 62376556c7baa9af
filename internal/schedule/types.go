package schedule

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cloudcron/scheduler/internal/engine"
	"github.com/cloudcron/scheduler/internal/secret"
)

// Config is a loaded, defaulted and validated v1 schedule file. The YAML
// tags are the user-facing contract of design.md; fields tagged `yaml:"-"`
// are derived by the loader.
type Config struct {
	Version  int                 `yaml:"version"`
	Timezone string              `yaml:"timezone"`
	Audit    AuditConfig         `yaml:"audit"`
	State    StateConfig         `yaml:"state"`
	Defaults Policy              `yaml:"defaults"`
	Accounts map[string]*Account `yaml:"accounts"`
	Jobs     []*Job              `yaml:"jobs"`
	Windows  []*Window           `yaml:"windows"` // see windows.go
	HTTP     HTTPConfig          `yaml:"http"`    // see observe.go
	Notify   []*Notify           `yaml:"notify"`  // see observe.go
	Cluster  *Cluster            `yaml:"cluster"` // see cluster.go

	File string         `yaml:"-"` // the file name given to Load, used in messages
	Loc  *time.Location `yaml:"-"` // Timezone loaded (UTC when empty)

	hash   string          // hex SHA-256 of the file bytes; see Hash
	byName map[string]*Job // the jobs by name; see Job
	memo   *splitMemo      // its jobs list's chunks, for the next load of the file; see Options.Prev
	reused int             // jobs taken from Options.Prev; see Reused
}

// AuditConfig says where the audit log lives.
type AuditConfig struct {
	Path string `yaml:"path"`
	// WatchdogAfter is how long the daemon keeps feeding the systemd
	// watchdog while the audit log cannot be written (a full disk) before
	// it stops, so that systemd restarts it; default 10m.
	WatchdogAfter *Duration `yaml:"watchdog_after"`
}

// StateConfig says where run state lives.
type StateConfig struct {
	Dir string `yaml:"dir"`
}

// Policy is the part of a job that `defaults` may set and a job may
// override. Pointers tell "not set" from a zero value.
type Policy struct {
	Timeout       *Duration    `yaml:"timeout"`
	Retry         *RetryPolicy `yaml:"retry"`
	Catchup       *Duration    `yaml:"catchup"`
	Overlap       string       `yaml:"overlap"`
	Verify        *bool        `yaml:"verify"`
	VerifyTimeout *Duration    `yaml:"verify_timeout"`
}

// RetryPolicy bounds the retries of one target's call.
type RetryPolicy struct {
	InitialInterval *Duration `yaml:"initial_interval"`
	MaxInterval     *Duration `yaml:"max_interval"`
	MaxElapsed      *Duration `yaml:"max_elapsed"`
	MaxAttempts     *int      `yaml:"max_attempts"`
}

// Duration is a time.Duration written as a Go duration string ("30s", "1h30m").
type Duration time.Duration

// UnmarshalYAML parses a Go duration string. A problem is returned as a
// *yaml.TypeError so that the decoder keeps going and reports every problem.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: cannot unmarshal %s into schedule.Duration", n.Line, n.ShortTag())}}
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: invalid duration %q", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// String returns d in Go syntax, e.g. "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// D returns d as a time.Duration; a nil d is 0.
func (d *Duration) D() time.Duration {
	if d == nil {
		return 0
	}
	return time.Duration(*d)
}

// RateLimit is an account's request budget across all its jobs.
type RateLimit struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// Account is one set of vendor credentials and endpoints.
type Account struct {
	Vendor      string            `yaml:"vendor"` // ncp | scnet | otc | sandbox
	Region      string            `yaml:"region"`
	AccessKey   *secret.Ref       `yaml:"access_key"`
	SecretKey   *secret.Ref       `yaml:"secret_key"`
	Token       *secret.Ref       `yaml:"token"`
	User        *secret.Ref       `yaml:"user"`
	Username    *secret.Ref       `yaml:"username"`
	Password    *secret.Ref       `yaml:"password"`
	Domain      string            `yaml:"domain"`
	Cluster     string            `yaml:"cluster"`
	ProjectID   string            `yaml:"project_id"`
	Auth        string            `yaml:"auth"` // otc: aksk (default) | iam
	API         string            `yaml:"api"`  // otc: demanager (default) | notebooks
	Endpoints   map[string]string `yaml:"endpoints"`
	RateLimit   *RateLimit        `yaml:"rate_limit"`
	Concurrency int               `yaml:"concurrency"` // calls in flight at once; default 8
	Faults      []Fault           `yaml:"faults"`      // sandbox only: faults the emulated cloud injects

	// InsecureHTTP allows plain http endpoints on hosts other than
	// loopback; credentials then cross the network in clear.
	InsecureHTTP bool `yaml:"insecure_http"`

	Name string `yaml:"-"`
}

// Fault asks the emulated cloud of a sandbox account to misbehave for one
// target (or every target when Target is empty).
type Fault struct {
	Target     string    `yaml:"target"`
	Action     string    `yaml:"action"` // only this catalogue action; empty = any
	Kind       string    `yaml:"kind"`   // unavailable (503) | throttle (429) | delay | drop | reject (permanent)
	Times      int       `yaml:"times"`  // how many requests it affects; 0 = every one
	RetryAfter *Duration `yaml:"retry_after"`
	Delay      *Duration `yaml:"delay"`
}

// Job is one scheduled action on a list of targets.
type Job struct {
	Name     string   `yaml:"name"`
	Schedule string   `yaml:"schedule"`
	Timezone string   `yaml:"timezone"`
	Account  string   `yaml:"account"`
	Action   string   `yaml:"action"`
	Targets  []string `yaml:"targets"`
	Policy   `yaml:",inline"`

	// Derived by the loader.
	Loc    *time.Location  `yaml:"-"` // the job's zone (Timezone or the config's)
	Spec   engine.Schedule `yaml:"-"` // parsed Schedule in Loc
	Line   int             `yaml:"-"` // position of the job in the file
	Column int             `yaml:"-"`
	// Effective values after defaults.
	TimeoutD       time.Duration `yaml:"-"`
	CatchupD       time.Duration `yaml:"-"`
	VerifyTimeoutD time.Duration `yaml:"-"`
	Backoff        Retry         `yaml:"-"` // effective retry policy

	fingerprint string // see Fingerprint
}

// Retry is a job's effective retry policy.
type Retry struct {
	InitialInterval time.Duration
	MaxInterval     time.Duration
	MaxElapsed      time.Duration
	MaxAttempts     int
}
