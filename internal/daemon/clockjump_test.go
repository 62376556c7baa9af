package daemon

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/engine"
	"github.com/cloudcron/scheduler/internal/state"
)

// TestClockJumpedBranches drives what watchClock does once its detector
// reports a jump (clockJumped), on the daemon's fake clock: every job's
// engine entry is rebuilt (reregisterLocked) after either jump; only a
// forward jump catches up the fires it skipped, a backward one never does.
func TestClockJumpedBranches(t *testing.T) {
	at := cuJan15
	e := newCUEnv(t)
	e.write(t, "",
		cuJob{name: "j", schedule: "0 * 15 1 *", action: "modelarts.notebook.start", catchup: "1h", targets: []string{"nb-1"}},
		cuJob{name: "k", schedule: never, action: "modelarts.notebook.stop", targets: []string{"nb-2"}})
	e.seedDone(t, "j", at(0, 0), at(10, 0))
	var clock atomic.Int64
	clock.Store(at(10, 20).UnixNano())
	d := e.rlStartNow(t, func() time.Time { return time.Unix(0, clock.Load()).UTC() })
	if n := len(cuRecords(t, e.audit, "", "j")); n != 0 {
		t.Fatalf("%d records at start; want none, nothing was missed", n)
	}
	entries := func() map[string]engine.EntryID {
		m := map[string]engine.EntryID{}
		for _, n := range []string{"j", "k"} {
			id, _, ok := d.entryOf(n)
			if !ok {
				t.Fatalf("job %s has no engine entry", n)
			}
			m[n] = id
		}
		return m
	}
	rebuilt := func(step string, before map[string]engine.EntryID) map[string]engine.EntryID {
		t.Helper()
		after := entries()
		for n, id := range before {
			if after[n] == id {
				t.Errorf("%s: job %s kept engine entry %d; want it rebuilt", step, n, id)
			}
		}
		if st := d.Status(); st.Jobs != 2 {
			t.Errorf("%s: Status counts %d jobs; want 2", step, st.Jobs)
		}
		return after
	}
	before := entries()

	// Backward: the wall clock reads 12:30 after going back; 11:00 and
	// 12:00 are behind it, but a backward jump skipped nothing.
	clock.Store(at(12, 30).UnixNano())
	d.clockJumped(state.Jump{Kind: state.JumpBackward, Skew: -time.Hour, From: at(13, 30), To: at(12, 30)})
	waitFires(d.Daemon)
	if recs := cuRecords(t, e.audit, "", "j"); len(recs) != 0 {
		t.Fatalf("a backward jump caught up: %+v; want no record", recs)
	}
	before = rebuilt("backward jump", before)

	// Forward: from 10:20 to 12:30; 12:00 runs, 11:00 is missed.
	d.clockJumped(state.Jump{Kind: state.JumpForward, Skew: 2*time.Hour + 10*time.Minute, From: at(10, 20), To: at(12, 30)})
	waitFires(d.Daemon)
	if runs := cuRecords(t, e.audit, audit.EventRun, "j"); !sameInstants(scheduledOf(runs), []time.Time{at(12, 0)}) {
		t.Errorf("after a forward jump: runs %v; want 12:00", scheduledOf(runs))
	}
	if missed := cuRecords(t, e.audit, audit.EventMissed, "j"); !sameInstants(scheduledOf(missed), []time.Time{at(11, 0)}) {
		t.Errorf("after a forward jump: missed %v; want 11:00", scheduledOf(missed))
	}
	rebuilt("forward jump", before)
}

// TestWatchReadingsHandlesJumps feeds watchClock's loop readings: equal
// advances of both clocks change nothing; a wall clock set back by an hour
// rebuilds the engine entries once, without catching up.
func TestWatchReadingsHandlesJumps(t *testing.T) {
	at := cuJan15
	e := newCUEnv(t)
	e.write(t, "", cuJob{name: "j", schedule: "0 * 15 1 *", action: "modelarts.notebook.start", catchup: "1h", targets: []string{"nb-1"}})
	e.seedDone(t, "j", at(0, 0), at(10, 0))
	d := e.rlStartNow(t, func() time.Time { return at(12, 30) })
	waitFires(d.Daemon) // the start's catch-up
	startRecs := len(cuRecords(t, e.audit, "", "j"))
	type reading struct {
		wall time.Time
		mono time.Duration
	}
	readings := make(chan reading, 1)
	tick := make(chan time.Time)
	stop := make(chan struct{})
	done := make(chan struct{})
	readings <- reading{at(12, 30), 0}
	go func() {
		defer close(done)
		d.watchReadings(stop, tick, func() (time.Time, time.Duration) { r := <-readings; return r.wall, r.mono })
	}()
	step := func(r reading) {
		readings <- r
		tick <- time.Time{}
	}
	entry := func() engine.EntryID { id, _, _ := d.entryOf("j"); return id }
	id0 := entry()
	// A step returns once the loop has taken the previous reading's tick
	// and handled it.
	step(reading{at(12, 30).Add(time.Second), time.Second}) // no jump
	step(reading{at(12, 30).Add(2 * time.Second), 2 * time.Second})
	if id := entry(); id != id0 {
		t.Fatalf("without a jump job j went from engine entry %d to %d; want it kept", id0, id)
	}
	step(reading{at(11, 30).Add(3 * time.Second), 3 * time.Second}) // set back an hour
	if id := entry(); id != id0 {
		t.Fatalf("without a jump job j went from engine entry %d to %d; want it kept", id0, id)
	}
	step(reading{at(11, 30).Add(4 * time.Second), 4 * time.Second})
	id1 := entry()
	if id1 == id0 {
		t.Fatalf("after a backward jump job j kept engine entry %d; want it rebuilt", id0)
	}
	step(reading{at(11, 30).Add(5 * time.Second), 5 * time.Second})
	if id := entry(); id != id1 {
		t.Errorf("the jump was handled again: engine entry %d, then %d", id1, id)
	}
	close(stop)
	<-done
	if n := len(cuRecords(t, e.audit, "", "j")); n != startRecs {
		t.Errorf("%d records after the jumps; want the %d of the start (a backward jump catches nothing up)", n, startRecs)
	}
}
