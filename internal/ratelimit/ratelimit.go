// Package ratelimit paces the HTTP requests of one account: every request
// (actions, status reads, token fetches), across all the account's jobs,
// waits its turn at one golang.org/x/time/rate limiter, and a throttling
// answer slows the whole account down, not only the request that got it.
//
// A request takes its turn in one of two ways:
//
//   - ahead of time, with Acquire: the executor queues a target for its
//     account's turn before an attempt starts, so that the attempt's own
//     timeout and retry budget count only the vendor call. Acquire returns
//     a Ticket (a token already paid for); a request whose context carries
//     it (WithTicket) does not wait for another token.
//   - in the transport (Wrap), for every other request, e.g. a token fetch
//     an action makes on its own, or a second request of the same action.
//
// Either way the request waits, honouring its context,
//
//  1. until the account's pause is over (see below); a request with a
//     ticket waits for this too, should a pause have begun since;
//  2. for a token of the rate limiter, when a rate is set and the request
//     carries no unused ticket of this limiter.
//
// A wait that the context's deadline would cut short fails at once, and
// every wait error wraps ErrNotSent: the request never left, so even a
// non-idempotent call may be re-issued.
//
// Throttling: an HTTP 429 answer (NCP gateway codes 400/410/420, OTC
// APIG.0308 and SCNet all use 429) pauses every request of the account
// until its Retry-After (capped at MaxPause), or, without one, for
// DefaultPause doubled on each consecutive 429 (reset by any other answer).
// Requests already sent are not affected. It also halves the account's
// rate (an account without a configured rate drops to ThrottledRate), down
// to MinRate; the rate then doubles back every RecoverInterval without a
// 429, up to the configured one. The 429 answer itself is returned to the
// caller unchanged, so the vendor client classifies it (transient, with its
// Retry-After) as before.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/cloudcron/scheduler/internal/vendors"
)

// Defaults of Options.
const (
	DefaultPause            = 2 * time.Second
	DefaultMaxPause         = 5 * time.Minute
	DefaultRecoverInterval  = 10 * time.Second
	DefaultMinRate          = 0.1 // requests per second
	DefaultThrottledRate    = 5.0 // requests per second, for an account without a configured rate
	unlimitedRecoveredAbove = 100.0
)

// ErrNotSent is wrapped by the error of a request that was never sent
// because its context ended (or would end) while it waited its turn.
var ErrNotSent = errors.New("request not sent: rate limit wait")

// Options configure a Limiter. The zero value limits nothing until the
// first 429.
type Options struct {
	// PerSecond is the account's rate_limit.per_second; <= 0 = no rate
	// limit (the 429 pause still applies).
	PerSecond float64
	// Burst is rate_limit.burst; < 1 means 1.
	Burst int
	// DefaultPause is the pause after a 429 without Retry-After, doubled on
	// each consecutive one; default DefaultPause.
	DefaultPause time.Duration
	// MaxPause caps any pause, Retry-After included; default DefaultMaxPause.
	MaxPause time.Duration
	// RecoverInterval is how long the rate stays lowered before it doubles
	// back; default DefaultRecoverInterval.
	RecoverInterval time.Duration
	// MinRate is the lowest rate a 429 can bring the account to; default
	// DefaultMinRate.
	MinRate float64
	// ThrottledRate is the rate an account without a configured rate drops
	// to on a 429; default DefaultThrottledRate.
	ThrottledRate float64
	// Now is the clock of pauses and recovery; default time.Now. (The
	// token bucket itself uses the runtime clock.)
	Now func() time.Time
	// OnThrottle, if set, is called after each 429 with the pause and the
	// lowered rate (rate.Inf never occurs here), e.g. to log it.
	OnThrottle func(pause time.Duration, perSecond float64)
}

// Limiter paces one account's requests. It is safe for concurrent use.
type Limiter struct {
	opts       Options
	configured rate.Limit // rate.Inf when none
	lim        *rate.Limiter

	mu          sync.Mutex
	cur         rate.Limit // current rate; < configured after a 429
	changed     time.Time  // last lowering or recovery step
	pausedUntil time.Time
	streak      int // consecutive 429s
	throttles   int
	sent        int
}

