package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/executor"
	"github.com/cloudcron/scheduler/internal/ratelimit"
	"github.com/cloudcron/scheduler/internal/schedule"
	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
	"github.com/cloudcron/scheduler/internal/vendors/ncp"
	"github.com/cloudcron/scheduler/internal/vendors/otc"
	"github.com/cloudcron/scheduler/internal/vendors/scnet"
	"github.com/cloudcron/scheduler/internal/warm"
)

// account is one configured account made runnable: its clients, bound to
// one shared http.Client whose transport paces every request of the
// account (ratelimit), the status reads that verify each action, and, for
// sandbox accounts, the emulated cloud it talks to.
type account struct {
	name      string
	vendor    string
	actions   map[string]executor.Action
	verifiers map[string]*executor.Verifier // by action; Timeout is set per job
	cloud     *emulator.Cloud               // sandbox only; owned by this account
	http      *http.Client
	limiter   *ratelimit.Limiter
	dialer    *warm.Dialer             // the transport's: opens connections before a burst
	targets   map[string]warm.Target   // where each action's calls connect, where it is known
	later     map[string]func() string // an action's base URL known only once discovered (scnet's ai host)
	inFlight  int                      // at most this many calls at once (concurrency, and a rate limit's burst)
}

func (a *account) close() {
	if a.cloud != nil {
		_ = a.cloud.Close()
	}
	a.dialer.Close()
	a.http.CloseIdleConnections()
}

// prepare opens, ahead of a fire at scheduled, the connections its n
// calls of action will need, beyond those open (see warm.Dialer).
func (a *account) prepare(action string, scheduled time.Time, n int) {
	t, ok := a.targets[action]
	if !ok && a.later[action] != nil {
		t, ok = dialTarget(a.later[action]())
	}
	if ok {
		a.dialer.Want(t, scheduled, n, a.inFlight)
	}
}

// route records that the actions of the account whose names start with
// prefix call base (a URL): their connections can be opened early.
func (a *account) route(prefix, base string) {
	t, ok := dialTarget(base)
	if !ok {
		return
	}
	for name := range a.actions {
		if strings.HasPrefix(name, prefix) {
			a.targets[name] = t
		}
	}
}

// dialTarget is where a transport connects to call base: its host and
// port, over TLS for https, or its proxy when the environment sets one;
// false for a SOCKS proxy or a URL that does not parse.
func dialTarget(base string) (warm.Target, bool) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return warm.Target{}, false
	}
	if p, err := http.ProxyFromEnvironment(&http.Request{URL: u}); err != nil {
		return warm.Target{}, false
	} else if p != nil {
		u = p
	}
	var port string
	switch u.Scheme {
	case "http":
		port = "80"
	case "https":
		port = "443"
	default:
		return warm.Target{}, false
	}
	if p := u.Port(); p != "" {
		port = p
	}
	return warm.Target{Addr: net.JoinHostPort(u.Hostname(), port), TLS: u.Scheme == "https"}, true
}

// newHTTPClient returns the one http.Client an account's calls share, its
// transport wrapped by lim. There is no client-wide timeout: each attempt
// carries the job's timeout in its context. Each of the account's hosts
// keeps as many idle connections as the account has calls in flight, with
// no cap across hosts (an account has a few endpoints): a burst at full
// concurrency reuses its connections rather than closing and re-dialing
// those past a global cap.
func newHTTPClient(concurrency int, lim *ratelimit.Limiter, dialer *warm.Dialer) *http.Client {
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		DialTLSContext:        dialer.DialTLSContext, // https: the handshake is warm's (a TLS tunnel through a proxy is still the transport's)
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          0, // no limit; per host below
		MaxIdleConnsPerHost:   concurrency,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: lim.Wrap(t)}
}

