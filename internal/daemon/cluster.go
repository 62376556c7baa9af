package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/executor"
	"github.com/cloudcron/scheduler/internal/observe"
	"github.com/cloudcron/scheduler/internal/schedule"
	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/state"
	"github.com/cloudcron/scheduler/internal/state/etcdstore"
	"github.com/cloudcron/scheduler/internal/window"
)

// cluster is the daemon's part in a cluster of replicas sharing run state
// in etcd (config cluster:). Every replica's engine fires every job; the
// claim in etcd decides which one calls the vendor. Recovery of fires left
// by a dead or cut-off replica runs on every replica (Adopt gives each
// fire to one), catch-up on the elected leader only.
type cluster struct {
	node   string
	cli    *clientv3.Client
	store  *etcdstore.Store
	log    zerolog.Logger
	ttl    time.Duration
	prefix string

	mu     sync.Mutex
	led    bool // the last windows pass ran as leader
	live   bool
	since  time.Time // when live last changed
	leader bool

	// changed wakes the loop that tells Options.OnCluster (one pending
	// wake-up at most: it tells the status as it is then).
	changed chan struct{}

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// roleChanged notes a change of the replica's part in the cluster
// (elected, lost leadership, cut off, back).
func (c *cluster) roleChanged() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// claimTimeout bounds each request to etcd.
const claimTimeout = time.Second

// openRunState opens the run state the config asks for and the audit log
// that journals it: the embedded store in state.dir, or, with cluster:,
// the etcd store under the cluster's prefix (then cl is not nil).
func openRunState(cfg *schedule.Config, res secret.Resolver, log zerolog.Logger, configPath string, aopts audit.Options, health *runStateHealth) (state.RunState, *audit.Log, *cluster, error) {
	if cfg.Cluster == nil {
		s, al, err := openLocalState(cfg, log, configPath, aopts, health)
		return s, al, nil, err
	}
	c := cfg.Cluster
	// state.dir keeps what is this host's own (the control socket).
	if err := os.MkdirAll(cfg.State.Dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("create state.dir: %w", err)
	}
	aopts.Node = c.Node
	al, err := audit.OpenWith(cfg.Audit.Path, aopts)
	if err != nil {
		return nil, nil, nil, openAuditErr(err, configPath)
	}
	if msg := al.Recovered(); msg != "" {
		log.Warn().Str("audit", cfg.Audit.Path).Msg(msg)
	}
	cl, err := openCluster(c, res, log, al)
	if err != nil {
		_ = al.Close()
		return nil, nil, nil, err
	}
	return cl.store, al, cl, nil
}

// openLocalState opens the embedded store and the audit log as its
// journal.
func openLocalState(cfg *schedule.Config, log zerolog.Logger, configPath string, aopts audit.Options, health *runStateHealth) (*state.Store, *audit.Log, error) {
	store, err := state.Open(cfg.State.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("open run state: %w", err)
	}
	for _, f := range store.Leftovers() {
		log.Warn().Str("file", f).Msg("removed a temporary run-state file left by a crash")
	}
	for _, n := range store.Notes() {
		log.Warn().Str("state", store.Path()).Msg(n)
	}
	seq, hash := store.AuditTail()
	aopts.ExpectSeq, aopts.ExpectHash = seq, hash
	al, err := audit.OpenWith(cfg.Audit.Path, aopts)
	if err != nil {
		_ = store.Close()
		return nil, nil, openAuditErr(err, configPath)
	}
	if msg := al.Recovered(); msg != "" {
		log.Warn().Str("audit", cfg.Audit.Path).Msg(msg)
	}
	// The audit log is the run state's journal: a fire's intent is durable
	// with its run records (one group-committed write), the database follows
	// in the background. Records after the last checkpoint are replayed now.
	if err := store.Attach(al, state.AttachOptions{
		AuditPath: cfg.Audit.Path,
		OnError: func(err error) {
			tries := health.failed(err)
			log.Error().Err(err).Str("state", store.Path()).Int("tries", tries).
				Msg("run-state checkpoint failed; the audit log still holds every fire, retrying")
		},
		OnRecover: func() {
			since, tries := health.recovered()
			log.Info().Str("state", store.Path()).Int("tries", tries).Dur("down_ms", time.Since(since)).
				Msg("run-state checkpoint written again")
		},
	}); err != nil {
		_ = al.Close()
		_ = store.Close()
		return nil, nil, fmt.Errorf("open run state: %w", err)
	}
	return store, al, nil
}

// openCluster connects to etcd and starts this replica's session.
func openCluster(c *schedule.Cluster, res secret.Resolver, log zerolog.Logger, al *audit.Log) (*cluster, error) {
	tlsCfg, err := c.Etcd.TLSConfig(res)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	user, pass, err := c.Etcd.Credentials(res)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Etcd.Endpoints,
		DialTimeout: etcdstore.DefaultTimeout,
		TLS:         tlsCfg,
		Username:    user.Reveal(),
		Password:    pass.Reveal(),
		Logger:      zap.NewNop(),
		// Notice a dead connection within about a second, so that a
		// replica cut off etcd stops claiming well inside its lease TTL.
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to etcd %s: %w", strings.Join(c.Etcd.Endpoints, ", "), err)
	}
	cl := &cluster{node: c.Node, cli: cli, log: log.With().Str("node", c.Node).Logger(), ttl: c.Etcd.TTL(),
		prefix: c.Etcd.Prefix, live: true, since: time.Now(), stop: make(chan struct{}), changed: make(chan struct{}, 1)}
	cl.store, err = etcdstore.Open(etcdstore.Options{
		Client: cli, Prefix: c.Etcd.Prefix, Node: c.Node, TTL: c.Etcd.TTL(), Journal: al, Log: log,
		OnSession: cl.setLive,
		// A claim that etcd does not answer within a second fails, so a
		// replica being cut off holds no fire past its next second.
		Timeout: claimTimeout,
	})
	if err != nil {
		_ = cli.Close()
		if herr := tlsProblem(c.Etcd.Endpoints, tlsCfg); herr != nil {
			// The client only says the deadline passed; the handshake
			// says why.
			return nil, fmt.Errorf("cluster: %w (the etcd client: %v)", herr, err)
		}
		return nil, fmt.Errorf("cluster: %w (endpoints %s)", err, strings.Join(c.Etcd.Endpoints, ", "))
	}
	cl.log.Info().Strs("endpoints", c.Etcd.Endpoints).Str("prefix", c.Etcd.Prefix).Dur("lease_ttl_ms", cl.ttl).
		Msg("cluster: run state in etcd; this replica claims fires with its lease")
	return cl, nil
}

