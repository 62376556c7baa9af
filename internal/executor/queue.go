package executor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cloudcron/scheduler/internal/ratelimit"
)

// queuedNoticeable is the shortest queue wait an audit record mentions.
const queuedNoticeable = 10 * time.Millisecond

// queue is the waiting line of one account: its concurrency slots and its
// rate limiter. A slot is held for one vendor call or status read and then
// handed on. Slots go round robin across the fires of the account that
// wait; within a fire, targets already started (a retry after its backoff,
// a status read) go first, in the order they asked, then the fire's targets
// not yet started, in the job's order. A target not yet started has no
// goroutine: when the queue hands it a slot, it goes to a goroutine of the
// fire whose target is done (idle), or to a new one.
type queue struct {
	account string

	mu    sync.Mutex
	limit int
	lim   *ratelimit.Limiter // nil: no rate limit, no 429 pause
	busy  int                // slots held
	ring  []*fire            // fires with something waiting, served in turn
	pos   int                // ring index served next

	token chan struct{} // held by the one target waiting for a token

	// describe's last text and what it was made of (q.mu): nearly every
	// attempt of a burst says what it queued for, and it rarely changes.
	desc    string
	descFor descKey
}

// descKey is what an account's description says.
type descKey struct {
	limit     int
	perSecond float64
	throttled int
}

// waiter is a started target waiting for a slot.
type waiter struct {
	ready   chan struct{} // closed when granted
	granted bool          // q.mu
}

// queue returns the account's queue, with the limit and limiter the
// caller asked for just now (they change on a reload).
func (e *Executor) queue(account string) *queue {
	limit := DefaultConcurrency
	if e.concurrency != nil {
		if c := e.concurrency(account); c > 0 {
			limit = c
		}
	}
	var lim *ratelimit.Limiter
	if e.limiter != nil {
		lim = e.limiter(account)
	}
	e.mu.Lock()
	q, ok := e.queues[account]
	if !ok {
		q = &queue{account: account, token: make(chan struct{}, 1)}
		e.queues[account] = q
	}
	e.mu.Unlock()
	q.mu.Lock()
	q.limit, q.lim = limit, lim
	q.dispatchLocked() // the limit may have grown
	q.mu.Unlock()
	return q
}

// enqueue puts every target of f in line; f.launch starts each one as it
// gets a slot, and f.started is closed when all have.
func (q *queue) enqueue(f *fire) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f.queuedAt = time.Now()
	if len(f.j.Targets) == 0 {
		f.allStartedLocked()
		return
	}
	q.joinLocked(f)
	q.dispatchLocked()
}

// withdraw takes f's targets not yet started out of line and returns
// their indexes.
func (q *queue) withdraw(f *fire) []int {
	q.mu.Lock()
	defer q.mu.Unlock()
	var left []int
	for i := f.next; i < len(f.j.Targets); i++ {
		left = append(left, i)
	}
	f.next = len(f.j.Targets)
	f.allStartedLocked()
	q.leaveIfIdleLocked(f)
	return left
}

// nextTarget is called by a goroutine of f whose target is done: it
// waits for another target of f to run, and returns false when f has none
// left to start.
func (q *queue) nextTarget(f *fire, idle chan int) (int, bool) {
	q.mu.Lock()
	if f.next >= len(f.j.Targets) {
		q.mu.Unlock()
		return 0, false
	}
	f.idle = append(f.idle, idle)
	q.mu.Unlock()
	select {
	case i := <-idle:
		return i, true
	case <-f.started:
		select { // handed the last target just before
		case i := <-idle:
			return i, true
		default:
			return 0, false
		}
	}
}

// waitSlot waits for a slot for a started target of f, under ctx; the
// caller releases it.
func (q *queue) waitSlot(ctx context.Context, f *fire) error {
	q.mu.Lock()
	if q.busy < q.limit { // then nobody waits: dispatch leaves no slot idle
		q.busy++
		q.mu.Unlock()
		return nil
	}
	w := &waiter{ready: make(chan struct{})}
	f.waiters = append(f.waiters, w)
	q.joinLocked(f)
	q.mu.Unlock()

	var err error
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-f.stop:
		err = errHalted
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.granted { // granted as ctx ended: pass it on
		q.releaseLocked()
		return err
	}
	for i, x := range f.waiters {
		if x == w {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			break
		}
	}
	q.leaveIfIdleLocked(f)
	return err
}

// release gives a slot back.
func (q *queue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releaseLocked()
}

func (q *queue) releaseLocked() {
	q.busy--
	q.dispatchLocked()
}

