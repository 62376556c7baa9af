package daemon

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/secret"
)

// TestStartWarnsInsecureHTTPAndLogsDurationUnits: an account that sends
// credentials in clear is warned about on start, and durations in the
// log carry their unit in the key.
func TestStartWarnsInsecureHTTPAndLogsDurationUnits(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	body := `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
accounts:
  n: {vendor: ncp, access_key: {env: AK}, secret_key: {env: SK}, insecure_http: true, endpoints: {dataforest: "http://10.1.2.3:8080"}}
jobs:
  - {name: a, schedule: "0 9 1 1 *", account: n, action: dataforest.notebook.restart, targets: [x]}
`
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf syncBuf
	res := secret.Resolver{LookupEnv: func(string) (string, bool) { return "v", true }}
	d, err := Start(Options{ConfigPath: cfg, Log: zerolog.New(&buf), Resolver: res, Grace: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Shutdown(); err != nil {
		t.Fatal(err)
	}
	var warned, grace bool
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		msg, _ := m["message"].(string)
		if m["level"] == "warn" && strings.Contains(msg, "insecure_http: true") && strings.Contains(msg, "http://10.1.2.3:8080") {
			warned = true
		}
		if strings.HasPrefix(msg, "shutting down") {
			if _, bare := m["grace"]; bare || m["grace_ms"] != 1500.0 {
				t.Errorf("shutdown line %s; want grace_ms: 1500 and no unitless grace", line)
			}
			grace = true
		}
	}
	if !warned || !grace {
		t.Errorf("warned %v, shutdown line %v in log:\n%s", warned, grace, buf.String())
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
