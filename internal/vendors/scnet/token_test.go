package scnet

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors"
)

// The [COMPUTED] signing vector of vendors.md §5.2.
const (
	vecUser = "bob"
	vecAK   = "85f96a42b13f4d2c8b760d2775bbcca8"
	vecSK   = "SK-EXAMPLE-SECRET"
	vecTS   = 1764597591
	vecSig  = "92c90d756221ae59dae8c449d95e98ccbd4a736877ef91fa0d6f87d09a8caae7"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// makeJWT builds an unsigned-looking HS256 token with the given claims.
func makeJWT(claims map[string]any) string {
	enc := base64.RawURLEncoding
	p, _ := json.Marshal(claims)
	return enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(p) + ".c2ln"
}

// akFixture is a fake SCNet serving the token, renewal and start calls.
// Each fetch issues a new region token living `lifetime` from the clock.
type akFixture struct {
	*server
	clk      *clock
	lifetime time.Duration

	mu          sync.Mutex
	issued      []string // every token handed out, in order
	startTokens []string // token header of each start call
	renewFail   bool     // /tokens/next answers 10008
	startReply  func(tok string) string
}

func newAKFixture(t *testing.T) *akFixture {
	t.Helper()
	f := &akFixture{server: newServer(t), clk: &clock{t: time.Unix(vecTS, 0)}, lifetime: time.Hour}
	f.token = nil      // checked per handler
	f.date = f.clk.Now // the server shares the client's clock: no skew
	f.startReply = func(string) string { return okTrue }
	f.handle("/api/user/v3/tokens", func(w http.ResponseWriter, r *http.Request) {
		ts := strconv.FormatInt(f.clk.Now().Unix(), 10)
		_, sig := SignTokenRequest(vecUser, vecAK, vecSK, ts)
		want := map[string]string{"user": vecUser, "accessKey": vecAK, "timestamp": ts, "signature": sig}
		if ts == strconv.Itoa(vecTS) && sig != vecSig {
			t.Errorf("signature for the vector = %s; want %s", sig, vecSig)
		}
		for k, v := range want {
			if got := r.Header.Get(k); got != v {
				t.Errorf("token request header %s = %q; want %q", k, got, v)
			}
		}
		if r.Method != http.MethodPost {
			t.Errorf("token request method %s; want POST", r.Method)
		}
		tok := f.issue("fetch")
		reply(`{"code":"0","msg":"success","data":[`+
			`{"clusterId":"0","clusterName":"ac","token":"platform-token"},`+
			`{"clusterId":"11112","clusterName":"华东一区","token":"`+tok+`"},`+
			`{"clusterId":22222,"clusterName":"西北一区","token":"other-`+tok+`"}]}`)(w, r)
	})
	f.handle("/ac/openapi/v2/tokens/next", func(w http.ResponseWriter, r *http.Request) {
		old := r.Header.Get("token")
		f.mu.Lock()
		known, fail := len(f.issued) > 0 && old == f.issued[len(f.issued)-1], f.renewFail
		f.mu.Unlock()
		if !known {
			t.Errorf("renewal with token %q; want the latest issued", old)
		}
		if fail {
			reply(`{"code":"10008","msg":"权限不足"}`)(w, r)
			return
		}
		time.Sleep(5 * time.Millisecond) // widen the window for concurrent callers
		reply(`{"code":"0","msg":"success","data":"`+f.issue("renew")+`"}`)(w, r)
	})
	f.handle("/ac/openapi/v2/notebook/actions/start", func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("token")
		f.mu.Lock()
		f.startTokens = append(f.startTokens, tok)
		rep := f.startReply
		f.mu.Unlock()
		body := rep(tok)
		if strings.HasPrefix(body, "HTTP ") {
			code, _ := strconv.Atoi(strings.TrimPrefix(body, "HTTP "))
			w.WriteHeader(code)
			return
		}
		_, _ = io.WriteString(w, body)
	})
	return f
}

func (f *akFixture) issue(kind string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	exp := f.clk.Now().Add(f.lifetime).UnixMilli()
	tok := makeJWT(map[string]any{
		"clusterId":  "11112",
		"expireTime": strconv.FormatInt(exp, 10),
		"jti":        fmt.Sprintf("%s-%d", kind, len(f.issued)+1),
	})
	f.issued = append(f.issued, tok)
	return tok
}

func (f *akFixture) lastIssued() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued[len(f.issued)-1]
}

func (f *akFixture) lastStartToken() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.startTokens[len(f.startTokens)-1]
}

