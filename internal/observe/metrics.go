package observe

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cloudcron/scheduler/internal/audit"
)

// manualTrigger marks the records of `scheduler trigger` (internal/state's
// ManualTrigger): not scheduled fires, so they have no fire lag.
const manualTrigger = "manual trigger"

// Metrics is the Prometheus view of the daemon (the contract's metric
// names, prefix scheduler_). Three kinds of source feed it:
//
//   - the record stream (it is a Sink): actions_total, action_duration_seconds,
//     fire_lag_seconds, vendor_requests_total, throttled_total,
//     reconcile_total, config_last_reload_*, audit_write_errors_total;
//   - the status snapshot, read at each scrape: job_info,
//     job_next_fire_timestamp_seconds, job_last_success_timestamp_seconds,
//     job_last_fire_timestamp_seconds,
//     window_desired_state, window_actual_state, overrides_active (the
//     window reconciler fills Status.Windows and Status.Overrides, and
//     the metrics follow);
//   - CountSaved (the daemon's ticker) and AddSavedHours: saved_hours_total.
type Metrics struct {
	reg *prometheus.Registry

	actions        *prometheus.CounterVec
	duration       prometheus.Histogram
	fireLag        prometheus.Histogram
	vendorRequests *prometheus.CounterVec
	throttled      *prometheus.CounterVec
	reconcile      *prometheus.CounterVec
	savedHours     *prometheus.CounterVec
	reloadOK       prometheus.Gauge
	reloadTime     prometheus.Gauge
	auditErrors    prometheus.Counter
	notifyFailures *prometheus.CounterVec

	mu          sync.Mutex
	lastRuns    map[string]string // job → run id whose lag was observed
	runtimeOnce sync.Once
}

// NewMetrics registers the contract's metrics; status (may be nil until
// SetStatus) is read at each scrape.
func NewMetrics(version string) *Metrics {
	const ns = "scheduler"
	m := &Metrics{reg: prometheus.NewRegistry(), lastRuns: map[string]string{}}
	m.actions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "actions_total",
		Help: "Action records by outcome (every attempt, skip, miss, recovery and verification)."}, []string{"job", "action", "account", "outcome"})
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "action_duration_seconds",
		Help: "Duration of one vendor call (one attempt).", Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}})
	m.fireLag = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "fire_lag_seconds",
		Help: "Time from a fire's scheduled instant to its intent record (catch-up fires included).", Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 5, 60, 600, 3600}})
	m.vendorRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "vendor_requests_total",
		Help: "Vendor calls by HTTP status code (\"none\" when no answer came)."}, []string{"account", "code"})
	m.throttled = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "throttled_total",
		Help: "Vendor calls answered 429 (throttled)."}, []string{"account"})
	m.reconcile = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "reconcile_total",
		Help: "Drift corrections of a window (event: reconcile records)."}, []string{"window"})
	m.savedHours = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "saved_hours_total",
		Help: "Target-hours a window kept off."}, []string{"window"})
	m.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "config_last_reload_successful",
		Help: "1 if the newest config load succeeded, 0 if it was rejected."})
	m.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "config_last_reload_success_timestamp_seconds",
		Help: "When the config was last loaded successfully (Unix time)."})
	m.auditErrors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "audit_write_errors_total",
		Help: "Audit log writes and fsyncs that failed."})
	m.notifyFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "notify_failures_total",
		Help: "Notifications given up on after their retries (event: notify records)."}, []string{"notify"})
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "build_info",
		Help: "Always 1; the labels name the build."}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	m.reg.MustRegister(m.actions, m.duration, m.fireLag, m.vendorRequests, m.throttled, m.reconcile, m.savedHours,
		m.reloadOK, m.reloadTime, m.auditErrors, m.notifyFailures, buildInfo)
	return m
}

// registerRuntime adds the Go and process collectors, once. Building the
// Go collector costs tens of milliseconds, so it waits for the first
// scrape rather than delaying the daemon's start.
func (m *Metrics) registerRuntime() {
	m.runtimeOnce.Do(func() {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	})
}

