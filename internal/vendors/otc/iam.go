package otc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors"
)

const (
	// tokenMargin is how long before expires_at a token is replaced.
	tokenMargin = 5 * time.Minute
	// tokenFallbackTTL is how long a token without a readable expires_at
	// is kept (IAM documents 24 h).
	tokenFallbackTTL = time.Hour
)

// tokenSource fetches and caches a project-scoped IAM token (vendors.md
// §4.3). Concurrent callers share one fetch.
type tokenSource struct {
	url                string
	projectID, domain  string
	username, password secret.Value
	hc                 *http.Client
	now                func() time.Time

	mu       sync.Mutex
	token    string
	renewAt  time.Time // when the token is replaced, on our clock (see vendors.RenewAt)
	inflight *tokenFetch
}

type tokenFetch struct {
	done    chan struct{}
	token   string
	err     error
	waiters int // callers waiting on this fetch (under tokenSource.mu)
}

// get returns a valid token, fetching one when none is cached or the cached
// one is within tokenMargin of its expiry (half its lifetime, for a token
// that lives less than twice tokenMargin). expires_at is on IAM's clock;
// the answer's Date header puts it on ours. op names the caller's
// operation in errors.
func (ts *tokenSource) get(ctx context.Context, op string) (string, error) {
	for {
		ts.mu.Lock()
		if ts.token != "" && ts.now().Before(ts.renewAt) {
			tok := ts.token
			ts.mu.Unlock()
			return tok, nil
		}
		f := ts.inflight
		if f == nil {
			f = &tokenFetch{done: make(chan struct{})}
			ts.inflight = f
			ts.mu.Unlock()
			tok, renewAt, err := ts.fetch(ctx, op)
			ts.mu.Lock()
			if err == nil {
				ts.token, ts.renewAt = tok, renewAt
			}
			f.token, f.err = tok, err
			ts.inflight = nil
			ts.mu.Unlock()
			close(f.done)
			return tok, err
		}
		f.waiters++
		ts.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", vendors.TransportError(op+": get iam token", ctx.Err())
		case <-f.done:
		}
		if f.err == nil {
			return f.token, nil
		}
		// The fetch we waited on failed. If only its caller's context ended,
		// fetch again under ours; otherwise share its error.
		if !errors.Is(f.err, context.Canceled) && !errors.Is(f.err, context.DeadlineExceeded) {
			return "", f.err
		}
	}
}

// invalidate drops tok from the cache, unless another caller already
// replaced it.
func (ts *tokenSource) invalidate(tok string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.token == tok {
		ts.token, ts.renewAt = "", time.Time{}
	}
}

// current returns the cached token, for redaction.
func (ts *tokenSource) current() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.token
}

// tokenRequest is the password-method, project-scoped body of
// POST /v3/auth/tokens.
type tokenRequest struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password struct {
				User struct {
					Name     string `json:"name"`
					Password string `json:"password"`
					Domain   struct {
						Name string `json:"name"`
					} `json:"domain"`
				} `json:"user"`
			} `json:"password"`
		} `json:"identity"`
		Scope struct {
			Project struct {
				ID string `json:"id"`
			} `json:"project"`
		} `json:"scope"`
	} `json:"auth"`
}

func (ts *tokenSource) fetch(ctx context.Context, op string) (string, time.Time, error) {
	op += ": get iam token"
	var tr tokenRequest
	tr.Auth.Identity.Methods = []string{"password"}
	tr.Auth.Identity.Password.User.Name = ts.username.Reveal()
	tr.Auth.Identity.Password.User.Password = ts.password.Reveal()
	tr.Auth.Identity.Password.User.Domain.Name = ts.domain
	tr.Auth.Scope.Project.ID = ts.projectID
	body, err := json.Marshal(tr)
	if err != nil {
		return "", time.Time{}, &vendors.Error{Op: op, Err: errors.New("encode request")}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.url+"?nocatalog=true", bytes.NewReader(body))
	if err != nil {
		return "", time.Time{}, &vendors.Error{Op: op, Err: errors.New("build request: invalid url")}
	}
	req.Header.Set("Content-Type", "application/json;charset=utf8")
	resp, err := ts.hc.Do(req)
	if err != nil {
		return "", time.Time{}, vendors.TransportError(op, err)
	}
	defer resp.Body.Close()
	rbody, err := io.ReadAll(io.LimitReader(resp.Body, vendors.MaxBody))
	if err != nil {
		return "", time.Time{}, vendors.TransportError(op, fmt.Errorf("read response: %w", err))
	}
	reqID := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		env, ok := parseEnvelope(rbody)
		msg := env.Message
		if !ok {
			msg = snippet(rbody)
		}
		ve := &vendors.Error{Op: op, HTTPStatus: resp.StatusCode, VendorCode: env.Code, RequestID: reqID,
			Message: ts.redact(msg)}
		if resp.StatusCode == 408 || resp.StatusCode == 429 || resp.StatusCode >= 500 {
			ve.Transient = true
			ve.RetryAfter = vendors.ParseRetryAfter(resp.Header, ts.now())
		} else {
			ve.Err = errIAM
		}
		return "", time.Time{}, ve
	}
	tok := resp.Header.Get("X-Subject-Token")
	if tok == "" {
		return "", time.Time{}, &vendors.Error{Op: op, HTTPStatus: resp.StatusCode, RequestID: reqID,
			Err: errors.New("no X-Subject-Token header in the response")}
	}
	var out struct {
		Token struct {
			ExpiresAt string `json:"expires_at"`
		} `json:"token"`
	}
	now := ts.now()
	exp := now.Add(tokenFallbackTTL)
	if json.Unmarshal(rbody, &out) == nil {
		if t, err := time.Parse(time.RFC3339Nano, out.Token.ExpiresAt); err == nil {
			exp = t.Add(-vendors.ServerSkew(resp.Header, now))
		}
	}
	return tok, vendors.RenewAt(now, exp, tokenMargin), nil
}

// redact removes the username and password from an IAM message.
func (ts *tokenSource) redact(s string) string {
	for _, v := range []secret.Value{ts.username, ts.password} {
		if r := v.Reveal(); r != "" {
			s = strings.ReplaceAll(s, r, secret.Redacted)
		}
	}
	return s
}