func (f *akFixture) client(t *testing.T, cluster string) *Client {
	t.Helper()
	c, err := New(Config{
		User: secret.New(vecUser), AccessKey: secret.New(vecAK), SecretKey: secret.New(vecSK),
		Cluster: cluster, AuthURL: f.srv.URL, PlatformURL: f.srv.URL + "/", AIURL: f.srv.URL,
		Now: f.clk.Now,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func (f *akFixture) start(t *testing.T, c *Client) {
	t.Helper()
	if _, err := c.StartNotebook(context.Background(), nbID); err != nil {
		t.Fatalf("StartNotebook: %v", err)
	}
}

func TestTokenFetch(t *testing.T) {
	tests := []struct {
		cluster string
		prefix  string // of the token the start call must carry
	}{
		{"", ""}, // first region that is not the platform
		{"11112", ""},
		{"22222", "other-"},
	}
	for _, tc := range tests {
		t.Run("cluster "+tc.cluster, func(t *testing.T) {
			f := newAKFixture(t)
			c := f.client(t, tc.cluster)
			f.start(t, c)
			f.start(t, c)
			if got, want := f.lastStartToken(), tc.prefix+f.lastIssued(); got != want {
				t.Errorf("start carried token %q; want %q", got, want)
			}
			if n := f.count("/api/user/v3/tokens"); n != 1 {
				t.Errorf("token fetched %d times for two calls; want 1", n)
			}
		})
	}
}

func TestTokenFetchErrors(t *testing.T) {
	tests := []struct {
		name      string
		cluster   string
		h         http.HandlerFunc
		transient bool
		code      string
		msgHas    string
	}{
		{name: "suspended account", h: reply(`{"code":"0","msg":"success","data":[{"clusterId":"0","token":null},{"clusterId":"11112","token":null}]}`),
			msgHas: "account suspended"},
		{name: "unknown cluster", cluster: "99999", h: reply(`{"code":"0","msg":"success","data":[{"clusterId":"11112","token":"x.y.z"}]}`),
			msgHas: "cluster 99999"},
		{name: "only the platform", h: reply(`{"code":"0","msg":"success","data":[{"clusterId":"0","token":"x.y.z"}]}`),
			msgHas: "platform"},
		{name: "user frozen", h: reply(`{"code":"10007","msg":"用户已被冻结 ` + vecAK + `"}`), code: "10007", msgHas: secret.Redacted},
		{name: "malformed list", h: reply(`{"code":"0","msg":"success","data":{"token":"x"}}`), code: "0", msgHas: "malformed"},
		{name: "HTTP 503", h: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) },
			transient: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newAKFixture(t)
			f.handle("/api/user/v3/tokens", tc.h)
			_, err := f.client(t, tc.cluster).StartNotebook(context.Background(), nbID)
			if err == nil || vendors.IsTransient(err) != tc.transient || !strings.Contains(err.Error(), tc.msgHas) {
				t.Fatalf("StartNotebook = %v; want transient=%v error containing %q", err, tc.transient, tc.msgHas)
			}
			if !strings.HasPrefix(err.Error(), "scnet: start notebook "+nbID+": get token") {
				t.Errorf("error %q; want it to say start notebook, get token", err)
			}
			var ve *vendors.Error
			if tc.code != "" && (!errors.As(err, &ve) || ve.VendorCode != tc.code) {
				t.Errorf("vendor code of %v; want %s", err, tc.code)
			}
			assertNoSecret(t, err, vecAK, vecSK)
			if n := f.count("/ac/openapi/v2/notebook/actions/start"); n != 0 {
				t.Errorf("start called %d times without a token", n)
			}
		})
	}
}

func TestTokenRenewal(t *testing.T) {
	tests := []struct {
		name      string
		advance   time.Duration // after the first call
		renewFail bool
		wantRenew int
		wantFetch int
	}{
		{"well before expiry: reuse", 50 * time.Minute, false, 0, 1},
		{"inside the margin: renew", 56 * time.Minute, false, 1, 1},
		{"expired an hour ago: renew", 2 * time.Hour, false, 1, 1},
		{"renewal refused: fresh token", 56 * time.Minute, true, 1, 2},
		{"expired beyond 24h: fresh token", 26 * time.Hour, false, 0, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newAKFixture(t)
			f.renewFail = tc.renewFail
			c := f.client(t, "")
			f.start(t, c)
			first := f.lastIssued()
			f.clk.Add(tc.advance)
			f.start(t, c)
			if n := f.count("/ac/openapi/v2/tokens/next"); n != tc.wantRenew {
				t.Errorf("renewed %d times; want %d", n, tc.wantRenew)
			}
			if n := f.count("/api/user/v3/tokens"); n != tc.wantFetch {
				t.Errorf("fetched %d times; want %d", n, tc.wantFetch)
			}
			want := f.lastIssued()
			if tc.wantRenew == 0 && tc.wantFetch == 1 {
				want = first
			}
			if got := f.lastStartToken(); got != want {
				t.Errorf("second start carried %q; want %q", got, want)
			}
		})
	}
}

func TestConcurrentCallersShareOneRefresh(t *testing.T) {
	f := newAKFixture(t)
	c := f.client(t, "")
	run := func() {
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				if _, err := c.StartNotebook(context.Background(), nbID); err != nil {
					t.Errorf("StartNotebook: %v", err)
				}
			})
		}
		wg.Wait()
	}
	run() // no token yet
	if n := f.count("/api/user/v3/tokens"); n != 1 {
		t.Errorf("16 first callers fetched %d times; want 1", n)
	}
	f.clk.Add(57 * time.Minute)
	run() // token due for renewal
	if n := f.count("/ac/openapi/v2/tokens/next"); n != 1 {
		t.Errorf("16 callers renewed %d times; want 1", n)
	}
	if got, want := f.lastStartToken(), f.lastIssued(); got != want {
		t.Errorf("start carried %q; want the renewed %q", got, want)
	}
}