// newLimiter returns the account's request pacer: rate_limit when set, and
// always the account-wide pause and slow-down after a 429.
func newLimiter(acc *schedule.Account, log zerolog.Logger) *ratelimit.Limiter {
	opts := ratelimit.Options{}
	if rl := acc.RateLimit; rl != nil {
		opts.PerSecond, opts.Burst = rl.PerSecond, rl.Burst
	}
	l := log.With().Str("component", "ratelimit").Str("account", acc.Name).Logger()
	opts.OnThrottle = func(pause time.Duration, perSecond float64) {
		l.Warn().Dur("pause_ms", pause).Float64("per_second", perSecond).
			Msg("vendor throttled the account (HTTP 429): pausing all its requests and lowering its rate")
	}
	return ratelimit.New(opts)
}

// buildAccount resolves an account's secrets and builds its vendor clients.
func buildAccount(acc *schedule.Account, res secret.Resolver, log zerolog.Logger) (*account, error) {
	conc := acc.Concurrency
	if conc <= 0 {
		conc = 8
	}
	lim := newLimiter(acc, log)
	dialer := warm.New(&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}, nil)
	a := &account{
		name: acc.Name, vendor: acc.Vendor, http: newHTTPClient(conc, lim, dialer), limiter: lim,
		actions: map[string]executor.Action{}, verifiers: map[string]*executor.Verifier{},
		dialer: dialer, targets: map[string]warm.Target{}, later: map[string]func() string{}, inFlight: conc,
	}
	if rl := acc.RateLimit; rl != nil && rl.Burst > 0 {
		a.inFlight = min(conc, rl.Burst)
	}
	var secrets []string // every secret of the account, scrubbed from what its calls return
	get := func(r *secret.Ref, field string) (secret.Value, error) {
		if r == nil {
			return secret.Value{}, nil
		}
		v, err := res.Resolve(*r)
		if err != nil {
			return secret.Value{}, fmt.Errorf("account %s: %s: %w", acc.Name, field, err)
		}
		secrets = append(secrets, v.Reveal())
		return v, nil
	}
	var err error
	switch acc.Vendor {
	case "ncp":
		var cfg ncp.Config
		if cfg.AccessKey, err = get(acc.AccessKey, "access_key"); err != nil {
			return nil, err
		}
		if cfg.SecretKey, err = get(acc.SecretKey, "secret_key"); err != nil {
			return nil, err
		}
		cfg.Region = acc.Region
		cfg.DataForestURL = acc.Endpoints["dataforest"]
		cfg.CDSSURL = acc.Endpoints["cdss"]
		cfg.HTTPClient = a.http
		if err := a.addNCP(cfg); err != nil {
			return nil, fmt.Errorf("account %s: %w", acc.Name, err)
		}
	case "scnet":
		var cfg scnet.Config
		if cfg.Token, err = get(acc.Token, "token"); err != nil {
			return nil, err
		}
		if cfg.User, err = get(acc.User, "user"); err != nil {
			return nil, err
		}
		if cfg.AccessKey, err = get(acc.AccessKey, "access_key"); err != nil {
			return nil, err
		}
		if cfg.SecretKey, err = get(acc.SecretKey, "secret_key"); err != nil {
			return nil, err
		}
		cfg.Cluster = acc.Cluster
		cfg.AuthURL = acc.Endpoints["auth"]
		cfg.PlatformURL = acc.Endpoints["platform"]
		cfg.AIURL = acc.Endpoints["ai"]
		cfg.HTTPClient = a.http
		if err := a.addSCNet(cfg); err != nil {
			return nil, fmt.Errorf("account %s: %w", acc.Name, err)
		}
	case "otc":
		var cfg otc.Config
		if cfg.AccessKey, err = get(acc.AccessKey, "access_key"); err != nil {
			return nil, err
		}
		if cfg.SecretKey, err = get(acc.SecretKey, "secret_key"); err != nil {
			return nil, err
		}
		if cfg.Username, err = get(acc.Username, "username"); err != nil {
			return nil, err
		}
		if cfg.Password, err = get(acc.Password, "password"); err != nil {
			return nil, err
		}
		cfg.Domain = acc.Domain
		cfg.ProjectID = acc.ProjectID
		cfg.Region = acc.Region
		cfg.Auth = acc.Auth
		cfg.API = acc.API
		cfg.ModelArtsURL = acc.Endpoints["modelarts"]
		cfg.IAMURL = acc.Endpoints["iam"]
		cfg.HTTPClient = a.http
		if err := a.addOTC(cfg); err != nil {
			return nil, fmt.Errorf("account %s: %w", acc.Name, err)
		}
	case "sandbox":
		if err := a.addSandbox(acc, log); err != nil {
			a.close()
			return nil, fmt.Errorf("account %s: %w", acc.Name, err)
		}
	default:
		return nil, fmt.Errorf("account %s: unknown vendor %q", acc.Name, acc.Vendor)
	}
	a.scrub(secrets)
	return a, nil
}

