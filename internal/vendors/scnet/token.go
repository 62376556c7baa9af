package scnet

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors"
)

const (
	// renewMargin is how long before expireTime a token is renewed; for
	// tokens that live less than twice as long, half their lifetime.
	renewMargin = 5 * time.Minute
	// renewWindow: a token expired longer ago than this cannot be renewed
	// (renewal-token page: 24 hours); fetch a fresh one instead.
	renewWindow = 24 * time.Hour
	// unknownTTL is how long a token without a readable expireTime is used
	// before it is renewed. The lifetime is not documented.
	unknownTTL = time.Hour
)

// SignTokenRequest computes the AK/SK token-request signature (vendors.md
// §5.2): msg is the compact JSON {"accessKey":…,"timestamp":…,"user":…}
// (keys in that order, all strings) and signatureHex the lower-case hex
// HMAC-SHA256 of msg keyed with secretKey. ts is Unix seconds as a decimal
// string. Neither result contains secretKey.
func SignTokenRequest(user, accessKey, secretKey, ts string) (msg, signatureHex string) {
	// encoding/json sorts map keys, which gives exactly the documented order.
	b, _ := json.Marshal(map[string]string{"accessKey": accessKey, "timestamp": ts, "user": user})
	m := hmac.New(sha256.New, []byte(secretKey))
	m.Write(b)
	return string(b), hex.EncodeToString(m.Sum(nil))
}

// tokenSource holds the region token of mode 2. Refreshes are serialised by
// sem: concurrent callers that find the token due wait for the one refresh
// in flight (or their own ctx) and then use its result.
type tokenSource struct {
	c          *Client
	auth       string
	user, ak   secret.Value
	sk         secret.Value
	cluster    string
	sem        chan struct{}
	mu         sync.Mutex // guards the fields below
	tok        string
	exp        time.Time // expireTime, or obtained+unknownTTL
	refreshAt  time.Time
	superseded []string // previous tokens, still scrubbed from messages
}

// known lists every token this source has handed out, for scrubbing.
func (s *tokenSource) known() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]string(nil), s.superseded...)
	if s.tok != "" {
		out = append(out, s.tok)
	}
	return out
}

func (s *tokenSource) current() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != "" && s.c.now().Before(s.refreshAt) {
		return s.tok, true
	}
	return "", false
}

// token returns a token that is not due for renewal, refreshing if needed.
func (s *tokenSource) token(ctx context.Context) (string, error) {
	if t, ok := s.current(); ok {
		return t, nil
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return "", vendors.TransportError("get token", ctx.Err())
	}
	defer func() { <-s.sem }()
	if t, ok := s.current(); ok { // another caller refreshed meanwhile
		return t, nil
	}
	return s.refresh(ctx)
}

// invalidate drops tok after an auth failure, so that the next token call
// fetches a fresh one (not a renewal of a token the server refused). It
// reports true also when another caller already replaced tok.
func (s *tokenSource) invalidate(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == tok {
		s.superseded = append(s.superseded, tok)
		s.tok = ""
	}
	return true
}

// refresh renews the current token within the renewal window, and fetches
// a fresh one when there is none, it is too old, or renewal fails.
func (s *tokenSource) refresh(ctx context.Context) (string, error) {
	s.mu.Lock()
	old, exp := s.tok, s.exp
	s.mu.Unlock()
	if old != "" && s.c.now().Before(exp.Add(renewWindow)) {
		if t, err := s.renew(ctx, old); err == nil {
			return t, nil
		}
		if err := ctx.Err(); err != nil {
			return "", vendors.TransportError("renew token", err)
		}
	}
	return s.fetch(ctx)
}

