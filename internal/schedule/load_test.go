package schedule

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// problemsOf returns every problem in err, failing the test when err does
// not unwrap to them.
func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) does not unwrap to *FieldError", err, err)
	}
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("error %v (%T) is not Problems", err, err)
	}
	return probs
}

func TestLoadBadConfigs(t *testing.T) {
	tests := []struct {
		file      string
		line, col int
		path      string
		msg       string // a part of the message
	}{
		{"empty", 1, 1, "", "empty schedule"},
		{"comments-only", 1, 1, "", "empty schedule"},
		{"second-document", 16, 1, "", "second YAML document"},
		{"syntax-error", 9, 0, "", "invalid YAML"},
		{"not-a-mapping", 1, 1, "", "expected a mapping"},
		{"version-missing", 1, 1, "version", "missing; add version: 1"},
		{"version-2", 1, 10, "version", "unsupported version 2"},
		{"unknown-field", 14, 5, "jobs[0].schedul", `did you mean "schedule"?`},
		{"unknown-top-field", 6, 1, "timezon", `did you mean "timezone"?`},
		{"duplicate-field", 15, 5, "jobs[0].account", "first set at line 12"},
		{"targets-string", 14, 14, "jobs[0].targets", "expected a list of ids, got a string"},
		{"attempts-string", 8, 19, "defaults.retry.max_attempts", "expected an integer, got a string"},
		{"bad-duration", 7, 12, "defaults.timeout", `invalid duration "30x"; use Go syntax like 30s, 5m, 1h30m`},
		{"negative-duration", 7, 24, "defaults.retry.max_elapsed", "negative duration"},
		{"bad-cron", 11, 15, "jobs[0].schedule", `invalid schedule "0 9 * *"`},
		{"bad-zone", 2, 11, "timezone", `unknown time zone "Mars/Olympus"`},
		{"bad-job-zone", 15, 15, "jobs[0].timezone", `unknown time zone "Europe/Berln"`},
		{"unknown-action", 13, 13, "jobs[0].action", `did you mean "modelarts.notebook.start"?`},
		{"action-wrong-vendor", 15, 13, "jobs[0].action", "belongs to vendor otc, but account \"ncp\" is vendor ncp"},
		{"unknown-account", 12, 14, "jobs[0].account", `unknown account "labb"; did you mean "lab"?`},
		{"unused-account", 9, 3, "accounts.spare", "not used by any job"},
		{"duplicate-job", 15, 11, "jobs[1].name", `duplicate job name "nb-on"; first defined at line 10`},
		{"empty-targets", 14, 14, "jobs[0].targets", "no targets"},
		{"missing-targets", 10, 5, "jobs[0].targets", "missing"},
		{"duplicate-target", 14, 27, "jobs[0].targets[2]", `duplicate target "nb-1"`},
		{"cdss-target", 14, 26, "jobs[0].targets[1]", `target "cluster-7" is not a CDSS cluster number`},
		{"missing-name", 10, 5, "jobs[0].name", "missing"},
		{"missing-schedule", 10, 5, "jobs[0].schedule", "missing"},
		{"missing-account", 10, 5, "jobs[0].account", "missing; name one of the accounts: lab"},
		{"missing-action", 10, 5, "jobs[0].action", "missing; name a catalogue action"},
		{"inline-secret", 10, 17, "accounts.ncp.secret_key", secret.InlineHint},
		{"bad-overlap", 7, 12, "defaults.overlap", `did you mean "skip"?`},
		{"unknown-vendor", 8, 13, "accounts.lab.vendor", `unknown vendor "aws"`},
		{"missing-vendor", 8, 5, "accounts.lab.vendor", "missing"},
		{"ncp-missing-secret-key", 8, 5, "accounts.ncp.secret_key", "missing"},
		{"ncp-region", 9, 13, "accounts.ncp.region", `did you mean "SGN"?`},
		{"ncp-project-id", 11, 5, "accounts.ncp.project_id", "does not apply to vendor ncp"},
		{"endpoint-key", 11, 17, "accounts.ncp.endpoints.dataforrest", `did you mean "dataforest"?`},
		{"endpoint-url", 12, 13, "accounts.ncp.endpoints.cdss", "absolute http(s) URL"},
		{"scnet-token-and-keys", 10, 5, "accounts.sc.user", "either token, or user"},
		{"scnet-missing-user", 8, 5, "accounts.sc.user", "missing"},
		{"otc-project-id", 9, 17, "accounts.otc.project_id", "32 hex digits"},
		{"otc-region", 9, 13, "accounts.otc.region", `unknown otc region "eu-fr"`},
		{"otc-iam-missing-domain", 8, 5, "accounts.otc.domain", "missing"},
		{"otc-aksk-username", 12, 5, "accounts.otc.username", "auth: iam only"},
		{"otc-api", 12, 10, "accounts.otc.api", `did you mean "notebooks"?`},
		{"sandbox-credentials", 9, 5, "accounts.lab.access_key", "needs no credentials"},
		{"faults-not-sandbox", 11, 5, "accounts.ncp.faults", "only allowed on sandbox accounts"},
		{"fault-kind", 10, 15, "accounts.lab.faults[0].kind", `did you mean "throttle"?`},
		{"fault-target", 10, 17, "accounts.lab.faults[0].target", "not a target of any job"},
		{"fault-delay-missing", 10, 9, "accounts.lab.faults[0].delay", "kind delay needs delay"},
		{"rate-limit", 9, 30, "accounts.lab.rate_limit.per_second", "greater than 0"},
		{"burst", 9, 40, "accounts.lab.rate_limit.burst", "at least 1"},
		{"concurrency", 9, 18, "accounts.lab.concurrency", "at least 1"},
		{"retry-bounds", 8, 23, "defaults.retry.initial_interval", "exceeds max_interval 1m0s"},
		{"max-attempts", 15, 27, "jobs[0].retry.max_attempts", "at least 1"},
		{"timeout-zero", 15, 14, "jobs[0].timeout", "greater than 0"},
		{"no-jobs", 9, 7, "jobs", "no jobs"},
		{"audit-missing", 1, 1, "audit.path", "missing"},
		{"merge-key", 15, 5, "jobs[1]", "merge keys (<<) are not supported"},
		{"null-job", 15, 5, "jobs[1]", "expected a job, got nothing"},
		{"billion-laughs", 6, 29, "", "document expands aliases too much"},
		{"nested-alias", 226, 5, "", "document expands aliases too much"},
		{"alias-cycle", 14, 24, "", "alias *t is inside the value of its own anchor &t"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			file := filepath.Join("testdata", tc.file+".yaml")
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(file, data, Options{})
			if err == nil {
				t.Fatalf("Load(%s) = %+v, nil; want an error", file, cfg)
			}
			for _, fe := range problemsOf(t, err) {
				if fe.Line == tc.line && fe.Col == tc.col && fe.Path == tc.path && strings.Contains(fe.Msg, tc.msg) {
					if fe.File != file {
						t.Errorf("FieldError.File = %q; want %q", fe.File, file)
					}
					return
				}
			}
			t.Errorf("Load(%s) error =\n%v\nwant a problem at %d:%d %s containing %q", file, err, tc.line, tc.col, tc.path, tc.msg)
		})
	}
}

