package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/engine"
	"github.com/cloudcron/scheduler/internal/executor"
	"github.com/cloudcron/scheduler/internal/state/etcdstore/etcdtest"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
)

// replicaProc is one replica of the cluster test: the real binary with its
// own directory, config and audit log.
type replicaProc struct {
	node, dir, cfg, audit string
	p                     *daemonProc
	killed                time.Time
}

// TestClusterThreeReplicas runs three real daemons against one real etcd
// and one emulated cloud that outlive them: kills the claimer of a burst
// of fires with SIGKILL while its calls are in flight, cuts another off
// etcd and lets it back, restarts etcd itself, and restarts the killed
// replica. From the three audit logs and the cloud's request log: every
// fire was settled once (run by one replica, or recovered by the delivery
// rule after its claimer died, or audited missed when no replica could
// claim it), a restart reached the cloud at most once, a start or stop
// once per attempt plus once per claim cut short, and every
// log verifies, every record naming its node.
func TestClusterThreeReplicas(t *testing.T) {
	bin := binary(t)
	srv := etcdtest.Start(t)
	cloud := emulator.New(emulator.Options{TransitionDelay: -1})
	cloud.Inject(emulator.Fault{Kind: emulator.FaultDelay, Delay: 150 * time.Millisecond})
	if err := cloud.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close() })
	creds := cloud.Credentials()
	env := append(os.Environ(),
		"KILL_OTC_AK="+creds.OTCAccessKey, "KILL_OTC_SK="+creds.OTCSecretKey,
		"KILL_NCP_AK="+creds.NCPAccessKey, "KILL_NCP_SK="+creds.NCPSecretKey)
	px := etcdtest.NewProxy(t, strings.TrimPrefix(srv.Endpoint(), "http://"))

	var rs []*replicaProc
	for i, node := range []string{"n1", "n2", "n3"} {
		ep := srv.Endpoint()
		if i == 2 {
			ep = px.Endpoint()
		}
		body := strings.Replace(killConfig(cloud.URL(), creds.OTCProjectID), "accounts:\n",
			fmt.Sprintf("cluster:\n  node: %s\n  etcd: {endpoints: [%s], prefix: /cluster-test/, lease_ttl: 2s}\naccounts:\n", node, ep), 1)
		cfg, auditPath := writeConfig(t, body)
		rs = append(rs, &replicaProc{node: node, dir: filepath.Dir(cfg), cfg: cfg, audit: auditPath})
	}
	logs := func() []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.audit)
		}
		return out
	}
	start := func(r *replicaProc) {
		p := &daemonProc{stderr: &syncBuffer{}, done: make(chan error, 1)}
		p.cmd = exec.Command(bin, "run", "--config", r.cfg)
		p.cmd.Env = env
		p.cmd.Stderr, p.cmd.Stdout = p.stderr, p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		r.p = p
		t.Cleanup(func() {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		})
		waitFor(t, 30*time.Second, r.node+" to start", func() bool { return strings.Contains(p.stderr.String(), "scheduler started") })
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range rs {
				if r.p != nil {
					var keep []string
					for _, line := range strings.Split(r.p.stderr.String(), "\n") {
						if !strings.Contains(line, `"level":"info"`) || strings.Contains(line, "cluster") {
							keep = append(keep, line)
						}
					}
					t.Logf("%s (warnings and errors):\n%s", r.node, strings.Join(keep, "\n"))
				}
			}
		}
	})
	began := time.Now()
	for _, r := range rs {
		start(r)
	}
	first := time.Now().Truncate(time.Second).Add(time.Second) // every fire from here on is checked
	waitFor(t, 20*time.Second, "the cluster to run fires", func() bool { return len(clusterSettled(logs())) >= 5 })

	// Kill -9 the replica with a call in flight, right after a burst's
	// second (every job fires at even seconds).
	var victim *replicaProc
	for try := 0; victim == nil && try < 10; try++ {
		next := time.Now().Truncate(2 * time.Second).Add(2 * time.Second)
		time.Sleep(time.Until(next) + 60*time.Millisecond)
		for _, r := range rs {
			if inFlight(r.audit) {
				victim = r
				break
			}
		}
	}
	if victim == nil {
		t.Fatal("no replica had a call in flight after 10 bursts")
	}
	if err := victim.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.p.done
	victim.killed = time.Now()
	t.Logf("killed %s with calls in flight at %s", victim.node, ts(victim.killed))
	// A survivor settles the victim's fires within the lease TTL and a
	// second (the TTL is 2s; a little more for the survivor's own
	// recovery round and a loaded machine).
	waitFor(t, 10*time.Second, "the survivors to settle the killed replica's fires", func() bool {
		return !inFlightAnywhere(victim.audit, logs())
	})
	t.Logf("the killed replica's fires were settled %v after the kill", time.Since(victim.killed).Round(time.Millisecond))

	// Cut n3 off etcd (unless it is the victim: then only n1 and n2 run,
	// and n3 is the one restarted below), and let it back.
	cutOff := rs[2]
	if victim != cutOff {
		px.Cut()
		time.Sleep(4 * time.Second) // two lease TTLs cut off, across several fires
		px.Restore()
		waitFor(t, 20*time.Second, cutOff.node+" to claim again", func() bool {
			return strings.Contains(cutOff.p.stderr.String(), "etcd session back")
		})
	}

	// Restart etcd itself.
	srv.Stop(t)
	time.Sleep(1500 * time.Millisecond) // fires come due while etcd is down
	srv.Restart(t)

	// The killed replica comes back.
	start(victim)
	end := time.Now().Add(3 * time.Second).Truncate(time.Second)
	var unsettled []string
	t.Cleanup(func() {
		if t.Failed() && len(unsettled) > 0 {
			t.Logf("unsettled: %v", unsettled)
		}
	})
	waitFor(t, 40*time.Second, "every fire up to "+ts(end)+" to settle", func() bool {
		s := clusterSettled(logs())
		unsettled = nil
		for _, j := range killJobs {
			spec, _ := engine.Parse(j.schedule, time.UTC, time.Time{})
			for at := spec.Next(first); !at.After(end); at = spec.Next(at) {
				if id := executor.RunID(j.name, at); !s[id] {
					unsettled = append(unsettled, id)
				}
			}
		}
		return len(unsettled) == 0
	})
	for _, r := range rs {
		if err := r.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := <-r.p.done; err != nil {
			t.Errorf("%s: exit after SIGTERM: %v", r.node, err)
		}
	}

	// The records of all three logs, and the cloud's requests.
	type fire struct {
		run, finals, recovers, missed, attempts, abandons []audit.Record
	}
	fires := map[string]*fire{}
	get := func(id string) *fire {
		if fires[id] == nil {
			fires[id] = &fire{}
		}
		return fires[id]
	}
	var runs []audit.Record
	unknown := 0 // restarts cut off mid-call by their next fire, audited unknown by the replica that ran them
	for _, r := range rs {
		recs := readAudit(t, r.audit)
		for _, rec := range recs {
			if rec.Node != r.node {
				t.Fatalf("%s's log holds a record of node %q", r.node, rec.Node)
			}
			if rec.RunID == "" {
				continue
			}
			f := get(rec.RunID)
			switch rec.Event {
			case audit.EventRun:
				f.run = append(f.run, rec)
				runs = append(runs, rec)
			case audit.EventAttempt:
				f.attempts = append(f.attempts, rec)
				if finalAttempt(rec) {
					f.finals = append(f.finals, rec)
				}
				if rec.Outcome == audit.OutcomeUnknown {
					unknown++
				}
			case audit.EventRecover:
				if rec.Outcome == audit.OutcomeMissed {
					f.missed = append(f.missed, rec)
				} else {
					f.recovers = append(f.recovers, rec)
				}
			case audit.EventMissed:
				f.missed = append(f.missed, rec)
			case audit.EventAbandon:
				f.abandons = append(f.abandons, rec)
			}
		}
		if code, out, errOut := runCLI(t, "audit", "verify", "--path", r.audit); code != exitOK {
			t.Errorf("%s: scheduler audit verify: exit %d\n%s%s", r.node, code, out, errOut)
		}
	}
	sort.Slice(runs, func(a, b int) bool { return runs[a].Time.Before(runs[b].Time) })

	// Each fire settled once, by one replica.
	idempotent := map[string]bool{}
	for _, j := range killJobs {
		idempotent[j.name] = j.idempotent
	}
	var checked, executed, recovered, missed, abandoned, reissued int
	for _, j := range killJobs {
		spec, _ := engine.Parse(j.schedule, time.UTC, time.Time{})
		for at := spec.Next(first); !at.After(end); at = spec.Next(at) {
			checked++
			id := executor.RunID(j.name, at)
			f := fires[id]
			switch {
			case f == nil:
				t.Errorf("fire %s has no record in any replica's log: lost", id)
				continue
			case len(f.finals) > 1 && !(j.idempotent && len(f.run) > len(f.finals)-1 && len(f.run) > 1):
				// Two outcomes only for a start or stop re-issued because
				// its claimer lost etcd (or died) before recording its
				// outcome there: the delivery rule.
				t.Errorf("fire %s has %d final records: %s", id, len(f.finals), describe(f.finals))
			case len(f.finals) > 1:
				executed++
			case len(f.finals) == 1:
				executed++
			case len(f.recovers) > 0:
				recovered++
				if j.idempotent {
					t.Errorf("idempotent fire %s was audited unknown rather than re-issued: %s", id, describe(f.recovers))
				}
			case len(f.missed) > 0:
				missed++
			case len(f.abandons) > 0:
				// Claimed late, when etcd answered again, with no time
				// left before the job's next fire: audited as a failure.
				abandoned++
			default:
				t.Errorf("fire %s never settled: %s", id, describe(append(f.run, f.attempts...)))
			}
			for _, r := range f.finals {
				if j.idempotent && r.Outcome == audit.OutcomeUnknown {
					t.Errorf("idempotent fire %s has an attempt audited unknown: %s", id, describe(f.finals))
				}
			}
			if len(f.recovers) > 1 {
				t.Errorf("fire %s was recovered %d times: %s", id, len(f.recovers), describe(f.recovers))
			}
			if len(f.run) > 1 {
				reissued++
			}
			if !j.idempotent && len(f.attempts) > 1 {
				t.Errorf("restart %s attempted %d times: %s", id, len(f.attempts), describe(f.attempts))
			}
		}
	}
	// Each vendor request belongs to the fire whose run record (in any
	// log) is the newest before it; a restart reached the cloud at most
	// once, a start or stop at most once per run record.
	jobOf := map[string]string{}
	for _, j := range killJobs {
		jobOf[j.action+" "+j.target] = j.name
	}
	perRun := map[string]int{}
	for _, q := range cloud.Requests() {
		job, ok := jobOf[q.Action+" "+q.Target]
		if !ok {
			continue
		}
		i := sort.Search(len(runs), func(i int) bool { return runs[i].Time.After(q.Time) }) - 1
		for i >= 0 && runs[i].Job != job {
			i--
		}
		if i < 0 {
			t.Errorf("%s request on %s at %s has no run record before it: a call without a claim", q.Action, q.Target, ts(q.Time))
			continue
		}
		perRun[runs[i].RunID]++
	}
	for id, n := range perRun {
		job := strings.SplitN(id, "@", 2)[0]
		f := fires[id]
		switch {
		case !idempotent[job] && n > 1:
			t.Errorf("restart %s reached the cloud %d times; want at most once", id, n)
		case idempotent[job] && n > len(f.attempts)+max(0, len(f.run)-len(f.finals)):
			// One request per attempt record, plus one per claim whose
			// claimer was killed or cut off before it recorded the call.
			t.Errorf("%s reached the cloud %d times with %d attempt records and %d run records", id, n, len(f.attempts), len(f.run))
		}
	}
	if executed < checked/2 {
		t.Errorf("only %d of %d fires executed", executed, checked)
	}
	t.Logf("cluster test: %v, fires checked %d, executed %d (cut off unknown %d), recovered unknown %d, missed %d, abandoned %d, re-issued %d",
		time.Since(began).Round(time.Millisecond), checked, executed, unknown, recovered, missed, abandoned, reissued)
}