// scrub wraps every action and status read of the account so that no
// error it returns (and so no log line or audit record) can carry one of
// the account's secrets, even when a vendor echoes the request back.
func (a *account) scrub(secrets []string) {
	if len(secrets) == 0 && a.vendor != "sandbox" {
		return
	}
	for name, do := range a.actions {
		a.actions[name] = func(ctx context.Context, target string) (vendors.Result, error) {
			r, err := do(ctx, target)
			return r, vendors.Scrub(err, secrets...)
		}
	}
	for _, v := range a.verifiers {
		if v == nil {
			continue
		}
		if st := v.Status; st != nil {
			v.Status = func(ctx context.Context, target string) (string, error) {
				s, err := st(ctx, target)
				return s, vendors.Scrub(err, secrets...)
			}
		}
		if before := v.Before; before != nil {
			v.Before = func(ctx context.Context, target string) (executor.Judge, error) {
				j, err := before(ctx, target)
				return j, vendors.Scrub(err, secrets...)
			}
		}
	}
}

func (a *account) addNCP(cfg ncp.Config) error {
	c, err := ncp.New(cfg)
	if err != nil {
		return err
	}
	a.actions["dataforest.notebook.restart"] = c.RestartNotebook
	a.actions["dataforest.aiapp.kill"] = c.KillAIApp
	a.actions["dataforest.app.start"] = c.StartApp
	a.actions["dataforest.app.stop"] = c.StopApp
	a.actions["cdss.cmak.restart"] = c.RestartCMAK
	a.actions["cdss.kafka.restart"] = c.RestartKafka
	a.actions["cdss.cluster.restart"] = c.RestartAllServices
	a.route("dataforest.", c.DataForestURL())
	a.route("cdss.", c.CDSSURL())
	a.verifiers["dataforest.notebook.restart"] = &executor.Verifier{
		Status: c.NotebookState, Judge: dfNotebookRestart, Want: "RUNNING",
	}
	// AI app state values are not documented (vendors.md "Status reads",
	// §7 #3): a kill is audited unverified, and a timed-out kill unknown.
	a.verifiers["dataforest.aiapp.kill"] = &executor.Verifier{}
	a.verifiers["dataforest.app.start"] = &executor.Verifier{Status: c.AppState, Judge: dfAppStart, Want: "RUNNING"}
	a.verifiers["dataforest.app.stop"] = &executor.Verifier{Status: c.AppState, Judge: dfAppStop, Want: "STOPPED"}
	cdss := func(fields func(ncp.ClusterStatus) string) *executor.Verifier {
		status := func(ctx context.Context, no string) (string, error) {
			st, err := c.ClusterStatus(ctx, no)
			if err != nil {
				return "", err
			}
			return fields(st), nil
		}
		return &executor.Verifier{
			Status: status,
			Want:   "the pre-restart value",
			Before: func(ctx context.Context, no string) (executor.Judge, error) {
				pre, err := status(ctx, no)
				if err != nil {
					return nil, err
				}
				return backTo(pre), nil
			},
		}
	}
	a.verifiers["cdss.cmak.restart"] = cdss(func(s ncp.ClusterStatus) string { return s.CMAKStatus })
	a.verifiers["cdss.kafka.restart"] = cdss(func(s ncp.ClusterStatus) string { return s.BrokerStatus })
	a.verifiers["cdss.cluster.restart"] = cdss(func(s ncp.ClusterStatus) string {
		return "cmak=" + s.CMAKStatus + " broker=" + s.BrokerStatus + " zookeeper=" + s.ZookeeperStatus
	})
	return nil
}

