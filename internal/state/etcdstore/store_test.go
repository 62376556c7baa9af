package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/state"
	"github.com/cloudcron/scheduler/internal/state/etcdstore"
	"github.com/cloudcron/scheduler/internal/state/etcdstore/etcdtest"
	"github.com/cloudcron/scheduler/internal/state/statetest"
)

// ttl is the lease TTL of the tests' replicas: etcd's least.
const ttl = 2 * time.Second

// TestContract runs the run-state contract against the etcd store: each
// test on its own prefix of one real etcd.
func TestContract(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoint())
	var n atomic.Int64
	statetest.Run(t, func(t *testing.T) statetest.Opener {
		prefix := fmt.Sprintf("/contract/%d/", n.Add(1))
		return func(t *testing.T, auditPath string) (state.RunState, func() error) {
			t.Helper()
			l, err := audit.Open(auditPath)
			if err != nil {
				t.Fatalf("open audit log: %v", err)
			}
			s, err := etcdstore.Open(etcdstore.Options{Client: cli, Prefix: prefix, Node: "node-a", TTL: ttl, Journal: l, Log: zerolog.Nop()})
			if err != nil {
				l.Close()
				t.Fatalf("etcdstore.Open: %v", err)
			}
			return s, func() error { return errors.Join(s.Close(), l.Close()) }
		}
	})
}

// replica is one replica's store with its own client and audit log.
type replica struct {
	name  string
	cli   *clientv3.Client
	log   *audit.Log
	s     *etcdstore.Store
	state chan bool // the session's changes
}

func openReplica(t *testing.T, name, endpoint, prefix string) *replica {
	t.Helper()
	r := &replica{name: name, cli: etcdtest.Client(t, endpoint), state: make(chan bool, 16)}
	var err error
	if r.log, err = audit.Open(filepath.Join(t.TempDir(), name+".jsonl")); err != nil {
		t.Fatal(err)
	}
	r.s, err = etcdstore.Open(etcdstore.Options{Client: r.cli, Prefix: prefix, Node: name, TTL: ttl, Journal: r.log,
		Log: zerolog.Nop(), OnSession: func(up bool) { r.state <- up }})
	if err != nil {
		t.Fatalf("open replica %s: %v", name, err)
	}
	t.Cleanup(func() { r.s.Close(); r.log.Close() })
	return r
}

func intent(job string, at time.Time, idempotent bool) state.Claim {
	id := job + "@" + at.UTC().Format(time.RFC3339Nano)
	return state.Claim{Job: job, Intent: state.Intent{RunID: id, Scheduled: at, Action: "scnet.notebook.stop",
		Account: "lab", Targets: []string{"nb-1"}, Idempotent: idempotent, Started: at},
		Records: []audit.Record{{Time: at, Event: audit.EventRun, Job: job, RunID: id, Scheduled: at, Target: "nb-1"}}}
}

var t0 = time.Date(2026, 3, 2, 19, 0, 0, 0, time.UTC)

