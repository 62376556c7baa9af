package engine

import (
	"runtime"
	"sync"
	"time"
)

// Precision of a fire's start, and time to prepare it. cron sleeps on a
// Go timer, which the runtime wakes through epoll with millisecond
// granularity, and then starts the due jobs one after another: a fire
// would begin a millisecond or more after its instant, and the last of a
// thousand fires due together after all the others' bookkeeping. So cron
// is woken wakeLead early, every fire of an instant waits for it in one
// gate, and one waiter per instant sleeps until spinFor before it and
// yields in a loop for the rest: the fires start within microseconds of
// their instant, all together, for about spinFor of one core's time per
// distinct instant (none while nothing is due).
//
// The early wake is also when the Runner's prepare hook learns of each
// fire (SetPrepare): wakeLead is long enough for the daemon to open the
// connections a burst of fires will need before it is due, and shorter
// than a second, the shortest period a schedule can have, so that a fire
// is handed to cron only after the one before it ran.
const (
	wakeLead = 500 * time.Millisecond
	spinFor  = 2 * time.Millisecond
)

// PrepareLead is how long before its instant a fire is prepared
// (SetPrepare): the early wake.
const PrepareLead = wakeLead

// waited is how a wait in the gate ended.
type waited int

const (
	released  waited = iota // the instant came
	clockBack               // the instant is further away than the early wake explains
	stopped                 // the Runner was stopped meanwhile
)

// gate releases the fires of one instant together, at that instant.
type gate struct {
	mu    sync.Mutex
	waits map[int64]chan struct{} // by instant (Unix ns): closed when it came
}

func newGate() *gate { return &gate{waits: make(map[int64]chan struct{})} }

// wait returns released at t (at once if t has passed). The first caller
// for t watches the clock; the others block until it releases them. It
// returns clockBack, at once or while waiting, when t is further away
// than cron's early wake can explain: the wall clock went backwards, and
// the fire comes again when the clock reaches it (the daemon re-registers
// its jobs after a jump). It returns stopped when stop is closed first.
func (g *gate) wait(t time.Time, stop <-chan struct{}) waited {
	if !time.Now().Before(t) {
		return released
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
		select {
		case <-ch:
		case <-stop:
			return stopped
		}
		if !time.Now().Before(t) {
			return released
		}
		select {
		case <-stop: // the watcher was stopped, and let the others go
			return stopped
		default:
			return clockBack
		}
	}
	w := until(t, stop)
	g.mu.Lock()
	delete(g.waits, k)
	g.mu.Unlock()
	close(ch) // a stopped watcher releases the others too: they see stop, or the clock
	return w
}

// tooFar is how far ahead an instant may be when its fire waits. The
// daemon re-registers its jobs after a backward jump of more than
// state.DefaultJumpThreshold (2 s); a smaller one is waited out here. Where
// both happen, the run state's claim lets one of the two fires run.
const tooFar = wakeLead + 2*time.Second

// until returns released at t, clockBack when t is more than tooFar
// away, or stopped when stop is closed first: it sleeps while t is more
// than spinFor away and yields the processor in a loop for the rest. A
// clock that stands still while it spins (a fake clock, as in
// testing/synctest) moves only while everyone sleeps: then it sleeps the
// rest.
func until(t time.Time, stop <-chan struct{}) waited {
	var last time.Time
	still := 0
	for {
		now := time.Now()
		d := t.Sub(now)
		var sleep time.Duration
		switch {
		case d <= 0:
			return released
		case d > tooFar:
			return clockBack
		case still > 100: // the clock does not move while we spin
			sleep = d
		case d > spinFor:
			sleep = d - spinFor
		default:
			if now.Equal(last) {
				still++
			} else {
				still = 0
			}
			last = now
			runtime.Gosched()
			continue
		}
		tm := time.NewTimer(sleep)
		select {
		case <-tm.C:
		case <-stop:
			tm.Stop()
			return stopped
		}
	}
}