// dispatchLocked hands free slots to the fires in the ring, one per fire
// in turn.
func (q *queue) dispatchLocked() {
	for q.busy < q.limit && len(q.ring) > 0 {
		if q.pos >= len(q.ring) {
			q.pos = 0
		}
		f := q.ring[q.pos]
		switch {
		case len(f.waiters) > 0:
			w := f.waiters[0]
			f.waiters[0] = nil
			f.waiters = f.waiters[1:]
			q.busy++
			w.granted = true
			close(w.ready)
		case f.next < len(f.j.Targets):
			i := f.next
			f.next++
			q.busy++
			if n := len(f.idle); n > 0 {
				f.idle[n-1] <- i // buffered; the goroutine is waiting
				f.idle[n-1] = nil
				f.idle = f.idle[:n-1]
			} else {
				f.launch(i)
			}
			if f.next == len(f.j.Targets) {
				f.allStartedLocked()
			}
		}
		if !q.leaveIfIdleLocked(f) {
			q.pos++
		}
	}
}

// allStartedLocked closes f.started: no target of f will start any more.
// Its idle goroutines end.
func (f *fire) allStartedLocked() {
	if !f.allStarted {
		f.allStarted = true
		f.idle = nil
		close(f.started)
	}
}

// joinLocked puts f in the ring, if it is not there yet, as the fire
// served last in the current round.
func (q *queue) joinLocked(f *fire) {
	if f.inRing {
		return
	}
	f.inRing = true
	q.pos = min(q.pos, len(q.ring))
	q.ring = slices.Insert(q.ring, q.pos, f)
	q.pos++
}

// leaveIfIdleLocked takes f out of the ring when nothing of it waits, and
// reports whether it did.
func (q *queue) leaveIfIdleLocked(f *fire) bool {
	if !f.inRing || len(f.waiters) > 0 || f.next < len(f.j.Targets) {
		return false
	}
	if i := slices.Index(q.ring, f); i >= 0 {
		q.ring = slices.Delete(q.ring, i, i+1)
		if i < q.pos {
			q.pos--
		}
	}
	f.inRing = false
	f.waiters = nil // drop the backing array
	return true
}

// acquireToken waits for the account's 429 pause to end and takes a token
// of lim. One target of the account at a time waits for a token (the
// others wait for their turn to wait, first come first served), so the
// limiter's reservations do not run ahead of the requests sent: a request
// the transport paces itself (a second request of an action, such as
// SCNet's token fetch) waits behind at most one turn, and a rate lowered
// by a 429 applies to every turn taken after it.
func (q *queue) acquireToken(ctx context.Context, lim *ratelimit.Limiter) (*ratelimit.Ticket, error) {
	select {
	case q.token <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-q.token }()
	return lim.Acquire(ctx)
}

// limiter returns the account's current rate limiter.
func (q *queue) limiter() *ratelimit.Limiter {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lim
}

// describe says what an account's calls queue for, e.g. "account sandbox
// (concurrency 64, rate 4/s)".
func (q *queue) describe() string {
	q.mu.Lock()
	limit, lim := q.limit, q.lim
	q.mu.Unlock()
	k := descKey{limit: limit, perSecond: math.Inf(1)}
	if lim != nil {
		st := lim.Stats()
		k.perSecond, k.throttled = st.PerSecond, st.Throttled
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.desc == "" || q.descFor != k {
		q.desc, q.descFor = k.describe(q.account), k
	}
	return q.desc
}

func (k descKey) describe(account string) string {
	rate := "no rate limit"
	if k.perSecond < 1e308 {
		rate = "rate " + strconv.FormatFloat(k.perSecond, 'g', 4, 64) + "/s"
	}
	if k.throttled > 0 {
		rate += fmt.Sprintf(", %d HTTP 429 so far", k.throttled)
	}
	return fmt.Sprintf("account %s (concurrency %d, %s)", account, k.limit, rate)
}

// errHalted ends a wait when the fire stopped after an audit failure.
var errHalted = errors.New("fire stopped: audit log failed")

// turn is a target's right to make one vendor call or status read: a
// concurrency slot of its account and, where the account has a rate
// limiter, a token already taken (ticket), which the call's requests carry.
type turn struct {
	q      *queue
	ticket *ratelimit.Ticket
	queued time.Duration // from asking to getting it
	paused time.Duration // of queued: waiting out a 429 pause
}

// release gives the slot back.
func (t *turn) release() { t.q.release() }

// context returns ctx carrying the turn's token.
func (t *turn) context(ctx context.Context) context.Context {
	return ratelimit.WithTicket(ctx, t.ticket)
}

// note says how long the turn was queued, or "" when that is trivial.
func (t *turn) note() string {
	if t.queued < queuedNoticeable {
		return ""
	}
	s := "queued " + t.queued.Round(time.Millisecond).String() + " for " + t.q.describe()
	if t.paused > 0 {
		s += ", paused " + t.paused.Round(time.Millisecond).String() + " after HTTP 429"
	}
	return s
}

// queueError is why a target got no turn.
type queueError struct {
	bound  string // what ended the wait when its deadline did: "the next fire"
	waited time.Duration
	queue  string // the queue's description
	err    error
}

func (e *queueError) Error() string {
	why := "no turn before " + e.bound
	if errors.Is(e.err, context.Canceled) {
		why = "fire stopped while queued"
	}
	return fmt.Sprintf("%s: queued %s for %s: %v", why, e.waited.Round(time.Millisecond), e.queue, e.err)
}

func (e *queueError) Unwrap() error { return e.err }
