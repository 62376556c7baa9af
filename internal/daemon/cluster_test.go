package daemon

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/observe"
	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/state"
	"github.com/cloudcron/scheduler/internal/state/etcdstore/etcdtest"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
)

// clusterConfig is one replica's schedule: a notebook start every second
// (idempotent) and a CMAK restart every two (not), against the shared
// emulated cloud at url, with the run state in etcd.
func clusterConfig(node, endpoint, url, projectID string) string {
	return fmt.Sprintf(`version: 1
timezone: UTC
audit: {path: audit.jsonl}
state: {dir: state}
defaults:
  timeout: 2s
  catchup: 30s
  retry: {initial_interval: 50ms, max_interval: 100ms, max_elapsed: 1s, max_attempts: 3}
cluster:
  node: %s
  etcd: {endpoints: [%s], prefix: /test/, lease_ttl: 2s}
accounts:
  otc:
    vendor: otc
    region: eu-de
    project_id: %s
    access_key: {env: OTC_AK}
    secret_key: {env: OTC_SK}
    endpoints: {modelarts: %s, iam: %[4]s}
  ncp:
    vendor: ncp
    region: KR
    access_key: {env: NCP_AK}
    secret_key: {env: NCP_SK}
    endpoints: {cdss: %[4]s, dataforest: %[4]s}
jobs:
  - {name: nb-on, schedule: "* * * * * *", account: otc, action: modelarts.notebook.start, targets: [6fa459ea-ee8a-3ca4-894e-db77e160355e]}
  - {name: cmak, schedule: "*/2 * * * * *", account: ncp, action: cdss.cmak.restart, targets: ["1484848"]}
`, node, endpoint, projectID, url)
}

// credsResolver resolves the env names clusterConfig uses (OTC_AK,
// OTC_SK, NCP_AK, NCP_SK) to the emulated cloud's credentials.
func credsResolver(creds emulator.Credentials) secret.Resolver {
	return secret.Resolver{LookupEnv: func(k string) (string, bool) {
		v, ok := map[string]string{"OTC_AK": creds.OTCAccessKey, "OTC_SK": creds.OTCSecretKey,
			"NCP_AK": creds.NCPAccessKey, "NCP_SK": creds.NCPSecretKey}[k]
		return v, ok
	}}
}

