package daemon

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/notify"
	"github.com/cloudcron/scheduler/internal/observe"
	"github.com/cloudcron/scheduler/internal/secret"
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

// contractFamilies are the metric names and labels of design.md
// "Observability and notification contract", copied here, with the type
// their names and the README give them. Labels nil: the contract names
// none.
var contractFamilies = []struct {
	name, typ string
	labels    []string
}{
	{"scheduler_build_info", "GAUGE", nil},
	{"scheduler_job_info", "GAUGE", []string{"job", "action", "account", "schedule", "timezone"}},
	{"scheduler_job_next_fire_timestamp_seconds", "GAUGE", []string{"job"}},
	{"scheduler_job_last_success_timestamp_seconds", "GAUGE", []string{"job"}},
	{"scheduler_actions_total", "COUNTER", []string{"job", "action", "account", "outcome"}},
	{"scheduler_action_duration_seconds", "HISTOGRAM", []string{}},
	{"scheduler_fire_lag_seconds", "HISTOGRAM", []string{}},
	{"scheduler_vendor_requests_total", "COUNTER", []string{"account", "code"}},
	{"scheduler_throttled_total", "COUNTER", []string{"account"}},
	{"scheduler_window_desired_state", "GAUGE", []string{"window", "target"}},
	{"scheduler_window_actual_state", "GAUGE", []string{"window", "target"}},
	{"scheduler_reconcile_total", "COUNTER", []string{"window"}},
	{"scheduler_overrides_active", "GAUGE", []string{}},
	{"scheduler_saved_hours_total", "COUNTER", []string{"window"}},
	{"scheduler_config_last_reload_successful", "GAUGE", []string{}},
	{"scheduler_config_last_reload_success_timestamp_seconds", "GAUGE", []string{}},
	{"scheduler_audit_write_errors_total", "COUNTER", []string{}},
}

const contractConfig = `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
http: {listen: "127.0.0.1:0"}
defaults:
  timeout: 2s
  retry: {initial_interval: 50ms, max_interval: 100ms, max_elapsed: 2s, max_attempts: 3}
accounts:
  lab:
    vendor: sandbox
    faults: [{target: "1484848", action: cdss.cmak.restart, kind: throttle, times: 1}]
  quiet: {vendor: sandbox}
notify:
  - {name: ops, type: webhook, url: {env: CONTRACT_HOOK_URL}, on: [override]}
jobs:
  - {name: fine, schedule: "* * * * * *", account: lab, action: cdss.cmak.restart, targets: ["1484848"]}
  - {name: yearly, schedule: "0 0 1 1 *", account: quiet, action: cdss.cmak.restart, targets: ["2000001"]}
windows:
  - name: lab-notebooks
    account: lab
    resource: modelarts.notebook
    targets: [` + nbID + `]
    on: [{days: "*", from: "00:00", to: "24:00"}]
`