// finalAttempt reports whether r is an attempt that ends its target: a
// success, a failure, or a restart cut off mid-call (by the job's next
// fire: a fire claimed late, after etcd came back, can have little time
// left) whose outcome is unknown and which is never re-issued.
func finalAttempt(r audit.Record) bool {
	return r.Event == audit.EventAttempt &&
		(r.Outcome == audit.OutcomeSuccess || r.Outcome == audit.OutcomeFailure || r.Outcome == audit.OutcomeUnknown)
}

// clusterSettled returns the run ids with an outcome in any of the logs.
func clusterSettled(paths []string) map[string]bool {
	s := map[string]bool{}
	for _, p := range paths {
		recs, _ := audit.ReadAll(p)
		for _, r := range recs {
			switch {
			case finalAttempt(r),
				r.Event == audit.EventRecover, r.Event == audit.EventMissed, r.Event == audit.EventAbandon:
				s[r.RunID] = true
			}
		}
	}
	return s
}

// inFlight reports whether the log has a run record without a final
// record on its target: a call in flight.
func inFlight(path string) bool {
	recs, _ := audit.ReadAll(path)
	open := map[string]bool{}
	for _, r := range recs {
		key := r.RunID + " " + r.Target
		switch {
		case r.Event == audit.EventRun:
			open[key] = true
		case r.Event == audit.EventAttempt && r.Outcome != audit.OutcomeRetry, r.Event == audit.EventAbandon:
			delete(open, key)
		}
	}
	return len(open) > 0
}

// inFlightAnywhere reports whether a fire left in flight in the log at
// path has no outcome in any of the logs yet.
func inFlightAnywhere(path string, all []string) bool {
	recs, _ := audit.ReadAll(path)
	settled := clusterSettled(all)
	open := map[string]bool{}
	for _, r := range recs {
		switch {
		case r.Event == audit.EventRun:
			open[r.RunID] = true
		case r.Event == audit.EventAttempt && r.Outcome != audit.OutcomeRetry:
			delete(open, r.RunID)
		}
	}
	for id := range open {
		if !settled[id] {
			return true
		}
	}
	return false
}
