package daemon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/executor"
	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
)

// cloudEnv is an emulated cloud on loopback and the environment that holds
// its credentials, for configs that point real ncp, scnet and otc accounts
// at it.
type cloudEnv struct {
	cloud *emulator.Cloud
	url   string
	env   map[string]string
	dir   string
}

func startCloud(t *testing.T, opts emulator.Options) *cloudEnv {
	t.Helper()
	c := emulator.New(opts)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cr := c.Credentials()
	return &cloudEnv{cloud: c, url: c.URL(), dir: t.TempDir(), env: map[string]string{
		"NCP_AK": cr.NCPAccessKey, "NCP_SK": cr.NCPSecretKey,
		"SCNET_USER": cr.SCNetUser, "SCNET_AK": cr.SCNetAccessKey, "SCNET_SK": cr.SCNetSecretKey,
		"OTC_AK": cr.OTCAccessKey, "OTC_SK": cr.OTCSecretKey,
		"OTC_USER": cr.OTCUsername, "OTC_PASSWORD": cr.OTCPassword,
	}}
}

func (e *cloudEnv) resolver() secret.Resolver {
	return secret.Resolver{LookupEnv: func(k string) (string, bool) { v, ok := e.env[k]; return v, ok }}
}

// accounts returns the accounts block with the named accounts, pointing
// at the emulated cloud: ncp, scnet (AK/SK), otc (AK/SK, api otcAPI) and
// otc-iam (IAM token). extra is appended to each (e.g. a rate_limit line).
func (e *cloudEnv) accounts(otcAPI, extra string, names ...string) string {
	cr := e.cloud.Credentials()
	blocks := map[string]string{
		"ncp": fmt.Sprintf(`    vendor: ncp
    region: KR
    access_key: {env: NCP_AK}
    secret_key: {env: NCP_SK}
    endpoints: {dataforest: %[1]s, cdss: %[1]s}
`, e.url),
		"scnet": fmt.Sprintf(`    vendor: scnet
    user: {env: SCNET_USER}
    access_key: {env: SCNET_AK}
    secret_key: {env: SCNET_SK}
    endpoints: {auth: %[1]s, platform: %[1]s}
`, e.url),
		"otc": fmt.Sprintf(`    vendor: otc
    region: eu-de
    project_id: %[2]s
    api: %[3]s
    access_key: {env: OTC_AK}
    secret_key: {env: OTC_SK}
    endpoints: {modelarts: %[1]s, iam: %[1]s}
`, e.url, cr.OTCProjectID, otcAPI),
		"otc-iam": fmt.Sprintf(`    vendor: otc
    region: eu-de
    project_id: %[2]s
    auth: iam
    username: {env: OTC_USER}
    password: {env: OTC_PASSWORD}
    domain: %[3]s
    endpoints: {modelarts: %[1]s, iam: %[1]s}
`, e.url, cr.OTCProjectID, cr.OTCDomain),
	}
	var b strings.Builder
	b.WriteString("accounts:\n")
	for _, n := range names {
		b.WriteString("  " + n + ":\n" + blocks[n])
		if extra != "" {
			b.WriteString("    " + extra + "\n")
		}
	}
	return b.String()
}

// plan writes a config of accounts and jobs, loads it the daemon's way and
// builds the plan.
func (e *cloudEnv) plan(t *testing.T, accounts, jobs string) *plan {
	t.Helper()
	cfg := "version: 1\naudit:\n  path: audit.jsonl\nstate:\n  dir: state\n" +
		"defaults:\n  timeout: 2s\n  retry: {initial_interval: 100ms, max_interval: 500ms, max_elapsed: 10s, max_attempts: 4}\n" +
		accounts + "jobs:\n" + jobs
	path := filepath.Join(e.dir, "scheduler.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, e.resolver(), time.Now())
	if err != nil {
		t.Fatalf("load:\n%s\n%v", cfg, err)
	}
	p, err := buildPlan(c, e.resolver(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	return p
}

// job is one jobs entry.
func job(name, account, action string, verify bool, targets ...string) string {
	return fmt.Sprintf("  - name: %s\n    schedule: \"@every 1h\"\n    account: %s\n    action: %s\n    verify: %v\n    verify_timeout: 8s\n    targets: [%s]\n",
		name, account, action, verify, strings.Join(targets, ", "))
}

// runner fires jobs of a plan with one executor and one audit log.
type runner struct {
	p    *plan
	ex   *executor.Executor
	log  *audit.Log
	path string
}

func (e *cloudEnv) runner(t *testing.T, p *plan) *runner {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	al, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = al.Close() })
	return &runner{p: p, log: al, path: path, ex: executor.New(executor.Options{Audit: al, Concurrency: p.concurrency, Limiter: p.limiter})}
}

// fastPolls makes a job's status polls start at 100ms instead of 1s.
func (r *runner) fastPolls(name string) *executor.Job {
	j := r.p.jobs[name]
	for _, v := range []*executor.Verifier{j.Verify, j.Check} {
		if v != nil {
			v.Interval, v.MaxInterval = 100*time.Millisecond, 400*time.Millisecond
		}
	}
	return j
}

func (r *runner) fire(t *testing.T, name string) executor.Outcome {
	t.Helper()
	return r.ex.Fire(t.Context(), r.fastPolls(name), time.Now(), time.Time{})
}

// records returns the audit records of an event for a job and target.
func (r *runner) records(t *testing.T, event, job, target string) []audit.Record {
	t.Helper()
	// Parallel subtests append while this one reads: the file may end in
	// a line being written (a reader can see part of a write), which is
	// not this subtest's, as its fire has returned. Read whole lines.
	data, err := os.ReadFile(r.path)
	if err != nil {
		t.Fatal(err)
	}
	data = data[:bytes.LastIndexByte(data, '\n')+1]
	var out []audit.Record
	for rec, err := range audit.Records(bytes.NewReader(data)) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Event == event && rec.Job == job && (target == "" || rec.Target == target) {
			out = append(out, rec)
		}
	}
	return out
}

// requests counts the emulator's requests of an action (and target, if
// set).
func (e *cloudEnv) requests(action, target string) int {
	n := 0
	for _, r := range e.cloud.Requests() {
		if r.Action == action && (target == "" || r.Target == target) {
			n++
		}
	}
	return n
}

// clock is an injected clock shared by the emulator and a client.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// lostReply wraps an action: the request reaches the vendor, but the reply
// is lost and the attempt times out, as on a dropped connection.
func lostReply(do executor.Action) executor.Action {
	return func(ctx context.Context, target string) (res vendors.Result, err error) {
		_, _ = do(ctx, target)
		<-ctx.Done()
		return res, ctx.Err()
	}
}
