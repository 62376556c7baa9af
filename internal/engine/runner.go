package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"
)

// EntryID identifies a job added to a Runner.
type EntryID uint64

// shards is how many cron.Cron instances a Runner spreads its jobs over.
// A running cron.Cron sorts all its entries after every Add and Remove:
// one instance made re-registering 10 000 jobs (a reload that changes
// them all, a clock jump) cost 4.4 s of O(n log n) sorts, with fires
// blocked behind the daemon's lock meanwhile. Each shard sorts only its
// own; an idle shard costs a goroutine and a timer, no CPU.
const shards = 64

// Runner drives schedules with robfig/cron/v3 (its jobs spread over
// shards cron.Cron instances) and calls each
// job's callback, in its own goroutine, with the instant that fire was
// scheduled for. It neither skips nor delays fires: overlap policy belongs
// to the caller. The only cron.Chain wrapper is cron.Recover: a panicking
// callback is logged and recovered, and later fires go on.
//
// How the scheduled instant reaches the callback: cron.Cron calls a job's
// Schedule.Next once when it starts (or when the job is added while
// running) and once right after each run it starts, always from its single
// scheduling goroutine, and runs the job at the instant the latest Next
// returned. Each job's schedule is wrapped so every non-zero Next result is
// appended to a per-job queue, and each run pops the oldest entry. The run's
// goroutine may pop only after cron has already pushed the following fire,
// which is why it is a queue and not a single "last" value.
type Runner struct {
	log   zerolog.Logger
	crons [shards]*cron.Cron
	seq   EntryID // the last EntryID handed out

	gate    *gate                                  // the fires of one instant wait here for it together
	halt    atomic.Pointer[chan struct{}]          // closed by Stop: the fires waiting in the gate end there
	prepare func(name string, scheduled time.Time) // see SetPrepare

	mu      sync.Mutex
	entries map[EntryID]*entry
	stopped context.Context // done when the previous Stop's callbacks returned
}

// entry is one job: its schedule wrapped to queue the fires cron asked for.
type entry struct {
	name  string
	shard int
	cid   cron.EntryID // its id in crons[shard]
	sched Schedule
	fire  func(scheduled time.Time)
	r     *Runner // its log, gate and hooks: a logger per job cost 112 bytes each

	mu      sync.Mutex
	removed bool        // by Remove: a fire already handed to cron does not run
	waiting int64       // the fire waiting in the gate for its instant (Unix ns), 0 if none: NextFire's answer meanwhile
	queued  []time.Time // fires handed to cron and not yet run, oldest first
	next    time.Time   // the latest fire handed to cron
	from    time.Time   // StartFrom's instant, while the fires since it are handed over
	began   time.Time   // the instant of cron's first Next after StartFrom
}

// Next implements cron.Schedule: it records the fire it hands to cron,
// and hands it over wakeLead early (see gate): cron wakes then, and Run
// waits for the exact instant. Each fire is after the one handed over
// before it, so the early wake (cron asks again at fire-wakeLead) never
// yields the same fire twice, and a fire due less than wakeLead after a
// Start or an Add is not lost: cron runs it at once and Run waits for it.
func (e *entry) Next(t time.Time) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.from.IsZero() {
		// Since StartFrom: cron's goroutine may begin well after from (a
		// loaded machine); every fire in between is handed over, one per
		// call, each already due, before those after it began.
		if e.began.IsZero() {
			e.began = t
		}
		if e.next.IsZero() {
			if e.from.Before(t) {
				t = e.from
			}
		} else if e.next.Before(e.began) {
			t = e.next
		}
	}
	if t.Before(e.next) {
		t = e.next
	}
	n := e.sched.Next(t)
	if !e.from.IsZero() && (n.IsZero() || !n.Before(e.began)) {
		e.from, e.began = time.Time{}, time.Time{}
	}
	if n.IsZero() { // no more fires
		e.next = n
		return n
	}
	e.next = n
	e.queued = append(e.queued, n)
	return n.Add(-wakeLead)
}

// Run implements cron.Job: it pops the fire cron is running and calls back.
func (e *entry) Run() {
	e.mu.Lock()
	var scheduled time.Time
	if len(e.queued) > 0 {
		scheduled = e.queued[0]
		e.queued = e.queued[1:]
		e.waiting = scheduled.UnixNano()
	}
	e.mu.Unlock()
	if scheduled.IsZero() { // cannot happen with cron.Cron v3.0.1; never drop a fire
		scheduled = time.Now()
		e.r.log.Error().Str("job", e.name).Time("now", scheduled).Msg("no queued fire for this run; using the current time")
	}
	r := e.r
	if r.prepare != nil && time.Until(scheduled) > spinFor {
		r.prepare(e.name, scheduled)
	}
	halt := r.halt.Load()
	if halt == nil { // not started: cannot happen, cron runs jobs only once started
		halt = new(chan struct{})
	}
	w := r.gate.wait(scheduled, *halt)
	e.mu.Lock()
	if e.waiting == scheduled.UnixNano() {
		e.waiting = 0
	}
	removed := e.removed
	e.mu.Unlock()
	switch w {
	case clockBack:
		r.log.Warn().Str("job", e.name).Time("scheduled", scheduled).Time("now", time.Now()).
			Msg("the wall clock went back before this fire; it runs when the clock reaches it again")
		return
	case stopped:
		r.log.Debug().Str("job", e.name).Time("scheduled", scheduled).Msg("stopped before the fire was due; not run")
		return
	}
	if removed {
		// Removed (a reload, a clock jump) while it waited for its
		// instant: the job's new entry, if any, has its own fires.
		r.log.Debug().Str("job", e.name).Time("scheduled", scheduled).Msg("removed before the fire was due; not run")
		return
	}
	r.log.Debug().Str("job", e.name).Time("scheduled", scheduled).Msg("fire")
	e.fire(scheduled)
}

