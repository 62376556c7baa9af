package emulator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// clock is an injected Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const testDelay = 10 * time.Second

// env is one emulated cloud behind an httptest server, with a fake clock.
type env struct {
	t     *testing.T
	c     *Cloud
	srv   *httptest.Server
	clk   *clock
	creds Credentials
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clk := &clock{t: time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)}
	c := New(Options{TransitionDelay: testDelay, Now: clk.Now, Log: zerolog.Nop()})
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, c: c, srv: srv, clk: clk, creds: c.Credentials()}
}

// resp is a decoded answer.
type resp struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (e *env) send(req *http.Request) resp {
	e.t.Helper()
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("read body: %v", err)
	}
	out := resp{status: res.StatusCode, header: res.Header, raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			e.t.Fatalf("%s %s: body %q is not a JSON object: %v", req.Method, req.URL.Path, raw, err)
		}
	}
	return out
}

func (e *env) newRequest(method, target string, body []byte) *http.Request {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+target, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// ncpRequest builds an NCP request signed (signature v2) with the given
// secret at the emulator clock plus skew.
func (e *env) ncpRequest(method, target string, body []byte, secret string, skew time.Duration) *http.Request {
	req := e.newRequest(method, target, body)
	ts := strconv.FormatInt(e.clk.Now().Add(skew).UnixMilli(), 10)
	req.Header.Set("x-ncp-apigw-timestamp", ts)
	req.Header.Set("x-ncp-iam-access-key", e.creds.NCPAccessKey)
	req.Header.Set("x-ncp-apigw-signature-v2", ncpSignature(method, req.URL.RequestURI(), ts, e.creds.NCPAccessKey, secret))
	return req
}

func (e *env) ncp(method, target string, body any) resp {
	e.t.Helper()
	return e.send(e.ncpRequest(method, target, mustJSON(e.t, body), e.creds.NCPSecretKey, 0))
}

// otcRequest builds an OTC request signed with APIG SDK-HMAC-SHA256 over
// host, x-project-id and x-sdk-date.
func (e *env) otcRequest(method, target string, body []byte, secret string) *http.Request {
	req := e.newRequest(method, target, body)
	date := e.clk.Now().UTC().Format(apigDate)
	req.Header.Set("X-Sdk-Date", date)
	req.Header.Set("X-Project-Id", e.creds.OTCProjectID)
	sum := sha256.Sum256(body)
	a := apigRequest{
		method: method, path: req.URL.Path, query: req.URL.Query(),
		headers:       map[string]string{"host": req.URL.Host, "x-project-id": e.creds.OTCProjectID, "x-sdk-date": date},
		signedHeaders: []string{"host", "x-project-id", "x-sdk-date"},
		bodyHash:      hex.EncodeToString(sum[:]),
	}
	req.Header.Set("Authorization", "SDK-HMAC-SHA256 Access="+e.creds.OTCAccessKey+
		", SignedHeaders=host;x-project-id;x-sdk-date, Signature="+apigSignature(a, date, secret))
	return req
}

func (e *env) otc(method, target string, body any) resp {
	e.t.Helper()
	return e.send(e.otcRequest(method, target, mustJSON(e.t, body), e.creds.OTCSecretKey))
}

// scnetTokens fetches the region tokens with AK/SK; clusterId → token.
func (e *env) scnetTokens() map[string]string {
	e.t.Helper()
	r := e.send(e.scnetTokenRequest(e.creds.SCNetSecretKey))
	if r.status != 200 || r.body["code"] != "0" {
		e.t.Fatalf("POST /api/user/v3/tokens = %d %s; want 200 code \"0\"", r.status, r.raw)
	}
	out := map[string]string{}
	for _, d := range r.body["data"].([]any) {
		m := d.(map[string]any)
		out[m["clusterId"].(string)] = m["token"].(string)
	}
	return out
}

func (e *env) scnetTokenRequest(secret string) *http.Request {
	req := e.newRequest("POST", "/api/user/v3/tokens", nil)
	ts := strconv.FormatInt(e.clk.Now().Unix(), 10)
	req.Header.Set("user", e.creds.SCNetUser)
	req.Header.Set("accessKey", e.creds.SCNetAccessKey)
	req.Header.Set("timestamp", ts)
	req.Header.Set("signature", scnetTokenSignature(e.creds.SCNetUser, e.creds.SCNetAccessKey, ts, secret))
	return req
}

func (e *env) scnet(method, target, token string, body any) resp {
	e.t.Helper()
	req := e.newRequest(method, target, mustJSON(e.t, body))
	req.Header.Set("token", token)
	return e.send(req)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// field walks a decoded JSON object: field(m, "error", "errorCode").
func field(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

type httpRequest = http.Request

func noCloseReader(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }

func strconvI(n int64) string { return strconv.FormatInt(n, 10) }