// Registry returns the registry to serve (promhttp.HandlerFor).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetStatus makes each scrape read the snapshot-derived metrics from
// status.
func (m *Metrics) SetStatus(status func() Status) {
	m.reg.MustRegister(&statusCollector{status: status})
}

// SetAuditErrors makes audit_write_errors_total read the audit log's own
// count of failed writes and fsyncs (every retry of a full disk counts),
// rather than the failed batches the record stream happens to carry.
func (m *Metrics) SetAuditErrors(count func() uint64) {
	m.reg.Unregister(m.auditErrors)
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "scheduler", Name: "audit_write_errors_total",
		Help: "Audit log writes and fsyncs that failed."}, func() float64 { return float64(count()) }))
}

// Loaded records a successful config load at t (the daemon's start).
func (m *Metrics) Loaded(t time.Time) {
	m.reloadOK.Set(1)
	m.reloadTime.Set(float64(t.UnixNano()) / 1e9)
}

// Known makes the labelled counters of every configured account, window
// and notify sink exist at 0 (throttled_total, reconcile_total,
// saved_hours_total, notify_failures_total), so a scrape shows them
// before their first event and increase() counts that first event. The
// daemon calls it on start and after each reload; a series of a removed
// one stays until the restart, as counters do.
func (m *Metrics) Known(accounts, windows, sinks []string) {
	for _, a := range accounts {
		m.throttled.WithLabelValues(a)
	}
	for _, w := range windows {
		m.reconcile.WithLabelValues(w)
		m.savedHours.WithLabelValues(w)
	}
	for _, n := range sinks {
		m.notifyFailures.WithLabelValues(n)
	}
}

// AddSavedHours adds target-hours that window kept off
// (saved_hours_total{window}).
func (m *Metrics) AddSavedHours(window string, hours float64) {
	if hours > 0 {
		m.savedHours.WithLabelValues(window).Add(hours)
	}
}

// Observe counts one batch of the record stream.
func (m *Metrics) Observe(b Batch) {
	if b.Err != nil {
		m.auditErrors.Inc()
		return
	}
	for _, r := range b.Records {
		m.observe(r)
	}
}

func (m *Metrics) observe(r audit.Record) {
	switch r.Event {
	case audit.EventReload:
		if r.Outcome == audit.OutcomeSuccess {
			m.Loaded(r.Time)
		} else {
			m.reloadOK.Set(0)
		}
		return
	case "notify":
		m.notifyFailures.WithLabelValues(r.Target).Inc() // a notify record names its sink in target
		return
	case "reconcile":
		m.reconcile.WithLabelValues(r.Job).Inc()
	case audit.EventRun:
		m.lag(r)
		return
	}
	if r.Job == "" || r.Outcome == "" || r.Event == "override" {
		return
	}
	m.actions.WithLabelValues(r.Job, r.Action, r.Account, r.Outcome).Inc()
	if r.Event != audit.EventAttempt {
		return
	}
	m.duration.Observe(float64(r.DurationMS) / 1000)
	code := "none"
	if r.HTTPStatus != 0 {
		code = strconv.Itoa(r.HTTPStatus)
	}
	m.vendorRequests.WithLabelValues(r.Account, code).Inc()
	if r.HTTPStatus == 429 {
		m.throttled.WithLabelValues(r.Account).Inc()
	}
}

// lag observes a fire's lag once, at its first intent record.
func (m *Metrics) lag(r audit.Record) {
	if r.Scheduled.IsZero() || strings.Contains(r.Detail, manualTrigger) {
		return
	}
	m.mu.Lock()
	seen := m.lastRuns[r.Job] == r.RunID
	m.lastRuns[r.Job] = r.RunID
	m.mu.Unlock()
	if !seen {
		m.fireLag.Observe(max(0, r.Time.Sub(r.Scheduled).Seconds()))
	}
}

