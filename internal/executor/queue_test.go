package executor

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/ratelimit"
	"github.com/cloudcron/scheduler/internal/vendors"
)

// memCloud is a vendor behind a real ratelimit transport, in memory: its
// RoundTripper answers each request itself after latency, so it runs in a
// synctest bubble. It records every request.
type memCloud struct {
	latency time.Duration
	// answer, if set, gives the status and Retry-After (seconds, "" for
	// none) of the n-th request (from 0) for a target.
	answer func(target string, n int) (status int, retryAfter string)

	mu   sync.Mutex
	reqs []request
	seen map[string]int
}

type request struct {
	target   string
	path     string
	at, done time.Time
	status   int
	timeout  time.Duration // left on the request's context when it arrived
}

func (c *memCloud) RoundTrip(req *http.Request) (*http.Response, error) {
	target := req.URL.Path[strings.LastIndexByte(req.URL.Path, '/')+1:]
	r := request{target: target, path: req.URL.Path, at: time.Now(), status: http.StatusOK}
	if dl, ok := req.Context().Deadline(); ok {
		r.timeout = dl.Sub(r.at)
	}
	c.mu.Lock()
	n := c.seen[req.URL.Path]
	if c.seen == nil {
		c.seen = map[string]int{}
	}
	c.seen[req.URL.Path]++
	c.mu.Unlock()
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}")), Request: req}
	if c.answer != nil {
		var ra string
		r.status, ra = c.answer(target, n)
		resp.StatusCode = r.status
		if ra != "" {
			resp.Header.Set("Retry-After", ra)
		}
	}
	if c.latency > 0 {
		t := time.NewTimer(c.latency)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		}
	}
	r.done = time.Now()
	c.mu.Lock()
	c.reqs = append(c.reqs, r)
	c.mu.Unlock()
	return resp, nil
}

func (c *memCloud) requests() []request {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(c.reqs)
	slices.SortFunc(out, func(a, b request) int { return a.at.Compare(b.at) })
	return out
}

// do returns an Action that posts /start/{target} through hc, as a vendor
// client does: a 429 or 5xx is a transient *vendors.Error with the
// answer's Retry-After.
func (c *memCloud) do(hc *http.Client, path string) Action {
	return func(ctx context.Context, target string) (vendors.Result, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://cloud.test/"+path+"/"+target, nil)
		if err != nil {
			return vendors.Result{}, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return vendors.Result{}, vendors.TransportError("test: "+path+" "+target, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return vendors.Result{}, &vendors.Error{
				Op: "test: " + path + " " + target, HTTPStatus: resp.StatusCode,
				Transient:  resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500,
				RetryAfter: vendors.ParseRetryAfter(resp.Header, time.Now()),
			}
		}
		return vendors.Result{HTTPStatus: resp.StatusCode}, nil
	}
}

// status returns a status read through hc that answers "RUNNING".
func (c *memCloud) status(hc *http.Client) func(ctx context.Context, target string) (string, error) {
	do := c.do(hc, "status")
	return func(ctx context.Context, target string) (string, error) {
		if _, err := do(ctx, target); err != nil {
			return "", err
		}
		return "RUNNING", nil
	}
}

// limitedHarness is a harness whose account "otc-dev" has lim, wrapped
// around cloud as the daemon wraps an account's transport.
func limitedHarness(t *testing.T, concurrency int, lim *ratelimit.Limiter, cloud *memCloud) (*harness, *http.Client) {
	t.Helper()
	h := &harness{aud: &memAuditor{}, logs: &logBuffer{}}
	h.exec = New(Options{
		Log: zerolog.New(h.logs), Audit: h.aud,
		Concurrency: func(string) int { return concurrency },
		Limiter:     func(string) *ratelimit.Limiter { return lim },
	})
	return h, &http.Client{Transport: lim.Wrap(cloud)}
}

func targetNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "nb" + strconv.Itoa(i+1)
	}
	return out
}

