package executor

import (
	"context"
	"fmt"
)

// Read runs one status read of an account outside a fire (a window's
// reconciler reading its targets) in the account's queue, like a status
// read of a fire: it waits under ctx for a concurrency slot, served in
// turn with the account's fires, then for the end of any 429 pause and a
// rate-limit token, which the read's requests carry; the slot is given
// back when read returns.
func (e *Executor) Read(ctx context.Context, account string, read func(ctx context.Context) (string, error)) (string, error) {
	q := e.queue(account)
	f := &fire{j: &Job{Name: "(status read)", Account: account}, q: q,
		stop: make(chan struct{}), started: make(chan struct{}), allStarted: true}
	if err := q.waitSlot(ctx, f); err != nil {
		return "", fmt.Errorf("status read queued for %s: %w", q.describe(), err)
	}
	defer q.release()
	if err := ctx.Err(); err != nil {
		return "", err
	}
	tr := &turn{q: q}
	if lim := q.limiter(); lim != nil {
		tk, err := q.acquireToken(ctx, lim)
		if err != nil {
			return "", fmt.Errorf("status read queued for %s: %w", q.describe(), err)
		}
		tr.ticket = tk
	}
	return read(tr.context(ctx))
}
