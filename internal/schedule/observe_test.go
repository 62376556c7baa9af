package schedule

import (
	"errors"
	"strings"
	"testing"

	"github.com/cloudcron/scheduler/internal/secret"
)

// observeBase has one sandbox job; each case appends http: or notify:
// (line 8 onwards).
const observeBase = `version: 1
audit: {path: audit.jsonl}
state: {dir: state}
accounts:
  lab: {vendor: sandbox}
jobs:
  - {name: nb-on, schedule: "0 9 * * *", account: lab, action: modelarts.notebook.start, targets: [nb-1]}
`

func TestObserveConfigValid(t *testing.T) {
	t.Setenv("HOOK_URL", "https://hooks.example.invalid/T000/B000/XXXX")
	t.Setenv("HOOK_KEY", "k3y")
	cfg, err := Load("o.yaml", []byte(observeBase+`http: {listen: "0.0.0.0:9464", allow_non_loopback: true}
notify:
  - {name: ops, type: slack, url: {env: HOOK_URL}}
  - {name: siem, type: webhook, url: {env: HOOK_URL}, secret: {env: HOOK_KEY}, on: [failure, reconcile], jobs: [nb-on]}
`), Options{CheckSecrets: true, Resolver: secret.Resolver{}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.HTTP.Listen != "0.0.0.0:9464" || cfg.HTTP.Loopback() || len(cfg.Notify) != 2 || cfg.Notify[1].Secret == nil {
		t.Errorf("http = %+v, notify = %d entries; want the listener and both sinks", cfg.HTTP, len(cfg.Notify))
	}
	for _, l := range []string{"127.0.0.1:9464", "[::1]:9464", "localhost:9464"} {
		if !(HTTPConfig{Listen: l}).Loopback() {
			t.Errorf("Loopback(%s) = false; want true", l)
		}
	}
}

func TestObserveConfigErrors(t *testing.T) {
	t.Setenv("NOT_A_URL", "hunter2-secret")
	tests := []struct {
		name, yaml, path, msg string
		line                  int
	}{
		{"public listen without opt-in", `http: {listen: "0.0.0.0:9464"}`, "http.listen", "allow_non_loopback: true", 8},
		{"every address", `http: {listen: ":9464"}`, "http.listen", "listens on every address", 8},
		{"not host:port", `http: {listen: "9464"}`, "http.listen", "not host:port", 8},
		{"unknown http field", `http: {listen: "127.0.0.1:1", port: 3}`, "http.port", "", 8},
		{"unknown type", "notify:\n  - {name: a, type: slak, url: {env: X}}", "notify[0].type", `"slack"`, 9},
		{"inline url", "notify:\n  - {name: a, type: slack, url: https://hooks.example/T/B/C}", "notify[0].url", "inline secrets", 9},
		{"missing url", "notify:\n  - {name: a, type: teams}", "notify[0].url", "missing", 9},
		{"secret on slack", "notify:\n  - {name: a, type: slack, url: {env: X}, secret: {env: K}}", "notify[0].secret", "webhook bodies only", 9},
		{"unknown event", "notify:\n  - {name: a, type: slack, url: {env: X}, on: [failed]}", "notify[0].on[0]", "use one of failure, verify_failed", 9},
		{"unknown job", "notify:\n  - {name: a, type: slack, url: {env: X}, jobs: [nb-of]}", "notify[0].jobs[0]", `no job or window named "nb-of"`, 9},
		{"duplicate name", "notify:\n  - {name: a, type: slack, url: {env: X}}\n  - {name: a, type: teams, url: {env: X}}", "notify[1].name", "first defined at line 9", 10},
		{"url not a URL", "notify:\n  - {name: a, type: slack, url: {env: NOT_A_URL}}", "notify[0].url", "environment variable NOT_A_URL is not an http(s) URL", 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("o.yaml", []byte(observeBase+tc.yaml+"\n"), Options{CheckSecrets: tc.name == "url not a URL", Resolver: secret.Resolver{}})
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Load error = %v; want Problems", err)
			}
			for _, p := range probs {
				var fe *FieldError
				if errors.As(p, &fe) && fe.Path == tc.path && strings.Contains(fe.Msg, tc.msg) {
					if fe.Line != tc.line {
						t.Errorf("%s reported at line %d; want %d", tc.path, fe.Line, tc.line)
					}
					if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "hooks.example") {
						t.Errorf("error quotes a secret: %v", err)
					}
					return
				}
			}
			t.Errorf("Load error = %v; want a problem at %s containing %q", err, tc.path, tc.msg)
		})
	}
}