// tlsProblem shakes hands with each https endpoint with cfg, after the
// etcd client failed to open a session: the first handshake that fails
// (an unknown CA, a certificate not for that host, a client certificate
// etcd refuses) is returned with what to check; nil if none fails or
// none uses TLS.
func tlsProblem(endpoints []string, cfg *tls.Config) error {
	if cfg == nil {
		return nil
	}
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" {
			continue
		}
		c := cfg.Clone()
		if c.ServerName == "" {
			c.ServerName = u.Hostname()
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", u.Host, c)
		if err == nil {
			// The server verifies a client certificate after its own
			// handshake half; a refusal shows on the first read.
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
			var ne net.Error
			if err == nil || errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.EOF) {
				continue
			}
			return fmt.Errorf("TLS with etcd %s: %v: etcd refused this replica's client certificate; "+
				"check that cluster.etcd.tls.cert and key are a client certificate signed by the CA etcd trusts (--trusted-ca-file)", ep, err)
		}
		var unknown x509.UnknownAuthorityError
		var host x509.HostnameError
		switch {
		case errors.As(err, &unknown):
			return fmt.Errorf("TLS with etcd %s: %v: check that cluster.etcd.tls.ca is the CA that signed etcd's server certificate", ep, err)
		case errors.As(err, &host):
			return fmt.Errorf("TLS with etcd %s: %v: the endpoint must name a host in etcd's server certificate", ep, err)
		case errors.As(err, new(*tls.CertificateVerificationError)):
			return fmt.Errorf("TLS with etcd %s: %v: check cluster.etcd.tls.ca", ep, err)
		}
	}
	return nil
}