// TestLoadBadConfigsOneProblem checks that each bad case reports its one
// problem, not a cascade of follow-on noise.
func TestLoadBadConfigsOneProblem(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		base := filepath.Base(file)
		if base == "valid.yaml" || base == "many-problems.yaml" {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Load(file, data, Options{})
		if err == nil {
			t.Errorf("Load(%s) = nil error; want one problem", file)
			continue
		}
		if probs := problemsOf(t, err); len(probs) != 1 && base != "merge-key.yaml" {
			t.Errorf("Load(%s) reported %d problems; want 1:\n%v", file, len(probs), err)
		}
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	_, err := LoadFile("testdata/many-problems.yaml", Options{})
	probs := problemsOf(t, err)
	want := []string{
		"timezone", "audit.path", "defaults.timeout", "defaults.retry.max_interval",
		"defaults.retry.max_attempts", "defaults.overlap", "accounts.ncp-prod.secret_key",
		"accounts.ncp-prod.project_id", "accounts.ncp-prod.endpoints.cdss", "accounts.spare",
		"accounts.lab.concurrency", "jobs[0].targets[1]", "jobs[1].name", "jobs[1].schedule",
		"jobs[1].timezone", "jobs[1].action", "jobs[1].targets", "jobs[2].schedul",
		"jobs[2].account", "jobs[2].action", "jobs[2].targets", "jobs[2].verify",
	}
	var got []string
	for i, fe := range probs {
		got = append(got, fe.Path)
		if i > 0 && (fe.Line < probs[i-1].Line || fe.Line == probs[i-1].Line && fe.Col < probs[i-1].Col) {
			t.Errorf("problems not sorted by position: %v before %v", probs[i-1], fe)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("problem paths =\n%v\nwant\n%v", got, want)
	}
}

func TestValidateGolden(t *testing.T) {
	_, err := LoadFile("testdata/many-problems.yaml", Options{})
	if err == nil {
		t.Fatal("LoadFile(many-problems.yaml) = nil error")
	}
	got := err.Error() + "\n"
	golden := "testdata/many-problems.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("validate output differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}

func TestInlineSecretNeverPrinted(t *testing.T) {
	const value = "Sapphire-Walrus-99173"
	head := "version: 1\naudit: {path: a}\nstate: {dir: s}\njobs:\n  - {name: j, schedule: \"@daily\", account: a, action: cdss.cmak.restart, targets: [\"1\"]}\naccounts:\n  a:\n    vendor: ncp\n"
	tests := []struct{ name, account string }{
		{"plain", "    access_key: {env: AK}\n    secret_key: " + value + "\n"},
		{"quoted", "    access_key: {env: AK}\n    secret_key: \"" + value + "\"\n"},
		{"block", "    access_key: {env: AK}\n    secret_key: |\n      " + value + "\n"},
		{"list", "    access_key: {env: AK}\n    secret_key: [" + value + "]\n"},
		{"wrong source", "    access_key: {env: AK}\n    secret_key: {value: " + value + "}\n"},
		{"two sources", "    access_key: {env: AK}\n    secret_key: {env: X, file: " + value + "}\n"},
		{"nested", "    access_key: {env: AK}\n    secret_key: {env: [" + value + "]}\n"},
		{"access key", "    access_key: " + value + "\n    secret_key: {env: SK}\n"},
		{"beside other errors", "    access_key: {env: AK}\n    secret_key: " + value + "\n    region: [" + "KR]\n    token: " + value + "\n"},
		{"anchor", "    access_key: &k " + value + "\n    secret_key: *k\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("s.yaml", []byte(head+tc.account), Options{CheckSecrets: true, Resolver: secret.Resolver{
				LookupEnv: func(string) (string, bool) { return "", false },
			}})
			if err == nil {
				t.Fatal("Load = nil error; want an inline-secret problem")
			}
			for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
				if strings.Contains(s, value) || strings.Contains(s, "Sapphire") {
					t.Fatalf("error text contains the secret: %s", s)
				}
			}
			found := false
			for _, fe := range problemsOf(t, err) {
				found = found || strings.HasPrefix(fe.Path, "accounts.a.")
			}
			if !found {
				t.Errorf("no problem at accounts.a.*: %v", err)
			}
		})
	}
}

