package state

import (
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
)

// TestCheckpointBetweenOutcomeAndDone: the executor writes a fire's outcome
// record to the audit log and the daemon then calls Done. A checkpoint in
// between records a tail past the outcome in a state without the Done; a
// crash right after must still find the fire done, not in flight (which
// would re-issue a start/stop or call a finished restart unknown).
func TestCheckpointBetweenOutcomeAndDone(t *testing.T) {
	dir := t.TempDir()
	j := openJournaled(t, dir)
	in := intentAt("on", t0.Add(time.Hour), "n1")
	if ok, err := j.s.Claim(Claim{Job: "on", Intent: in, Records: runRecords("on", in)}); !ok || err != nil {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	must(t, j.log.Append(final("on", in, "n1", audit.OutcomeSuccess)))
	must(t, j.s.Checkpoint()) // the tail now covers the outcome; Done has not come
	j.crash()
	r := openJournaled(t, dir)
	if got := r.s.Job("on"); !got.LastDone.Equal(in.Scheduled) || len(got.InFlight) != 0 {
		t.Errorf("Job(on) = %+v; want done at %v, nothing in flight", got, in.Scheduled)
	}
	if p := r.s.Pending(); len(p) != 0 {
		t.Errorf("Pending = %+v; want none", p)
	}
}