// scrapeRunningDaemon starts a daemon on contractConfig against its
// emulated cloud (a job throttled once then succeeding, a job not due
// on another account, an always-on window, a notify sink), waits until the job succeeded
// and the window read its target, and returns the parsed /metrics.
func scrapeRunningDaemon(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(hook.Close)
	t.Setenv("CONTRACT_HOOK_URL", hook.URL)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(contractConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	passes := make(chan string, 64)
	d, err := Start(Options{ConfigPath: cfg, Log: zerolog.Nop(), Resolver: secret.Resolver{}, windowPass: func(r string) { passes <- r }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Shutdown() })
	select {
	case <-passes:
	case <-time.After(60 * time.Second):
		t.Fatal("no reconcile pass within 60s")
	}
	waitUntil(t, "a success of fine after its throttled attempt, and the window's target read", func() bool {
		st := d.Snapshot()
		ok := len(st.Jobs) == 2 && !st.Jobs[0].LastSuccess.IsZero() && len(st.Throttled) == 1
		return ok && len(st.Windows) == 1 && st.Windows[0].Targets[0].Actual == "on"
	})
	d.hub.Sync()
	resp, err := http.Get("http://" + d.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not the text format: %v", err)
	}
	return fams
}

// labelNames returns the label names of a family's first series.
func labelNames(mf *dto.MetricFamily) []string {
	out := []string{}
	if len(mf.GetMetric()) == 0 {
		return out
	}
	for _, l := range mf.GetMetric()[0].GetLabel() {
		out = append(out, l.GetName())
	}
	return out
}

// TestMetricsOnARunningDaemon scrapes a running daemon and checks the
// scrape against the contract and against what the README tells users
// to put in Prometheus.
func TestMetricsOnARunningDaemon(t *testing.T) {
	fams := scrapeRunningDaemon(t)
	t.Run("contract", func(t *testing.T) { checkContractMetrics(t, fams) })
	t.Run("README", func(t *testing.T) { checkREADMEMetrics(t, fams) })
}

// checkContractMetrics: every metric of the contract is there with its
// type and labels (counters of a window, an account and a notify sink at
// 0 before their first event), the one 429 is counted, and the names
// pass Prometheus's lint.
func checkContractMetrics(t *testing.T, fams map[string]*dto.MetricFamily) {
	for _, c := range contractFamilies {
		mf := fams[c.name]
		if mf == nil || len(mf.GetMetric()) == 0 {
			t.Errorf("/metrics lacks %s", c.name)
			continue
		}
		if got := mf.GetType().String(); got != c.typ {
			t.Errorf("%s is a %s; want %s", c.name, got, c.typ)
		}
		if c.labels != nil {
			got, want := labelNames(mf), slices.Clone(c.labels)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s has labels %v; want %v", c.name, got, want)
			}
		}
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		for _, m := range fams[name].GetMetric() {
			match := true
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					match = false
				}
			}
			if match {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue(), true
				}
				return m.GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"scheduler_throttled_total", map[string]string{"account": "lab"}, 1},
		{"scheduler_throttled_total", map[string]string{"account": "quiet"}, 0},
		{"scheduler_saved_hours_total", map[string]string{"window": "lab-notebooks"}, 0},
		{"scheduler_notify_failures_total", map[string]string{"notify": "ops"}, 0},
		{"scheduler_window_desired_state", map[string]string{"window": "lab-notebooks", "target": nbID}, 1},
		{"scheduler_window_actual_state", map[string]string{"window": "lab-notebooks", "target": nbID}, 1},
		{"scheduler_overrides_active", nil, 0},
	} {
		if got, ok := value(c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v); want %v", c.name, c.labels, got, ok, c.want)
		}
	}

	// Prometheus's own lint of the names, units and help texts.
	var buf bytes.Buffer
	for _, mf := range fams {
		if strings.HasPrefix(mf.GetName(), "scheduler_") {
			if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
				t.Fatal(err)
			}
		}
	}
	problems, err := promlint.New(&buf).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if p.Metric == "scheduler_saved_hours_total" && strings.Contains(p.Text, `"hours"`) {
			continue // the contract's name: target-hours are what a FinOps reader sums
		}
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// readmeSection returns the README's section under heading (such as
// "### Title"), up to the next heading of the same or a higher level
// outside a code block.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	level := strings.IndexByte(heading, ' ')
	var out []string
	in, fenced := false, false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if !fenced && strings.HasPrefix(line, "#") {
			n := len(line) - len(strings.TrimLeft(line, "#"))
			if line == heading {
				in = true
				continue
			}
			if in && n <= level && strings.HasPrefix(line[n:], " ") {
				break
			}
		}
		if in {
			out = append(out, line)
		}
	}
	if !in {
		t.Fatalf("README has no %q", heading)
	}
	return strings.Join(out, "\n")
}

// yamlBlock returns the first ```yaml block of s that contains key.
func yamlBlock(t *testing.T, s, key string) string {
	t.Helper()
	for _, part := range strings.Split(s, "```yaml\n")[1:] {
		block, _, _ := strings.Cut(part, "```")
		if strings.Contains(block, key) {
			return block
		}
	}
	t.Fatalf("README section has no yaml block with %q", key)
	return ""
}