func (a *account) addSCNet(cfg scnet.Config) error {
	c, err := scnet.New(cfg)
	if err != nil {
		return err
	}
	a.actions["scnet.notebook.start"] = c.StartNotebook
	a.actions["scnet.notebook.stop"] = c.StopNotebook
	a.verifiers["scnet.notebook.start"] = &executor.Verifier{Status: c.NotebookStatus, Judge: scnetStart, Want: scnet.StatusRunning}
	a.verifiers["scnet.notebook.stop"] = &executor.Verifier{Status: c.NotebookStatus, Judge: scnetStop, Want: scnet.StatusTerminated}
	a.route("scnet.notebook.start", c.PlatformURL())
	a.later["scnet.notebook.stop"] = c.AIURL
	return nil
}

func (a *account) addOTC(cfg otc.Config) error {
	c, err := otc.New(cfg)
	if err != nil {
		return err
	}
	a.actions["modelarts.notebook.start"] = c.StartNotebook
	a.actions["modelarts.notebook.stop"] = c.StopNotebook
	a.route("modelarts.", c.ModelArtsURL())
	a.verifiers["modelarts.notebook.start"] = &executor.Verifier{Status: c.NotebookStatus, Judge: modelArtsStart, Want: "RUNNING"}
	a.verifiers["modelarts.notebook.stop"] = &executor.Verifier{Status: c.NotebookStatus, Judge: modelArtsStop, Want: "STOPPED"}
	return nil
}

// addSandbox starts an emulated cloud on loopback for this account and
// points a real client of every vendor at it, with the emulator's own
// throwaway credentials.
func (a *account) addSandbox(acc *schedule.Account, log zerolog.Logger) error {
	cloud := emulator.New(emulator.Options{Log: log.With().Str("account", acc.Name).Logger()})
	if err := cloud.Start(); err != nil {
		return fmt.Errorf("start emulated cloud: %w", err)
	}
	a.cloud = cloud
	for _, f := range acc.Faults {
		cloud.Inject(emulator.Fault{
			Target:     f.Target,
			Action:     f.Action,
			Kind:       emulator.FaultKind(f.Kind),
			Times:      f.Times,
			RetryAfter: f.RetryAfter.D(),
			Delay:      f.Delay.D(),
		})
	}
	cr := cloud.Credentials()
	u := cloud.URL()
	if err := a.addNCP(ncp.Config{
		AccessKey: secret.New(cr.NCPAccessKey), SecretKey: secret.New(cr.NCPSecretKey),
		Region: "KR", DataForestURL: u, CDSSURL: u, HTTPClient: a.http,
	}); err != nil {
		return err
	}
	if err := a.addSCNet(scnet.Config{
		Token: secret.New(cr.SCNetToken), PlatformURL: u, AIURL: u, AuthURL: u, HTTPClient: a.http,
	}); err != nil {
		return err
	}
	if err := a.addOTC(otc.Config{
		ProjectID: cr.OTCProjectID, Region: "eu-de", Auth: "aksk", API: acc.API,
		AccessKey: secret.New(cr.OTCAccessKey), SecretKey: secret.New(cr.OTCSecretKey),
		ModelArtsURL: u, IAMURL: u, HTTPClient: a.http,
	}); err != nil {
		return err
	}
	a.route("", u) // every action: all on the emulated cloud
	return nil
}