func (c *cluster) setLive(up bool) {
	c.mu.Lock()
	c.live, c.since = up, time.Now()
	if !up {
		c.leader = false
	}
	c.mu.Unlock()
	c.roleChanged()
}

func (c *cluster) setLeader(lead bool) {
	c.mu.Lock()
	c.leader = lead
	c.mu.Unlock()
	c.roleChanged()
}

// problem returns what STATUS= and /readyz say about the cluster: "" while
// the replica holds its session.
func (c *cluster) problem() string {
	if c == nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live {
		return ""
	}
	return fmt.Sprintf("cut off from etcd since %s: not claiming fires, the other replicas run them; resumes by itself",
		c.since.UTC().Format(time.RFC3339))
}

// role returns "leader" or "replica" for the status line.
func (c *cluster) role() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader {
		return "leader"
	}
	return "replica"
}

// view is the cluster as `scheduler status` shows it: this replica's role
// and, read from etcd, the leader and the replicas alive.
func (c *cluster) view() *observe.Cluster {
	v := &observe.Cluster{Node: c.node, Role: c.role(), Problem: c.problem()}
	if v.Problem != "" {
		return v // cut off: etcd would not answer
	}
	members, err := c.store.Members()
	switch {
	case err != nil:
		v.Problem = "cannot read the replicas from etcd: " + err.Error()
	case len(members) > 0:
		v.Leader, v.Replicas = members[0], members
	}
	return v
}