func TestAuthFailureRefreshesOnce(t *testing.T) {
	tests := []struct {
		name       string
		reject     string // reply to a rejected token
		always     bool   // reject fresh tokens too
		wantErr    bool
		wantStarts int
	}{
		{"401 then success", "HTTP 401", false, false, 2},
		{"403 then success", "HTTP 403", false, false, 2},
		{"code 10009 then success", `{"code":"10009","msg":"没有权限访问接口"}`, false, false, 2},
		{"10008 every time", `{"code":"10008","msg":"权限不足"}`, true, true, 2},
		{"10004 is not auth", `{"code":"10004","msg":"参数无效"}`, true, true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newAKFixture(t)
			var first string
			f.startReply = func(tok string) string {
				if first == "" {
					first = tok
				}
				if tok == first || tc.always {
					return tc.reject
				}
				return okTrue
			}
			_, err := f.client(t, "").StartNotebook(context.Background(), nbID)
			if (err != nil) != tc.wantErr {
				t.Fatalf("StartNotebook = %v; want error %v", err, tc.wantErr)
			}
			if err != nil && vendors.IsTransient(err) {
				t.Errorf("auth failure after refresh is transient: %v", err)
			}
			if n := f.count("/ac/openapi/v2/notebook/actions/start"); n != tc.wantStarts {
				t.Errorf("start called %d times; want %d", n, tc.wantStarts)
			}
			if n := f.count("/api/user/v3/tokens"); n != tc.wantStarts {
				t.Errorf("fetched %d times; want %d (a fresh token per attempt)", n, tc.wantStarts)
			}
			if n := f.count("/ac/openapi/v2/tokens/next"); n != 0 {
				t.Errorf("renewed a rejected token %d times; want 0", n)
			}
			if err != nil {
				assertNoSecret(t, err, first, vecAK, vecSK)
			}
		})
	}
}

func TestJWTExpiry(t *testing.T) {
	// The token of the vendor's get-center-info page; payload expireTime "1686036760954".
	const docToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJjb21wdXRlVXNlciI6InNsdXJtdGVzdCIsImFjY291bnRTdGF0dXMiOiJUcmlhbCIsImNyZWF0b3IiOiJhYyIsInJvbGUiOiIxIiwiZXhwaXJlVGltZSI6IjE2ODYwMzY3NjA5NTQiLCJjbHVzdGVySWQiOiIxMTExMiIsImludm9rZXIiOiI2MDQ4Y2U3YmExNWMyYWYyZThjZWMxMjk5MWVjMTNjZiIsInVzZXIiOiJzbHVybXRlc3QiLCJ1c2VySWQiOiIxMTY1NTA0ODU0MSJ9.f7nvKA2DqTsXjqF90zblMhwx0zKPpITY0uuSG2ouKG0"
	tests := []struct {
		name string
		tok  string
		want time.Time
		ok   bool
	}{
		{"vendor doc sample", docToken, time.UnixMilli(1686036760954), true},
		{"expireTime as a number", makeJWT(map[string]any{"expireTime": 1700000000123}), time.UnixMilli(1700000000123), true},
		{"standard exp in seconds", makeJWT(map[string]any{"exp": 1700000000}), time.Unix(1700000000, 0), true},
		{"no expiry claim", makeJWT(map[string]any{"user": "x"}), time.Time{}, false},
		{"not a JWT", "opaque-token", time.Time{}, false},
		{"bad base64", "a.!!!.c", time.Time{}, false},
	}
	for _, tc := range tests {
		got, ok := jwtExpiry(tc.tok)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("%s: jwtExpiry = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestOpaqueTokenLivesUnknownTTL(t *testing.T) {
	f := newAKFixture(t)
	f.handle("/api/user/v3/tokens", reply(`{"code":"0","msg":"success","data":[{"clusterId":"11112","token":"opaque"}]}`))
	f.handle("/ac/openapi/v2/tokens/next", reply(`{"code":"0","msg":"success","data":{"token":"opaque-2"}}`))
	c := f.client(t, "")
	f.start(t, c)
	f.clk.Add(unknownTTL - renewMargin - time.Second)
	f.start(t, c)
	if n := f.count("/ac/openapi/v2/tokens/next"); n != 0 {
		t.Fatalf("renewed an opaque token after %v; want no renewal yet", unknownTTL-renewMargin)
	}
	f.clk.Add(2 * time.Second)
	f.start(t, c)
	if n := f.count("/ac/openapi/v2/tokens/next"); n != 1 || f.lastStartToken() != "opaque-2" {
		t.Fatalf("renewals %d, start token %q; want 1 renewal and opaque-2", n, f.lastStartToken())
	}
}
