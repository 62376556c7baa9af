package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
)

// TestVerifyNotebookTakesSeveralPolls: a ModelArts notebook that stays
// STARTING for a while is polled until RUNNING and audited verified, on
// both ModelArts APIs.
func TestVerifyNotebookTakesSeveralPolls(t *testing.T) {
	for _, api := range []string{"demanager", "notebooks"} {
		t.Run(api, func(t *testing.T) {
			e := startCloud(t, emulator.Options{TransitionDelay: 700 * time.Millisecond})
			p := e.plan(t, e.accounts(api, "", "otc"), job("on", "otc", "modelarts.notebook.start", true, "nb-1"))
			r := e.runner(t, p)
			out := r.fire(t, "on")
			to := out.Targets[0]
			if to.Outcome != audit.OutcomeSuccess || to.Verify != audit.OutcomeVerified || to.State != "RUNNING" {
				t.Fatalf("outcome %q verify %q state %q (err %v); want success, verified, RUNNING", to.Outcome, to.Verify, to.State, to.Err)
			}
			if n := e.requests("modelarts.notebook.get", "nb-1"); n < 3 {
				t.Errorf("status reads = %d; want several (the notebook stays STARTING for 700ms)", n)
			}
			recs := r.records(t, audit.EventVerify, "on", "nb-1")
			if len(recs) != 1 || recs[0].Outcome != audit.OutcomeVerified || !strings.Contains(recs[0].Detail, "state RUNNING after") {
				t.Fatalf("verify records %+v; want one verified", recs)
			}
			if got := e.cloud.State("modelarts.notebook.start", "nb-1"); got != "RUNNING" {
				t.Errorf("emulator state %q; want RUNNING", got)
			}
		})
	}
}

// TestVerifyNotebookFailsToStart: a notebook that lands in START_FAILED is
// verify_failed with that state, and the fire counts it as failed.
func TestVerifyNotebookFailsToStart(t *testing.T) {
	e := startCloud(t, emulator.Options{TransitionDelay: 300 * time.Millisecond})
	e.cloud.SetState(emulator.KindOTCNotebook, "nb-bad", "START_FAILED")
	p := e.plan(t, e.accounts("notebooks", "", "otc"), job("on", "otc", "modelarts.notebook.start", true, "nb-bad", "nb-good"))
	r := e.runner(t, p)
	out := r.fire(t, "on")
	failed := out.Failed()
	if len(failed) != 1 || failed[0].Target != "nb-bad" || failed[0].Outcome != audit.OutcomeVerifyFailed {
		t.Fatalf("Failed() = %+v; want only nb-bad, verify_failed", failed)
	}
	if !strings.Contains(failed[0].Err.Error(), "START_FAILED") {
		t.Errorf("error %v; want it to name START_FAILED", failed[0].Err)
	}
	bad := r.records(t, audit.EventVerify, "on", "nb-bad")
	if len(bad) != 1 || bad[0].Outcome != audit.OutcomeVerifyFailed || !strings.Contains(bad[0].Detail, "state START_FAILED (want RUNNING)") {
		t.Fatalf("nb-bad verify records %+v; want one verify_failed naming START_FAILED", bad)
	}
	// The action itself was accepted: its attempt record says success.
	if att := r.records(t, audit.EventAttempt, "on", "nb-bad"); len(att) != 1 || att[0].Outcome != audit.OutcomeSuccess {
		t.Errorf("nb-bad attempt records %+v; want one success", att)
	}
	if good := r.records(t, audit.EventVerify, "on", "nb-good"); len(good) != 1 || good[0].Outcome != audit.OutcomeVerified {
		t.Errorf("nb-good verify records %+v; want verified", good)
	}
}

// TestVerifyEveryAction runs each catalogue action with verify: true
// against the emulated cloud and checks the verify outcome.
func TestVerifyEveryAction(t *testing.T) {
	e := startCloud(t, emulator.Options{TransitionDelay: 250 * time.Millisecond})
	e.cloud.SetState(emulator.KindOTCNotebook, "nb-run", "RUNNING")
	e.cloud.SetState(emulator.KindDFApp, "app-stopped", "STOPPED")
	e.cloud.SetState(emulator.KindSCNetNotebook, "1821067171420946434", "Running")
	tests := []struct {
		account, action, target string
		want, state             string
	}{
		{"ncp", "dataforest.notebook.restart", "7kHeVWhiRsxdRl0nXz04ri", audit.OutcomeVerified, "RUNNING"},
		{"ncp", "dataforest.aiapp.kill", "cMmEw7HCjVQdcHh3JVOptL", audit.OutcomeUnverified, ""},
		{"ncp", "dataforest.app.start", "app-stopped", audit.OutcomeVerified, "RUNNING"},
		{"ncp", "dataforest.app.stop", "app-running", audit.OutcomeVerified, "STOPPED"},
		{"ncp", "cdss.cmak.restart", "1484848", audit.OutcomeVerified, "green"},
		{"ncp", "cdss.kafka.restart", "1484849", audit.OutcomeVerified, "green"},
		{"ncp", "cdss.cluster.restart", "1484850", audit.OutcomeVerified, "cmak=green broker=green zookeeper=green"},
		{"scnet", "scnet.notebook.start", "1821067171420946435", audit.OutcomeVerified, "Running"},
		{"scnet", "scnet.notebook.stop", "1821067171420946434", audit.OutcomeVerified, "Terminated"},
		{"otc", "modelarts.notebook.start", "nb-stopped", audit.OutcomeVerified, "RUNNING"},
		{"otc", "modelarts.notebook.stop", "nb-run", audit.OutcomeVerified, "STOPPED"},
		{"otc-iam", "modelarts.notebook.start", "nb-iam", audit.OutcomeVerified, "RUNNING"},
	}
	t.Cleanup(func() { checkAfterEveryAction(t, e) })
	var jobs strings.Builder
	for i, tc := range tests {
		jobs.WriteString(job(jobName(i), tc.account, tc.action, true, `"`+tc.target+`"`))
	}
	p := e.plan(t, e.accounts("demanager", "", "ncp", "scnet", "otc", "otc-iam"), jobs.String())
	r := e.runner(t, p)
	for i, tc := range tests {
		t.Run(tc.action, func(t *testing.T) {
			t.Parallel()
			out := r.fire(t, jobName(i))
			to := out.Targets[0]
			if to.Outcome != audit.OutcomeSuccess || to.Verify != tc.want || to.State != tc.state {
				t.Fatalf("outcome %q verify %q state %q (err %v); want success, %s, %q", to.Outcome, to.Verify, to.State, to.Err, tc.want, tc.state)
			}
			if recs := r.records(t, audit.EventVerify, jobName(i), tc.target); len(recs) != 1 || recs[0].Outcome != tc.want {
				t.Errorf("verify records %+v; want one %s", recs, tc.want)
			}
		})
	}
}