func (c *cluster) isLeader() bool {
	if c == nil {
		return true // a single host does its own catch-up
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader && c.live
}

// stopLoops stops recovery and the election; no fire starts from them
// after it returns.
func (c *cluster) stopLoops() {
	c.stopOnce.Do(func() { close(c.stop) })
	c.wg.Wait()
}

// close stops the loops, releases the session (and with it this replica's
// remaining claims and leadership) and closes the client.
func (c *cluster) close() error {
	c.stopLoops()
	err := c.store.Close()
	if cerr := c.cli.Close(); cerr != nil && !errors.Is(cerr, context.Canceled) {
		err = errors.Join(err, cerr)
	}
	return err
}

// startCluster runs the loops of a replica: recovery of fires whose
// claimer is gone, and the election whose winner runs catch-up.
func (d *Daemon) startCluster() {
	c := d.cl
	c.wg.Add(3)
	go func() {
		defer c.wg.Done()
		d.tellCluster()
	}()
	go func() {
		defer c.wg.Done()
		d.recoverOrphans()
	}()
	go func() {
		defer c.wg.Done()
		d.campaign()
	}()
}

// tellCluster calls Options.OnCluster with the status whenever the
// replica's part in the cluster changes, so that STATUS= shows a new
// leader or a replica cut off etcd at once rather than at the next
// periodic refresh.
func (d *Daemon) tellCluster() {
	c := d.cl
	for {
		select {
		case <-c.stop:
			return
		case <-c.changed:
		}
		if d.opts.OnCluster != nil {
			d.opts.OnCluster(d.Status())
		}
	}
}

// recoverOrphans takes over fires whose claimer's lease expired (it died
// or was cut off from etcd): it watches the claim keys and recovers at
// once when one is deleted, and checks every second besides, so a fire is
// taken over within the lease TTL and a second.
func (d *Daemon) recoverOrphans() {
	c := d.cl
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-c.stop
		cancel()
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var watch clientv3.WatchChan
	// The re-issues started here whose claim is not decided yet, by run:
	// one lease's expiry deletes all its claim keys, so several watch
	// events may come before a re-issue has claimed its fire, and the
	// fire is still pending then. Re-issued again, it was refused by the
	// executor's overlap check behind the first and audited skipped,
	// though it ran (seen once in TestClusterEachFireOnce under load).
	reissued := map[string]<-chan struct{}{}
	for {
		if watch == nil {
			watch = c.cli.Watch(clientv3.WithRequireLeader(ctx), c.prefix+"claims/",
				clientv3.WithPrefix(), clientv3.WithFilterPut())
		}
		select {
		case <-c.stop:
			return
		case _, ok := <-watch:
			if !ok {
				watch = nil
			}
		case <-tick.C:
		}
		if !c.store.Live() || len(c.store.Pending()) == 0 {
			continue
		}
		d.mu.Lock()
		cfg := d.plan.cfg
		d.mu.Unlock()
		reissue, err := d.recoverPending(cfg, d.now())
		if err != nil {
			d.log.Error().Err(err).Msg("cluster: recovering fires left by another replica failed; retrying")
			continue
		}
		for k, claimed := range reissued {
			select {
			case <-claimed:
				delete(reissued, k)
			default:
			}
		}
		for _, r := range reissue {
			k := executor.RunID(r.job, r.scheduled)
			if _, busy := reissued[k]; busy {
				continue // its claim is being decided
			}
			reissued[k] = d.goFire(r.job, r.scheduled, r.targets, nil)
		}
	}
}

// campaign runs for leadership among the replicas while this one holds a
// session. The leader runs catch-up when elected (and after a forward
// clock jump): missed fires are planned and audited once, by one replica.
func (d *Daemon) campaign() {
	c := d.cl
	for {
		changed := c.store.Changed() // before Session: a change between the two wakes us
		sess, err := c.store.Session()
		if err != nil {
			select {
			case <-c.stop:
				return
			case <-changed:
				continue
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-c.stop:
			case <-sess.Done():
			case <-ctx.Done():
			}
			cancel()
		}()
		e := concurrency.NewElection(sess, c.prefix+"leader/")
		if err := e.Campaign(ctx, c.node); err != nil {
			cancel()
			t := time.NewTimer(500 * time.Millisecond) // etcd answered with an error: not in a tight loop
			select {
			case <-c.stop:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		c.setLeader(true)
		c.log.Info().Msg("cluster: elected leader; catch-up runs on this replica")
		d.mu.Lock()
		cfg := d.plan.cfg
		d.mu.Unlock()
		if _, err := d.catchUp(cfg, d.now(), nil); err != nil {
			d.log.Error().Err(err).Msg("cluster: catch-up as the new leader failed")
		}
		d.leaderLoop(ctx)
		c.setLeader(false)
		select {
		case <-c.stop:
			rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
			_ = e.Resign(rctx)
			rcancel()
			return
		default:
			c.log.Warn().Msg("cluster: lost leadership with the etcd session")
		}
	}
}

// clusterKey is what of cluster: a reload cannot change while the daemon
// runs: everything but positions in the file.
func clusterKey(c *schedule.Cluster) string {
	if c == nil {
		return ""
	}
	ref := func(r *secret.Ref) string {
		if r == nil {
			return "-"
		}
		return r.Env + "|" + r.File + "|" + r.Credential
	}
	e := c.Etcd
	k := fmt.Sprintf("%s %q %s %v %v", c.Node, e.Endpoints, e.Prefix, e.TTL(), e.InsecureHTTP)
	if e.TLS != nil {
		k += " tls " + ref(e.TLS.CA) + " " + ref(e.TLS.Cert) + " " + ref(e.TLS.Key)
	}
	return k + " auth " + ref(e.Username) + " " + ref(e.Password)
}

// Catch-up while leading: fires that no replica claimed although the
// leader kept its session (etcd restarted or was unreachable for less
// than the lease TTL, so nobody was re-elected) are caught up every
// leaderCatchUpEvery; fires due in the last leaderCatchUpGrace are left to
// the engines, which claim them themselves.
const (
	leaderCatchUpEvery = 5 * time.Second
	leaderCatchUpGrace = 2 * time.Second
	doneMarkersGCEvery = 10 * time.Minute
	doneMarkersKept    = 48 * time.Hour
)

// leaderLoop runs the leader's periodic catch-up until ctx ends.
func (d *Daemon) leaderLoop(ctx context.Context) {
	t := time.NewTicker(leaderCatchUpEvery)
	defer t.Stop()
	lastGC := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(lastGC) > doneMarkersGCEvery {
			lastGC = time.Now()
			if n, err := d.cl.store.ForgetDone(d.now().Add(-doneMarkersKept)); err != nil {
				d.cl.log.Warn().Err(err).Msg("cluster: dropping old done markers failed; retrying later")
			} else if n > 0 {
				d.cl.log.Debug().Int("markers", n).Msg("cluster: dropped old done markers")
			}
		}
		d.mu.Lock()
		cfg := d.plan.cfg
		d.mu.Unlock()
		now := d.now()
		job, err := d.jobStates()
		if err != nil {
			d.cl.log.Debug().Err(err).Msg("cluster: the leader's catch-up check could not read etcd; next round")
			continue
		}
		skip := map[string]bool{}
		for _, j := range cfg.Jobs {
			if state.Plan(j.Spec, job(j.Name), now.Add(-leaderCatchUpGrace), j.CatchupD).Empty() {
				skip[j.Name] = true
			}
		}
		if len(skip) == len(cfg.Jobs) {
			continue
		}
		d.cl.log.Warn().Int("jobs", len(cfg.Jobs)-len(skip)).Msg("cluster: fires no replica claimed (etcd was unreachable); catching up")
		if _, err := d.catchUp(cfg, now, skip); err != nil {
			d.log.Error().Err(err).Msg("cluster: the leader's catch-up failed")
		}
	}
}

// claimCluster claims c in etcd. While etcd does not answer (it restarts,
// or this replica is cut off) it tries again until deadline, the job's
// next fire: the fire then runs late on the first replica that reaches
// etcd, rather than on none. A refusal (done, or claimed by another
// replica) is final.
func (d *Daemon) claimCluster(c state.Claim, deadline time.Time) (bool, error) {
	retry := 100 * time.Millisecond
	for {
		changed := d.cl.store.Changed()
		ok, err := d.store.Claim(c)
		if err == nil || errors.Is(err, state.ErrClosed) || errors.Is(err, audit.ErrClosed) || d.audit.Err() != nil {
			return ok, err // done, or the audit log refused the records: not etcd's doing
		}
		if !time.Now().Add(retry).Before(deadline) {
			d.goSettleUnclaimed(c)
			return ok, err
		}
		t := time.NewTimer(retry)
		select {
		case <-d.ctx.Done():
			t.Stop()
			return false, err
		case <-d.cl.stop:
			t.Stop()
			return false, err
		case <-changed: // the session is back: try now
			t.Stop()
		case <-t.C:
		}
		retry = min(2*retry, time.Second)
	}
}

// unclaimedFor bounds how long a replica keeps trying to account for a
// fire it gave up (SettleUnclaimed) while etcd does not answer.
const unclaimedFor = 10 * time.Minute

// goSettleUnclaimed audits a fire that this replica could not claim before
// the job's next fire as missed, once etcd answers, unless a replica ran
// it or another already audited it: no fire goes without a record because
// etcd was away.
func (d *Daemon) goSettleUnclaimed(c state.Claim) {
	c.Records = nil
	for _, t := range c.Intent.Targets {
		c.Records = append(c.Records, audit.Record{Time: d.now().UTC(), Event: audit.EventMissed, Job: c.Job, RunID: c.Intent.RunID,
			Scheduled: c.Intent.Scheduled, Action: c.Intent.Action, Account: c.Intent.Account, Target: t, Outcome: audit.OutcomeMissed,
			Detail: "no replica could claim the fire before the job's next fire: etcd did not answer"})
	}
	cl := d.cl
	cl.wg.Add(1)
	go func() {
		defer cl.wg.Done()
		until := time.Now().Add(unclaimedFor)
		retry := 200 * time.Millisecond
		for time.Now().Before(until) {
			for i := range c.Records {
				c.Records[i].Time = d.now().UTC()
			}
			mine, err := cl.store.SettleUnclaimed(c.Intent.RunID, c.Intent.Scheduled, c.Records)
			if err == nil {
				if mine {
					d.log.Warn().Str("job", c.Job).Time("scheduled", c.Intent.Scheduled).
						Msg("cluster: no replica could claim the fire before the next one (etcd did not answer); audited missed")
				}
				return
			}
			if errors.Is(err, state.ErrClosed) {
				return
			}
			t := time.NewTimer(retry)
			select {
			case <-cl.stop:
				t.Stop()
				return
			case <-t.C:
			}
			retry = min(2*retry, 2*time.Second)
		}
	}()
}

// outcomeAuditor is the executor's audit log in a cluster: each record
// that ends a target (an attempt's outcome, an abandon) goes to this
// replica's audit log and then, in the same step, to etcd, so that a
// survivor recovering the fire after this replica died knows the target's
// outcome without this replica's log: it neither re-issues a start or stop
// that completed nor audits a restart that succeeded as unknown.
type outcomeAuditor struct {
	log *audit.Log
	cl  *cluster
}

func (a *outcomeAuditor) Append(r audit.Record) error {
	if err := a.log.Append(r); err != nil {
		return err
	}
	a.record([]audit.Record{r})
	return nil
}

func (a *outcomeAuditor) AppendBatch(rs []audit.Record) error {
	if err := a.log.AppendBatch(rs); err != nil {
		return err
	}
	a.record(rs)
	return nil
}

// record puts the outcomes of rs in etcd. The records are durable in the
// audit log already and the vendor has acted: a failure here is logged,
// not returned (the fire goes on); a survivor then recovers the target by
// the delivery rule, as before outcomes were kept in etcd.
func (a *outcomeAuditor) record(rs []audit.Record) {
	if !slices.ContainsFunc(rs, etcdstore.Final) {
		return
	}
	if err := a.cl.store.RecordOutcomes(rs); err != nil {
		a.cl.log.Warn().Err(err).Str("run_id", rs[0].RunID).
			Msg("cluster: a target's outcome is in this replica's audit log but not in etcd; if this replica dies before the fire is done, a survivor recovers the target by the delivery rule")
		return
	}
	crashPoint("outcome-recorded")
}

// passLeader: this replica was elected and reconciles the windows now.
const passLeader = "leader"

// windowsPass tells the reconciler whether to run its pass: only on the
// leader. The first pass after an election reads every target (reason
// passLeader), and each pass takes the overrides from etcd, where any
// replica may have set or cleared one.
func (c *cluster) windowsPass(r *reconciler, reason string) (string, bool) {
	lead := c.isLeader()
	c.mu.Lock()
	first := lead && !c.led
	c.led = lead
	c.mu.Unlock()
	if !lead {
		return reason, false
	}
	if first {
		reason = passLeader
	}
	if stored, err := c.store.Overrides(); err != nil {
		c.log.Warn().Err(err).Msg("cluster: cannot read the overrides from etcd; reconciling with the last ones read")
	} else {
		var ovs []window.Override
		for _, o := range stored {
			if s, err := window.ParseState(o.State); err == nil {
				ovs = append(ovs, window.Override{Window: o.Window, Target: o.Target, State: s, From: o.From, Until: o.Until})
			}
		}
		r.mu.Lock()
		r.overrides = ovs
		r.mu.Unlock()
	}
	return reason, true
}
