package ratelimit

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func get(t *testing.T, c *http.Client, ctx context.Context, url string) (int, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// TestRateSpacesRequests runs on synctest's fake clock: the arrivals are
// exact, whatever the machine's load (on the real clock a window of a few
// hundred milliseconds flaked).
func TestRateSpacesRequests(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name      string
		perSecond float64
		burst     int
		want      []time.Duration // arrivals after the first, in order
	}{
		{"unlimited", 0, 0, []time.Duration{0, 0, 0, 0, 0, 0}},
		{"20/s burst 1", 20, 1, []time.Duration{0, 50 * ms, 100 * ms, 150 * ms, 200 * ms, 250 * ms}},
		{"20/s burst 3", 20, 3, []time.Duration{0, 0, 0, 50 * ms, 100 * ms, 150 * ms}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &memServer{}
				l := New(Options{PerSecond: tc.perSecond, Burst: tc.burst})
				c := &http.Client{Transport: l.Wrap(s)}
				// Several "jobs" share the account's limiter.
				var wg sync.WaitGroup
				for range tc.want {
					wg.Go(func() {
						if code, err := get(t, c, t.Context(), "http://cloud.test/"); err != nil || code != 200 {
							t.Errorf("get: %d %v", code, err)
						}
					})
				}
				wg.Wait()
				got := s.arrivals()
				slices.Sort(got)
				if !slices.EqualFunc(got, tc.want, func(g, w time.Duration) bool { return (g - w).Abs() < time.Microsecond }) {
					t.Errorf("arrivals %v; want %v", got, tc.want)
				}
				if st := l.Stats(); st.Sent != len(tc.want) {
					t.Errorf("Stats.Sent = %d; want %d", st.Sent, len(tc.want))
				}
			})
		})
	}
}

func TestThrottlePausesTheWholeAccount(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter string
		opts       Options
		wantPause  time.Duration
	}{
		{"retry-after honoured", "1", Options{DefaultPause: 50 * time.Millisecond}, time.Second},
		{"default pause without retry-after", "", Options{DefaultPause: 300 * time.Millisecond}, 300 * time.Millisecond},
		{"retry-after capped", "120", Options{MaxPause: 200 * time.Millisecond}, 200 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &memServer{throttle: 1, retryAfter: tc.retryAfter}
				var pauses []time.Duration
				tc.opts.OnThrottle = func(p time.Duration, _ float64) { pauses = append(pauses, p) }
				l := New(tc.opts)
				c := &http.Client{Transport: l.Wrap(s)}
				code, err := get(t, c, t.Context(), "http://cloud.test/")
				if err != nil || code != http.StatusTooManyRequests {
					t.Fatalf("first request: %d %v; want the 429 returned to the caller", code, err)
				}
				// Another job's request, not the one that got the 429, must wait too.
				start := time.Now()
				if code, err := get(t, c, t.Context(), "http://cloud.test/"); err != nil || code != 200 {
					t.Fatalf("second request: %d %v", code, err)
				}
				if waited := time.Since(start); waited != tc.wantPause {
					t.Errorf("second request waited %s; want %s", waited, tc.wantPause)
				}
				if len(pauses) != 1 || pauses[0] != tc.wantPause {
					t.Errorf("OnThrottle pauses = %v; want [%s]", pauses, tc.wantPause)
				}
			})
		})
	}
}

func TestConsecutiveThrottlesGrowThePause(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := base
	l := New(Options{PerSecond: 8, DefaultPause: time.Second, MaxPause: 5 * time.Second, Now: func() time.Time { return now }})
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second}
	wantRate := []float64{4, 2, 1, 0.5}
	for i := range want {
		l.Observe(http.StatusTooManyRequests, 0)
		st := l.Stats()
		if got := st.PausedUntil.Sub(now); got != want[i] {
			t.Errorf("429 #%d: paused for %s; want %s", i+1, got, want[i])
		}
		if st.PerSecond != wantRate[i] {
			t.Errorf("429 #%d: rate %v; want %v", i+1, st.PerSecond, wantRate[i])
		}
	}
	// Another answer ends the streak: the next 429 pauses for the default again.
	now = now.Add(time.Minute)
	l.Observe(http.StatusOK, 0)
	l.Observe(http.StatusTooManyRequests, 0)
	if got := l.Stats().PausedUntil.Sub(now); got != time.Second {
		t.Errorf("after a 200, a 429 paused for %s; want 1s", got)
	}
}

