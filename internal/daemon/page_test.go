package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/state/etcdstore/etcdtest"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
)

// chromium returns the browser to drive, or skips the test when there is
// none on this machine (CI installs it: .ci/run).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on PATH; .ci/run installs it with apt-get install chromium")
	}
	t.Skip("status page browser test skipped: no chromium on PATH (apt-get install chromium)")
	return ""
}

const pageConfig = `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
defaults:
  timeout: 2s
  retry: {initial_interval: 50ms, max_interval: 100ms, max_elapsed: 1s, max_attempts: 2}
http: {listen: "127.0.0.1:0"}
accounts:
  sb:
    vendor: sandbox
    faults: [{target: doomed-app, action: dataforest.aiapp.kill, kind: reject}]
jobs:
  - {name: notebooks-on, schedule: "0 9 * * MON-FRI", timezone: Europe/Berlin, account: sb, action: modelarts.notebook.start, targets: [6fa459ea-ee8a-3ca4-894e-db77e160355e]}
  - {name: cmak-nightly, schedule: "* * * * * *", account: sb, action: cdss.cmak.restart, targets: ["1484848"]}
  - {name: kill-runaway-app, schedule: "0 3 1 1 *", account: sb, action: dataforest.aiapp.kill, targets: [doomed-app]}
`

// TestStatusPageInBrowser loads the status page in headless Chromium: no
// console error; a job that a reload makes fire and that fails on the
// emulated cloud appears, marked failing with its error, without the page being
// reloaded. SCHEDULER_SCREENSHOT=FILE saves a PNG of the page (the
// README's picture: docs/status-page.png).
func TestStatusPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	browser := chromium(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(pageConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Start(Options{ConfigPath: cfg, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown()
	url := "http://" + d.HTTPAddr() + "/"

	ctx, browserProblems := browse(t, browser, 420, 900) // a phone's width
	tctx, tcancel := context.WithTimeout(ctx, 60*time.Second)
	defer tcancel()

	if err := chromedp.Do(tctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(`[data-job="cmak-nightly"]`)),
		// A marker that a full reload would erase.
		chromedp.Evaluate[chromedp.Void](`window.__noReload = 42`),
	); err != nil {
		t.Fatalf("load %s: %v", url, err)
	}
	jobs, err := chromedp.Run(tctx, chromedp.Evaluate[int](`document.querySelectorAll("[data-job]").length`))
	if err != nil || jobs != 3 {
		t.Errorf("page shows %d jobs (%v); want 3", jobs, err)
	}

	if hidden, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`document.getElementById("cluster").hidden`)); err != nil || !hidden {
		t.Errorf("the cluster line is shown on a single host (hidden = %v, %v)", hidden, err)
	}
	if n, err := chromedp.Run(tctx, chromedp.Evaluate[int](`document.querySelectorAll(".failing").length`)); err != nil || n != 0 {
		t.Errorf("%d jobs shown failing before any failure (%v)", n, err)
	}
	// A reload makes the job that fails on the emulated cloud fire every
	// second.
	if err := os.WriteFile(cfg, []byte(strings.Replace(pageConfig, "0 3 1 1 *", "* * * * * *", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Reload(true)
	if err := chromedp.Do(tctx, chromedp.WaitVisible(chromedp.CSS(`[data-job="kill-runaway-app"].failing`))); err != nil {
		t.Fatalf("waiting for the failing job: %v", err)
	}
	errText, err1 := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(`[data-job="kill-runaway-app"] .err`)))
	badge, err2 := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(`[data-job="kill-runaway-app"] h3 .badge`)))
	marker, err3 := chromedp.Run(tctx, chromedp.Evaluate[int](`window.__noReload`))
	failures, err4 := chromedp.Run(tctx, chromedp.Evaluate[int](`document.querySelectorAll("#failures tbody tr").length`))
	overflow, err5 := chromedp.Run(tctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		t.Fatal(err)
	}
	if marker != 42 {
		t.Error("the page was reloaded to show the new state; want an in-place update")
	}
	if badge != "failure" || !strings.Contains(errText, "doomed-app") {
		t.Errorf("failing job shows badge %q, error %q; want failure and the vendor's error naming the target", badge, errText)
	}
	if failures == 0 {
		t.Error("recent failures table is empty after a failure")
	}
	if overflow {
		t.Error("the page scrolls sideways at 420 px")
	}
	if path := os.Getenv("SCHEDULER_SCREENSHOT"); path != "" {
		if err := chromedp.Do(tctx, chromedp.EmulateViewport(1100, 900), chromedp.Sleep(300*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100)) // quality 100: PNG
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range browserProblems() {
		t.Errorf("browser reported: %s", p)
	}
}

