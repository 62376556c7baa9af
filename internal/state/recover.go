package state

import (
	"fmt"
	"strings"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
)

// Decision is what to do about an intent a crash left without outcome.
type Decision struct {
	// Reissue: run the action again on the intent's targets (it is
	// idempotent by state: start, stop), then Store.Done.
	Reissue bool
	// Outcome is the audit outcome of the recover records: "" when
	// re-issued (the re-issued attempts carry the outcome), else
	// audit.OutcomeUnknown; then call Store.Done at once, the fire is
	// settled and is never re-issued.
	Outcome string
	// Detail is the audit detail of the recover records.
	Detail string
	// Message is the log line; a non-re-issued intent logs at error level,
	// because someone has to check the targets.
	Message string
}

// Recover decides about p, an intent without outcome found on start: an
// idempotent action (start, stop) is re-issued; any other (restart, kill)
// is never re-issued blindly, its outcome is unknown.
func Recover(p PendingIntent) Decision {
	targets := strings.Join(p.Targets, ", ")
	if targets == "" {
		targets = "(no targets)"
	}
	what := fmt.Sprintf("%s on %s (job %s, run %s, scheduled %s)",
		p.Action, targets, p.Job, p.RunID, p.Scheduled.Format(time.RFC3339))
	if p.Idempotent {
		return Decision{
			Reissue: true,
			Detail:  "intent without outcome after a crash; " + p.Action + " is idempotent, re-issuing",
			Message: "a crash interrupted " + what + "; re-issuing it, it is idempotent",
		}
	}
	return Decision{
		Outcome: audit.OutcomeUnknown,
		Detail:  "intent without outcome after a crash; " + p.Action + " is not idempotent, not re-issued; check the targets",
		Message: "a crash interrupted " + what + "; its outcome is unknown and it is NOT re-issued " +
			"because repeating it is not safe: check the targets by hand",
	}
}

// Records returns the audit records of decision d about p, one
// audit.EventRecover record per target (one without target if p has
// none), timed now.
func (d Decision) Records(p PendingIntent, now time.Time) []audit.Record {
	targets := p.Targets
	if len(targets) == 0 {
		targets = []string{""}
	}
	recs := make([]audit.Record, len(targets))
	for i, t := range targets {
		recs[i] = audit.Record{
			Time:      now,
			Event:     audit.EventRecover,
			Job:       p.Job,
			RunID:     p.RunID,
			Scheduled: p.Scheduled,
			Action:    p.Action,
			Account:   p.Account,
			Target:    t,
			Outcome:   d.Outcome,
			Detail:    d.Detail,
		}
	}
	return recs
}

// MissedRecords returns the audit.EventMissed records of plan c for job,
// oldest first, timed now: one per listed missed fire, and one summary
// record (without scheduled time) for the unlisted ones. runID names a
// fire, such as executor.RunID.
func (c CatchUp) MissedRecords(job string, now time.Time, runID func(job string, scheduled time.Time) string) []audit.Record {
	var recs []audit.Record
	if c.Unlisted > 0 {
		more := ""
		if c.UnlistedAtLeast {
			more = " or more"
		}
		recs = append(recs, audit.Record{
			Time: now, Event: audit.EventMissed, Job: job, Outcome: audit.OutcomeMissed,
			Detail: fmt.Sprintf("%d%s older missed fires after %s not listed one by one: %s",
				c.Unlisted, more, c.Reference.Format(time.RFC3339), c.UnlistedReason),
		})
	}
	for _, m := range c.Missed {
		recs = append(recs, audit.Record{
			Time: now, Event: audit.EventMissed, Job: job, RunID: runID(job, m.Scheduled),
			Scheduled: m.Scheduled, Outcome: audit.OutcomeMissed, Detail: m.Reason,
		})
	}
	return recs
}