// NewRunner returns a stopped Runner that logs through log.
func NewRunner(log zerolog.Logger) *Runner {
	log = log.With().Str("component", "engine").Logger()
	cl := cronLogger{log: log}
	r := &Runner{
		log:     log,
		entries: make(map[EntryID]*entry),
		gate:    newGate(),
	}
	for i := range r.crons {
		r.crons[i] = cron.New(
			cron.WithLocation(time.UTC), // each Schedule carries its own zone
			cron.WithLogger(cl),
			cron.WithChain(cron.Recover(cl)), // nothing that skips or delays
		)
	}
	return r
}

// SetPrepare sets a hook called with each fire about wakeLead (half a
// second) before it is due, in the fire's own goroutine, before it waits
// for its instant; the daemon opens the connections a burst will need
// then. It must be set before Start and return quickly; a fire due sooner
// (just after a Start or an Add) is not prepared.
func (r *Runner) SetPrepare(prepare func(name string, scheduled time.Time)) { r.prepare = prepare }

// Add registers a job; fire is called with the scheduled instant of each
// fire of s, in s's zone. It may be called before or after Start.
func (r *Runner) Add(name string, s Schedule, fire func(scheduled time.Time)) (EntryID, error) {
	if s == nil {
		return 0, errors.New("add job " + name + ": nil schedule")
	}
	if fire == nil {
		return 0, errors.New("add job " + name + ": nil callback")
	}
	e := &entry{name: name, sched: s, fire: fire, r: r}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	id := r.seq
	e.shard = int(id % shards)
	e.cid = r.crons[e.shard].Schedule(e, e)
	r.entries[id] = e
	return id, nil
}

// Remove unregisters a job; a callback already running is not interrupted.
func (r *Runner) Remove(id EntryID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[id]
	if e == nil {
		return
	}
	r.crons[e.shard].Remove(e.cid)
	delete(r.entries, id)
	e.mu.Lock()
	e.removed = true
	e.mu.Unlock()
}

// NextFire returns the next fire of job id that the runner waits for, or,
// before Start, the next fire after now. It is zero for an unknown id or a
// schedule with no more fires.
func (r *Runner) NextFire(id EntryID) time.Time {
	r.mu.Lock()
	e := r.entries[id]
	r.mu.Unlock()
	if e == nil {
		return time.Time{}
	}
	e.mu.Lock()
	next, waiting := e.next, e.waiting
	e.mu.Unlock()
	if waiting != 0 && time.Now().UnixNano() < waiting {
		return time.Unix(0, waiting).In(next.Location()) // cron already holds the fire after it
	}
	if next.IsZero() {
		return e.sched.Next(time.Now())
	}
	return next
}

// Start starts the scheduler in its own goroutine; it does nothing if
// already started. After a Stop it first waits until the callbacks that
// were running then have returned. Each job's first fire is the first
// after the instant cron's goroutine begins, which may be well after Start
// returns on a loaded machine; StartFrom names that instant.
func (r *Runner) Start() { r.StartFrom(time.Time{}) }

// StartFrom is Start with each job's fires counted from the instant from
// (a zero from: from when cron begins): every fire after from runs, those
// already due by the time cron begins at once. The daemon passes the
// instant its catch-up covers, so that a fire due between catch-up's plan
// and the engine's start is nobody's to lose.
func (r *Runner) StartFrom(from time.Time) {
	r.mu.Lock()
	stopped := r.stopped
	r.stopped = nil
	r.mu.Unlock()
	if stopped != nil {
		<-stopped.Done() // without r.mu: a callback may call NextFire
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.entries {
		e.mu.Lock()
		if stopped != nil {
			// cron asks every schedule for its next fire again on start;
			// the fires queued before the stop were never run.
			e.queued, e.next = nil, time.Time{}
		}
		e.from, e.began = from, time.Time{}
		e.mu.Unlock()
	}
	halt := make(chan struct{})
	r.halt.Store(&halt)
	for _, c := range r.crons {
		c.Start()
	}
}

// Stop stops scheduling new fires and returns a context that is done when
// the callbacks already running have returned. The fires waiting for
// their instant (woken early, see wakeLead) end there without running.
func (r *Runner) Stop() context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	if halt := r.halt.Swap(nil); halt != nil {
		close(*halt)
	}
	dones := make([]context.Context, len(r.crons))
	for i, c := range r.crons {
		dones[i] = c.Stop()
	}
	go func() {
		for _, d := range dones {
			<-d.Done()
		}
		cancel()
	}()
	r.stopped = ctx
	return ctx
}

// cronLogger adapts cron.Logger to zerolog; cron's chatty Info goes to debug.
type cronLogger struct{ log zerolog.Logger }

func (l cronLogger) Info(msg string, kv ...any) { l.log.Debug().Fields(kv).Msg(msg) }

func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error().Err(err).Fields(kv).Msg(msg)
}
