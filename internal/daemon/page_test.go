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

	alloc, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browser),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(420, 900), // a phone's width
	)
	defer cancel()
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
	defer cancel()
	// The first call starts the browser and lives as long as it: no timeout
	// on it; the steps after it get one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", browser, err)
	}
	if _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
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
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("browser reported: %s", p)
	}
}
