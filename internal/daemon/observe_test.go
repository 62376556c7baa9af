package daemon

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/notify"
	"github.com/cloudcron/scheduler/internal/observe"
)

const observeConfig = `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
defaults:
  timeout: 2s
  retry: {initial_interval: 50ms, max_interval: 100ms, max_elapsed: 1s, max_attempts: 2}
http: {listen: "127.0.0.1:0"}
accounts:
  sb:
    vendor: sandbox
    faults: [{target: doomed, action: dataforest.aiapp.kill, kind: reject}]
jobs:
  - {name: fine, schedule: "* * * * * *", account: sb, action: cdss.cmak.restart, targets: ["1484848"]}
  - {name: broken, schedule: "* * * * * *", account: sb, action: dataforest.aiapp.kill, targets: [doomed]}
`

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHTTPListenerServesTheRecordStream runs a daemon with http.listen
// against the emulated cloud: a failing fire shows in /api/v1/status and
// in scheduler_actions_total, the job metrics follow the schedule, and a
// rejected reload turns config_last_reload_successful to 0.
func TestHTTPListenerServesTheRecordStream(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(observeConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Start(Options{ConfigPath: cfg, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown()
	base := "http://" + d.HTTPAddr()
	if d.HTTPAddr() == "" {
		t.Fatal("no http listener")
	}
	var st observe.Status
	waitUntil(t, "a failed fire of broken and a success of fine in /api/v1/status", func() bool {
		_, body := httpGet(t, base+"/api/v1/status")
		st = observe.Status{}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("/api/v1/status: %v: %s", err, body)
		}
		var b, f bool
		for _, j := range st.Jobs {
			b = b || j.Name == "broken" && j.Last != nil && j.Last.Outcome == "failure"
			f = f || j.Name == "fine" && !j.LastSuccess.IsZero()
		}
		return b && f
	})
	if code, _ := httpGet(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d; want 200", code)
	}
	if code, _ := httpGet(t, base+"/livez"); code != 200 {
		t.Errorf("/livez = %d; want 200", code)
	}
	d.hub.Sync()
	_, metrics := httpGet(t, base+"/metrics")
	for _, want := range []string{
		`scheduler_actions_total{account="sb",action="dataforest.aiapp.kill",job="broken",outcome="failure"}`,
		`scheduler_actions_total{account="sb",action="cdss.cmak.restart",job="fine",outcome="success"}`,
		`scheduler_job_info{account="sb",action="cdss.cmak.restart",job="fine",schedule="* * * * * *",timezone="UTC"} 1`,
		`scheduler_job_next_fire_timestamp_seconds{job="broken"}`,
		`scheduler_job_last_success_timestamp_seconds{job="fine"}`,
		`scheduler_vendor_requests_total{account="sb",code="200"}`,
		"scheduler_fire_lag_seconds_count",
		"scheduler_config_last_reload_successful 1",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A rejected edit: the metric says so, the status names the error.
	if err := os.WriteFile(cfg, []byte(strings.Replace(observeConfig, "cdss.cmak.restart", "cdss.cmak.explode", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Reload(true)
	d.hub.Sync()
	if _, m := httpGet(t, base+"/metrics"); !strings.Contains(m, "scheduler_config_last_reload_successful 0") {
		t.Error("after a rejected reload, config_last_reload_successful is not 0")
	}
	_, body := httpGet(t, base+"/api/v1/status")
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Reload.Successful || !strings.Contains(st.Reload.Error, "cdss.cmak.explode") {
		t.Errorf("status reload after a rejected edit = %+v; want unsuccessful naming the bad action", st.Reload)
	}

	// Dropping http.listen stops the listener.
	if err := os.WriteFile(cfg, []byte(strings.Replace(observeConfig, `http: {listen: "127.0.0.1:0"}`, "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Reload(true)
	if d.HTTPAddr() != "" {
		t.Errorf("listener still at %s after http.listen was removed", d.HTTPAddr())
	}
	if _, err := http.Get(base + "/livez"); err == nil {
		t.Error("old listener still answers")
	}
}

// TestNotifyFromTheRecordStream: a failing fire on the emulated cloud
// reaches a webhook sink as a signed CloudEvent whose data is the audit
// record; a sink whose receiver refuses it is audited as event notify.
func TestNotifyFromTheRecordStream(t *testing.T) {
	got := make(chan []byte, 16)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get(notify.SignatureHeader) != notify.Sign([]byte("k3y"), b) {
			t.Errorf("signature %q does not verify", r.Header.Get(notify.SignatureHeader))
		}
		select {
		case got <- b:
		default:
		}
	}))
	defer rcv.Close()
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) }))
	defer refuse.Close()
	t.Setenv("OBS_HOOK_URL", rcv.URL+"/hook/t0ken")
	t.Setenv("OBS_GONE_URL", refuse.URL+"/gone/t0ken")
	t.Setenv("OBS_HOOK_KEY", "k3y")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	body := strings.Replace(observeConfig, `http: {listen: "127.0.0.1:0"}`, `notify:
  - {name: siem, type: webhook, url: {env: OBS_HOOK_URL}, secret: {env: OBS_HOOK_KEY}, jobs: [broken]}
  - {name: gone, type: slack, url: {env: OBS_GONE_URL}, jobs: [broken]}`, 1)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Start(Options{ConfigPath: cfg, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown()
	var ev struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	select {
	case b := <-got:
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no notification within 15s of a failing job")
	}
	var rec audit.Record
	if err := json.Unmarshal(ev.Data, &rec); err != nil || ev.Type != "io.cloudcron.scheduler.failure" || rec.Job != "broken" || rec.Target != "doomed" {
		t.Errorf("event type %q, data %+v (%v); want a failure of broken on doomed", ev.Type, rec, err)
	}
	auditPath := filepath.Join(dir, "audit.jsonl")
	waitUntil(t, "a notify record for the refusing sink", func() bool {
		recs, _ := audit.ReadAll(auditPath)
		for _, r := range recs {
			if r.Event == notify.EventNotify && r.Target == "gone" {
				if strings.Contains(r.Error, "t0ken") || strings.Contains(r.Detail, "t0ken") {
					t.Errorf("notify record leaks the URL: %+v", r)
				}
				return true
			}
		}
		return false
	})
}