// New returns a Limiter.
func New(opts Options) *Limiter {
	if opts.Burst < 1 {
		opts.Burst = 1
	}
	if opts.DefaultPause <= 0 {
		opts.DefaultPause = DefaultPause
	}
	if opts.MaxPause <= 0 {
		opts.MaxPause = DefaultMaxPause
	}
	if opts.RecoverInterval <= 0 {
		opts.RecoverInterval = DefaultRecoverInterval
	}
	if opts.MinRate <= 0 {
		opts.MinRate = DefaultMinRate
	}
	if opts.ThrottledRate <= 0 {
		opts.ThrottledRate = DefaultThrottledRate
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	conf := rate.Inf
	if opts.PerSecond > 0 {
		conf = rate.Limit(opts.PerSecond)
	}
	return &Limiter{
		opts:       opts,
		configured: conf,
		cur:        conf,
		lim:        rate.NewLimiter(conf, opts.Burst),
	}
}

// Wrap returns a RoundTripper that sends through next (http.DefaultTransport
// if nil) after waiting its turn, and feeds 429 answers back to l.
func (l *Limiter) Wrap(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{l: l, next: next}
}

type transport struct {
	l    *Limiter
	next http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.l.waitSend(req.Context()); err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // RoundTrip must close the body, even on error
		}
		return nil, err
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	var retryAfter time.Duration // Observe reads it on a 429 only
	if resp.StatusCode == http.StatusTooManyRequests {
		retryAfter = vendors.ParseRetryAfter(resp.Header, t.l.opts.Now())
	}
	t.l.Observe(resp.StatusCode, retryAfter)
	return resp, nil
}

// CloseIdleConnections forwards to the wrapped transport, so that
// http.Client.CloseIdleConnections still reaches it.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Ticket is a token of a Limiter taken ahead of the request that spends it
// (see Acquire). It is spent by the first request of its limiter sent with
// a context carrying it; a ticket never spent is simply lost.
type Ticket struct {
	l      *Limiter
	paused time.Duration
	spent  atomic.Bool
}

// Paused returns how long Acquire waited for a pause after a 429.
func (t *Ticket) Paused() time.Duration { return t.paused }

type ticketKey struct{}

// WithTicket returns a copy of ctx that carries t: the first request of
// t's limiter sent with it (or with a context derived from it) does not
// wait for a token. Requests of another limiter ignore it.
func WithTicket(ctx context.Context, t *Ticket) context.Context {
	if t == nil {
		return ctx
	}
	return context.WithValue(ctx, ticketKey{}, t)
}

// spend reports whether ctx carries an unspent ticket of l, and spends it.
func (l *Limiter) spend(ctx context.Context) bool {
	t, _ := ctx.Value(ticketKey{}).(*Ticket)
	return t != nil && t.l == l && t.spent.CompareAndSwap(false, true)
}

// Acquire waits, under ctx, until a request of the account may be sent:
// after any pause, with a token of the rate limiter. It returns the token
// as a Ticket for the request to carry (WithTicket). A wait that ctx's
// deadline would cut short fails at once. Its error wraps ErrNotSent and
// the context's error, if any.
func (l *Limiter) Acquire(ctx context.Context) (*Ticket, error) {
	paused, err := l.waitPause(ctx)
	if err != nil {
		return nil, err
	}
	if err := l.waitToken(ctx); err != nil {
		return nil, err
	}
	return &Ticket{l: l, paused: paused}, nil
}

// Wait blocks until a request of the account may be sent: after any pause,
// and with a token of the rate limiter. Its error wraps ErrNotSent and the
// context's error, if any.
func (l *Limiter) Wait(ctx context.Context) error {
	if _, err := l.waitPause(ctx); err != nil {
		return err
	}
	if err := l.waitToken(ctx); err != nil {
		return err
	}
	l.countSent()
	return nil
}