// TestOneClaimerAcrossReplicas: three replicas claim the same fires at
// once; each fire has exactly one claimer, and only its audit log holds
// the fire's run record.
func TestOneClaimerAcrossReplicas(t *testing.T) {
	srv := etcdtest.Start(t)
	rs := []*replica{
		openReplica(t, "a", srv.Endpoint(), "/race/"),
		openReplica(t, "b", srv.Endpoint(), "/race/"),
		openReplica(t, "c", srv.Endpoint(), "/race/"),
	}
	const fires = 40
	var mu sync.Mutex
	winners := map[string][]string{}
	var wg sync.WaitGroup
	for i := range fires {
		for _, r := range rs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := intent(fmt.Sprintf("job-%d", i%4), t0.Add(time.Duration(i)*time.Minute), false)
				ok, err := r.s.Claim(c)
				if err != nil {
					t.Errorf("%s: Claim(%s): %v", r.name, c.Intent.RunID, err)
					return
				}
				if ok {
					mu.Lock()
					winners[c.Intent.RunID] = append(winners[c.Intent.RunID], r.name)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(winners) != fires {
		t.Fatalf("%d fires claimed; want %d", len(winners), fires)
	}
	for id, w := range winners {
		if len(w) != 1 {
			t.Errorf("fire %s claimed by %v; want exactly one replica", id, w)
		}
	}
	logged := map[string]int{}
	for _, r := range rs {
		recs, err := audit.ReadAll(r.log.Path())
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if rec.Event == audit.EventRun {
				logged[rec.RunID]++
				if w := winners[rec.RunID]; len(w) != 1 || w[0] != r.name {
					t.Errorf("run record of %s in %s's audit log; claimer %v", rec.RunID, r.name, w)
				}
			}
		}
	}
	if len(logged) != fires {
		t.Errorf("%d fires have run records; want %d", len(logged), fires)
	}
}

// TestFailoverWithinTTL: a claimer dies without a word (its client
// closes, the lease is neither revoked nor renewed). Its intent is
// Pending on a survivor within the lease TTL plus a second, exactly one
// survivor adopts it, and the fire is never claimed afresh.
func TestFailoverWithinTTL(t *testing.T) {
	srv := etcdtest.Start(t)
	a := openReplica(t, "a", srv.Endpoint(), "/failover/")
	b := openReplica(t, "b", srv.Endpoint(), "/failover/")
	c := openReplica(t, "c", srv.Endpoint(), "/failover/")
	cl := intent("restart-cmak", t0, false)
	if ok, err := a.s.Claim(cl); !ok || err != nil {
		t.Fatalf("a: Claim = %v, %v", ok, err)
	}
	if p := b.s.Pending(); len(p) != 0 {
		t.Fatalf("b: Pending while a holds the claim = %+v; want none", p)
	}
	if ok, _ := b.s.Claim(cl); ok {
		t.Fatal("b claimed a fire a holds")
	}
	// Watch for the claim key's deletion: the lease's expiry.
	ctx := t.Context()
	w := b.cli.Watch(ctx, "/failover/claims/"+cl.Intent.RunID)
	died := time.Now()
	a.cli.Close() // kill -9, as far as etcd can tell
	gone := false
	for resp := range w {
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypeDelete {
				gone = true
			}
		}
		if gone {
			break
		}
	}
	took := time.Since(died)
	if took > ttl+time.Second {
		t.Errorf("the dead claimer's claim expired after %v; want within the TTL %v plus 1s", took, ttl)
	}
	p := b.s.Pending()
	if len(p) != 1 || p[0].RunID != cl.Intent.RunID || p[0].Idempotent {
		t.Fatalf("b: Pending after a died = %+v; want the restart intent %s", p, cl.Intent.RunID)
	}
	var adopted atomic.Int32
	var wg sync.WaitGroup
	for _, r := range []*replica{b, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := r.s.Adopt(p[0]); err != nil {
				t.Errorf("%s: Adopt: %v", r.name, err)
			} else if ok {
				adopted.Add(1)
			}
		}()
	}
	wg.Wait()
	if adopted.Load() != 1 {
		t.Fatalf("%d survivors adopted the fire; want exactly 1", adopted.Load())
	}
	if got := c.s.Pending(); len(got) != 0 {
		t.Errorf("Pending after adoption = %+v; want none", got)
	}
	for _, r := range []*replica{b, c} {
		if ok, _ := r.s.Claim(cl); ok {
			t.Errorf("%s: a plain Claim of an adopted fire succeeded", r.name)
		}
	}
}