// TestClusterEachFireOnce: three replicas in one process share one etcd
// and one emulated cloud. Each fire is claimed and run by exactly one
// replica; a replica cut off etcd says so in its status and readiness,
// claims nothing meanwhile, and resumes by itself; every record names its
// node.
func TestClusterEachFireOnce(t *testing.T) {
	srv := etcdtest.Start(t)
	cloud := emulator.New(emulator.Options{TransitionDelay: -1})
	cloud.Inject(emulator.Fault{Kind: emulator.FaultDelay, Delay: 100 * time.Millisecond})
	if err := cloud.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close() })
	creds := cloud.Credentials()
	res := credsResolver(creds)
	px := etcdtest.NewProxy(t, strings.TrimPrefix(srv.Endpoint(), "http://"))
	type replica struct {
		node, audit string
		d           *Daemon
	}
	var rs []*replica
	for i, node := range []string{"a", "b", "c"} {
		ep := srv.Endpoint()
		if i == 2 {
			ep = px.Endpoint() // c is cut off below
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "config.yaml")
		writeConfig(t, path, clusterConfig(node, ep, cloud.URL(), creds.OTCProjectID))
		d, err := Start(Options{ConfigPath: path, Log: zerolog.Nop(), Resolver: res, Grace: 5 * time.Second})
		if err != nil {
			t.Fatalf("start replica %s: %v", node, err)
		}
		r := &replica{node: node, audit: filepath.Join(dir, "audit.jsonl"), d: d}
		rs = append(rs, r)
		t.Cleanup(func() {
			if r.d != nil {
				_ = r.d.Shutdown()
			}
		})
	}
	began := time.Now()
	finals := func() map[string][]string { // run id -> nodes with a final attempt record
		out := map[string][]string{}
		for _, r := range rs {
			recs, _ := audit.ReadAll(r.audit)
			for _, rec := range recs {
				if rec.Event == audit.EventAttempt && rec.Outcome != audit.OutcomeRetry {
					out[rec.RunID] = append(out[rec.RunID], r.node)
				}
			}
		}
		return out
	}
	waitFor := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %v waiting until %s", d, what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("6 fires are done", 20*time.Second, func() bool { return len(finals()) >= 6 })

	// Cut c off etcd: within the lease TTL and the client's keep-alive it
	// knows, and says so.
	px.Cut()
	cut := time.Now()
	c := rs[2].d
	waitFor("c reports it is cut off", 10*time.Second, func() bool { return strings.Contains(c.Status().String(), "cut off from etcd") })
	t.Logf("c noticed the cut after %v: %s", time.Since(cut).Round(time.Millisecond), c.Status())
	if ok, why := c.ready(""); ok || !strings.Contains(why, "cut off from etcd") {
		t.Errorf("c.ready() = %v, %q while cut off; want not ready, saying why", ok, why)
	}
	before := len(finals())
	waitFor("3 more fires are done by a and b", 20*time.Second, func() bool { return len(finals()) >= before+3 })
	px.Restore()
	waitFor("c is back", 30*time.Second, func() bool { return !strings.Contains(c.Status().String(), "cut off") })
	if ok, why := c.ready(""); !ok {
		t.Errorf("c.ready() = false (%s) after etcd is back", why)
	}
	before = len(finals())
	waitFor("3 more fires are done", 20*time.Second, func() bool { return len(finals()) >= before+3 })

	// Stop b cleanly: its session goes at once; a and c carry on.
	if err := rs[1].d.Shutdown(); err != nil {
		t.Errorf("b: Shutdown: %v", err)
	}
	rs[1].d = nil
	before = len(finals())
	waitFor("3 more fires are done by a and c", 20*time.Second, func() bool { return len(finals()) >= before+3 })
	for _, r := range rs {
		if r.d != nil {
			if err := r.d.Shutdown(); err != nil {
				t.Errorf("%s: Shutdown: %v", r.node, err)
			}
			r.d = nil
		}
	}

	// Every fire ran on one replica: one final record in all the logs
	// together (or, for a restart whose claimer was cut off mid-call,
	// none and an unknown recovery by a survivor), never two; a restart
	// reached the cloud at most once; and every vendor call has its
	// attempt record in the log of the replica that made it.
	type fire struct {
		finals, attempts, recovers []string // nodes
		skips                      []string
	}
	fires := map[string]*fire{}
	get := func(id string) *fire {
		if fires[id] == nil {
			fires[id] = &fire{}
		}
		return fires[id]
	}
	attempts := 0
	for _, r := range rs {
		recs, _ := audit.ReadAll(r.audit)
		for _, rec := range recs {
			switch {
			case rec.Event == audit.EventAttempt:
				attempts++
				get(rec.RunID).attempts = append(get(rec.RunID).attempts, r.node)
				if rec.Outcome != audit.OutcomeRetry {
					get(rec.RunID).finals = append(get(rec.RunID).finals, r.node)
				}
			case rec.Event == audit.EventRecover:
				get(rec.RunID).recovers = append(get(rec.RunID).recovers, r.node)
			case rec.Event == audit.EventSkip:
				get(rec.RunID).skips = append(get(rec.RunID).skips, r.node)
			}
		}
	}
	byNode := map[string]int{}
	for id, f := range fires {
		switch {
		case len(f.finals) > 1:
			t.Errorf("fire %s has final records from %v; want one replica", id, f.finals)
		case len(f.finals) == 0 && len(f.recovers) == 0 && len(f.skips) == 0:
			t.Errorf("fire %s has attempts %v but neither an outcome nor a recovery", id, f.attempts)
		}
		if strings.HasPrefix(id, "cmak@") && len(f.attempts) > 1 {
			t.Errorf("restart %s was attempted %d times (%v); want at most once", id, len(f.attempts), f.attempts)
		}
		if len(f.skips) > 0 && len(f.finals) > 0 {
			t.Errorf("fire %s was run by %v and audited skipped by %v", id, f.finals, f.skips)
		}
		if len(f.finals) == 1 {
			byNode[f.finals[0]]++
		}
	}
	reqs := 0
	for _, q := range cloud.Requests() {
		if q.Action == "modelarts.notebook.start" || q.Action == "cdss.cmak.restart" {
			reqs++
		}
	}
	if reqs != attempts {
		t.Errorf("%d vendor requests and %d attempt records in the replicas' logs; want one each", reqs, attempts)
	}
	t.Logf("%d fires in %v, run by replica: %v", len(fires), time.Since(began).Round(time.Millisecond), byNode)
	for _, r := range rs {
		recs, err := audit.ReadAll(r.audit)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if rec.Node != r.node {
				t.Errorf("%s's audit log has a record of node %q: %+v", r.node, rec.Node, rec)
				break
			}
		}
		if _, err := audit.Verify(r.audit); err != nil {
			t.Errorf("%s's audit log does not verify: %v", r.node, err)
		}
	}
}