// renew calls POST {platform}/ac/openapi/v2/tokens/next with the old token.
func (s *tokenSource) renew(ctx context.Context, old string) (string, error) {
	const op = "renew token"
	env, status, _, err := s.c.send(ctx, request{op: op, method: http.MethodPost,
		url: s.c.platform + "/ac/openapi/v2/tokens/next", token: old})
	if err != nil {
		return "", err
	}
	var t string
	if json.Unmarshal(env.Data, &t) != nil || t == "" {
		var obj struct {
			Token string `json:"token"`
		}
		if json.Unmarshal(env.Data, &obj) != nil || obj.Token == "" {
			return "", &vendors.Error{Op: op, HTTPStatus: status, VendorCode: string(env.Code), Message: "response without a token"}
		}
		t = obj.Token
	}
	s.set(t, env.skew)
	return t, nil
}

// fetch gets the account's region tokens with the AK/SK signature and keeps
// the configured region's.
func (s *tokenSource) fetch(ctx context.Context) (string, error) {
	const op = "get token"
	ts := strconv.FormatInt(s.c.now().Unix(), 10)
	_, sig := SignTokenRequest(s.user.Reveal(), s.ak.Reveal(), s.sk.Reveal(), ts)
	env, status, _, err := s.c.send(ctx, request{op: op, method: http.MethodPost,
		url: s.auth + "/api/user/v3/tokens",
		header: map[string]string{
			"user":      s.user.Reveal(),
			"accessKey": s.ak.Reveal(),
			"timestamp": ts,
			"signature": sig,
		}})
	if err != nil {
		return "", err
	}
	var regions []struct {
		ClusterID   flexString `json:"clusterId"`
		ClusterName string     `json:"clusterName"`
		Token       *string    `json:"token"`
	}
	if err := json.Unmarshal(env.Data, &regions); err != nil {
		return "", &vendors.Error{Op: op, HTTPStatus: status, VendorCode: string(env.Code), Message: "malformed token list"}
	}
	fail := func(msg string) (string, error) {
		return "", &vendors.Error{Op: op, HTTPStatus: status, VendorCode: string(env.Code), Message: msg}
	}
	var ids []string
	for _, r := range regions {
		id := string(r.ClusterID)
		ids = append(ids, id)
		if (s.cluster != "" && id != s.cluster) || (s.cluster == "" && id == "0") {
			continue
		}
		if r.Token == nil || *r.Token == "" {
			return fail("account suspended: region " + id + " has no token")
		}
		s.set(*r.Token, env.skew)
		return *r.Token, nil
	}
	if s.cluster != "" {
		return fail("cluster " + s.cluster + " is not among the account's regions [" + strings.Join(ids, " ") + "]")
	}
	return fail("the account has no computing region besides the platform (clusterId 0)")
}

// set installs a new token and schedules its renewal from the JWT's
// expireTime, which is on the server's clock: skew (the server's clock
// minus ours, from the answer's Date header) puts it on ours. The token is
// renewed before its own expiry, however short its life: margin is
// renewMargin, or half the lifetime of a shorter-lived token. A token
// that is already expired on arrival serves the call that fetched it only.
func (s *tokenSource) set(tok string, skew time.Duration) {
	now := s.c.now()
	exp, ok := jwtExpiry(tok)
	if ok {
		exp = exp.Add(-skew)
	} else {
		exp = now.Add(unknownTTL)
	}
	refreshAt := vendors.RenewAt(now, exp, renewMargin)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != "" && s.tok != tok {
		s.superseded = append(s.superseded, s.tok)
	}
	if len(s.superseded) > 8 {
		s.superseded = s.superseded[len(s.superseded)-8:]
	}
	s.tok, s.exp, s.refreshAt = tok, exp, refreshAt
}

// jwtExpiry reads expireTime (epoch ms, string or number) from the JWT
// payload, or the standard exp claim (epoch s). The signature is not
// verified: the token is only the server's to judge.
func jwtExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		ExpireTime flexString `json:"expireTime"`
		Exp        flexString `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return time.Time{}, false
	}
	if ms, err := strconv.ParseInt(string(claims.ExpireTime), 10, 64); err == nil && ms > 0 {
		return time.UnixMilli(ms), true
	}
	if sec, err := strconv.ParseInt(string(claims.Exp), 10, 64); err == nil && sec > 0 {
		return time.Unix(sec, 0), true
	}
	return time.Time{}, false
}