// TestRateLimitCostsNoAttempt is issue 10's case: 32 targets on one
// account with rate_limit {per_second: 4, burst: 1}. Every target
// succeeds with one attempt that reached the vendor; the waiting is done
// in the queue and shows in the attempt's detail.
func TestRateLimitCostsNoAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := &memCloud{latency: 50 * time.Millisecond}
		lim := ratelimit.New(ratelimit.Options{PerSecond: 4, Burst: 1})
		h, hc := limitedHarness(t, 0, lim, cloud)
		j := testJob(cloud.do(hc, "start"), targetNames(32)...)
		j.Timeout = 2 * time.Second
		start := time.Now()
		out := h.exec.Fire(t.Context(), j, sched, start.Add(time.Hour))
		if f := out.Failed(); len(f) != 0 {
			t.Fatalf("%d targets failed, first %s: %v", len(f), f[0].Target, f[0].Err)
		}
		attempts := h.aud.records(audit.EventAttempt, "")
		if len(attempts) != 32 {
			t.Fatalf("attempt records = %d; want 32, one per target", len(attempts))
		}
		queued := 0
		for _, r := range attempts {
			if r.HTTPStatus != 200 || r.Outcome != audit.OutcomeSuccess {
				t.Errorf("attempt %s: http_status %d outcome %s; want 200 success (every attempt reached the vendor)", r.Target, r.HTTPStatus, r.Outcome)
			}
			if r.DurationMS != 50 {
				t.Errorf("attempt %s took %dms; want 50 (the call, not the queue)", r.Target, r.DurationMS)
			}
			if strings.Contains(r.Detail, "queued") {
				queued++
				if !strings.Contains(r.Detail, "for account otc-dev (concurrency 8, rate 4/s)") {
					t.Errorf("attempt %s detail %q; want it to name the account's limits", r.Target, r.Detail)
				}
			}
		}
		if queued != 31 {
			t.Errorf("%d attempt records say they queued; want 31 (all but the first)", queued)
		}
		reqs := cloud.requests()
		for i := 1; i < len(reqs); i++ {
			if gap := reqs[i].at.Sub(reqs[i-1].at); gap != 250*time.Millisecond {
				t.Errorf("request %d came %s after the one before; want 250ms (4/s, paid once)", i+1, gap)
			}
		}
		if took := time.Since(start); took != 31*250*time.Millisecond+50*time.Millisecond {
			t.Errorf("fire took %s; want 7.8s", took)
		}
	})
}

// TestThrottlePausesTheAccountInTheQueue: a 429 with Retry-After pauses
// every other target of the account in the executor's queue; no request
// of the account reaches the vendor during the pause, every attempt made
// reaches it, and every target succeeds.
func TestThrottlePausesTheAccountInTheQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := &memCloud{latency: 100 * time.Millisecond, answer: func(target string, n int) (int, string) {
			if target == "nb1" && n == 0 {
				return http.StatusTooManyRequests, "3"
			}
			return http.StatusOK, ""
		}}
		lim := ratelimit.New(ratelimit.Options{PerSecond: 20, Burst: 1})
		h, hc := limitedHarness(t, 2, lim, cloud)
		j := testJob(cloud.do(hc, "start"), targetNames(8)...)
		j.Timeout = time.Second // shorter than the pause
		out := h.exec.Fire(t.Context(), j, sched, time.Now().Add(time.Hour))
		if f := out.Failed(); len(f) != 0 {
			t.Fatalf("%d targets failed, first %s: %v", len(f), f[0].Target, f[0].Err)
		}
		reqs := cloud.requests()
		var throttled request
		for _, r := range reqs {
			if r.status == http.StatusTooManyRequests {
				throttled = r
			}
		}
		if throttled.done.IsZero() {
			t.Fatal("no 429 among the requests")
		}
		pauseEnd := throttled.done.Add(3 * time.Second)
		for _, r := range reqs {
			if r.at.After(throttled.done) && r.at.Before(pauseEnd) {
				t.Errorf("request for %s arrived %s after the 429; want none during the 3s pause", r.target, r.at.Sub(throttled.done))
			}
		}
		for _, r := range h.aud.records(audit.EventAttempt, "") {
			if r.HTTPStatus == 0 {
				t.Errorf("attempt %d of %s has no http_status (%q); want every attempt to reach the vendor", r.Attempt, r.Target, r.Error)
			}
		}
		if got := outcomes(h.aud.records(audit.EventAttempt, "nb1")); got != "retry,success" {
			t.Errorf("nb1 attempts %s; want retry,success", got)
		}
		paused := 0
		for _, r := range h.aud.records(audit.EventAttempt, "") {
			if strings.Contains(r.Detail, "after HTTP 429") {
				paused++
			}
		}
		if paused == 0 {
			t.Error("no attempt record says it waited out the 429 pause")
		}
	})
}