// browse starts headless Chromium with a window of w×h pixels for the
// rest of t. It returns the browser's context (no timeout: give the steps
// one) and what the pages reported so far: console errors and warnings,
// uncaught exceptions and failed loads.
func browse(t *testing.T, browser string, w, h int) (context.Context, func() []string) {
	t.Helper()
	alloc, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browser),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(w, h),
	)
	t.Cleanup(cancel)
	var mu sync.Mutex
	var problems []string
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithListener(func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range e.Args {
					args = append(args, fmt.Sprint(a.Value, a.Description))
				}
				problems = append(problems, fmt.Sprintf("console.%s: %s", e.Type, strings.Join(args, " ")))
			}
		case *runtime.EventExceptionThrown:
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			problems = append(problems, "exception: "+msg)
		case *log.EventEntryAdded:
			if e.Entry.Level == log.EntryLevelError || e.Entry.Level == log.EntryLevelWarning {
				problems = append(problems, fmt.Sprintf("log %s: %s %s", e.Entry.Level, e.Entry.Text, e.Entry.URL))
			}
		}
	}))
	t.Cleanup(cancel)
	// The first call starts the browser and lives as long as it: no timeout
	// on it; the steps after it get one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", browser, err)
	}
	if _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

// TestStatusPageShowsCluster: the status page of a replica shows the
// cluster line (this node, its role, the leader, the replicas alive), and
// follows it without being reloaded: the replica becomes leader when the
// leader stops, and is marked red, saying it claims no fire, when it is cut
// off etcd. Its node name is markup, shown as text.
func TestStatusPageShowsCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser and etcd")
	}
	browser := chromium(t)
	srv := etcdtest.Start(t)
	cloud := emulator.New(emulator.Options{TransitionDelay: -1})
	if err := cloud.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close() })
	creds := cloud.Credentials()
	res := credsResolver(creds)
	// b reaches etcd through a proxy that the test cuts.
	px := etcdtest.NewProxy(t, strings.TrimPrefix(srv.Endpoint(), "http://"))
	const evil = `b<img src=x onerror=window.__xss=1>&amp;`
	start := func(node, endpoint string) *Daemon {
		t.Helper()
		path := filepath.Join(t.TempDir(), "config.yaml")
		cfg := clusterConfig(node, endpoint, cloud.URL(), creds.OTCProjectID)
		writeConfig(t, path, strings.Replace(cfg, "version: 1\n", "version: 1\nhttp: {listen: \"127.0.0.1:0\"}\n", 1))
		d, err := Start(Options{ConfigPath: path, Log: zerolog.Nop(), Resolver: res, Grace: 5 * time.Second})
		if err != nil {
			t.Fatalf("start replica %s: %v", node, err)
		}
		return d
	}
	a := start("a", srv.Endpoint())
	aUp := true
	defer func() {
		if aUp {
			_ = a.Shutdown()
		}
	}()
	// a campaigns first, so that it leads while b joins.
	for deadline := time.Now().Add(10 * time.Second); a.Status().Cluster != "leader"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a is %q after 10s; want leader", a.Status().Cluster)
		}
	}
	b := start(evil, px.Endpoint())
	defer func() { _ = b.Shutdown() }()

	ctx, browserProblems := browse(t, browser, 420, 900)
	tctx, tcancel := context.WithTimeout(ctx, 60*time.Second)
	defer tcancel()
	url := "http://" + b.HTTPAddr() + "/"
	type line struct {
		Hidden                              bool
		Class, Role, Node, Badge, Leader    string
		Replicas, Why, Background, Injected string
	}
	read := func() line {
		t.Helper()
		l, err := chromedp.Run(tctx, chromedp.Evaluate[line](`(() => {
			const c = document.getElementById("cluster"), q = (s) => { const e = c.querySelector(s); return e ? e.textContent : ""; };
			return {Hidden: c.hidden, Class: c.className, Role: c.dataset.role || "", Node: q(".node"), Badge: q(".badge"),
				Leader: q(".leader"), Replicas: q(".replicas"), Why: q(".why"), Background: getComputedStyle(c).backgroundColor,
				Injected: String(c.querySelectorAll("img").length + (window.__xss ? 100 : 0))};
		})()`))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// waitUntil waits, on every change to the page, until the cluster line
	// satisfies pred, a JavaScript function of the line's element and the
	// node name.
	waitUntil := func(what, pred string) {
		t.Helper()
		if _, err := chromedp.Run(tctx, chromedp.PollFunction[bool](`(node) => { const c = document.getElementById("cluster"); return !!c && (`+pred+`)(c, node); }`,
			chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(30*time.Second),
			chromedp.WithPollingArgs(evil))); err != nil {
			t.Fatalf("waiting until b's page shows %s: %v (shows %+v)", what, err, read())
		}
	}
	// The first render as a replica of a (once b's own session is among
	// the replicas), then a marker that a reload of the page would erase.
	if err := chromedp.Do(tctx,
		chromedp.Navigate(url),
		chromedp.WaitReady(chromedp.CSS(`#cluster`)),
	); err != nil {
		t.Fatalf("load %s: %v", url, err)
	}
	waitUntil("b a replica of a", `(c, node) => c.dataset.role === "replica" && c.querySelector(".replicas")?.textContent === "a, " + node`)
	if err := chromedp.Do(tctx, chromedp.Evaluate[chromedp.Void](`window.__noReload = 42`)); err != nil {
		t.Fatal(err)
	}
	l := read()
	t.Logf("replica: %+v", l)
	if l.Node != evil || l.Badge != "replica" || l.Leader != "a" || l.Replicas != "a, "+evil || l.Class != "" || l.Why != "" {
		t.Errorf("b's page shows %+v; want node %q, badge replica, leader a, replicas \"a, %s\", no problem", l, evil, evil)
	}
	if l.Injected != "0" {
		t.Errorf("the node name was parsed as markup (%s)", l.Injected)
	}

	// a stops: b leads, and its page says so.
	waited := time.Now()
	if err := a.Shutdown(); err != nil {
		t.Errorf("a: Shutdown: %v", err)
	}
	aUp = false
	waitUntil("b leading", `(c) => c.dataset.role === "leader"`)
	l = read()
	t.Logf("leader after %v: %+v", time.Since(waited).Round(time.Millisecond), l)
	if l.Badge != "leader" || l.Leader != evil || l.Replicas != evil || l.Class != "" {
		t.Errorf("b's page shows %+v after a stopped; want badge leader, b the leader and the only replica", l)
	}

	// b is cut off etcd: the line turns red and says it claims no fire.
	waited = time.Now()
	px.Cut()
	waitUntil("the cut", `(c) => c.dataset.state === "problem"`)
	l = read()
	t.Logf("cut off after %v: %+v", time.Since(waited).Round(time.Millisecond), l)
	if l.Badge != "replica" || !strings.Contains(l.Why, "cut off from etcd") || !strings.Contains(l.Why, "not claiming fires") || l.Leader != "" {
		t.Errorf("b's page shows %+v while cut off; want badge replica, the reason (cut off, not claiming fires), no leader", l)
	}
	if p, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(`#problem`))); err != nil || p != "" {
		t.Errorf("the page's problem line says %q (%v) while cut off; want the reason once, on the cluster line", p, err)
	}
	if ready, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(`#ready`))); err != nil || ready != "not ready" {
		t.Errorf("the page's readiness says %q (%v) while cut off; want not ready", ready, err)
	}
	if l.Background != "rgb(255, 235, 233)" {
		t.Errorf("the cut-off line's background is %s; want the warning red", l.Background)
	}

	// etcd is back for b: the warning goes by itself.
	waited = time.Now()
	px.Restore()
	waitUntil("etcd back", `(c, node) => c.dataset.state === "ok" && (c.querySelector(".replicas")?.textContent || "").split(", ").includes(node)`)
	l = read()
	t.Logf("back after %v: %+v", time.Since(waited).Round(time.Millisecond), l)
	if l.Why != "" || l.Class != "" || !strings.Contains(l.Replicas, evil) {
		t.Errorf("b's page shows %+v after etcd is back; want no problem, b among the replicas", l)
	}
	marker, err := chromedp.Run(tctx, chromedp.Evaluate[int](`window.__noReload`))
	if err != nil || marker != 42 {
		t.Errorf("marker = %d (%v): the page was reloaded; want in-place updates", marker, err)
	}
	for _, p := range browserProblems() {
		t.Errorf("browser reported: %s", p)
	}
}