// TestClusterWindowsOnLeader: in a cluster only the elected replica
// reconciles windows; when it stops, the next leader reconciles at once
// (each replica here has its own sandbox cloud, so each one's cloud shows
// what it did). An override set on one replica is kept in etcd and seen
// by the others.
func TestClusterWindowsOnLeader(t *testing.T) {
	srv := etcdtest.Start(t)
	monday10 := time.Date(2026, 6, 1, 10, 0, 0, 0, berlin)
	type replica struct {
		node, dir string
		d         *Daemon
	}
	start := func(node string) *replica {
		dir := t.TempDir()
		cfg := "version: 1\ntimezone: Europe/Berlin\naudit: {path: audit.jsonl}\nstate: {dir: state}\n" +
			"defaults: {timeout: 2s, verify_timeout: 20s}\n" +
			"cluster:\n  node: " + node + "\n  etcd: {endpoints: [" + srv.Endpoint() + "], prefix: /win/, lease_ttl: 2s}\n" +
			"accounts:\n  lab:\n    vendor: sandbox\nwindows:\n" + nbWindow
		path := filepath.Join(dir, "scheduler.yaml")
		writeConfig(t, path, cfg)
		d, err := Start(Options{ConfigPath: path, Log: zerolog.Nop(), Now: func() time.Time { return monday10 }, Grace: 5 * time.Second})
		if err != nil {
			t.Fatalf("start %s: %v", node, err)
		}
		r := &replica{node: node, dir: dir, d: d}
		t.Cleanup(func() {
			if r.d != nil {
				_ = r.d.Shutdown()
			}
		})
		return r
	}
	reconciled := func(r *replica) int {
		recs, _ := audit.ReadAll(filepath.Join(r.dir, "audit.jsonl"))
		return len(count(recs, eventReconcile, "", nbID))
	}
	a, b := start("a"), start("b")
	var leader, other *replica
	deadline := time.Now().Add(15 * time.Second)
	for leader == nil {
		for _, r := range []*replica{a, b} {
			if reconciled(r) > 0 {
				leader = r
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no replica reconciled the window in 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	other = a
	if leader == a {
		other = b
	}
	if !strings.Contains(leader.d.Status().String(), "cluster leader") {
		t.Errorf("the reconciling replica's status = %q; want it to say leader", leader.d.Status())
	}
	if n := reconciled(other); n != 0 {
		t.Fatalf("%s, not the leader, reconciled %d times", other.node, n)
	}
	// An override stored through one replica is in etcd for the other.
	ost, err := other.d.overrideStore()
	if err != nil {
		t.Fatal(err)
	}
	if err := ost.SetOverride(state.Override{Window: "lab-notebooks", State: "on", From: monday10, Until: monday10.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got, err := leader.d.store.(interface {
		Overrides() ([]state.Override, error)
	}).Overrides(); err != nil || len(got) != 1 {
		t.Errorf("the leader reads overrides %+v, %v; want the one set through %s", got, err, other.node)
	}

	stopped := time.Now()
	if err := leader.d.Shutdown(); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	leader.d = nil
	for reconciled(other) == 0 {
		if time.Since(stopped) > 10*time.Second {
			t.Fatalf("%s did not reconcile within 10s of the leader stopping", other.node)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s reconciled %v after the leader stopped", other.node, time.Since(stopped).Round(time.Millisecond))
}

// TestClusterStatusOnChange: OnCluster (systemd STATUS=) tells each change
// of a replica's part in the cluster as it happens, not at the next
// periodic refresh: the leader's election, a replica cut off etcd and its
// return, and the other replica's election when the leader stops.
func TestClusterStatusOnChange(t *testing.T) {
	srv := etcdtest.Start(t)
	px := etcdtest.NewProxy(t, strings.TrimPrefix(srv.Endpoint(), "http://"))
	type replica struct {
		d      *Daemon
		status chan string
	}
	start := func(node, endpoint string) *replica {
		dir := t.TempDir()
		path := filepath.Join(dir, "scheduler.yaml")
		writeConfig(t, path, "version: 1\ntimezone: UTC\naudit: {path: audit.jsonl}\nstate: {dir: state}\n"+
			"cluster:\n  node: "+node+"\n  etcd: {endpoints: ["+endpoint+"], prefix: /status/, lease_ttl: 2s}\n"+
			"accounts:\n  sb: {vendor: sandbox}\njobs:\n"+
			"  - {name: on, schedule: \"0 9 1 1 *\", account: sb, action: modelarts.notebook.start, targets: [nb-1]}\n")
		r := &replica{status: make(chan string, 64)}
		d, err := Start(Options{ConfigPath: path, Log: zerolog.Nop(), Grace: 5 * time.Second,
			OnCluster: func(st Status) { r.status <- st.String() }})
		if err != nil {
			t.Fatalf("start %s: %v", node, err)
		}
		r.d = d
		t.Cleanup(func() {
			if r.d != nil {
				_ = r.d.Shutdown()
			}
		})
		return r
	}
	// await returns how long until r told a status containing want.
	await := func(r *replica, want string, within time.Duration) time.Duration {
		t.Helper()
		began := time.Now()
		timeout := time.After(within)
		for {
			select {
			case s := <-r.status:
				if strings.Contains(s, want) {
					return time.Since(began)
				}
			case <-timeout:
				t.Fatalf("no status containing %q within %v; status now %q", want, within, r.d.Status())
			}
		}
	}
	a := start("a", srv.Endpoint())
	await(a, "cluster leader", 10*time.Second)
	b := start("b", px.Endpoint())
	// `scheduler status` on b shows the cluster: a leads, both alive.
	text := func(r *replica) string {
		var buf strings.Builder
		observe.WriteText(&buf, r.d.Snapshot())
		return buf.String()
	}
	waitUntil(t, "b's status to show a leading and both replicas", func() bool {
		return strings.Contains(text(b), "cluster: this is b (replica); leader a; replicas alive (2): a, b")
	})
	if c := a.d.Snapshot().Cluster; c == nil || c.Role != "leader" || c.Leader != "a" {
		t.Errorf("a's cluster view = %+v; want a leading", c)
	}

	px.Cut()
	took := await(b, "cut off from etcd", 10*time.Second)
	if c := b.d.Snapshot().Cluster; c == nil || !strings.Contains(c.Problem, "cut off from etcd") || c.Leader != "" {
		t.Errorf("b's cluster view while cut off = %+v; want the problem and no leader it cannot know", c)
	}
	if got := text(b); strings.Count(got, "cut off from etcd") != 1 {
		t.Errorf("b's status text while cut off names the cut %d times; want once, on the cluster line:\n%s", strings.Count(got, "cut off from etcd"), got)
	}
	t.Logf("b told it is cut off %v after the cut", took.Round(time.Millisecond))
	px.Restore()
	took = await(b, "cluster replica", 30*time.Second)
	t.Logf("b told it is back %v after etcd was reachable again", took.Round(time.Millisecond))

	if err := a.d.Shutdown(); err != nil {
		t.Errorf("a: Shutdown: %v", err)
	}
	a.d = nil
	took = await(b, "cluster leader", 10*time.Second)
	t.Logf("b told it leads %v after a stopped", took.Round(time.Millisecond))
	if got := text(b); !strings.Contains(got, "cluster: this is b (leader); leader b; replicas alive (1): b") {
		t.Errorf("b's status after a stopped:\n%s\nwant b leading alone", got)
	}
}