// plan is a config made runnable: accounts with their clients, and one
// executor.Job per configured job.
type plan struct {
	cfg      *schedule.Config
	accounts map[string]*account
	jobs     map[string]*executor.Job

	// Guarded by Daemon.mu: fires running under this plan, and whether a
	// reload replaced it (then the last fire to end closes it).
	inflight int
	retired  bool
}

// buildPlan does every fallible step of turning a config into runnable
// jobs. Nothing live is touched: on error, whatever it started is closed.
func buildPlan(cfg *schedule.Config, res secret.Resolver, log zerolog.Logger) (*plan, error) {
	p := &plan{cfg: cfg, accounts: map[string]*account{}, jobs: map[string]*executor.Job{}}
	names := make([]string, 0, len(cfg.Accounts))
	for n := range cfg.Accounts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a, err := buildAccount(cfg.Accounts[n], res, log)
		if err != nil {
			p.close()
			return nil, err
		}
		p.accounts[n] = a
	}
	type verifierKey struct {
		account, action string
		timeout         time.Duration
	}
	verifiers := map[verifierKey]*executor.Verifier{}
	for _, j := range cfg.Jobs {
		a := p.accounts[j.Account]
		if a == nil {
			p.close()
			return nil, fmt.Errorf("job %s: unknown account %q", j.Name, j.Account)
		}
		do := a.actions[j.Action]
		if do == nil {
			p.close()
			return nil, fmt.Errorf("job %s: account %s (vendor %s) does not offer action %s", j.Name, j.Account, a.vendor, j.Action)
		}
		info := vendors.Catalogue[j.Action]
		var verify, check *executor.Verifier
		if v := a.verifiers[j.Action]; v != nil {
			// One copy per account, action and timeout, shared by the
			// jobs that have them in common (the executor only reads
			// it): a copy per job was a tenth of a big schedule's heap.
			k := verifierKey{j.Account, j.Action, j.VerifyTimeoutD}
			vv := verifiers[k]
			if vv == nil {
				c := *v
				c.Timeout = j.VerifyTimeoutD
				vv = &c
				verifiers[k] = vv
			}
			check = vv
			if j.Verify != nil && *j.Verify {
				verify = vv
			}
		}
		p.jobs[j.Name] = &executor.Job{
			Name:    j.Name,
			Action:  j.Action,
			Account: j.Account,
			Targets: slices.Clip(j.Targets), // read only; an append copies
			Do:      do,
			Timeout: j.TimeoutD,
			Retry: executor.RetryPolicy{
				InitialInterval: j.Backoff.InitialInterval,
				MaxInterval:     j.Backoff.MaxInterval,
				MaxElapsed:      j.Backoff.MaxElapsed,
				MaxAttempts:     j.Backoff.MaxAttempts,
			},
			Overlap:    j.Overlap,
			Idempotent: info.Idempotent(),
			Verify:     verify,
			Check:      check,
		}
	}
	return p, nil
}

func (p *plan) close() {
	for _, a := range p.accounts {
		a.close()
	}
}

// limiter returns the account's request pacer, the one its HTTP client's
// transport is wrapped with; the executor queues each call for it.
func (p *plan) limiter(account string) *ratelimit.Limiter {
	if a := p.accounts[account]; a != nil {
		return a.limiter
	}
	return nil
}

// limiter hands the current plan's limiter of an account to the executor
// (executor.Options.Limiter), which asks at the start of each fire. A fire
// still running under a plan a reload replaced queues with the new plan's
// limiter while its requests go through the old one's transport; the
// transport then ignores the foreign token and waits for its own, so the
// overlap costs a second wait, never a request over the rate.
func (d *Daemon) limiter(account string) *ratelimit.Limiter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.plan.limiter(account)
}