// TestQueueWaitPastDeadlineAbandons: a target still queued at the job's
// next fire ends with an abandon record and no attempt.
func TestQueueWaitPastDeadlineAbandons(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, map[string]int{"otc-dev": 1})
		slow := func(ctx context.Context, target string) (vendors.Result, error) {
			tm := time.NewTimer(40 * time.Second)
			defer tm.Stop()
			select {
			case <-tm.C:
				return vendors.Result{HTTPStatus: 200}, nil
			case <-ctx.Done():
				return vendors.Result{}, ctx.Err()
			}
		}
		j := testJob(slow, "t1", "t2", "t3")
		j.Timeout = 0
		start := time.Now()
		out := h.exec.Fire(t.Context(), j, sched, start.Add(time.Minute))
		if took := time.Since(start); took != time.Minute {
			t.Errorf("fire took %s; want 1m (its deadline)", took)
		}
		if to := out.Targets[0]; to.Outcome != audit.OutcomeSuccess {
			t.Errorf("t1 = %s %v; want success", to.Outcome, to.Err)
		}
		if to := out.Targets[1]; to.Outcome != audit.OutcomeFailure || to.Attempts != 1 {
			t.Errorf("t2 = %s after %d attempts; want failure after 1 (cut at the next fire)", to.Outcome, to.Attempts)
		}
		to := out.Targets[2]
		if to.Outcome != audit.OutcomeFailure || to.Attempts != 0 || !errors.Is(to.Err, context.DeadlineExceeded) {
			t.Errorf("t3 = %s after %d attempts, %v; want failure after 0, wrapping DeadlineExceeded", to.Outcome, to.Attempts, to.Err)
		}
		if n := len(h.aud.records(audit.EventAttempt, "t3")); n != 0 {
			t.Errorf("t3 has %d attempt records; want none", n)
		}
		ab := h.aud.records(audit.EventAbandon, "t3")
		if len(ab) != 1 || ab[0].Attempt != 0 || ab[0].Outcome != audit.OutcomeFailure ||
			!strings.Contains(ab[0].Error, "no turn before the next fire: queued 1m0s for account otc-dev (concurrency 1, no rate limit)") {
			t.Errorf("t3 abandon records %+v; want one, attempt 0, saying it queued until the next fire", ab)
		}
	})
}

// TestPausePastDeadlineAbandonsAtOnce: a 429 whose Retry-After runs past
// the next fire ends the targets still queued at once, each with an
// abandon record and no attempt.
func TestPausePastDeadlineAbandonsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := &memCloud{answer: func(target string, n int) (int, string) {
			return http.StatusTooManyRequests, "240"
		}}
		lim := ratelimit.New(ratelimit.Options{PerSecond: 10, Burst: 1})
		h, hc := limitedHarness(t, 1, lim, cloud)
		j := testJob(cloud.do(hc, "start"), "t1", "t2", "t3")
		start := time.Now()
		out := h.exec.Fire(t.Context(), j, sched, start.Add(time.Minute))
		if took := time.Since(start); took != 0 {
			t.Errorf("fire took %s; want it to end at once", took)
		}
		if n := len(cloud.requests()); n != 1 {
			t.Errorf("vendor saw %d requests; want 1 (the throttled one)", n)
		}
		for _, target := range []string{"t2", "t3"} {
			ab := h.aud.records(audit.EventAbandon, target)
			if len(ab) != 1 || ab[0].Attempt != 0 || !strings.Contains(ab[0].Error, "no turn before the next fire") ||
				!strings.Contains(ab[0].Error, "paused for 4m0s after a 429") {
				t.Errorf("%s abandon records %+v; want one, attempt 0, naming the pause", target, ab)
			}
			if n := len(h.aud.records(audit.EventAttempt, target)); n != 0 {
				t.Errorf("%s has %d attempt records; want none", target, n)
			}
		}
		if to := out.Targets[0]; to.Attempts != 1 || !errors.Is(to.Err, ErrRetryBudget) {
			t.Errorf("t1 = %d attempts, %v; want 1, retry budget exhausted (Retry-After past the next fire)", to.Attempts, to.Err)
		}
	})
}