func TestCheckSecrets(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.secret")
	loose := filepath.Join(dir, "loose.secret")
	for _, f := range []struct {
		path string
		mode fs.FileMode
	}{{good, 0o600}, {loose, 0o644}} {
		if err := os.WriteFile(f.path, []byte("s3cr3t\n"), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f.path, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	config := func(ak, sk string) []byte {
		return []byte(fmt.Sprintf(`version: 1
audit: {path: a}
state: {dir: s}
accounts:
  ncp:
    vendor: ncp
    access_key: %s
    secret_key: %s
jobs:
  - {name: j, schedule: "@daily", account: ncp, action: cdss.cmak.restart, targets: ["1"]}
`, ak, sk))
	}
	res := secret.Resolver{LookupEnv: func(k string) (string, bool) {
		if k == "NCP_AK" {
			return "ak", true
		}
		return "", false
	}}
	tests := []struct {
		name, ak, sk string
		path         string // "" = valid
		msg          string
	}{
		{"all resolve", "{env: NCP_AK}", "{file: " + good + "}", "", ""},
		{"unset env", "{env: NCP_MISSING}", "{file: " + good + "}", "accounts.ncp.access_key", "NCP_MISSING is not set"},
		{"group-readable file", "{env: NCP_AK}", "{file: " + loose + "}", "accounts.ncp.secret_key", "chmod 600"},
		{"missing file", "{env: NCP_AK}", "{file: " + filepath.Join(dir, "nope") + "}", "accounts.ncp.secret_key", "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := config(tc.ak, tc.sk)
			if _, err := Load("s.yaml", data, Options{}); err != nil {
				t.Fatalf("Load without CheckSecrets = %v; want nil", err)
			}
			_, err := Load("s.yaml", data, Options{CheckSecrets: true, Resolver: res})
			if tc.path == "" {
				if err != nil {
					t.Fatalf("Load = %v; want nil", err)
				}
				return
			}
			probs := problemsOf(t, err)
			wantLine := 7
			if strings.HasSuffix(tc.path, "secret_key") {
				wantLine = 8
			}
			if len(probs) != 1 || probs[0].Path != tc.path || probs[0].Line != wantLine || probs[0].Col != 17 || !strings.Contains(probs[0].Msg, tc.msg) {
				t.Errorf("Load error = %v; want one problem at %d:17 %s containing %q", err, wantLine, tc.path, tc.msg)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error contains the secret: %v", err)
			}
		})
	}
}

func TestValidConfig(t *testing.T) {
	cfg, err := LoadFile("testdata/valid.yaml", Options{})
	if err != nil {
		t.Fatalf("LoadFile(valid.yaml) = %v", err)
	}
	if cfg.Loc.String() != "Asia/Seoul" || cfg.File != "testdata/valid.yaml" {
		t.Errorf("Loc, File = %v, %q; want Asia/Seoul, testdata/valid.yaml", cfg.Loc, cfg.File)
	}
	for _, j := range cfg.Jobs {
		if j.Spec == nil || j.Loc == nil || j.Line == 0 || j.Column == 0 {
			t.Errorf("job %s: Spec %v, Loc %v, at %d:%d; want all set", j.Name, j.Spec, j.Loc, j.Line, j.Column)
		}
	}
	on := cfg.Job("notebooks-on")
	if on == nil || on.Loc.String() != "Europe/Berlin" || on.Line != 68 || on.Column != 5 || !*on.Verify {
		t.Fatalf("Job(notebooks-on) = %+v; want Europe/Berlin at 68:5, verify", on)
	}
	// Monday 2026-03-02 09:00 Berlin is 08:00 UTC.
	from := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	if got, want := on.Spec.Next(from), time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("notebooks-on Next(%v) = %v; want %v", from, got, want)
	}
	if cfg.Job("cmak-nightly").Loc.String() != "Asia/Seoul" {
		t.Errorf("cmak-nightly zone = %v; want the config's Asia/Seoul", cfg.Job("cmak-nightly").Loc)
	}
	if cfg.Job("nope") != nil {
		t.Error("Job(nope) != nil")
	}
	accts := cfg.Accounts
	if accts["ncp-prod"].Name != "ncp-prod" || accts["ncp-prod"].Concurrency != 8 || accts["try"].Concurrency != 2 {
		t.Errorf("account defaults: %+v, %+v", accts["ncp-prod"], accts["try"])
	}
	if accts["otc-dev"].Auth != "aksk" || accts["otc-ops"].API != "notebooks" || accts["otc-ops"].RateLimit.Burst != 10 {
		t.Errorf("otc accounts: %+v, %+v", accts["otc-dev"], accts["otc-ops"])
	}
	if len(accts["try"].Faults) != 3 || accts["try"].Faults[0].RetryAfter.D() != 2*time.Second {
		t.Errorf("faults = %+v", accts["try"].Faults)
	}
}

