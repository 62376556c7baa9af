package daemon

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/ratelimit"
	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
	"github.com/cloudcron/scheduler/internal/vendors/scnet"
)

// TestSCNetTokenExpiryAndRenewal drives an AK/SK SCNet client against the
// emulated cloud with one injected clock: the token is fetched once,
// renewed through tokens/next before its expireTime, renewed again after
// it expired (within 24 h), and fetched afresh once renewal is too late.
func TestSCNetTokenExpiryAndRenewal(t *testing.T) {
	clk := &clock{t: time.Now()}
	e := startCloud(t, emulator.Options{TransitionDelay: -1, TokenLifetime: time.Hour, Now: clk.Now})
	cr := e.cloud.Credentials()
	c, err := scnet.New(scnet.Config{
		User: secret.New(cr.SCNetUser), AccessKey: secret.New(cr.SCNetAccessKey), SecretKey: secret.New(cr.SCNetSecretKey),
		AuthURL: e.url, PlatformURL: e.url, Now: clk.Now,
		HTTPClient: &http.Client{Transport: ratelimit.New(ratelimit.Options{}).Wrap(nil)},
	})
	if err != nil {
		t.Fatal(err)
	}
	const nb = "1821067171420946434"
	steps := []struct {
		name             string
		advance          time.Duration
		parallel         int
		fetches, renewal int // cumulative scnet.tokens and scnet.tokens.next
	}{
		{"first call fetches", 0, 1, 1, 0},
		{"token reused", 30 * time.Minute, 1, 1, 0},
		{"renewed before expireTime", 27 * time.Minute, 1, 1, 1},
		{"concurrent calls after expiry share one renewal", 3 * time.Hour, 8, 1, 2},
		{"too old to renew: fresh token, no renewal tried", 30 * time.Hour, 1, 2, 2},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		var wg sync.WaitGroup
		for range s.parallel {
			wg.Go(func() {
				if _, err := c.NotebookStatus(t.Context(), nb); err != nil {
					t.Errorf("%s: status: %v", s.name, err)
				}
			})
		}
		wg.Wait()
		if f, r := e.requests("scnet.tokens", ""), e.requests("scnet.tokens.next", ""); f != s.fetches || r != s.renewal {
			t.Fatalf("%s: token fetches %d, renewals %d; want %d, %d", s.name, f, r, s.fetches, s.renewal)
		}
	}
	// No call was refused for an expired token.
	for _, q := range e.cloud.Requests() {
		if q.Status == http.StatusUnauthorized && q.Action != "scnet.tokens.next" {
			t.Errorf("%s answered 401: the client sent an expired token", q.Action)
		}
	}
	if _, err := c.StartNotebook(t.Context(), nb); err != nil {
		t.Fatalf("start with the fresh token: %v", err)
	}
}

// TestSCNetAKSKThroughThePlan: an AK/SK SCNet account built by the daemon
// fetches one token for a start, its verification polls and a stop.
func TestSCNetAKSKThroughThePlan(t *testing.T) {
	e := startCloud(t, emulator.Options{TransitionDelay: 200 * time.Millisecond})
	p := e.plan(t, e.accounts("demanager", "", "scnet"),
		job("on", "scnet", "scnet.notebook.start", true, "1821067171420946434")+
			job("off", "scnet", "scnet.notebook.stop", true, "1821067171420946434"))
	r := e.runner(t, p)
	for _, name := range []string{"on", "off"} {
		if to := r.fire(t, name).Targets[0]; to.Verify != audit.OutcomeVerified {
			t.Fatalf("%s: verify %q state %q (err %v); want verified", name, to.Verify, to.State, to.Err)
		}
	}
	if n := e.requests("scnet.tokens", ""); n != 1 {
		t.Errorf("token fetches = %d; want 1", n)
	}
	if n := e.requests("scnet.center", ""); n != 1 {
		t.Errorf("center lookups = %d; want 1 (ai host cached)", n)
	}
}

// TestOTCIAMTokenReused: an IAM account fetches one token for a start, its
// status polls and a stop.
func TestOTCIAMTokenReused(t *testing.T) {
	e := startCloud(t, emulator.Options{TransitionDelay: 300 * time.Millisecond})
	p := e.plan(t, e.accounts("demanager", "", "otc-iam"),
		job("on", "otc-iam", "modelarts.notebook.start", true, "nb-1", "nb-2")+
			job("off", "otc-iam", "modelarts.notebook.stop", true, "nb-1", "nb-2"))
	r := e.runner(t, p)
	for _, name := range []string{"on", "off"} {
		out := r.fire(t, name)
		for _, to := range out.Targets {
			if to.Verify != audit.OutcomeVerified {
				t.Fatalf("%s %s: verify %q (err %v); want verified", name, to.Target, to.Verify, to.Err)
			}
		}
	}
	if n := e.requests("iam.tokens", ""); n != 1 {
		t.Errorf("IAM token fetches = %d; want 1 across 4 actions and their polls", n)
	}
	if n := e.requests("modelarts.notebook.get", ""); n < 4 {
		t.Errorf("status reads = %d; want at least one per target and job", n)
	}
}
