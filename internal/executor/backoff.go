package executor

import (
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/cloudcron/scheduler/internal/vendors"
)

// ErrRetryBudget is wrapped by the error of a target whose retries stopped
// because the next wait would run past the job's next fire or the policy's
// MaxElapsed.
var ErrRetryBudget = errors.New("retry budget exhausted")

// RetryPolicy bounds the retries of one target in one fire.
type RetryPolicy struct {
	InitialInterval time.Duration // first wait, before jitter
	MaxInterval     time.Duration // cap on a computed wait (a Retry-After hint may exceed it)
	MaxElapsed      time.Duration // no wait may end later than this after the first attempt, time queued for the account not counted; 0 = no limit
	MaxAttempts     int           // attempts in all, from 1; 0 = no limit
}

// randomization is the jitter of every computed wait: ±50%.
const randomization = 0.5

// retryBackOff wraps an ExponentialBackOff: it honours Retry-After hints
// (the wait is max(hint, computed)) and stops when the wait would pass the
// fire's deadline or the policy's MaxElapsed. Time spent queued for the
// account's turn (queued, kept by the caller) is not counted against
// MaxElapsed: the budget is for vendor calls and the waits between them.
// After Stop, reason says why.
type retryBackOff struct {
	exp        *backoff.ExponentialBackOff
	now        func() time.Time
	start      time.Time
	maxElapsed time.Duration
	deadline   time.Time // zero = none
	queued     time.Duration

	lastErr error // the error of the attempt just made; set before NextBackOff
	reason  error // why NextBackOff returned Stop
}

var _ backoff.BackOff = (*retryBackOff)(nil)

func newRetryBackOff(p RetryPolicy, deadline time.Time) *retryBackOff {
	exp := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(p.InitialInterval),
		backoff.WithMaxInterval(p.MaxInterval),
		backoff.WithRandomizationFactor(randomization),
		// MaxElapsed is checked below, after the Retry-After hint is applied.
		backoff.WithMaxElapsedTime(0),
	)
	if exp.InitialInterval <= 0 {
		exp.InitialInterval = backoff.DefaultInitialInterval
	}
	if exp.MaxInterval < exp.InitialInterval {
		exp.MaxInterval = exp.InitialInterval
	}
	b := &retryBackOff{exp: exp, now: time.Now, maxElapsed: p.MaxElapsed, deadline: deadline}
	b.Reset()
	return b
}

// Reset restarts the elapsed-time budget and the interval sequence.
func (b *retryBackOff) Reset() {
	b.exp.Reset()
	b.start = b.now()
	b.queued = 0
	b.reason = nil
}

// NextBackOff returns the wait before the next attempt, or backoff.Stop.
func (b *retryBackOff) NextBackOff() time.Duration {
	wait := b.exp.NextBackOff()
	if wait == backoff.Stop {
		b.reason = ErrRetryBudget
		return backoff.Stop
	}
	if hint, ok := vendors.RetryAfter(b.lastErr); ok && hint > wait {
		wait = hint
	}
	now := b.now()
	if !b.deadline.IsZero() && !now.Add(wait).Before(b.deadline) {
		b.reason = fmt.Errorf("%w before next fire at %s (next wait %s)",
			ErrRetryBudget, b.deadline.UTC().Format(time.RFC3339), wait)
		return backoff.Stop
	}
	if b.maxElapsed > 0 && now.Sub(b.start)-b.queued+wait > b.maxElapsed {
		b.reason = fmt.Errorf("%w: next wait %s would pass max_elapsed %s",
			ErrRetryBudget, wait, b.maxElapsed)
		return backoff.Stop
	}
	return wait
}