// TestAttemptTimeoutNotShortenedByQueue: each attempt gets the whole of
// Job.Timeout for its call, however long it queued for a token.
func TestAttemptTimeoutNotShortenedByQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := &memCloud{latency: time.Second}
		lim := ratelimit.New(ratelimit.Options{PerSecond: 1, Burst: 1})
		h, hc := limitedHarness(t, 0, lim, cloud)
		j := testJob(cloud.do(hc, "start"), targetNames(6)...)
		j.Timeout = 1500 * time.Millisecond
		out := h.exec.Fire(t.Context(), j, sched, time.Now().Add(time.Hour))
		if f := out.Failed(); len(f) != 0 {
			t.Fatalf("%d targets failed, first %s: %v", len(f), f[0].Target, f[0].Err)
		}
		for _, r := range cloud.requests() {
			if r.timeout != j.Timeout {
				t.Errorf("request for %s arrived with %s left of its attempt; want the whole %s", r.target, r.timeout, j.Timeout)
			}
		}
		for _, r := range h.aud.records(audit.EventAttempt, "") {
			if r.Attempt != 1 || r.DurationMS != 1000 {
				t.Errorf("%s: attempt %d took %dms; want one attempt of 1000ms", r.Target, r.Attempt, r.DurationMS)
			}
		}
	})
}

// TestRetryBudgetExcludesQueue: MaxElapsed counts calls and backoff waits,
// not the time a retry waits for a slot.
func TestRetryBudgetExcludesQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, map[string]int{"otc-dev": 1})
		var flaky atomic.Int32
		do := func(ctx context.Context, target string) (vendors.Result, error) {
			if target == "b" {
				if flaky.Add(1) <= 2 {
					return vendors.Result{}, transient(503)
				}
				return vendors.Result{HTTPStatus: 200}, nil
			}
			time.Sleep(10 * time.Second)
			return vendors.Result{HTTPStatus: 200}, nil
		}
		j := testJob(do, "b", "a1", "a2", "a3")
		j.Retry = RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Second, MaxElapsed: 5 * time.Second, MaxAttempts: 5}
		out := h.exec.Fire(t.Context(), j, sched, time.Time{})
		if f := out.Failed(); len(f) != 0 {
			t.Fatalf("%d targets failed, first %s: %v", len(f), f[0].Target, f[0].Err)
		}
		recs := h.aud.records(audit.EventAttempt, "b")
		if got := outcomes(recs); got != "retry,retry,success" {
			t.Fatalf("b attempts %s; want retry,retry,success", got)
		}
		// b's retries each waited ~10s for the slot: more than max_elapsed,
		// none of it counted.
		if !strings.Contains(recs[1].Detail, "queued") || !strings.Contains(recs[2].Detail, "queued") {
			t.Errorf("b's retries' details %q, %q; want them to say they queued", recs[1].Detail, recs[2].Detail)
		}
	})
}

// TestStatusReadsQueueAndPayOnce: verify's status reads take their turn
// like attempts: 3 starts and 3 reads at 1/s go out exactly a second
// apart, none paying for two tokens.
func TestStatusReadsQueueAndPayOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := &memCloud{}
		lim := ratelimit.New(ratelimit.Options{PerSecond: 1, Burst: 1})
		h, hc := limitedHarness(t, 0, lim, cloud)
		j := testJob(cloud.do(hc, "start"), "t1", "t2", "t3")
		j.Verify = &Verifier{Status: cloud.status(hc), Judge: startJudge, Want: "RUNNING", Interval: 100 * time.Millisecond}
		j.Timeout = 500 * time.Millisecond
		out := h.exec.Fire(t.Context(), j, sched, time.Now().Add(time.Hour))
		for _, to := range out.Targets {
			if to.Outcome != audit.OutcomeSuccess || to.Verify != audit.OutcomeVerified {
				t.Errorf("%s = %s, verify %s (%v); want success, verified", to.Target, to.Outcome, to.Verify, to.Err)
			}
		}
		reqs := cloud.requests()
		if len(reqs) != 6 {
			t.Fatalf("vendor saw %d requests; want 6", len(reqs))
		}
		for i, r := range reqs {
			// (x/time/rate's float arithmetic may be a nanosecond early.)
			if at := r.at.Sub(reqs[0].at).Round(time.Millisecond); at != time.Duration(i)*time.Second {
				t.Errorf("request %d (%s) at +%s; want +%ds", i+1, r.path, at, i)
			}
		}
		queuedReads := 0
		for _, r := range h.aud.records(audit.EventVerify, "") {
			if strings.Contains(r.Detail, "status reads queued") {
				queuedReads++
			}
		}
		if queuedReads == 0 {
			t.Error("no verify record says its status reads queued")
		}
	})
}

