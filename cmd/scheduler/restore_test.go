package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/observe"
)

// restoreConfig is statusConfig with an http listener: fine and broken
// fire every second on the daemon's emulated cloud, fine succeeds, broken
// is refused (a permanent failure); yearly never fired.
var restoreConfig = strings.Replace(statusConfig, "state: {dir: state}\n", "state: {dir: state}\nhttp: {listen: \"127.0.0.1:0\"}\n", 1)

// notifySocket is a NOTIFY_SOCKET the test listens on, as systemd would.
type notifySocket struct {
	conn *net.UnixConn
	got  chan string
}

// listenNotify points NOTIFY_SOCKET (inherited by daemons started after
// it) at a datagram socket of the test.
func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	n := &notifySocket{conn: conn, got: make(chan string, 64)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				close(n.got)
				return
			}
			n.got <- string(buf[:k])
		}
	}()
	t.Cleanup(func() { _ = conn.Close() })
	return n
}

// waitReady returns the STATUS= line sent with READY=1.
func (n *notifySocket) waitReady(t *testing.T) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case msg, ok := <-n.got:
			if !ok {
				t.Fatal("notify socket closed before READY=1")
			}
			if !strings.Contains(msg, "READY=1") {
				continue
			}
			for _, line := range strings.Split(msg, "\n") {
				if s, found := strings.CutPrefix(line, "STATUS="); found {
					return s
				}
			}
			t.Fatalf("READY=1 without STATUS=: %q", msg)
		case <-timeout:
			t.Fatal("no READY=1 on NOTIFY_SOCKET within 30s")
		}
	}
}

var listenRe = regexp.MustCompile(`"listen":"(127\.0\.0\.1:[0-9]+)"[^\n]*http listener: /metrics`)

