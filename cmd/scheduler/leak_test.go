package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// leakSecrets are the configured secret values, by the name of the
// reference that carries them. Each is distinctive, so finding it (or its
// first leakPrefix bytes) anywhere is a leak.
var leakSecrets = map[string]string{
	"LEAK_NCP_AK":      "ncpAKleak7Q2mZ9xW4vT1",
	"ncp_sk.file":      "ncpSKleak3Jd8Lp0Rq6Yh2",
	"otc_ak.cred":      "otcAKleak5Nf2Vb7Kc1Xs8",
	"LEAK_OTC_SK":      "otcSKleak9Tg4Hm3Wp6Zd0",
	"LEAK_OTC_USER":    "otcUSRleak2Qa7Ce5Ru8Fy",
	"otc_pw.file":      "otcPWleak6Lk1Bj9Ns4Gv3",
	"scnet_token.cred": "scnTOKleak8Pw3Xe6Hd1Mq",
	"LEAK_SCNET_USER":  "scnUSRleak4Rz9Ka2Vt7Jc",
	"scnet_ak.file":    "scnAKleak1Yb5Gm8Lq3Sw6",
	"scnet_sk.cred":    "scnSKleak7Dn2Fh4Tp9Xu0",
}

// leakPrefix bytes of a secret are enough to count as a leak: a vendor
// message cut short must not carry half a key either.
const leakPrefix = 12

// echoCloud answers every request with a failure whose body, in every
// field any of our vendor clients reads a message, an error code or a
// request id from, and whose X-Request-Id header quote the request's
// headers and body, auth headers first: a careless vendor (or a proxy in
// between) echoing credentials back.
// It alternates 503 (retried) and 400 (permanent), and records what it saw.
type echoCloud struct {
	mu   sync.Mutex
	n    int
	seen strings.Builder
}

