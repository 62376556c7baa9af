package observe

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cloudcron/scheduler/internal/audit"
)

// contractMetrics are the metric names of design.md "Observability and
// notification contract", copied here: the test fails if one is renamed.
var contractMetrics = []string{
	"scheduler_build_info", "scheduler_job_info", "scheduler_job_next_fire_timestamp_seconds",
	"scheduler_job_last_success_timestamp_seconds", "scheduler_actions_total", "scheduler_action_duration_seconds",
	"scheduler_fire_lag_seconds", "scheduler_vendor_requests_total", "scheduler_throttled_total",
	"scheduler_window_desired_state", "scheduler_window_actual_state", "scheduler_reconcile_total",
	"scheduler_overrides_active", "scheduler_saved_hours_total", "scheduler_config_last_reload_successful",
	"scheduler_config_last_reload_success_timestamp_seconds", "scheduler_audit_write_errors_total",
}

var t0 = time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)

// fire returns the records of one fire of job on targets: intents, then
// per target the given outcomes as attempts.
func fire(job string, scheduled time.Time, lag time.Duration, outcomes map[string][]audit.Record) []audit.Record {
	run := job + "@" + scheduled.Format(time.RFC3339)
	var out []audit.Record
	for tgt := range outcomes {
		out = append(out, audit.Record{Time: scheduled.Add(lag), Event: audit.EventRun, Job: job, RunID: run, Scheduled: scheduled,
			Action: "cdss.cmak.restart", Account: "ncp", Target: tgt})
	}
	for tgt, recs := range outcomes {
		for i, r := range recs {
			r.Job, r.RunID, r.Scheduled, r.Target, r.Action, r.Account = job, run, scheduled, tgt, "cdss.cmak.restart", "ncp"
			r.Attempt = i + 1
			if r.Event == "" {
				r.Event = audit.EventAttempt
			}
			if r.Time.IsZero() {
				r.Time = scheduled.Add(lag + time.Duration(i+1)*time.Second)
			}
			out = append(out, r)
		}
	}
	return out
}

func testStatus(tr *Tracker) func() Status {
	return func() Status {
		st := Status{Time: t0, Ready: true, Version: "test",
			Jobs: []Job{{Name: "cmak", Schedule: "0 9 * * *", Timezone: "Asia/Seoul", Action: "cdss.cmak.restart", Account: "ncp",
				Targets: []string{"a", "b"}, NextFire: t0.Add(24 * time.Hour)}},
			Windows:   []Window{{Name: "lab", Targets: []WindowTarget{{Target: "nb-1", Desired: "on", Actual: "off"}, {Target: "nb-2", Desired: "off", Actual: "unknown"}}}},
			Overrides: []Override{{Window: "lab", State: "on", Until: t0.Add(time.Hour)}},
		}
		tr.Fill(&st)
		return st
	}
}