// concurrency returns the per-account limit of in-flight calls.
func (p *plan) concurrency(account string) int {
	if a := p.cfg.Accounts[account]; a != nil && a.Concurrency > 0 {
		return a.Concurrency
	}
	return 8
}

// sandboxClouds lists the emulated clouds this plan started, by account.
func (p *plan) sandboxClouds() map[string]*emulator.Cloud {
	m := map[string]*emulator.Cloud{}
	for n, a := range p.accounts {
		if a.cloud != nil {
			m[n] = a.cloud
		}
	}
	return m
}

// Verdicts of the status reads (vendors.md "Status reads"). Values a vendor
// does not list are Unknown: polled until verify_timeout, never success.
//
//	action                        status read                        reached      pending                         failed
//	dataforest.notebook.restart   DF notebooks/getDetail state       RUNNING      ACCEPTED                        FAILED
//	dataforest.aiapp.kill         none documented                    –            –                               – (unverified)
//	dataforest.app.start          DF apps/getDetail state            RUNNING      ACCEPTED                        FAILED, KILLED
//	dataforest.app.stop           DF apps/getDetail state            STOPPED      STOPPING                        FAILED
//	cdss.cmak.restart             getClusterStatus cmakStatus        value read before the restart; any other value pending
//	cdss.kafka.restart            getClusterStatus brokerStatus      same
//	cdss.cluster.restart          cmak, broker and zookeeper status  same, all three
//	scnet.notebook.start          notebook list/detail status        Running      Restarting, Creating            Failed
//	scnet.notebook.stop           same                               Terminated   Shutting                        Failed
//	modelarts.notebook.start      GET instance / notebook status     RUNNING      STARTING, RESTARTING, CREATING, INIT, RESIZING   modelArtsBroken
//	modelarts.notebook.stop       same                               STOPPED      STOPPING                        modelArtsBroken
//
// judge returns the Judge for one row of that table.
func judge(reached string, pending, failed []string) executor.Judge {
	return func(s string) executor.Verdict {
		switch {
		case s == reached:
			return executor.Reached
		case slices.Contains(pending, s):
			return executor.Pending
		case slices.Contains(failed, s):
			return executor.Failed
		}
		return executor.Unknown
	}
}

// modelArtsBroken are the ModelArts states (§4.4, §4.5) a notebook does not
// leave on its own towards RUNNING or STOPPED.
var modelArtsBroken = []string{"START_FAILED", "CREATE_FAILED", "ERROR", "FROZEN", "DELETED", "DELETING", "DELETE_FAILED", "UNAVAILABLE", "RESIZE_FAILED"}

var (
	dfNotebookRestart = judge("RUNNING", []string{"ACCEPTED"}, []string{"FAILED"})
	dfAppStart        = judge("RUNNING", []string{"ACCEPTED"}, []string{"FAILED", "KILLED"})
	dfAppStop         = judge("STOPPED", []string{"STOPPING"}, []string{"FAILED"})
	scnetStart        = judge(scnet.StatusRunning, []string{scnet.StatusRestarting, scnet.StatusCreating}, []string{scnet.StatusFailed})
	scnetStop         = judge(scnet.StatusTerminated, []string{scnet.StatusShutting}, []string{scnet.StatusFailed})
	modelArtsStart    = judge("RUNNING", []string{"STARTING", "RESTARTING", "CREATING", "INIT", "RESIZING"}, modelArtsBroken)
	modelArtsStop     = judge("STOPPED", []string{"STOPPING"}, modelArtsBroken)
)

// backTo judges a CDSS restart ([ADVICE] in vendors.md): the value read
// before the restart is the target; any other value means the restart is
// in progress. The value sets are not documented, so nothing is failed:
// a value that never returns ends verify_failed at verify_timeout.
func backTo(pre string) executor.Judge {
	return func(s string) executor.Verdict {
		if s == pre {
			return executor.Reached
		}
		return executor.Pending
	}
}