// waitSend is the transport's wait: Wait, without the token when ctx
// carries a ticket of l.
func (l *Limiter) waitSend(ctx context.Context) error {
	if !l.spend(ctx) {
		return l.Wait(ctx)
	}
	if _, err := l.waitPause(ctx); err != nil {
		return err
	}
	l.countSent()
	return nil
}

// waitPause waits until the account's pause is over and returns how long
// it waited.
func (l *Limiter) waitPause(ctx context.Context) (waited time.Duration, err error) {
	start := time.Now()
	for {
		l.mu.Lock()
		now := l.opts.Now()
		l.recoverLocked(now)
		until := l.pausedUntil
		l.mu.Unlock()
		d := until.Sub(now)
		if d <= 0 {
			return waited, nil
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			return waited, fmt.Errorf("%w: account paused for %s after a 429, past the request's deadline", ErrNotSent, d.Round(time.Millisecond))
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			waited = time.Since(start)
		case <-ctx.Done():
			t.Stop()
			return time.Since(start), fmt.Errorf("%w: %w", ErrNotSent, ctx.Err())
		}
		// Loop: another 429 may have extended the pause meanwhile.
	}
}

// waitToken waits for a token of the rate limiter.
func (l *Limiter) waitToken(ctx context.Context) error {
	if err := l.lim.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrNotSent, ctx.Err())
		}
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	return nil
}

func (l *Limiter) countSent() {
	l.mu.Lock()
	l.sent++
	l.mu.Unlock()
}

// Observe feeds one answer to the limiter: a 429 pauses and slows the
// account; any other status ends a streak of 429s.
func (l *Limiter) Observe(status int, retryAfter time.Duration) {
	l.mu.Lock()
	if status != http.StatusTooManyRequests {
		l.streak = 0
		l.mu.Unlock()
		return
	}
	now := l.opts.Now()
	l.streak++
	l.throttles++
	pause := retryAfter
	if pause <= 0 {
		pause = l.opts.DefaultPause << min(l.streak-1, 16)
	}
	pause = min(pause, l.opts.MaxPause)
	if end := now.Add(pause); end.After(l.pausedUntil) {
		l.pausedUntil = end
	}
	next := l.cur / 2
	if l.cur == rate.Inf {
		next = rate.Limit(l.opts.ThrottledRate)
	}
	next = max(next, rate.Limit(l.opts.MinRate))
	l.setLocked(next, now)
	cb := l.opts.OnThrottle
	l.mu.Unlock()
	if cb != nil {
		cb(pause, float64(next))
	}
}

// recoverLocked doubles the rate back for every RecoverInterval since the
// last change, up to the configured rate.
func (l *Limiter) recoverLocked(now time.Time) {
	if l.cur == l.configured {
		return
	}
	steps := int(now.Sub(l.changed) / l.opts.RecoverInterval)
	if steps <= 0 {
		return
	}
	next := l.cur * rate.Limit(math.Pow(2, float64(min(steps, 30))))
	if l.configured == rate.Inf && next > unlimitedRecoveredAbove {
		next = rate.Inf
	}
	next = min(next, l.configured)
	l.setLocked(next, l.changed.Add(time.Duration(steps)*l.opts.RecoverInterval))
}

func (l *Limiter) setLocked(r rate.Limit, at time.Time) {
	l.cur = r
	l.changed = at
	l.lim.SetLimit(r)
	if r != rate.Inf && l.lim.Burst() > l.opts.Burst {
		l.lim.SetBurst(l.opts.Burst)
	}
}

// Stats is a snapshot of a Limiter.
type Stats struct {
	Sent        int       // requests let through
	Throttled   int       // 429 answers seen
	PerSecond   float64   // current rate; +Inf when unlimited
	PausedUntil time.Time // zero or past when not paused
}

// Stats returns a snapshot.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recoverLocked(l.opts.Now())
	ps := math.Inf(1)
	if l.cur != rate.Inf {
		ps = float64(l.cur)
	}
	return Stats{Sent: l.sent, Throttled: l.throttles, PerSecond: ps, PausedUntil: l.pausedUntil}
}