// statusCollector turns the snapshot into the job and window metrics at
// each scrape, so a job removed by a reload disappears from them.
type statusCollector struct {
	status func() Status
}

var (
	jobInfoDesc = prometheus.NewDesc("scheduler_job_info", "Always 1; one series per job of the running schedule.",
		[]string{"job", "action", "account", "schedule", "timezone"}, nil)
	nextFireDesc = prometheus.NewDesc("scheduler_job_next_fire_timestamp_seconds", "When the job fires next (Unix time).",
		[]string{"job"}, nil)
	lastSuccessDesc = prometheus.NewDesc("scheduler_job_last_success_timestamp_seconds",
		"Scheduled time of the job's newest fire that succeeded on every target (Unix time); absent before the first.",
		[]string{"job"}, nil)
	lastFireDesc = prometheus.NewDesc("scheduler_job_last_fire_timestamp_seconds",
		"Scheduled time of the job's newest fire, whatever its outcome (Unix time); absent before the first.",
		[]string{"job"}, nil)
	desiredDesc = prometheus.NewDesc("scheduler_window_desired_state", "1 if the window wants the target on, 0 if off.",
		[]string{"window", "target"}, nil)
	actualDesc = prometheus.NewDesc("scheduler_window_actual_state", "1 if the target was last seen on, 0 if off; absent when unknown.",
		[]string{"window", "target"}, nil)
	overridesDesc = prometheus.NewDesc("scheduler_overrides_active", "Overrides in force.", nil, nil)
)

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{jobInfoDesc, nextFireDesc, lastSuccessDesc, lastFireDesc, desiredDesc, actualDesc, overridesDesc} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	for _, j := range st.Jobs {
		ch <- prometheus.MustNewConstMetric(jobInfoDesc, prometheus.GaugeValue, 1, j.Name, j.Action, j.Account, j.Schedule, j.Timezone)
		if !j.NextFire.IsZero() {
			ch <- prometheus.MustNewConstMetric(nextFireDesc, prometheus.GaugeValue, unix(j.NextFire), j.Name)
		}
		if !j.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(lastSuccessDesc, prometheus.GaugeValue, unix(j.LastSuccess), j.Name)
		}
		if j.Last != nil && !j.Last.Scheduled.IsZero() {
			ch <- prometheus.MustNewConstMetric(lastFireDesc, prometheus.GaugeValue, unix(j.Last.Scheduled), j.Name)
		}
	}
	for _, w := range st.Windows {
		for _, t := range w.Targets {
			if v, ok := onOff(t.Desired); ok {
				ch <- prometheus.MustNewConstMetric(desiredDesc, prometheus.GaugeValue, v, w.Name, t.Target)
			}
			if v, ok := onOff(t.Actual); ok {
				ch <- prometheus.MustNewConstMetric(actualDesc, prometheus.GaugeValue, v, w.Name, t.Target)
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(overridesDesc, prometheus.GaugeValue, float64(len(st.Overrides)))
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func onOff(s string) (float64, bool) {
	switch s {
	case "on":
		return 1, true
	case "off":
		return 0, true
	}
	return 0, false
}

// CountSaved adds dt to saved_hours_total{window} for every window target
// that st shows off and meant to be off: the hours a window kept a target
// off. The daemon calls it on a ticker (RunSaved).
func (m *Metrics) CountSaved(st Status, dt time.Duration) {
	for _, w := range st.Windows {
		n := 0
		for _, t := range w.Targets {
			if t.Desired == "off" && t.Actual == "off" {
				n++
			}
		}
		m.AddSavedHours(w.Name, float64(n)*dt.Hours())
	}
}

// RunSaved calls CountSaved with status() every period until stop is
// closed.
func (m *Metrics) RunSaved(stop <-chan struct{}, period time.Duration, status func() Status) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			m.CountSaved(status(), period)
		}
	}
}