func TestAccountDefaults(t *testing.T) {
	cfg, err := Load("d.yaml", []byte(`version: 1
audit: {path: a}
state: {dir: s}
accounts:
  n: {vendor: ncp, access_key: {env: A}, secret_key: {env: B}, rate_limit: {per_second: 2.5}}
  o: {vendor: otc, project_id: 0123456789abcdef0123456789abcdef, access_key: {env: A}, secret_key: {env: B}}
jobs:
  - {name: a, schedule: "@daily", account: n, action: cdss.cmak.restart, targets: ["1"]}
  - {name: b, schedule: "@daily", account: o, action: modelarts.notebook.stop, targets: ["x"]}
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, o := cfg.Accounts["n"], cfg.Accounts["o"]
	if n.Region != "KR" || n.Concurrency != 8 || n.RateLimit.Burst != 3 {
		t.Errorf("ncp defaults: region %q, concurrency %d, burst %d; want KR, 8, 3", n.Region, n.Concurrency, n.RateLimit.Burst)
	}
	if o.Region != "eu-de" || o.Auth != "aksk" || o.API != "demanager" {
		t.Errorf("otc defaults: region %q, auth %q, api %q; want eu-de, aksk, demanager", o.Region, o.Auth, o.API)
	}
	if cfg.Loc != time.UTC {
		t.Errorf("Loc = %v; want UTC", cfg.Loc)
	}
}

func TestDefaultsInheritance(t *testing.T) {
	cfg, err := Load("d.yaml", []byte(`version: 1
audit: {path: a}
state: {dir: s}
defaults:
  timeout: 10s
  retry: {initial_interval: 2s, max_attempts: 4}
  verify: true
accounts:
  lab: {vendor: sandbox}
jobs:
  - {name: plain, schedule: "@daily", account: lab, action: scnet.notebook.stop, targets: [x]}
  - name: own
    schedule: "@daily"
    account: lab
    action: scnet.notebook.stop
    targets: [x]
    timeout: 1m
    retry: {max_interval: 30s}
    catchup: 0s
    overlap: queue
    verify: false
    verify_timeout: 1m
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	plain, own := cfg.Job("plain"), cfg.Job("own")
	tests := []struct {
		name      string
		got, want any
	}{
		{"plain timeout (defaults)", plain.TimeoutD, 10 * time.Second},
		{"plain backoff", plain.Backoff, Retry{2 * time.Second, time.Minute, 10 * time.Minute, 4}},
		{"plain catchup (built-in)", plain.CatchupD, time.Hour},
		{"plain overlap (built-in)", plain.Overlap, "skip"},
		{"plain verify (defaults)", *plain.Verify, true},
		{"plain verify_timeout (built-in)", plain.VerifyTimeoutD, 10 * time.Minute},
		{"own timeout", own.TimeoutD, time.Minute},
		{"own backoff: max_interval own, the rest inherited", own.Backoff, Retry{2 * time.Second, 30 * time.Second, 10 * time.Minute, 4}},
		{"own catchup 0 = never", own.CatchupD, time.Duration(0)},
		{"own overlap", own.Overlap, "queue"},
		{"own verify", *own.Verify, false},
		{"own verify_timeout", own.VerifyTimeoutD, time.Minute},
		{"defaults completed", cfg.Defaults.Retry.MaxElapsed.D(), 10 * time.Minute},
		{"job pointer fields filled", own.Retry.InitialInterval.D(), 2 * time.Second},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %v; want %v", tc.name, tc.got, tc.want)
		}
	}
	if plain.Retry == cfg.Defaults.Retry || plain.Timeout == cfg.Defaults.Timeout {
		t.Error("job policy shares pointers with defaults")
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	write := func(name, audit, state string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		data := fmt.Sprintf("version: 1\naudit: {path: %q}\nstate: {dir: %q}\naccounts: {lab: {vendor: sandbox}}\njobs: [{name: j, schedule: \"@daily\", account: lab, action: scnet.notebook.stop, targets: [x]}]\n", audit, state)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, audit, state, wantAudit, wantState string
	}{
		{"relative", "log/audit.jsonl", "state", filepath.Join(dir, "log/audit.jsonl"), filepath.Join(dir, "state")},
		{"dot", "./audit.jsonl", "../st", filepath.Join(dir, "audit.jsonl"), filepath.Join(filepath.Dir(dir), "st")},
		{"absolute", "/var/log/a.jsonl", "/var/lib/s", "/var/log/a.jsonl", "/var/lib/s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadFile(write(tc.name+".yaml", tc.audit, tc.state), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Audit.Path != tc.wantAudit || cfg.State.Dir != tc.wantState {
				t.Errorf("audit.path, state.dir = %q, %q; want %q, %q", cfg.Audit.Path, cfg.State.Dir, tc.wantAudit, tc.wantState)
			}
		})
	}
	// Load with no Dir keeps the paths as written.
	data, err := os.ReadFile(write("plain.yaml", "audit.jsonl", "state"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load("plain.yaml", data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Audit.Path != "audit.jsonl" || cfg.State.Dir != "state" {
		t.Errorf("Load without Dir: %q, %q; want audit.jsonl, state", cfg.Audit.Path, cfg.State.Dir)
	}
	if _, err := LoadFile(filepath.Join(dir, "missing.yaml"), Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadFile(missing) = %v; want fs.ErrNotExist", err)
	}
}

func TestHashAndFingerprint(t *testing.T) {
	base, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	load := func(t *testing.T, data string) *Config {
		t.Helper()
		cfg, err := Load("v.yaml", []byte(data), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	orig := load(t, string(base))
	if again := load(t, string(base)); again.Hash() != orig.Hash() || len(orig.Hash()) != 64 {
		t.Fatalf("Hash not stable: %q vs %q", orig.Hash(), again.Hash())
	}
	tests := []struct {
		name     string
		old, new string   // the edit; an empty old prepends new
		changed  []string // jobs whose fingerprint must change; all others must not
	}{
		{"comment only", "", "# edited\n", nil},
		{"targets", "targets: [nb-42]\n", "targets: [nb-43]\n", []string{"scnet-start"}},
		{"schedule", `"30 3 * * *"`, `"31 3 * * *"`, []string{"cmak-nightly"}},
		{"job zone", "timezone: Europe/Berlin", "timezone: Europe/Paris", []string{"notebooks-on"}},
		{"config zone", "timezone: Asia/Seoul", "timezone: Asia/Tokyo",
			[]string{"cmak-nightly", "df-notebook-restart", "scnet-start", "scnet-stop", "try-it", "try-apps"}},
		{"defaults policy", "max_attempts: 8}", "max_attempts: 9}",
			[]string{"notebooks-on", "notebooks-off", "df-notebook-restart", "scnet-start", "scnet-stop", "try-it", "try-apps"}},
		{"account endpoint", "https://df.apigw.ntruss.com", "https://proxy.example", []string{"cmak-nightly", "df-notebook-restart"}},
		{"secret source", "{env: OTC_AK}", "{env: OTC_AK2}", []string{"notebooks-on"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.new + string(base)
			if tc.old != "" {
				text = strings.Replace(string(base), tc.old, tc.new, 1)
				if text == string(base) {
					t.Fatalf("edit %q not found in valid.yaml", tc.old)
				}
			}
			edited := load(t, text)
			if edited.Hash() == orig.Hash() {
				t.Error("Hash unchanged after an edit")
			}
			for _, j := range orig.Jobs {
				want := false
				for _, c := range tc.changed {
					want = want || c == j.Name
				}
				if got := edited.Job(j.Name).Fingerprint() != j.Fingerprint(); got != want {
					t.Errorf("job %s: fingerprint changed = %v; want %v", j.Name, got, want)
				}
			}
		})
	}
}

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "s.yaml", Path: "jobs[2].schedule", Msg: "bad", Line: 3, Col: 7}, "s.yaml:3:7: jobs[2].schedule: bad"},
		{FieldError{File: "s.yaml", Msg: "invalid YAML: x", Line: 3}, "s.yaml:3: invalid YAML: x"},
		{FieldError{File: "s.yaml", Msg: "empty", Line: 1, Col: 1}, "s.yaml:1:1: empty"},
	}
	for _, tc := range tests {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q; want %q", got, tc.want)
		}
	}
}

// TestFingerprintCoversRetry changes each field of the effective retry
// policy in turn: every one must change the job's fingerprint, so that a
// reload that edits it re-registers the job. A field added to Retry fails
// here until fingerprint hashes it.
func TestFingerprintCoversRetry(t *testing.T) {
	base := &Job{Name: "j", Schedule: "0 9 * * *", Account: "a", Action: "modelarts.notebook.start", Targets: []string{"nb"},
		Backoff: Retry{InitialInterval: time.Second, MaxInterval: time.Minute, MaxElapsed: time.Hour, MaxAttempts: 5}}
	want := fingerprint(base, nil)
	rt := reflect.TypeFor[Retry]()
	for i := range rt.NumField() {
		j := *base
		f := reflect.ValueOf(&j.Backoff).Elem().Field(i)
		f.SetInt(f.Int() + 1)
		if fingerprint(&j, nil) == want {
			t.Errorf("changing Retry.%s leaves the fingerprint unchanged", rt.Field(i).Name)
		}
	}
	if rt.NumField() != 4 {
		t.Errorf("Retry has %d fields; fingerprint hashes 4: hash the new one", rt.NumField())
	}
}