func TestRateRecoversGradually(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := base
	clock := func() time.Time { return now }
	tests := []struct {
		name      string
		perSecond float64
		after     []time.Duration // offsets from the 429
		want      []float64
	}{
		{"configured 8/s", 8, []time.Duration{0, 9 * time.Second, 10 * time.Second, 25 * time.Second}, []float64{4, 4, 8, 8}},
		{"unlimited", 0, []time.Duration{0, 10 * time.Second, 40 * time.Second, 50 * time.Second}, []float64{5, 10, 80, math.Inf(1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now = base
			l := New(Options{PerSecond: tc.perSecond, RecoverInterval: 10 * time.Second, Now: clock})
			l.Observe(http.StatusTooManyRequests, time.Second)
			for i, d := range tc.after {
				now = base.Add(d)
				if got := l.Stats().PerSecond; got != tc.want[i] {
					t.Errorf("%s after the 429: rate %v; want %v", d, got, tc.want[i])
				}
			}
		})
	}
}

func TestWaitHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &memServer{throttle: 1, retryAfter: "30"}
		l := New(Options{})
		c := &http.Client{Transport: l.Wrap(s)}
		if code, _ := get(t, c, t.Context(), "http://cloud.test/"); code != http.StatusTooManyRequests {
			t.Fatalf("want the first request throttled, got %d", code)
		}
		// A deadline before the pause ends fails at once.
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		_, err := get(t, c, ctx, "http://cloud.test/")
		if !errors.Is(err, ErrNotSent) || time.Since(start) != 0 {
			t.Fatalf("err = %v after %s; want ErrNotSent at once", err, time.Since(start))
		}
		if !strings.Contains(err.Error(), "429") {
			t.Errorf("err = %v; want it to say why", err)
		}
		// Cancel ends the wait, when it comes.
		ctx, cancel = context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		start = time.Now()
		_, err = get(t, c, ctx, "http://cloud.test/")
		if !errors.Is(err, ErrNotSent) || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v; want ErrNotSent wrapping context.Canceled", err)
		}
		if waited := time.Since(start); waited != 50*time.Millisecond {
			t.Errorf("cancelled wait returned after %s; want 50ms, at the cancel", waited)
		}
		if n := len(s.arrivals()); n != 1 {
			t.Errorf("server saw %d requests; want 1 (the waits sent nothing)", n)
		}
	})
}

type idleCloser struct {
	http.RoundTripper
	closed bool
}

func (c *idleCloser) CloseIdleConnections() { c.closed = true }

func TestCloseIdleConnectionsReachesTheTransport(t *testing.T) {
	inner := &idleCloser{RoundTripper: http.DefaultTransport}
	c := &http.Client{Transport: New(Options{}).Wrap(inner)}
	c.CloseIdleConnections()
	if !inner.closed {
		t.Error("CloseIdleConnections did not reach the wrapped transport")
	}
}

// memServer is an in-memory RoundTripper: it answers every request at
// once (429 with Retry-After for the first throttle ones) and records when
// each arrived. It needs no network, so it runs inside a synctest bubble.
type memServer struct {
	mu         sync.Mutex
	throttle   int
	retryAfter string
	times      []time.Time
}

func (s *memServer) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.times = append(s.times, time.Now())
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}")), Request: req}
	if s.throttle > 0 {
		s.throttle--
		resp.StatusCode = http.StatusTooManyRequests
		resp.Header.Set("Retry-After", s.retryAfter)
	}
	return resp, nil
}

func (s *memServer) arrivals() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	for _, t := range s.times {
		out = append(out, t.Sub(s.times[0]))
	}
	return out
}

func TestTicketIsNotPaidTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &memServer{}
		l := New(Options{PerSecond: 1, Burst: 1})
		c := &http.Client{Transport: l.Wrap(s)}
		start := time.Now()
		// Three turns taken ahead (the first at once, then one a second),
		// each spent by one request that goes out at once.
		for i := range 3 {
			tk, err := l.Acquire(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if got, want := time.Since(start), time.Duration(i)*time.Second; got != want {
				t.Errorf("Acquire %d returned at +%s; want +%s", i+1, got, want)
			}
			before := time.Now()
			if code, err := get(t, c, WithTicket(t.Context(), tk), "http://cloud.test/"); err != nil || code != 200 {
				t.Fatalf("get with ticket: %d %v", code, err)
			}
			if waited := time.Since(before); waited != 0 {
				t.Errorf("request with a ticket waited %s in the transport; want 0", waited)
			}
		}
		if st := l.Stats(); st.Sent != 3 {
			t.Errorf("Stats.Sent = %d; want 3", st.Sent)
		}
	})
}

func TestTicketIsSpentOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &memServer{}
		l := New(Options{PerSecond: 1, Burst: 1})
		other := New(Options{PerSecond: 1, Burst: 1})
		c := &http.Client{Transport: l.Wrap(s)}
		tk, err := l.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ctx := WithTicket(t.Context(), tk)
		// The ticket pays for the first request; a second one with the same
		// context (e.g. a token fetch then the call) waits for its token.
		for range 2 {
			if _, err := get(t, c, ctx, "http://cloud.test/"); err != nil {
				t.Fatal(err)
			}
		}
		// Another limiter's ticket pays nothing here.
		otk, err := other.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := get(t, c, WithTicket(t.Context(), otk), "http://cloud.test/"); err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{0, time.Second, 2 * time.Second}
		if got := s.arrivals(); !slices.Equal(got, want) {
			t.Errorf("arrivals %v; want %v", got, want)
		}
	})
}

// TestTicketStillWaitsOutAPause: a pause that began after the ticket was
// taken holds its request too: no request of the account leaves during a
// pause.
func TestTicketStillWaitsOutAPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &memServer{throttle: 1, retryAfter: "3"}
		l := New(Options{PerSecond: 10, Burst: 2})
		c := &http.Client{Transport: l.Wrap(s)}
		tk, err := l.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if code, _ := get(t, c, t.Context(), "http://cloud.test/"); code != http.StatusTooManyRequests {
			t.Fatalf("first request: %d; want 429", code)
		}
		if _, err := get(t, c, WithTicket(t.Context(), tk), "http://cloud.test/"); err != nil {
			t.Fatal(err)
		}
		if got := s.arrivals(); len(got) != 2 || got[1] != 3*time.Second {
			t.Errorf("arrivals %v; want the ticketed request 3s after the 429", got)
		}
		// Acquire waits out a pause as well, and says how long.
		s.throttle = 1
		if code, _ := get(t, c, t.Context(), "http://cloud.test/"); code != http.StatusTooManyRequests {
			t.Fatalf("third request: %d; want 429", code)
		}
		tk, err = l.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if tk.Paused() != 3*time.Second {
			t.Errorf("Acquire during a 3s pause: paused %v; want 3s", tk.Paused())
		}
	})
}

func TestAcquireFailsAtOnceWhenTheDeadlineIsTooClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(Options{PerSecond: 1, Burst: 1})
		if _, err := l.Acquire(t.Context()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := l.Acquire(ctx); !errors.Is(err, ErrNotSent) || time.Since(start) != 0 {
			t.Errorf("Acquire with the next token past the deadline: %v after %s; want ErrNotSent at once", err, time.Since(start))
		}
		l.Observe(http.StatusTooManyRequests, time.Minute)
		ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := l.Acquire(ctx); !errors.Is(err, ErrNotSent) || !strings.Contains(err.Error(), "paused") || time.Since(start) != 0 {
			t.Errorf("Acquire during a pause past the deadline: %v; want ErrNotSent naming the pause, at once", err)
		}
	})
}