// TestCutOffReplica: a replica cut off etcd loses its session within the
// TTL, claims nothing meanwhile, its fire becomes Pending for the others,
// and it resumes by itself when etcd is reachable again.
func TestCutOffReplica(t *testing.T) {
	srv := etcdtest.Start(t)
	px := etcdtest.NewProxy(t, strings.TrimPrefix(srv.Endpoint(), "http://"))
	a := openReplica(t, "a", px.Endpoint(), "/cut/")
	b := openReplica(t, "b", srv.Endpoint(), "/cut/")
	held := intent("stop-notebooks", t0, true)
	if ok, err := a.s.Claim(held); !ok || err != nil {
		t.Fatalf("a: Claim = %v, %v", ok, err)
	}
	expired := make(chan time.Time, 1)
	w := b.cli.Watch(t.Context(), "/cut/claims/"+held.Intent.RunID)
	go func() {
		for resp := range w {
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					expired <- time.Now()
					return
				}
			}
		}
	}()
	cut := time.Now()
	px.Cut()
	select {
	case up := <-a.state:
		if up {
			t.Fatal("a: session reported up after the cut")
		}
	case <-time.After(3*ttl + 5*time.Second):
		t.Fatal("a: session not lost after the cut")
	}
	t.Logf("a lost its session %v after the cut", time.Since(cut))
	if a.s.Live() {
		t.Error("a: Live after losing its session")
	}
	if ok, err := a.s.Claim(intent("stop-notebooks", t0.Add(time.Hour), true)); ok || !errors.Is(err, etcdstore.ErrNoSession) {
		t.Errorf("a: Claim while cut off = %v, %v; want false, ErrNoSession", ok, err)
	}
	// a stops claiming when its client gives the lease up, which can be a
	// moment before etcd expires it; b takes over once etcd has.
	select {
	case at := <-expired:
		if took := at.Sub(cut); took > ttl+time.Second {
			t.Errorf("a's claim expired %v after the cut; want within the TTL %v plus 1s", took, ttl)
		}
	case <-time.After(3*ttl + 5*time.Second):
		t.Fatal("a's claim never expired")
	}
	p := b.s.Pending()
	if len(p) != 1 || p[0].RunID != held.Intent.RunID {
		t.Fatalf("b: Pending after a was cut off = %+v; want %s", p, held.Intent.RunID)
	}
	if ok, err := b.s.Adopt(p[0]); !ok || err != nil {
		t.Fatalf("b: Adopt = %v, %v", ok, err)
	}
	re := held
	re.Reissue = true
	if ok, err := b.s.Claim(re); !ok || err != nil {
		t.Fatalf("b: re-issue Claim = %v, %v", ok, err)
	}
	px.Restore()
	select {
	case up := <-a.state:
		if !up {
			t.Fatal("a: session reported lost again; want back")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a: session not back after the cut ended")
	}
	next := intent("stop-notebooks", t0.Add(2*time.Hour), true)
	if ok, err := a.s.Claim(next); !ok || err != nil {
		t.Errorf("a: Claim after it is back = %v, %v; want true", ok, err)
	}
	// The fire b took over stays b's.
	if ok, _ := a.s.Claim(re); ok {
		t.Error("a: re-claimed the fire b took over")
	}
}

