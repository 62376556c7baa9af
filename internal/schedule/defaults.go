package schedule

import "time"

// Built-in defaults (design.md). A `defaults` field that the file leaves
// unset takes these; a job field that the job leaves unset takes the
// effective `defaults` value, field by field (retry sub-fields included).
const (
	DefaultTimeout         = 30 * time.Second
	DefaultInitialInterval = time.Second
	DefaultMaxInterval     = time.Minute
	DefaultMaxElapsed      = 10 * time.Minute
	DefaultMaxAttempts     = 8
	DefaultCatchup         = time.Hour
	DefaultOverlap         = "skip"
	DefaultVerifyTimeout   = 10 * time.Minute
	DefaultConcurrency     = 8
)

func durPtr(d time.Duration) *Duration { v := Duration(d); return &v }

// builtinPolicy is the policy every field of `defaults` falls back to.
func builtinPolicy() Policy {
	attempts, verify := DefaultMaxAttempts, false
	return Policy{
		Timeout: durPtr(DefaultTimeout),
		Retry: &RetryPolicy{
			InitialInterval: durPtr(DefaultInitialInterval),
			MaxInterval:     durPtr(DefaultMaxInterval),
			MaxElapsed:      durPtr(DefaultMaxElapsed),
			MaxAttempts:     &attempts,
		},
		Catchup:       durPtr(DefaultCatchup),
		Overlap:       DefaultOverlap,
		Verify:        &verify,
		VerifyTimeout: durPtr(DefaultVerifyTimeout),
	}
}

// inherit returns p with every unset field taken from base, which must be
// complete. The result shares no pointer with p or base: what it points to
// is one block of its own (one allocation per job instead of nine).
func (p Policy) inherit(base Policy) Policy {
	blk := new(struct {
		timeout, catchup, verifyTimeout  Duration
		initial, maxInterval, maxElapsed Duration
		attempts                         int
		verify                           bool
		retry                            RetryPolicy
	})
	pick := func(dst, own, def *Duration) *Duration {
		switch {
		case own != nil:
			*dst = *own
		case def != nil:
			*dst = *def
		default:
			return nil
		}
		return dst
	}
	out := Policy{
		Timeout:       pick(&blk.timeout, p.Timeout, base.Timeout),
		Catchup:       pick(&blk.catchup, p.Catchup, base.Catchup),
		Overlap:       p.Overlap,
		VerifyTimeout: pick(&blk.verifyTimeout, p.VerifyTimeout, base.VerifyTimeout),
	}
	if out.Overlap == "" {
		out.Overlap = base.Overlap
	}
	blk.verify = *base.Verify
	if p.Verify != nil {
		blk.verify = *p.Verify
	}
	out.Verify = &blk.verify
	own := p.Retry
	if own == nil {
		own = &RetryPolicy{}
	}
	blk.attempts = *base.Retry.MaxAttempts
	if own.MaxAttempts != nil {
		blk.attempts = *own.MaxAttempts
	}
	blk.retry = RetryPolicy{
		InitialInterval: pick(&blk.initial, own.InitialInterval, base.Retry.InitialInterval),
		MaxInterval:     pick(&blk.maxInterval, own.MaxInterval, base.Retry.MaxInterval),
		MaxElapsed:      pick(&blk.maxElapsed, own.MaxElapsed, base.Retry.MaxElapsed),
		MaxAttempts:     &blk.attempts,
	}
	out.Retry = &blk.retry
	return out
}

// applyDefaults completes c.Defaults from the built-in values, each job's
// policy from c.Defaults, and the derived durations of each job. After it,
// every Policy pointer of c.Defaults and of every job is non-nil. Account
// defaults (region, auth, api, concurrency, burst) depend on the vendor
// and are set by checkAccount. The jobs taken from an earlier load
// (reuse[i] is c.Jobs[i]) have theirs already and are left as they are.
func applyDefaults(c *Config, reuse []*Job) {
	c.Defaults = c.Defaults.inherit(builtinPolicy())
	for i, j := range c.Jobs {
		if j == nil || i < len(reuse) && reuse[i] == j {
			continue
		}
		j.Policy = j.Policy.inherit(c.Defaults)
		j.TimeoutD = j.Timeout.D()
		j.CatchupD = j.Catchup.D()
		j.VerifyTimeoutD = j.VerifyTimeout.D()
		j.Backoff = Retry{
			InitialInterval: j.Retry.InitialInterval.D(),
			MaxInterval:     j.Retry.MaxInterval.D(),
			MaxElapsed:      j.Retry.MaxElapsed.D(),
			MaxAttempts:     *j.Retry.MaxAttempts,
		}
	}
}