// TestFairAcrossFires: two fires of one account share its slots in turn,
// the second does not wait for the whole first.
func TestFairAcrossFires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, map[string]int{"otc-dev": 1})
		var mu sync.Mutex
		var order []string
		do := func(job string) Action {
			return func(ctx context.Context, target string) (vendors.Result, error) {
				mu.Lock()
				order = append(order, job+"/"+target)
				mu.Unlock()
				time.Sleep(time.Second)
				return vendors.Result{HTTPStatus: 200}, nil
			}
		}
		a := testJob(do("a"), "1", "2", "3", "4")
		a.Name = "a"
		b := testJob(do("b"), "1", "2")
		b.Name = "b"
		var wg sync.WaitGroup
		wg.Go(func() { h.exec.Fire(t.Context(), a, sched, time.Time{}) })
		synctest.Wait() // a/1 is in its call, a/2 waits
		wg.Go(func() { h.exec.Fire(t.Context(), b, sched, time.Time{}) })
		wg.Wait()
		// a/2 queued before b came; then the fires take turns.
		want := []string{"a/1", "a/2", "b/1", "a/3", "b/2", "a/4"}
		if !slices.Equal(order, want) {
			t.Errorf("call order %q; want %q (round robin across fires)", order, want)
		}
	})
}

// TestTargetsGetGoroutinesAsSlotsFree: 2 000 targets at concurrency 4 do
// not start 2 000 goroutines.
func TestTargetsGetGoroutinesAsSlotsFree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, map[string]int{"otc-dev": 4})
		base := runtime.NumGoroutine()
		var peak atomic.Int64
		do := func(ctx context.Context, target string) (vendors.Result, error) {
			n := int64(runtime.NumGoroutine() - base)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(20 * time.Millisecond)
			return vendors.Result{HTTPStatus: 200}, nil
		}
		start := time.Now()
		out := h.exec.Fire(t.Context(), testJob(do, targetNames(2000)...), sched, time.Time{})
		if f := out.Failed(); len(f) != 0 {
			t.Fatalf("%d targets failed", len(f))
		}
		if took := time.Since(start); took != 500*20*time.Millisecond {
			t.Errorf("2000 calls of 20ms at 4 in flight took %s; want 10s", took)
		}
		if p := peak.Load(); p > 16 {
			t.Errorf("peak goroutines during the fire: %d more than before; want a few per slot, not one per target", p)
		}
	})
}

// TestSecondRequestOfAnActionWaitsBehindOneTurn: an action that makes a
// request of its own before its call (SCNet's token fetch) spends its
// turn's token on it; the call then waits in the transport, behind at
// most one queued turn, not behind every target holding a slot.
func TestSecondRequestOfAnActionWaitsBehindOneTurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := &memCloud{latency: 100 * time.Millisecond}
		lim := ratelimit.New(ratelimit.Options{PerSecond: 4, Burst: 1})
		h, hc := limitedHarness(t, 8, lim, cloud)
		var fetched atomic.Bool
		fetch := cloud.do(hc, "token")
		start := cloud.do(hc, "start")
		do := func(ctx context.Context, target string) (vendors.Result, error) {
			if fetched.CompareAndSwap(false, true) {
				if _, err := fetch(ctx, target); err != nil {
					return vendors.Result{}, err
				}
			}
			return start(ctx, target)
		}
		j := testJob(do, targetNames(8)...)
		j.Timeout = 600 * time.Millisecond
		out := h.exec.Fire(t.Context(), j, sched, time.Now().Add(time.Hour))
		if f := out.Failed(); len(f) != 0 {
			t.Fatalf("%d targets failed, first %s: %v", len(f), f[0].Target, f[0].Err)
		}
		if n := len(h.aud.records(audit.EventAttempt, "")); n != 8 {
			t.Errorf("attempt records = %d; want 8, one per target", n)
		}
		if n := len(cloud.requests()); n != 9 {
			t.Errorf("vendor saw %d requests; want 9 (a token fetch, 8 starts)", n)
		}
	})
}