// TestEtcdRestart: etcd itself restarts; the replicas' claims and
// records survive, and claiming resumes.
func TestEtcdRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	a := openReplica(t, "a", srv.Endpoint(), "/restart/")
	if ok, err := a.s.Claim(intent("j", t0, true)); !ok || err != nil {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	if err := a.s.Done("j", t0, intent("j", t0, true).Intent.RunID); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	if ok, err := a.s.Claim(intent("j", t0.Add(time.Minute), true)); ok || err == nil {
		t.Errorf("Claim while etcd is down = %v, %v; want an error", ok, err)
	}
	srv.Restart(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := a.s.Claim(intent("j", t0.Add(time.Minute), true))
		if ok {
			break
		}
		if err == nil {
			t.Fatal("Claim after the restart refused the fire")
		}
		if time.Now().After(deadline) {
			t.Fatalf("Claim still failing 30s after etcd restarted: %v", err)
		}
		select {
		case <-a.s.Changed():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if st := a.s.Job("j"); !st.LastDone.Equal(t0) || len(st.InFlight) != 1 {
		t.Errorf("Job(j) after etcd restarted = %+v; want LastDone %v and the new fire in flight", st, t0)
	}
	if ok, _ := a.s.Claim(intent("j", t0, true)); ok {
		t.Error("a fire done before the restart was claimed again")
	}
}

// TestOutcomesReachSurvivor: the claimer records each target's outcome in
// etcd as it ends; when the claimer dies before the fire is done, the
// survivor's Pending names the targets with an outcome (Finished), so that
// recovery neither re-issues nor audits them unknown; Done removes them.
func TestOutcomesReachSurvivor(t *testing.T) {
	srv := etcdtest.Start(t)
	a := openReplica(t, "a", srv.Endpoint(), "/outcomes/")
	b := openReplica(t, "b", srv.Endpoint(), "/outcomes/")
	cl := intent("restart-two", t0, false)
	cl.Intent.Targets = []string{"nb-1", "nb-2", "nb-3"}
	if ok, err := a.s.Claim(cl); !ok || err != nil {
		t.Fatalf("a: Claim = %v, %v", ok, err)
	}
	id := cl.Intent.RunID
	rec := func(event, target, outcome string) audit.Record {
		return audit.Record{Time: t0, Event: event, Job: cl.Job, RunID: id, Scheduled: t0, Target: target, Outcome: outcome}
	}
	// nb-1 ended, nb-2 was abandoned, nb-3 is only being retried; a record
	// of a fire without intent (done, or never claimed) leaves no key.
	other := rec(audit.EventAttempt, "nb-9", audit.OutcomeSuccess)
	other.RunID = "restart-two@2026-03-02T18:00:00Z"
	if err := a.s.RecordOutcomes([]audit.Record{
		rec(audit.EventRun, "nb-1", ""),
		rec(audit.EventAttempt, "nb-1", audit.OutcomeSuccess),
		rec(audit.EventAbandon, "nb-2", audit.OutcomeFailure),
		rec(audit.EventAttempt, "nb-3", audit.OutcomeRetry),
		other,
	}); err != nil {
		t.Fatalf("a: RecordOutcomes: %v", err)
	}
	if p := b.s.Pending(); len(p) != 0 {
		t.Fatalf("b: Pending while a holds the claim = %+v; want none", p)
	}
	ctx := t.Context()
	w := b.cli.Watch(ctx, "/outcomes/claims/"+id)
	a.cli.Close() // kill -9, as far as etcd can tell
	for resp := range w {
		if slices.ContainsFunc(resp.Events, func(ev *clientv3.Event) bool { return ev.Type == clientv3.EventTypeDelete }) {
			break
		}
	}
	p := b.s.Pending()
	if len(p) != 1 || p[0].RunID != id {
		t.Fatalf("b: Pending after a died = %+v; want %s", p, id)
	}
	if got := strings.Join(p[0].Finished, ","); got != "nb-1,nb-2" {
		t.Errorf("b: Pending's Finished = %q; want the targets with an outcome, nb-1,nb-2", got)
	}
	if n := countKeys(t, b.cli, "/outcomes/outcomes/"); n != 2 {
		t.Errorf("%d outcome keys; want 2 (none for a retry, none for a fire without intent)", n)
	}
	if ok, err := b.s.Adopt(p[0]); !ok || err != nil {
		t.Fatalf("b: Adopt = %v, %v", ok, err)
	}
	if err := b.s.Done(cl.Job, t0, id); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, b.cli, "/outcomes/outcomes/"); n != 0 {
		t.Errorf("%d outcome keys after Done; want none", n)
	}
	if p := b.s.Pending(); len(p) != 0 {
		t.Errorf("Pending after Done = %+v", p)
	}
}

func countKeys(t *testing.T, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	resp, err := cli.Get(t.Context(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// TestJobStatesOneRead: JobStates answers, in one read, what Job answers
// job by job: registration, last done fire and the intents in flight,
// each under its own job (also when one job's name starts with another's).
func TestJobStatesOneRead(t *testing.T) {
	srv := etcdtest.Start(t)
	a := openReplica(t, "a", srv.Endpoint(), "/bulk/")
	names := []string{"nb", "nb-on", "nb-on-2", "cmak"}
	if err := a.s.Sync(nil, names, t0); err != nil {
		t.Fatal(err)
	}
	if err := a.s.Done("nb", t0.Add(time.Minute), "nb@x"); err != nil {
		t.Fatal(err)
	}
	for i, j := range []string{"nb-on", "nb-on", "cmak", "gone"} {
		if ok, err := a.s.Claim(intent(j, t0.Add(time.Duration(2-i)*time.Hour), true)); !ok || err != nil {
			t.Fatalf("Claim %s = %v, %v", j, ok, err)
		}
	}
	got, err := a.s.JobStates()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Errorf("JobStates has %d jobs; want 5 (4 registered, 1 with an intent only): %v", len(got), got)
	}
	for _, name := range append(names, "gone", "unknown") {
		want := a.s.Job(name)
		if g := got[name]; fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("JobStates()[%s] = %+v; Job(%s) = %+v", name, g, name, want)
		}
	}
	if n := len(got["nb-on"].InFlight); n != 2 || !got["nb-on"].InFlight[0].Scheduled.Before(got["nb-on"].InFlight[1].Scheduled) {
		t.Errorf("nb-on in flight: %+v; want its 2 intents, oldest first", got["nb-on"].InFlight)
	}
}

// BenchmarkJobStates: the leader's catch-up check over 2000 jobs, one
// Job read per job against one JobStates read.
func BenchmarkJobStates(b *testing.B) {
	srv := etcdtest.Start(b)
	cli := etcdtest.Client(b, srv.Endpoint())
	l, err := audit.Open(filepath.Join(b.TempDir(), "a.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	s, err := etcdstore.Open(etcdstore.Options{Client: cli, Prefix: "/bench/", Node: "a", TTL: ttl, Journal: l, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	names := make([]string, 2000)
	for i := range names {
		names[i] = fmt.Sprintf("job-%04d", i)
	}
	if err := s.Sync(nil, names, t0); err != nil {
		b.Fatal(err)
	}
	b.Run("per-job", func(b *testing.B) {
		for b.Loop() {
			for _, n := range names {
				_ = s.Job(n)
			}
		}
	})
	b.Run("one-read", func(b *testing.B) {
		for b.Loop() {
			if m, err := s.JobStates(); err != nil || len(m) != len(names) {
				b.Fatalf("JobStates: %d jobs, %v", len(m), err)
			}
		}
	})
}

// TestSettleUncertainClaim: a claim whose transaction etcd committed but
// whose answer was lost (etcd restarting) fails as far as the claimer
// knows, so no vendor is called; once the job's next fire is due the
// claimer gives the fire up with SettleUnclaimed. The fire must then be
// audited missed, once: before, its intent stayed claimed by the live
// claimer's lease, Pending for nobody, and the fire was never settled.
func TestSettleUncertainClaim(t *testing.T) {
	srv := etcdtest.Start(t)
	var lose atomic.Bool
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{srv.Endpoint()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(
			func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				err := invoker(ctx, method, req, reply, cc, opts...)
				if tr, ok := req.(*pb.TxnRequest); ok && err == nil && len(tr.Compare) > 0 && lose.CompareAndSwap(true, false) {
					return errors.New("test: the answer of a committed transaction was lost")
				}
				return err
			})},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	l, err := audit.Open(filepath.Join(t.TempDir(), "a.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	a, err := etcdstore.Open(etcdstore.Options{Client: cli, Prefix: "/uncertain/", Node: "a", TTL: ttl, Journal: l, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b := openReplica(t, "b", srv.Endpoint(), "/uncertain/")

	cl := intent("nb-off", t0, true)
	lose.Store(true)
	if ok, err := a.Claim(cl); ok || err == nil {
		t.Fatalf("a: Claim with its answer lost = %v, %v; want an error", ok, err)
	}
	if lose.Load() {
		t.Fatal("the claim's transaction was never sent")
	}
	if n := countKeys(t, b.cli, "/uncertain/intents/"); n != 1 {
		t.Fatalf("%d intents in etcd; want the one the lost answer committed", n)
	}
	missed := []audit.Record{{Time: t0, Event: audit.EventMissed, Job: cl.Job, RunID: cl.Intent.RunID, Scheduled: t0,
		Target: "nb-1", Outcome: audit.OutcomeMissed, Detail: "etcd did not answer"}}
	if mine, err := b.s.SettleUnclaimed(cl.Intent.RunID, t0, missed); mine || err != nil {
		t.Errorf("b: SettleUnclaimed of a's claim = %v, %v; want false: it is a's", mine, err)
	}
	if mine, err := a.SettleUnclaimed(cl.Intent.RunID, t0, missed); !mine || err != nil {
		t.Fatalf("a: SettleUnclaimed of its own uncertain claim = %v, %v; want true", mine, err)
	}
	for _, prefix := range []string{"/uncertain/intents/", "/uncertain/claims/"} {
		if n := countKeys(t, b.cli, prefix); n != 0 {
			t.Errorf("%d keys under %s after the fire was settled; want none", n, prefix)
		}
	}
	if n := countKeys(t, b.cli, "/uncertain/done/"); n != 1 {
		t.Errorf("%d done markers; want 1", n)
	}
	if mine, err := a.SettleUnclaimed(cl.Intent.RunID, t0, missed); mine || err != nil {
		t.Errorf("a: a second SettleUnclaimed = %v, %v; want false (settled once)", mine, err)
	}
	recs, err := audit.ReadAll(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Event == audit.EventMissed {
			n++
		}
	}
	if n != 1 {
		t.Errorf("a's log has %d missed records; want 1", n)
	}
}