func checkAfterEveryAction(t *testing.T, e *cloudEnv) {
	// CDSS: the restart's judge needs the status before the restart.
	if n := e.requests("cdss.cluster.getClusterStatus", "1484848"); n < 2 {
		t.Errorf("cmak status reads = %d; want the pre-restart read and at least one poll", n)
	}
}

// TestVerifyOff: with verify: false (the default) there is no verify
// record and no status read.
func TestVerifyOff(t *testing.T) {
	e := startCloud(t, emulator.Options{TransitionDelay: 250 * time.Millisecond})
	// Verification off: no verify record, no status read.
	p2 := e.plan(t, e.accounts("demanager", "", "otc"), job("quiet", "otc", "modelarts.notebook.start", false, "nb-quiet"))
	r2 := e.runner(t, p2)
	if out := r2.fire(t, "quiet"); out.Targets[0].Verify != "" || len(r2.records(t, audit.EventVerify, "quiet", "")) != 0 ||
		e.requests("modelarts.notebook.get", "nb-quiet") != 0 {
		t.Errorf("verify: false still verified: %+v", out.Targets[0])
	}
}

func jobName(i int) string { return "job-" + string(rune('a'+i)) }

// TestRestartTimeoutIsNotReissued: a restart whose attempt times out is
// never re-issued blindly; the status read decides.
func TestRestartTimeoutIsNotReissued(t *testing.T) {
	t.Run("status cannot tell: unknown", func(t *testing.T) {
		e := startCloud(t, emulator.Options{TransitionDelay: 300 * time.Millisecond})
		// The emulator holds the reply past the attempt timeout (2s); the
		// client gives up, so the restart never happens.
		e.cloud.Inject(emulator.Fault{Action: "dataforest.notebook.restart", Kind: emulator.FaultDelay, Delay: 5 * time.Second, Times: 1})
		p := e.plan(t, e.accounts("demanager", "", "ncp"), job("restart", "ncp", "dataforest.notebook.restart", false, "nb-1"))
		r := e.runner(t, p)
		j := r.fastPolls("restart")
		j.Timeout = 300 * time.Millisecond
		out := r.ex.Fire(t.Context(), j, time.Now(), time.Time{})
		to := out.Targets[0]
		if to.Outcome != audit.OutcomeUnknown || len(out.Failed()) != 1 {
			t.Fatalf("outcome %q, Failed() %v; want unknown, listed", to.Outcome, out.Failed())
		}
		if n := e.requests("dataforest.notebook.restart", "nb-1"); n != 1 {
			t.Errorf("restart requests = %d; want 1 (never re-issued)", n)
		}
		if n := e.requests("dataforest.notebook.getDetail", "nb-1"); n == 0 {
			t.Errorf("no status read before deciding")
		}
		att := r.records(t, audit.EventAttempt, "restart", "nb-1")
		if len(att) != 1 || att[0].Outcome != audit.OutcomeUnknown || !strings.Contains(att[0].Detail, "status RUNNING cannot tell") {
			t.Fatalf("attempt records %+v; want one unknown naming the status", att)
		}
	})
	t.Run("status shows it in progress: success", func(t *testing.T) {
		for _, tc := range []struct{ action, target, read string }{
			{"dataforest.notebook.restart", "nb-2", "dataforest.notebook.getDetail"},
			{"cdss.cmak.restart", "1484848", "cdss.cluster.getClusterStatus"},
		} {
			t.Run(tc.action, func(t *testing.T) {
				e := startCloud(t, emulator.Options{TransitionDelay: 3 * time.Second})
				p := e.plan(t, e.accounts("demanager", "", "ncp"), job("restart", "ncp", tc.action, false, `"`+tc.target+`"`))
				r := e.runner(t, p)
				j := r.fastPolls("restart")
				j.Do = lostReply(j.Do)
				j.Timeout = 300 * time.Millisecond
				out := r.ex.Fire(t.Context(), j, time.Now(), time.Time{})
				if to := out.Targets[0]; to.Outcome != audit.OutcomeSuccess || to.Attempts != 1 {
					t.Fatalf("outcome %q attempts %d (err %v); want success after 1 attempt", to.Outcome, to.Attempts, to.Err)
				}
				if n := e.requests(tc.action, tc.target); n != 1 {
					t.Errorf("restart requests = %d; want 1", n)
				}
				att := r.records(t, audit.EventAttempt, "restart", tc.target)
				if len(att) != 1 || !strings.Contains(att[0].Detail, "in progress; not re-issued") {
					t.Fatalf("attempt records %+v; want the detail to say the restart is in progress", att)
				}
			})
		}
	})
}
