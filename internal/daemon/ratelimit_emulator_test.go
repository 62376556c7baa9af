package daemon

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/executor"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
)

// fireAll fires jobs concurrently, each once its wait returns (nil: at
// once).
func fireAll(t *testing.T, r *runner, waits map[string]func()) map[string]executor.Outcome {
	t.Helper()
	var mu sync.Mutex
	out := map[string]executor.Outcome{}
	var wg sync.WaitGroup
	for name, wait := range waits {
		j := r.fastPolls(name)
		wg.Go(func() {
			if wait != nil {
				wait()
			}
			o := r.ex.Fire(t.Context(), j, time.Now(), time.Time{})
			mu.Lock()
			out[name] = o
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// TestRateLimitAcrossJobs: two jobs of one account share its rate_limit.
func TestRateLimitAcrossJobs(t *testing.T) {
	e := startCloud(t, emulator.Options{TransitionDelay: -1})
	p := e.plan(t, e.accounts("demanager", "rate_limit: {per_second: 10, burst: 1}", "otc"),
		job("a", "otc", "modelarts.notebook.start", false, "a1", "a2", "a3")+
			job("b", "otc", "modelarts.notebook.start", false, "b1", "b2", "b3"))
	r := e.runner(t, p)
	outs := fireAll(t, r, map[string]func(){"a": nil, "b": nil})
	for name, o := range outs {
		if f := o.Failed(); len(f) != 0 {
			t.Fatalf("job %s failed: %+v", name, f)
		}
	}
	var at []time.Time
	for _, q := range e.cloud.Requests() {
		if q.Action == "modelarts.notebook.start" {
			at = append(at, q.Time)
		}
	}
	if len(at) != 6 {
		t.Fatalf("start requests = %d; want 6", len(at))
	}
	// 6 requests at 10/s with burst 1: at least 5 gaps of 100ms.
	if span := at[5].Sub(at[0]); span < 450*time.Millisecond {
		t.Errorf("6 requests of two jobs within %s; want >= 500ms at 10/s", span)
	}
}

// TestThrottleStormSlowsTheAccount: 429s (with Retry-After) on one job's
// requests pause the other job of the same account too, and every target
// still succeeds through retries.
func TestThrottleStormSlowsTheAccount(t *testing.T) {
	e := startCloud(t, emulator.Options{TransitionDelay: -1})
	e.cloud.Inject(emulator.Fault{Target: "a1", Action: "modelarts.notebook.start", Kind: emulator.FaultThrottle, RetryAfter: time.Second, Times: 2})
	p := e.plan(t, e.accounts("demanager", "rate_limit: {per_second: 50, burst: 5}", "otc"),
		job("a", "otc", "modelarts.notebook.start", false, "a1")+
			job("b", "otc", "modelarts.notebook.start", false, "b1", "b2", "b3"))
	r := e.runner(t, p)
	// b fires once the account's limiter took a's first 429.
	lim := p.accounts["otc"].limiter
	throttled := func() {
		deadline := time.Now().Add(10 * time.Second)
		for lim.Stats().Throttled == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	outs := fireAll(t, r, map[string]func(){"a": nil, "b": throttled})
	for name, o := range outs {
		if f := o.Failed(); len(f) != 0 {
			t.Fatalf("job %s failed: %+v", name, f)
		}
	}
	reqs := e.cloud.Requests()
	var first429 time.Time
	for _, q := range reqs {
		if q.Status == 429 {
			first429 = q.Time
			break
		}
	}
	if first429.IsZero() {
		t.Fatal("no 429 in the request log")
	}
	// Nothing of the account reached the cloud during the Retry-After of
	// the first 429: b's requests waited, although none of them was throttled.
	for _, q := range reqs {
		if d := q.Time.Sub(first429); d > 20*time.Millisecond && d < 950*time.Millisecond {
			t.Errorf("%s %s reached the cloud %s after the 429; want the account paused for 1s", q.Action, q.Target, d)
		}
	}
	var bFirst time.Time
	for _, q := range reqs {
		if q.Target == "b1" || q.Target == "b2" || q.Target == "b3" {
			bFirst = q.Time
			break
		}
	}
	if bFirst.Sub(first429) < 950*time.Millisecond {
		t.Errorf("job b's first request %s after a's 429; want >= 1s", bFirst.Sub(first429))
	}
	st := p.accounts["otc"].limiter.Stats()
	if st.Throttled != 2 || st.PerSecond >= 50 {
		t.Errorf("limiter stats %+v; want 2 throttles and a lowered rate", st)
	}
	// a1: two 429s retried, then success.
	if att := r.records(t, audit.EventAttempt, "a", "a1"); len(att) != 3 || att[2].Outcome != audit.OutcomeSuccess || att[0].HTTPStatus != 429 {
		t.Errorf("a1 attempts %+v; want 429, 429, success", att)
	}
}

// TestRateLimitCostsNoAttempt is issue 10's case through real clients:
// targets of one account with rate_limit {per_second: 4, burst: 1} each
// succeed with one attempt that reached the cloud, however long they
// queued for their token (the last one longer than the job's 2s timeout).
// SCNet's AK/SK token fetch, a request the action makes on its own, waits
// for its own token in the transport.
func TestRateLimitCostsNoAttempt(t *testing.T) {
	e := startCloud(t, emulator.Options{TransitionDelay: -1})
	targets := make([]string, 14)
	for i := range targets {
		targets[i] = fmt.Sprintf("nb-%02d", i)
	}
	p := e.plan(t, e.accounts("", "rate_limit: {per_second: 4, burst: 1}", "scnet"),
		job("burst", "scnet", "scnet.notebook.start", false, targets...))
	r := e.runner(t, p)
	out := r.fire(t, "burst")
	if f := out.Failed(); len(f) != 0 {
		t.Fatalf("%d targets failed, first %s: %v", len(f), f[0].Target, f[0].Err)
	}
	att := r.records(t, audit.EventAttempt, "burst", "")
	if len(att) != len(targets) {
		for _, a := range att {
			t.Logf("%s #%d %s %d %q %q", a.Target, a.Attempt, a.Outcome, a.HTTPStatus, a.Error, a.Detail)
		}
		t.Fatalf("attempt records = %d; want %d, one per target", len(att), len(targets))
	}
	queued := 0
	for _, a := range att {
		if a.HTTPStatus != 200 || a.Outcome != audit.OutcomeSuccess {
			t.Errorf("attempt %s: http_status %d outcome %s (%s); want 200 success", a.Target, a.HTTPStatus, a.Outcome, a.Error)
		}
		if strings.Contains(a.Detail, "queued") && strings.Contains(a.Detail, "rate 4/s") {
			queued++
		}
	}
	if queued < len(targets)-2 {
		t.Errorf("%d attempt records say they queued for the rate; want all but the first ones", queued)
	}
	var at []time.Time
	for _, q := range e.cloud.Requests() {
		at = append(at, q.Time)
	}
	if len(at) != len(targets)+1 {
		t.Fatalf("the cloud saw %d requests; want %d (a token fetch and one start per target)", len(at), len(targets)+1)
	}
	// 15 requests at 4/s, burst 1: at least 14 gaps of 250ms.
	if span := at[len(at)-1].Sub(at[0]); span < 14*250*time.Millisecond-50*time.Millisecond {
		t.Errorf("%d requests within %s; want >= 3.5s at 4/s", len(at), span)
	}
}