func (c *echoCloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var echo strings.Builder
	echo.WriteString("echo-marker ")
	first := []string{"Authorization", "X-Auth-Token", "Token", "X-Ncp-Iam-Access-Key", "X-Ncp-Apigw-Signature-V2"}
	for _, k := range first {
		if v := r.Header.Get(k); v != "" {
			fmt.Fprintf(&echo, "%s=%s ", k, v)
		}
	}
	fmt.Fprintf(&echo, "body=%s ", strings.Join(strings.Fields(string(body)), ""))
	var rest []string
	for k, vs := range r.Header {
		rest = append(rest, k+"="+strings.Join(vs, ","))
	}
	sort.Strings(rest)
	fmt.Fprintf(&echo, "%s %s?%s %s", r.Method, r.URL.Path, r.URL.RawQuery, strings.Join(rest, " "))
	e := echo.String()

	c.mu.Lock()
	c.n++
	status := http.StatusBadRequest
	if c.n%2 == 1 {
		status = http.StatusServiceUnavailable
	}
	fmt.Fprintln(&c.seen, e)
	c.mu.Unlock()

	b, _ := json.Marshal(map[string]any{
		"success": false, "message": e, "msg": e, "requestId": e, "request_id": e,
		"code": e, "result": false, "error_code": e, "error_msg": e, "error_message": e,
		"error": map[string]any{"errorCode": e, "message": e, "code": 400, "details": e},
		"data":  map[string]any{"message": e},
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", strings.ReplaceAll(e, "\n", " "))
	w.WriteHeader(status)
	w.Write(b)
}

// TestNoSecretLeaks runs validate and trigger on accounts of every vendor
// and auth mode, with secrets from env, file and credential references,
// against a cloud that echoes requests back in its errors, and checks that
// no secret reaches stdout, stderr (the logs) or the audit log.
func TestNoSecretLeaks(t *testing.T) {
	cloud := &echoCloud{}
	srv := httptest.NewServer(cloud)
	defer srv.Close()

	dir := t.TempDir()
	creds := filepath.Join(dir, "creds")
	if err := os.Mkdir(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, v := range leakSecrets {
		switch {
		case strings.HasSuffix(name, ".file"):
			writeSecret(t, filepath.Join(dir, strings.TrimSuffix(name, ".file")), v+"\n")
		case strings.HasSuffix(name, ".cred"):
			writeSecret(t, filepath.Join(creds, strings.TrimSuffix(name, ".cred")), v)
		default:
			t.Setenv(name, v)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)

	u := srv.URL
	config := fmt.Sprintf(`version: 1
timezone: UTC
audit: {path: audit.jsonl}
state: {dir: state}
defaults:
  timeout: 2s
  retry: {initial_interval: 1ms, max_interval: 5ms, max_elapsed: 2s, max_attempts: 3}
  catchup: 0s
accounts:
  ncp:
    vendor: ncp
    region: KR
    access_key: {env: LEAK_NCP_AK}
    secret_key: {file: %[2]s/ncp_sk}
    endpoints: {dataforest: %[1]s, cdss: %[1]s}
  otc-aksk:
    vendor: otc
    region: eu-de
    project_id: 0123456789abcdef0123456789abcdef
    access_key: {credential: otc_ak}
    secret_key: {env: LEAK_OTC_SK}
    endpoints: {modelarts: %[1]s, iam: %[1]s}
  otc-iam:
    vendor: otc
    region: eu-de
    auth: iam
    project_id: 0123456789abcdef0123456789abcdef
    username: {env: LEAK_OTC_USER}
    password: {file: %[2]s/otc_pw}
    domain: leakdomain
    endpoints: {modelarts: %[1]s, iam: %[1]s}
  scnet-token:
    vendor: scnet
    token: {credential: scnet_token}
    endpoints: {platform: %[1]s, ai: %[1]s, auth: %[1]s}
  scnet-aksk:
    vendor: scnet
    user: {env: LEAK_SCNET_USER}
    access_key: {file: %[2]s/scnet_ak}
    secret_key: {credential: scnet_sk}
    endpoints: {platform: %[1]s, auth: %[1]s}
jobs:
  - {name: ncp-cmak, schedule: "0 3 * * *", account: ncp, action: cdss.cmak.restart, targets: ["1484848"]}
  - {name: ncp-notebook, schedule: "0 3 * * *", account: ncp, action: dataforest.notebook.restart, targets: [nb-1]}
  - {name: otc-aksk-start, schedule: "0 9 * * *", account: otc-aksk, action: modelarts.notebook.start, targets: [6fa459ea-ee8a-3ca4-894e-db77e160355e]}
  - {name: otc-iam-stop, schedule: "0 19 * * *", account: otc-iam, action: modelarts.notebook.stop, targets: [6fa459ea-ee8a-3ca4-894e-db77e160355e]}
  - {name: scnet-token-start, schedule: "0 8 * * *", account: scnet-token, action: scnet.notebook.start, targets: ["1821067171420946434"]}
  - {name: scnet-aksk-stop, schedule: "0 20 * * *", account: scnet-aksk, action: scnet.notebook.stop, targets: ["1821067171420946434"]}
`, u, dir)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr syncBuffer
	invoke := func(want int, args ...string) {
		t.Helper()
		fmt.Fprintf(&stderr, "$ scheduler %s\n", strings.Join(args, " "))
		if code := run(ctx, nil, args, &stdout, &stderr); code != want {
			t.Errorf("scheduler %s: exit %d; want %d\nstderr:\n%s", strings.Join(args, " "), code, want, stderr.String())
		}
	}
	invoke(exitOK, "validate", "--config", path)
	for _, job := range []string{"ncp-cmak", "ncp-notebook", "otc-aksk-start", "otc-iam-stop", "scnet-token-start", "scnet-aksk-stop"} {
		invoke(exitFailed, "trigger", "--config", path, "--log-level", "debug", job)
	}
	// A secret file readable by others is refused with the chmod fix, and
	// the refusal quotes nothing of the file.
	if err := os.Chmod(filepath.Join(dir, "otc_pw"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := len(stderr.String())
	invoke(exitFailed, "validate", "--config", path)
	if msg := stderr.String()[before:]; !strings.Contains(msg, "chmod 600 "+filepath.Join(dir, "otc_pw")) {
		t.Errorf("validate of a group-readable secret file does not give the chmod fix:\n%s", msg)
	}

	auditLog, err := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{"stdout": stdout.String(), "stderr": stderr.String(), "audit log": string(auditLog)}

	// The test means something only if secrets went out and echoes came back.
	cloud.mu.Lock()
	seen := cloud.seen.String()
	cloud.mu.Unlock()
	for _, name := range []string{"LEAK_NCP_AK", "otc_ak.cred", "LEAK_OTC_USER", "otc_pw.file", "scnet_token.cred", "LEAK_SCNET_USER"} {
		if !strings.Contains(seen, leakSecrets[name]) {
			t.Errorf("the echo cloud never received %s; the test did not exercise it", name)
		}
	}
	if !strings.Contains(outputs["stdout"]+outputs["audit log"], "echo-marker") {
		t.Error("no vendor echo reached stdout or the audit log; the test did not exercise echoed errors")
	}

	for where, text := range outputs {
		for name, v := range leakSecrets {
			for _, needle := range []string{v, v[:leakPrefix]} {
				if i := strings.Index(text, needle); i >= 0 {
					lo, hi := max(0, i-160), min(len(text), i+len(needle)+40)
					t.Errorf("%s leaks %s (%q) at byte %d: …%s…", where, name, needle, i, text[lo:hi])
					break
				}
			}
		}
	}
}

func writeSecret(t *testing.T, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
		t.Fatal(err)
	}
}