var (
	promMetricRe   = regexp.MustCompile(`\bscheduler_[a-zA-Z0-9_]+`)
	promGroupingRe = regexp.MustCompile(`\b(?:on|by|ignoring|without|group_left|group_right)\s*\(([^)]*)\)`)
	promLabelRefRe = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	readmeRowRe    = regexp.MustCompile("^\\| (`[a-z_]+`(?:, `[a-z_]+`)*) \\| ([a-z]+) \\|")
)

// checkREADMEMetrics: the README's metric table, scrape config and alert
// rules name metrics and labels the daemon exports, with their types, and
// the scrape config keeps the metrics' own job label.
func checkREADMEMetrics(t *testing.T, fams map[string]*dto.MetricFamily) {
	sec := readmeSection(t, "### The HTTP listener: metrics, health and the status page")
	labelsOf := func(name string) ([]string, bool) {
		mf := fams[name]
		if mf == nil {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && fams[base] != nil && fams[base].GetType() == dto.MetricType_HISTOGRAM {
					return labelNames(fams[base]), true
				}
			}
			return nil, false
		}
		return labelNames(mf), len(mf.GetMetric()) > 0
	}

	// The table.
	rows := 0
	for _, line := range strings.Split(sec, "\n") {
		m := readmeRowRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		for _, name := range strings.Split(m[1], ", ") {
			rows++
			name = "scheduler_" + strings.Trim(name, "`")
			if mf := fams[name]; mf == nil {
				t.Errorf("README's metric table names %s; the daemon does not export it", name)
			} else if got := strings.ToLower(mf.GetType().String()); got != m[2] {
				t.Errorf("README's metric table says %s is a %s; it is a %s", name, m[2], got)
			}
		}
	}
	if rows < len(contractFamilies) {
		t.Errorf("README's metric table has %d metrics; want at least the contract's %d", rows, len(contractFamilies))
	}

	// The scrape config: the metrics carry a job label (the schedule's
	// job); without honor_labels Prometheus renames it exported_job and
	// the rules' on(job) and $labels.job would see the scrape job instead.
	var scrape struct {
		ScrapeConfigs []struct {
			JobName     string `yaml:"job_name"`
			HonorLabels bool   `yaml:"honor_labels"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(yamlBlock(t, sec, "scrape_configs:")), &scrape); err != nil || len(scrape.ScrapeConfigs) == 0 {
		t.Fatalf("README's scrape config does not parse: %v", err)
	}
	var clash []string
	for name, mf := range fams {
		for _, l := range labelNames(mf) {
			if l == "job" || l == "instance" {
				clash = append(clash, name)
			}
		}
	}
	for _, sc := range scrape.ScrapeConfigs {
		if len(clash) > 0 && !sc.HonorLabels {
			slices.Sort(clash)
			t.Errorf("README's scrape config %q lacks honor_labels: true, but %v carry a job or instance label of their own", sc.JobName, clash)
		}
	}

	// The alert rules.
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal([]byte(yamlBlock(t, sec, "groups:")), &rules); err != nil {
		t.Fatalf("README's alert rules do not parse: %v", err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			names := promMetricRe.FindAllString(r.Expr, -1)
			if len(names) == 0 {
				t.Errorf("alert %s: no scheduler_ metric in %q", r.Alert, r.Expr)
			}
			var used []string
			for _, m := range promGroupingRe.FindAllStringSubmatch(r.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					if l = strings.TrimSpace(l); l != "" {
						used = append(used, l)
					}
				}
			}
			for _, text := range r.Annotations {
				for _, m := range promLabelRefRe.FindAllStringSubmatch(text, -1) {
					used = append(used, m[1])
				}
			}
			for _, name := range names {
				labels, ok := labelsOf(name)
				if !ok {
					t.Errorf("alert %s uses %s; the daemon does not export it", r.Alert, name)
					continue
				}
				for _, l := range used {
					if !slices.Contains(labels, l) {
						t.Errorf("alert %s uses label %q of %s; its labels are %v", r.Alert, l, name, labels)
					}
				}
			}
		}
	}
	if n < 2 {
		t.Errorf("README has %d alert rules; want the two the issue asks for", n)
	}
}
