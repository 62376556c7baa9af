package state

import (
	"strings"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/vendors"
)

func TestRecover(t *testing.T) {
	sched := utc("2026-03-02T19:00:00Z")
	now := sched.Add(3 * time.Minute)
	tests := []struct {
		action  string // from the catalogue
		reissue bool
	}{
		{"dataforest.app.start", true},
		{"dataforest.notebook.restart", false},
		{"dataforest.aiapp.kill", false},
		{"cdss.cluster.restart", false},
	}
	// Every start and stop of the catalogue is re-issued too.
	for name, info := range vendors.Catalogue {
		if info.Kind == vendors.Start || info.Kind == vendors.Stop {
			tests = append(tests, struct {
				action  string
				reissue bool
			}{name, true})
		}
	}
	for _, tc := range tests {
		t.Run(tc.action, func(t *testing.T) {
			info, ok := vendors.Catalogue[tc.action]
			if !ok {
				t.Fatalf("%s not in the catalogue", tc.action)
			}
			p := PendingIntent{Job: "nightly", Intent: Intent{
				RunID: "nightly@2026-03-02T19:00:00Z", Scheduled: sched, Action: tc.action, Account: "acct",
				Targets: []string{"nb-1", "nb-2"}, Idempotent: info.Idempotent(),
			}}
			d := Recover(p)
			if d.Reissue != tc.reissue {
				t.Fatalf("Recover(%s).Reissue = %v; want %v", tc.action, d.Reissue, tc.reissue)
			}
			wantOutcome := ""
			if !tc.reissue {
				wantOutcome = audit.OutcomeUnknown
				if !strings.Contains(d.Message, "NOT re-issued") || !strings.Contains(d.Message, "check the targets") {
					t.Errorf("Message = %q; want it to say not re-issued and to check the targets", d.Message)
				}
			} else if !strings.Contains(d.Message, "re-issuing") {
				t.Errorf("Message = %q; want it to say re-issuing", d.Message)
			}
			if d.Outcome != wantOutcome {
				t.Errorf("Outcome = %q; want %q", d.Outcome, wantOutcome)
			}
			for _, want := range []string{tc.action, "nb-1, nb-2", "nightly", p.RunID} {
				if !strings.Contains(d.Message, want) {
					t.Errorf("Message %q lacks %q", d.Message, want)
				}
			}
			recs := d.Records(p, now)
			if len(recs) != 2 {
				t.Fatalf("Records = %d; want one per target", len(recs))
			}
			for i, r := range recs {
				if r.Event != audit.EventRecover || r.Outcome != wantOutcome || r.Target != p.Targets[i] ||
					r.RunID != p.RunID || !r.Scheduled.Equal(sched) || !r.Time.Equal(now) ||
					r.Action != tc.action || r.Account != "acct" || r.Detail != d.Detail {
					t.Errorf("record %d = %+v", i, r)
				}
			}
		})
	}
}

func TestRecoverNoTargets(t *testing.T) {
	p := PendingIntent{Job: "j", Intent: Intent{RunID: "j@1", Scheduled: t0, Action: "x.restart"}}
	d := Recover(p)
	if d.Reissue || len(d.Records(p, t0)) != 1 || !strings.Contains(d.Message, "(no targets)") {
		t.Errorf("Recover without targets = %+v, %d records", d, len(d.Records(p, t0)))
	}
}