// httpAddr waits for the daemon's log line naming its http listener.
func (p *daemonProc) httpAddr(t *testing.T) string {
	t.Helper()
	var addr string
	waitFor(t, 30*time.Second, "the http listener's log line", func() bool {
		m := listenRe.FindStringSubmatch(p.stderr.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	return addr
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// newestRun returns, from the audit log, the newest fire of job: its run
// id and the last settled record of its target (the outcome the status
// must show; verify records other than verify_failed do not settle).
func newestRun(recs []audit.Record, job string) (id string, last audit.Record) {
	var at time.Time
	for _, r := range recs {
		if r.Job == job && r.RunID != "" && !r.Scheduled.Before(at) {
			if r.RunID != id {
				last = audit.Record{}
			}
			id, at = r.RunID, r.Scheduled
			if r.Outcome != "" && (r.Event != audit.EventVerify || r.Outcome == audit.OutcomeVerifyFailed) {
				last = r
			}
		}
	}
	return id, last
}

// TestStatusSurvivesKill9 runs the real binary: fires on its emulated
// cloud succeed and fail, then it is killed with SIGKILL and started again
// on a schedule that does not fire for weeks. `scheduler status`,
// /api/v1/status and /metrics still show each job's newest fire with its
// outcome and error, its last success, and the recent failures, as the
// audit log tells them; a reload keeps them.
func TestStatusSurvivesKill9(t *testing.T) {
	cfg, auditPath := writeConfig(t, restoreConfig)
	p := startDaemon(t, cfg)
	waitFor(t, 30*time.Second, "three failed fires of broken and a success of fine", func() bool {
		if countAttempts(auditPath, "broken", audit.OutcomeFailure) < 3 {
			return false
		}
		st, ok := statusJSON(t, cfg)
		if !ok {
			return false
		}
		b, f := findJob(st, "broken"), findJob(st, "fine")
		return b != nil && b.Last != nil && b.Last.Outcome == audit.OutcomeFailure && f != nil && !f.LastSuccess.IsZero()
	})
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done

	// The same jobs, next due on 1 January: nothing fires after the restart.
	quiet := strings.ReplaceAll(restoreConfig, `"* * * * * *"`, `"0 0 1 1 *"`)
	if err := os.WriteFile(cfg, []byte(quiet), 0o600); err != nil {
		t.Fatal(err)
	}
	// systemd's STATUS= line names the last failure as it did before.
	notes := listenNotify(t)
	p = startDaemon(t, cfg)
	base := "http://" + p.httpAddr(t)
	ready := notes.waitReady(t)
	if !strings.Contains(ready, "; last failure broken at ") || !strings.Contains(ready, "(failure)") {
		t.Errorf("STATUS= after the restart does not name broken's failure: %q", ready)
	}
	var st observe.Status
	waitFor(t, 30*time.Second, "the restarted daemon's status", func() bool {
		var ok bool
		st, ok = statusJSON(t, cfg)
		return ok
	})
	// Settling what the kill left (a call in flight) is audited right
	// after the start; read the log once the daemon has said ready.
	recs := readAudit(t, auditPath)
	check := func(how string, st observe.Status) {
		t.Helper()
		for _, job := range []string{"fine", "broken"} {
			id, last := newestRun(recs, job)
			j := findJob(st, job)
			switch {
			case j == nil || j.Last == nil:
				t.Errorf("%s: job %s has no last fire after the restart; want %s", how, job, id)
			case j.Last.RunID != id || j.Last.Outcome != last.Outcome || j.Last.Error != last.Error:
				t.Errorf("%s: job %s last = %s %s %q; want %s %s %q (the audit log's newest fire)", how, job,
					j.Last.RunID, j.Last.Outcome, j.Last.Error, id, last.Outcome, last.Error)
			}
		}
		var lastOK time.Time
		var failures []audit.Record
		for _, r := range recs {
			if r.Job == "fine" && r.Event == audit.EventAttempt && r.Outcome == audit.OutcomeSuccess && r.Scheduled.After(lastOK) {
				lastOK = r.Scheduled
			}
			switch r.Outcome {
			case audit.OutcomeFailure, audit.OutcomeUnknown, audit.OutcomeVerifyFailed, audit.OutcomeMissed:
				failures = append([]audit.Record{r}, failures...)
			}
		}
		if f := findJob(st, "fine"); f == nil || !f.LastSuccess.Equal(lastOK) {
			t.Errorf("%s: fine's last success = %v; want %v", how, f, lastOK)
		}
		if b := findJob(st, "broken"); b == nil || !b.LastSuccess.IsZero() {
			t.Errorf("%s: broken shows a success: %+v", how, b)
		}
		if len(st.RecentFailures) == 0 || len(failures) < len(st.RecentFailures) {
			t.Fatalf("%s: %d recent failures; want the audit log's newest (%d in the log)", how, len(st.RecentFailures), len(failures))
		}
		for i, r := range st.RecentFailures {
			w := failures[i]
			if r.RunID != w.RunID || r.Target != w.Target || r.Event != w.Event || r.Outcome != w.Outcome || r.Error != w.Error {
				t.Errorf("%s: recent failure %d = %s %s %s %s; want %s %s %s %s", how, i, r.RunID, r.Target, r.Event, r.Outcome, w.RunID, w.Target, w.Event, w.Outcome)
			}
		}
	}
	check("scheduler status --json", st)

	var api observe.Status
	if err := json.Unmarshal([]byte(getBody(t, base+"/api/v1/status")), &api); err != nil {
		t.Fatal(err)
	}
	check("/api/v1/status", api)
	if m := getBody(t, base+"/metrics"); !strings.Contains(m, `scheduler_job_last_success_timestamp_seconds{job="fine"}`) ||
		!strings.Contains(m, `scheduler_job_last_fire_timestamp_seconds{job="broken"}`) {
		t.Errorf("/metrics lacks fine's last success or broken's last fire after the restart")
	}
	code, text, stderr := runCLI(t, "status", "--config", cfg)
	if _, last := newestRun(recs, "broken"); code != exitOK || !strings.Contains(text, last.Outcome) || !strings.Contains(text, "RECENT FAILURES") {
		t.Errorf("status text (exit %d, %s) lacks broken's %s and the recent failures:\n%s", code, stderr, last.Outcome, text)
	}
	if !strings.Contains(p.stderr.String(), "status restored from the audit log's tail") {
		t.Errorf("no restore line in the log:\n%s", p.stderr.String())
	}

	// A reload keeps what the restart restored.
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 15*time.Second, "the reload record", func() bool { return hasReload(auditPath, audit.OutcomeSuccess) })
	waitFor(t, 15*time.Second, "the reload in the status", func() bool {
		st, _ = statusJSON(t, cfg)
		return st.Reload.Successful && st.Reload.Time.After(st.Started)
	})
	check("after a reload", st)

	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.done; err != nil {
		t.Fatalf("exit: %v\n%s", err, p.stderr.String())
	}
}
