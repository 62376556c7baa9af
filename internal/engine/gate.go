package engine

import (
	"runtime"
	"sync"
	"time"
)

// Precision of a fire's start. cron sleeps on a Go timer, which the
// runtime wakes through epoll with millisecond granularity, and then
// starts the due jobs one after another: a fire would begin a millisecond
// or more after its instant, and the last of a thousand fires due together
// after all the others' bookkeeping. So cron is woken wakeLead early, every
// fire of an instant waits for it in one gate, and one waiter per instant
// sleeps until spinFor before it and yields in a loop for the rest: the
// fires start within microseconds of their instant, all together, for
// about spinFor of one core's time per distinct instant (none while
// nothing is due).
const (
	wakeLead = 10 * time.Millisecond
	spinFor  = 2 * time.Millisecond
)

// gate releases the fires of one instant together, at that instant.
type gate struct {
	mu    sync.Mutex
	waits map[int64]chan struct{} // by instant (Unix ns): closed when it came
}

func newGate() *gate { return &gate{waits: make(map[int64]chan struct{})} }

// wait returns true at t (at once if t has passed). The first caller for
// t watches the clock; the others block until it releases them. It
// returns false, at once or while waiting, when t is further away than
// cron's early wake can explain: the wall clock went backwards, and the
// fire comes again when the clock reaches it (the daemon re-registers its
// jobs after a jump).
func (g *gate) wait(t time.Time) bool {
	if !time.Now().Before(t) {
		return true
	}
	k := t.UnixNano()
	g.mu.Lock()
	ch, waiting := g.waits[k]
	if !waiting {
		ch = make(chan struct{})
		g.waits[k] = ch
	}
	g.mu.Unlock()
	if waiting {
		<-ch
		return !time.Now().Before(t)
	}
	ok := until(t)
	g.mu.Lock()
	delete(g.waits, k)
	g.mu.Unlock()
	close(ch)
	return ok
}

// tooFar is how far ahead an instant may be when its fire waits. The
// daemon re-registers its jobs after a backward jump of more than
// state.DefaultJumpThreshold (2 s); a smaller one is waited out here. Where
// both happen, the run state's claim lets one of the two fires run.
const tooFar = wakeLead + 2*time.Second

// until returns true at t, or false when t is more than tooFar away: it sleeps while t is more than spinFor away and
// yields the processor in a loop for the rest. A clock that stands still
// while it spins (a fake clock, as in testing/synctest) moves only while
// everyone sleeps: then it sleeps the rest.
func until(t time.Time) bool {
	var last time.Time
	still := 0
	for {
		now := time.Now()
		d := t.Sub(now)
		switch {
		case d <= 0:
			return true
		case d > tooFar:
			return false
		case still > 100: // the clock does not move while we spin
			time.Sleep(d)
		case d > spinFor:
			time.Sleep(d - spinFor)
		default:
			if now.Equal(last) {
				still++
			} else {
				still = 0
			}
			last = now
			runtime.Gosched()
		}
	}
}