func TestMetricsFromRecordStream(t *testing.T) {
	tr := NewTracker()
	m := NewMetrics("v9.9.9")
	m.SetStatus(testStatus(tr))
	h := NewHub(tr, m)
	defer h.Close()

	ok := fire("cmak", t0, 20*time.Millisecond, map[string][]audit.Record{
		"a": {{Outcome: audit.OutcomeRetry, HTTPStatus: 429, DurationMS: 100}, {Outcome: audit.OutcomeSuccess, HTTPStatus: 200, DurationMS: 300}},
		"b": {{Outcome: audit.OutcomeSuccess, HTTPStatus: 200, DurationMS: 200}},
	})
	h.Publish(ok[:2], nil) // intents in one durable step, as the executor writes them
	h.Publish(ok[2:], nil)
	bad := fire("cmak", t0.Add(time.Hour), 2*time.Second, map[string][]audit.Record{
		"a": {{Outcome: audit.OutcomeFailure, HTTPStatus: 403, VendorCode: "403", Error: "not allowed or not exists", DurationMS: 50}},
		"b": {{Outcome: audit.OutcomeFailure, Error: "dial tcp: connection refused", DurationMS: 5}},
	})
	h.Publish(bad, nil)
	h.Publish([]audit.Record{{Time: t0.Add(2 * time.Hour), Event: audit.EventReload, Outcome: audit.OutcomeFailure, Error: "x.yaml:3:1: bad"}}, nil)
	h.Publish([]audit.Record{{Time: t0, Event: "reconcile", Job: "lab", Action: "modelarts.notebook.start", Target: "nb-1", Outcome: audit.OutcomeSuccess}}, nil)
	h.Publish(nil, errors.New("write audit.jsonl: no space left on device"))
	m.AddSavedHours("lab", 1.5)
	h.Sync()

	checks := []struct {
		name string
		got  float64
		want float64
	}{
		{"actions success", testutil.ToFloat64(m.actions.WithLabelValues("cmak", "cdss.cmak.restart", "ncp", "success")), 2},
		{"actions retry", testutil.ToFloat64(m.actions.WithLabelValues("cmak", "cdss.cmak.restart", "ncp", "retry")), 1},
		{"actions failure", testutil.ToFloat64(m.actions.WithLabelValues("cmak", "cdss.cmak.restart", "ncp", "failure")), 2},
		{"vendor 200", testutil.ToFloat64(m.vendorRequests.WithLabelValues("ncp", "200")), 2},
		{"vendor 429", testutil.ToFloat64(m.vendorRequests.WithLabelValues("ncp", "429")), 1},
		{"vendor none", testutil.ToFloat64(m.vendorRequests.WithLabelValues("ncp", "none")), 1},
		{"throttled", testutil.ToFloat64(m.throttled.WithLabelValues("ncp")), 1},
		{"reconcile", testutil.ToFloat64(m.reconcile.WithLabelValues("lab")), 1},
		{"saved hours", testutil.ToFloat64(m.savedHours.WithLabelValues("lab")), 1.5},
		{"reload ok", testutil.ToFloat64(m.reloadOK), 0},
		{"audit errors", testutil.ToFloat64(m.auditErrors), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}

	body := scrape(t, m)
	for _, name := range contractMetrics {
		if !strings.Contains(body, "\n"+name+"{") && !strings.Contains(body, "\n"+name+" ") && !strings.Contains(body, "\n"+name+"_bucket{") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	for _, want := range []string{
		// two fires, one lag each (not one per target): 0.02 s and 2 s
		"scheduler_fire_lag_seconds_count 2", "scheduler_fire_lag_seconds_sum 2.02",
		"scheduler_action_duration_seconds_count 5",
		`scheduler_job_info{account="ncp",action="cdss.cmak.restart",job="cmak",schedule="0 9 * * *",timezone="Asia/Seoul"} 1`,
		`scheduler_job_last_success_timestamp_seconds{job="cmak"} ` + promFloat(t0),
		`scheduler_job_next_fire_timestamp_seconds{job="cmak"} ` + promFloat(t0.Add(24*time.Hour)),
		`scheduler_window_desired_state{target="nb-1",window="lab"} 1`,
		`scheduler_window_actual_state{target="nb-1",window="lab"} 0`,
		`scheduler_overrides_active 1`,
		`scheduler_job_last_fire_timestamp_seconds{job="cmak"} ` + promFloat(t0.Add(time.Hour)),
		`scheduler_build_info{goversion="go`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, `scheduler_window_actual_state{target="nb-2"`) {
		t.Error("an unknown actual state is exported; want it absent")
	}
}

// promFloat formats t as the text exposition format writes a Unix time.
func promFloat(t time.Time) string {
	return strconv.FormatFloat(float64(t.Unix()), 'g', -1, 64)
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(Handler(Source{Metrics: m, Status: func() Status { return Status{} }, Live: func() bool { return true }}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return "\n" + string(b)
}

func TestTrackerRuns(t *testing.T) {
	tr := NewTracker()
	st := func() Status {
		s := Status{Jobs: []Job{{Name: "cmak"}}}
		tr.Fill(&s)
		return s
	}
	ok := fire("cmak", t0, 0, map[string][]audit.Record{"a": {{Outcome: audit.OutcomeSuccess}}, "b": {{Outcome: audit.OutcomeSuccess}}})
	tr.Observe(Batch{Records: ok[:2]})
	if got := st().Jobs[0].Last; got == nil || got.Outcome != "running" || len(got.Targets) != 2 {
		t.Fatalf("after intents: last = %+v; want running on 2 targets", got)
	}
	tr.Observe(Batch{Records: ok[2:3]})
	if got := st().Jobs[0].Last.Outcome; got != "running" {
		t.Errorf("one target done: outcome %q; want running", got)
	}
	tr.Observe(Batch{Records: ok[3:]})
	s := st()
	if s.Jobs[0].Last.Outcome != "success" || !s.Jobs[0].LastSuccess.Equal(t0) {
		t.Errorf("both done: %+v, last success %v; want success at %v", s.Jobs[0].Last, s.Jobs[0].LastSuccess, t0)
	}

	// A later fire fails on one target: the run is a failure with that
	// target's error; the last success stays.
	bad := fire("cmak", t0.Add(time.Hour), 0, map[string][]audit.Record{
		"a": {{Outcome: audit.OutcomeSuccess}},
		"b": {{Outcome: audit.OutcomeRetry, Error: "503"}, {Outcome: audit.OutcomeFailure, Error: "403 refused"}},
	})
	tr.Observe(Batch{Records: bad})
	s = st()
	if l := s.Jobs[0].Last; l.Outcome != "failure" || l.Error != "403 refused" || !s.Jobs[0].LastSuccess.Equal(t0) {
		t.Errorf("failed fire: %+v, last success %v; want failure with the target's error, success still %v", l, s.Jobs[0].LastSuccess, t0)
	}
	if len(s.RecentFailures) != 1 || s.RecentFailures[0].Target != "b" {
		t.Errorf("recent failures = %+v; want the one failure", s.RecentFailures)
	}
	// An older fire's late record (a catch-up's missed record) does not
	// replace the newest run.
	tr.Observe(Batch{Records: []audit.Record{{Event: audit.EventMissed, Job: "cmak", RunID: "cmak@old", Scheduled: t0.Add(-time.Hour), Target: "a", Outcome: audit.OutcomeMissed}}})
	if l := st().Jobs[0].Last; l.RunID != bad[0].RunID {
		t.Errorf("after an older missed record, last run = %s; want %s", l.RunID, bad[0].RunID)
	}
	// verify_failed makes the run verify_failed.
	v := fire("cmak", t0.Add(2*time.Hour), 0, map[string][]audit.Record{"a": {{Outcome: audit.OutcomeSuccess}, {Event: audit.EventVerify, Outcome: audit.OutcomeVerifyFailed, Error: "state ERROR"}}})
	tr.Observe(Batch{Records: v})
	if l := st().Jobs[0].Last; l.Outcome != audit.OutcomeVerifyFailed || l.Targets[0].Verify != audit.OutcomeVerifyFailed {
		t.Errorf("verify failed: %+v; want verify_failed", l)
	}
}

func TestHubNeverBlocksPublisher(t *testing.T) {
	release := make(chan struct{})
	var got []string
	slow := SinkFunc(func(b Batch) {
		<-release
		got = append(got, b.Records[0].Job)
	})
	h := NewHub(slow)
	// The sink is stuck; publishing still returns at once.
	for _, j := range []string{"a", "b", "c"} {
		h.Publish([]audit.Record{{Job: j}}, nil)
	}
	close(release)
	h.Sync()
	h.Close()
	if !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("sink saw %v; want a, b, c in order", got)
	}
	h.Publish([]audit.Record{{Job: "late"}}, nil) // after Close: ignored, no panic
}

func TestServerEndpoints(t *testing.T) {
	ready, live := true, true
	st := Status{Version: "v1", Jobs: []Job{{Name: "<script>x</script>"}}}
	srv := httptest.NewServer(Handler(Source{Metrics: NewMetrics("v1"), Live: func() bool { return live },
		Status: func() Status { s := st; s.Ready = ready; s.Problem = "audit log not writable"; return s }}))
	defer srv.Close()
	get := func(path string) (int, string, http.Header) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	if c, _, _ := get("/livez"); c != 200 {
		t.Errorf("/livez = %d; want 200", c)
	}
	if c, _, _ := get("/readyz"); c != 200 {
		t.Errorf("/readyz = %d; want 200", c)
	}
	live, ready = false, false
	if c, _, _ := get("/livez"); c != 503 {
		t.Errorf("/livez with the engine stalled = %d; want 503", c)
	}
	if c, b, _ := get("/readyz"); c != 503 || !strings.Contains(b, "audit log not writable") {
		t.Errorf("/readyz not ready = %d %q; want 503 with the reason", c, b)
	}
	c, b, _ := get("/api/v1/status")
	var got Status
	if c != 200 || json.Unmarshal([]byte(b), &got) != nil || got.Version != "v1" || len(got.Jobs) != 1 {
		t.Errorf("/api/v1/status = %d %q", c, b)
	}
	c, b, hdr := get("/")
	if c != 200 || !strings.Contains(b, "<title>scheduler status</title>") || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("/ = %d, CSP %q", c, hdr.Get("Content-Security-Policy"))
	}
	for _, ext := range []string{"http://", "https://", "//cdn"} {
		if i := strings.Index(b, ext); i >= 0 {
			t.Errorf("status page references an external resource near %q", b[max(0, i-40):min(len(b), i+60)])
		}
	}
	if c, _, _ := get("/nothing"); c != 404 {
		t.Errorf("/nothing = %d; want 404", c)
	}
}

func TestCountSaved(t *testing.T) {
	m := NewMetrics("x")
	st := Status{Windows: []Window{
		{Name: "lab", Targets: []WindowTarget{{Desired: "off", Actual: "off"}, {Desired: "off", Actual: "on"}, {Desired: "off", Actual: "off"}, {Desired: "on", Actual: "off"}}},
		{Name: "db", Targets: []WindowTarget{{Desired: "on", Actual: "on"}}},
	}}
	m.CountSaved(st, 30*time.Minute)
	m.CountSaved(st, 30*time.Minute)
	if got := testutil.ToFloat64(m.savedHours.WithLabelValues("lab")); got != 2 {
		t.Errorf("saved hours of lab = %v; want 2 (two targets kept off for an hour)", got)
	}
	if n := testutil.CollectAndCount(m.savedHours); n != 1 {
		t.Errorf("%d saved_hours_total series; want only lab's (db saved nothing)", n)
	}
}
