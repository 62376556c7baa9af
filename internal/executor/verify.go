package executor

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"time"

	"github.com/cloudcron/scheduler/internal/ratelimit"
	"github.com/cloudcron/scheduler/internal/vendors"
)

// Default poll intervals of a Verifier.
const (
	DefaultVerifyInterval    = time.Second
	DefaultVerifyMaxInterval = 15 * time.Second
	// checkReads is how many status reads the executor makes, after an
	// ambiguous failure of a non-idempotent action, to find a conclusive
	// state (read errors and inconclusive states both count).
	checkReads = 3
)

// Verdict is what one status value says about the action's target state.
type Verdict int

// Verdicts. The zero value is Unknown.
const (
	// Unknown: a value the vendor does not document (or we do not know):
	// keep polling; it never counts as the target state.
	Unknown Verdict = iota
	// Pending: a known transitional state (STARTING, ACCEPTED…): the action
	// is in progress; keep polling.
	Pending
	// Reached: the target state.
	Reached
	// Failed: a state the resource does not leave on its own towards the
	// target (START_FAILED, Failed…): stop polling, verify_failed.
	Failed
)

func (v Verdict) String() string {
	switch v {
	case Pending:
		return "pending"
	case Reached:
		return "reached"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Judge tells what a raw status value means for one action.
type Judge func(state string) Verdict

// Verifier reads a target's status after an action and judges it.
type Verifier struct {
	// Status reads the target's state. nil means the vendor documents no
	// status read for this action: verification is audited "unverified",
	// and an ambiguous failure of a non-idempotent action ends "unknown".
	Status func(ctx context.Context, target string) (string, error)
	// Judge judges a state; nil judges everything Unknown.
	Judge Judge
	// Before, if set, is called once per target before the first attempt
	// and returns the Judge to use for that target instead of Judge (CDSS
	// restarts: "back to the value read before the restart"). If it fails,
	// Judge is used and the failure is named in the verify record.
	Before func(ctx context.Context, target string) (Judge, error)
	// Want names the target state for the audit detail, e.g. "RUNNING".
	Want string
	// Timeout bounds the polling (the job's verify_timeout); 0 = until the
	// fire's deadline or ctx ends.
	Timeout time.Duration
	// Interval is the first wait between polls, doubled up to MaxInterval,
	// each jittered by ±20%; defaults DefaultVerifyInterval and
	// DefaultVerifyMaxInterval.
	Interval, MaxInterval time.Duration
	// ReachedProvesEffect says that finding the target state after an
	// ambiguous failure proves the action took effect (a kill: the app is
	// gone). For a restart it does not: the target state is also the state
	// before the restart, so only Pending proves it.
	ReachedProvesEffect bool
}

func (v *Verifier) intervals() (first, limit time.Duration) {
	first, limit = v.Interval, v.MaxInterval
	if first <= 0 {
		first = DefaultVerifyInterval
	}
	if limit <= 0 {
		limit = DefaultVerifyMaxInterval
	}
	return first, max(first, limit)
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func attemptCtx(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout > 0 {
		return context.WithTimeout(ctx, timeout)
	}
	return context.WithCancel(ctx)
}

// ambiguous reports whether a failed attempt of a non-idempotent action
// may nevertheless have reached the vendor and taken effect: the attempt
// timed out, the connection failed after the request may have been sent
// (not a dial error, not a rate-limit wait), or the gateway timed out
// waiting for the backend (HTTP 504).
func ambiguous(err error, timedOut bool) bool {
	if err == nil {
		return false
	}
	if timedOut {
		return true
	}
	if errors.Is(err, ratelimit.ErrNotSent) {
		return false
	}
	var ve *vendors.Error
	if !errors.As(err, &ve) || !ve.Transient {
		return false
	}
	if ve.HTTPStatus == 504 {
		return true
	}
	if ve.HTTPStatus != 0 {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	var dns *net.DNSError
	return !errors.As(err, &dns)
}
