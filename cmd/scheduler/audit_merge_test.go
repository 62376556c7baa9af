package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
)

// TestAuditMerge: three replicas' logs become one timeline, oldest first,
// each record with its node, and each chain is verified on its own: an
// edited record in one log fails the command and names that log.
func TestAuditMerge(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 3, 2, 19, 0, 0, 0, time.UTC)
	var paths []string
	for i, node := range []string{"host-a", "host-b", "host-c"} {
		p := filepath.Join(dir, node+".jsonl")
		l, err := audit.OpenWith(p, audit.Options{Node: node})
		if err != nil {
			t.Fatal(err)
		}
		for k := range 3 { // host-a at :00, :03, :06; host-b at :01, …
			at := t0.Add(time.Duration(3*k+i) * time.Second)
			if err := l.Append(audit.Record{Time: at, Event: audit.EventAttempt, Job: "stop", RunID: "stop@" + at.Format(time.RFC3339),
				Scheduled: at, Target: "nb-1", Attempt: 1, Outcome: audit.OutcomeSuccess}); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
		paths = append(paths, p)
	}
	code, out, errOut := runCLI(t, append([]string{"audit", "merge", "--json"}, paths...)...)
	if code != exitOK {
		t.Fatalf("audit merge: exit %d\n%s", code, errOut)
	}
	var nodes []string
	var last time.Time
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("merged line %q: %v", line, err)
		}
		if r.Time.Before(last) {
			t.Errorf("record at %v after one at %v: not one timeline", r.Time, last)
		}
		last = r.Time
		nodes = append(nodes, r.Node)
	}
	want := "host-a host-b host-c host-a host-b host-c host-a host-b host-c"
	if got := strings.Join(nodes, " "); got != want {
		t.Errorf("merged nodes = %s; want %s", got, want)
	}
	if n := strings.Count(errOut, ": ok: 3 records"); n != 3 {
		t.Errorf("stderr = %q; want an ok line per log", errOut)
	}
	code, out, _ = runCLI(t, append([]string{"audit", "merge"}, paths...)...)
	if code != exitOK || !strings.Contains(out, "NODE") || strings.Count(out, "host-b") != 3 {
		t.Errorf("audit merge (table): exit %d\n%s", code, out)
	}

	// Edit host-b's second record: its chain fails, the others verify.
	b, _ := os.ReadFile(paths[1])
	edited := bytes.Replace(b, []byte(`"outcome":"success","http_status":0,"vendor_code":"","request_id":"","error":"","duration_ms":0,"node":"host-b","seq":2`),
		[]byte(`"outcome":"failure","http_status":0,"vendor_code":"","request_id":"","error":"","duration_ms":0,"node":"host-b","seq":2`), 1)
	if bytes.Equal(b, edited) {
		t.Fatalf("nothing to edit in %s", b)
	}
	if err := os.WriteFile(paths[1], edited, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, append([]string{"audit", "merge", "--json"}, paths...)...)
	if code != exitFailed {
		t.Errorf("audit merge with an edited log: exit %d; want %d", code, exitFailed)
	}
	if !strings.Contains(errOut, paths[1]+": FAILED") || strings.Count(errOut, ": ok:") != 2 {
		t.Errorf("stderr = %q; want host-b's log FAILED and the two others ok", errOut)
	}
	if n := strings.Count(out, "\n"); n != 7 {
		t.Errorf("%d merged records with host-b's chain broken at seq 2; want 7 (host-b's first only)", n)
	}
}
