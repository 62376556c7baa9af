package schedule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadRejectsHazards covers issue 14's validation cases: each file has
// one problem, reported at its position with a fix.
func TestLoadRejectsHazards(t *testing.T) {
	tests := []struct {
		file      string
		line, col int
		path      string
		msgs      []string // parts of the message
		never     string   // must not appear anywhere in the error
	}{
		{"insecure-endpoint", 12, 19, "accounts.ncp.endpoints.dataforest",
			[]string{"http://df.example.com", "in clear", "https://", "insecure_http: true"}, ""},
		{"never-fires", 11, 15, "jobs[0].schedule", []string{`"0 0 30 2 *" never fires`, "no date matches"}, ""},
		{"name-newline", 10, 11, "jobs[0].name", []string{"U+000A", "line feed"}, ""},
		{"name-bidi", 10, 11, "jobs[0].name", []string{"U+202E", "bidi"}, ""},
		{"env-name-is-a-value", 10, 23, "accounts.ncp.secret_key", []string{"not an environment variable name", "not shown"}, "wJalr"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			file := filepath.Join("testdata", tc.file+".yaml")
			cfg, err := LoadFile(file, Options{Anchor: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
			if err == nil {
				t.Fatalf("LoadFile(%s) = %+v, nil; want an error", file, cfg)
			}
			if tc.never != "" && strings.Contains(err.Error(), tc.never) {
				t.Errorf("error echoes the secret value:\n%v", err)
			}
			probs := problemsOf(t, err)
			if len(probs) != 1 {
				t.Errorf("%d problems; want 1:\n%v", len(probs), err)
			}
			for _, fe := range probs {
				if fe.Line != tc.line || fe.Col != tc.col || fe.Path != tc.path {
					continue
				}
				for _, m := range tc.msgs {
					if !strings.Contains(fe.Msg, m) {
						t.Errorf("message %q; want it to contain %q", fe.Msg, m)
					}
				}
				return
			}
			t.Errorf("LoadFile(%s) error =\n%v\nwant a problem at %d:%d %s", file, err, tc.line, tc.col, tc.path)
		})
	}
}

const insecureBase = `version: 1
audit: {path: a}
state: {dir: s}
accounts:
  n:
    vendor: ncp
    access_key: {env: A}
    secret_key: {env: B}
`

const insecureJob = `jobs:
  - {name: a, schedule: "@daily", account: n, action: dataforest.notebook.restart, targets: ["x"]}
`

// TestInsecureHTTP: plain http is for loopback only, unless the account
// says insecure_http: true, which loads with a loud warning.
func TestInsecureHTTP(t *testing.T) {
	for _, ep := range []string{"http://127.0.0.1:8080", "http://localhost:9", "http://[::1]:80", "https://df.example.com"} {
		cfg, err := Load("ok.yaml", []byte(insecureBase+"    endpoints: {dataforest: \""+ep+"\"}\n"+insecureJob), Options{})
		if err != nil {
			t.Errorf("endpoint %s: %v; want it accepted", ep, err)
			continue
		}
		if w := cfg.Warnings(); len(w) != 0 {
			t.Errorf("endpoint %s: warnings %q; want none", ep, w)
		}
	}
	for _, ep := range []string{"http://10.0.0.7:8080", "http://df.example.com", "http://127.0.0.1.nip.io"} {
		_, err := Load("bad.yaml", []byte(insecureBase+"    endpoints: {dataforest: \""+ep+"\"}\n"+insecureJob), Options{})
		if err == nil || !strings.Contains(err.Error(), "insecure_http: true") {
			t.Errorf("endpoint %s: error %v; want a refusal naming insecure_http", ep, err)
		}
	}
	cfg, err := Load("yes.yaml", []byte(insecureBase+"    insecure_http: true\n    endpoints: {dataforest: \"http://10.0.0.7:8080\"}\n"+insecureJob), Options{})
	if err != nil {
		t.Fatalf("insecure_http: true: %v; want it accepted", err)
	}
	w := cfg.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "accounts.n") || !strings.Contains(w[0], "http://10.0.0.7:8080") || !strings.Contains(w[0], "clear") {
		t.Errorf("Warnings() = %q; want one naming accounts.n, the endpoint and that credentials cross in clear", w)
	}
	_, err = Load("sb.yaml", []byte(`version: 1
audit: {path: a}
state: {dir: s}
accounts:
  n: {vendor: sandbox, insecure_http: true}
jobs:
  - {name: a, schedule: "@daily", account: n, action: dataforest.notebook.restart, targets: ["x"]}
`), Options{})
	if err == nil || !strings.Contains(err.Error(), "insecure_http") {
		t.Errorf("insecure_http on a sandbox account: %v; want an error", err)
	}
}

// TestNeverFiresOK: specs that fire rarely are not refused.
func TestRareSpecsAccepted(t *testing.T) {
	for _, spec := range []string{"0 0 29 2 *", "0 0 31 * *", "0 0 30 2 MON", "@yearly", "@every 8760h"} {
		_, err := Load("rare.yaml", []byte(`version: 1
audit: {path: a}
state: {dir: s}
accounts:
  n: {vendor: sandbox}
jobs:
  - {name: a, schedule: "`+spec+`", account: n, action: dataforest.notebook.restart, targets: ["x"]}
`), Options{Anchor: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Errorf("schedule %q: %v; want it accepted", spec, err)
		}
	}
}

// TestNameCharacters: printable names of any script load; control, bidi and
// line-separator characters are refused and named.
func TestNameCharacters(t *testing.T) {
	for _, name := range []string{"nb-on", "노트북-켜기", "nb_on.v2", "nb on"} {
		if msg := NameProblem(name); msg != "" {
			t.Errorf("NameProblem(%q) = %q; want none", name, msg)
		}
	}
	for name, want := range map[string]string{
		"nb\ton": "U+0009", "nb\x1b[31m": "U+001B", "a\u2028b": "U+2028", "a\u2066b": "U+2066",
		"a\u200fb": "U+200F", "a\x7fb": "U+007F", "a\u0085b": "U+0085", "bad\xffutf8": "UTF-8",
	} {
		if msg := NameProblem(name); !strings.Contains(msg, want) {
			t.Errorf("NameProblem(%q) = %q; want it to name %s", name, msg, want)
		}
	}
}

// TestConfigSizeLimit: a file over MaxFileBytes is refused before it is
// read or parsed. The file is sparse: it takes no disk.
func TestConfigSizeLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.yaml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = LoadFile(path, Options{})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "64 MiB") {
		t.Fatalf("LoadFile(%d bytes) = %v; want a refusal naming the file and the 64 MiB limit", MaxFileBytes+1, err)
	}
	_, err = Load("big.yaml", make([]byte, MaxFileBytes+1), Options{})
	if err == nil || !strings.Contains(err.Error(), "64 MiB") {
		t.Fatalf("Load(%d bytes) = %v; want a refusal naming the limit", MaxFileBytes+1, err)
	}
}

// TestWindowNameCharacters: window names follow the job name rule.
func TestWindowNameCharacters(t *testing.T) {
	_, err := loadWindows(t, "windows:\n  - name: \"nb\\non\"\n    account: lab\n    resource: modelarts.notebook\n    targets: [nb-1]\n    on: [{days: MON-FRI, from: \"09:00\", to: \"19:00\"}]\n", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "windows[0].name") || !strings.Contains(err.Error(), "U+000A") {
		t.Errorf("window name with a newline: %v; want refused at windows[0].name naming U+000A", err)
	}
}
