package otc

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors"
)

const (
	testAK       = "TESTAKQ7PZ3XK2VAL001"
	testSK       = "test-sk-Zq81bV0c7Xw3nY5s"
	testProject  = "0123456789abcdef0123456789abcdef"
	testUser     = "alice-iam-user-42"
	testPassword = "pw-Hx8$u2!kQ"
	testDomain   = "OTC-EU-DE-00000000001000000000"
	testID       = "6fa459ea-ee8a-3ca4-894e-db77e160355e"
)

// clock is a settable Now for the client and the fake cloud.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type seen struct {
	method, path, body string
	header             http.Header
}

// fakeCloud is ModelArts behind APIG plus IAM. It checks every ModelArts
// request's credentials on its own (recomputing the AK/SK signature from
// what it received, or checking the token it issued), answering as the
// gateway would when they are wrong, and records what it saw.
type fakeCloud struct {
	t     *testing.T
	clock *clock
	srv   *httptest.Server

	// respond answers the n-th (from 0) ModelArts request whose
	// credentials were valid.
	respond func(w http.ResponseWriter, r *http.Request, n int)
	// iamHold, when set (holdIAM), holds the first token fetch until it is
	// closed (releaseIAM) or the fetch's request is cancelled.
	iamHold     chan struct{}
	releaseOnce sync.Once
	// iamRespond, when set, answers token requests instead of issuing one.
	iamRespond func(w http.ResponseWriter)
	tokenTTL   time.Duration

	mu       sync.Mutex
	seen     []seen // ModelArts requests, valid or not
	authErrs []string
	valid    int
	fetches  int
	tokens   map[string]bool
	issued   []string
	iamBody  []byte
	iamHdr   http.Header
}

func newFakeCloud(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, n int)) *fakeCloud {
	t.Helper()
	f := &fakeCloud{t: t, respond: respond, tokens: map[string]bool{}, tokenTTL: 24 * time.Hour,
		clock: &clock{t: time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC)}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v3/auth/tokens", f.serveIAM)
	mux.HandleFunc("/v1/", f.serveModelArts)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCloud) client(t *testing.T, auth, api string) *Client {
	t.Helper()
	cfg := Config{ProjectID: testProject, ModelArtsURL: f.srv.URL, IAMURL: f.srv.URL, Auth: auth, API: api,
		HTTPClient: f.srv.Client(), Now: f.clock.Now}
	if auth == AuthIAM {
		cfg.Username, cfg.Password, cfg.Domain = secret.New(testUser), secret.New(testPassword), testDomain
	} else {
		cfg.AccessKey, cfg.SecretKey = secret.New(testAK), secret.New(testSK)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func (f *fakeCloud) serveIAM(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.fetches++
	n := f.fetches
	f.iamBody, f.iamHdr = body, r.Header.Clone()
	f.mu.Unlock()
	if f.iamHold != nil && n == 1 {
		select {
		case <-f.iamHold:
		case <-r.Context().Done():
			return
		}
	}
	if f.iamRespond != nil {
		f.iamRespond(w)
		return
	}
	tok := fmt.Sprintf("MIIT-token-%d-%s", n, strings.Repeat("x", 16))
	f.mu.Lock()
	f.tokens[tok] = true
	f.issued = append(f.issued, tok)
	f.mu.Unlock()
	w.Header().Set("X-Subject-Token", tok)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Date", f.clock.Now().UTC().Format(http.TimeFormat)) // IAM's clock is the client's here
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"token":{"expires_at":%q,"issued_at":%q,"project":{"id":%q}}}`,
		f.clock.Now().Add(f.tokenTTL).Format("2006-01-02T15:04:05.000000Z"),
		f.clock.Now().Format("2006-01-02T15:04:05.000000Z"), testProject)
}

func (f *fakeCloud) serveModelArts(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.seen = append(f.seen, seen{method: r.Method, path: r.URL.EscapedPath(), body: string(body), header: r.Header.Clone()})
	f.mu.Unlock()

	var authErr error
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		f.mu.Lock()
		ok := f.tokens[tok]
		f.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error_code":"ModelArts.0203","error_msg":"Invalid token."}`)
			return
		}
	} else {
		authErr = f.verifyAKSK(r, body)
	}
	if r.Header.Get("X-Project-Id") != testProject {
		authErr = errors.Join(authErr, fmt.Errorf("X-Project-Id = %q", r.Header.Get("X-Project-Id")))
	}
	if authErr != nil {
		f.mu.Lock()
		f.authErrs = append(f.authErrs, authErr.Error())
		f.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error_code":"APIG.0303","error_msg":"Incorrect app authentication information"}`)
		return
	}
	f.mu.Lock()
	n := f.valid
	f.valid++
	f.mu.Unlock()
	f.respond(w, r, n)
}

var authRE = regexp.MustCompile(`^SDK-HMAC-SHA256 Access=([^,]+), SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$`)

// verifyAKSK recomputes the signature from the received request, written
// apart from the client's signer so that a shared bug does not cancel out.
func (f *fakeCloud) verifyAKSK(r *http.Request, body []byte) error {
	m := authRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return fmt.Errorf("malformed Authorization %q", r.Header.Get("Authorization"))
	}
	if m[1] != testAK {
		return errors.New("wrong access key")
	}
	signed := strings.Split(m[2], ";")
	for _, h := range []string{"content-type", "host", "x-project-id", "x-sdk-date"} {
		if !slices.Contains(signed, h) {
			return fmt.Errorf("%s is not signed (SignedHeaders=%s)", h, m[2])
		}
	}
	date := r.Header.Get("X-Sdk-Date")
	if want := f.clock.Now().UTC().Format("20060102T150405Z"); date != want {
		return fmt.Errorf("X-Sdk-Date = %q; want %q", date, want)
	}
	path := r.URL.EscapedPath()
	if !strings.HasSuffix(path, "/") {
		path += "/"
	}
	var query []string
	for k, vs := range r.URL.Query() {
		for _, v := range vs {
			query = append(query, k+"="+v) // our requests carry plain ASCII only
		}
	}
	sort.Strings(query)
	var hdrs strings.Builder
	for _, h := range signed {
		v := r.Header.Get(h)
		if h == "host" {
			v = r.Host
		}
		fmt.Fprintf(&hdrs, "%s:%s\n", h, strings.TrimSpace(v))
	}
	sum := sha256.Sum256(body)
	canonical := strings.Join([]string{r.Method, path, strings.Join(query, "&"), hdrs.String(), m[2], hex.EncodeToString(sum[:])}, "\n")
	crSum := sha256.Sum256([]byte(canonical))
	mac := hmac.New(sha256.New, []byte(testSK))
	mac.Write([]byte("SDK-HMAC-SHA256\n" + date + "\n" + hex.EncodeToString(crSum[:])))
	if want := hex.EncodeToString(mac.Sum(nil)); want != m[3] {
		return fmt.Errorf("signature mismatch over\n%s", canonical)
	}
	return nil
}

func (f *fakeCloud) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

func (f *fakeCloud) fetchCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetches
}

func (f *fakeCloud) checkAuth(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.authErrs {
		t.Errorf("server rejected credentials: %s", e)
	}
}

// assertNoSecrets fails if err's text contains any credential the test used
// or any token the fake IAM issued.
func (f *fakeCloud) assertNoSecrets(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	f.mu.Lock()
	vals := append([]string{testAK, testSK, testUser, testPassword}, f.issued...)
	f.mu.Unlock()
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err)} {
		for _, v := range vals {
			if strings.Contains(s, v) {
				t.Errorf("error %q contains a secret", s)
			}
		}
	}
}

func respondWith(status int, hdr map[string]string, body string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		for k, v := range hdr {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestStartStop(t *testing.T) {
	tests := []struct {
		name, api          string
		stop               bool
		wantPath, wantBody string
		resp               string
		wantState          string
	}{
		{"demanager start", APIDEManager, false, "/v1/" + testProject + "/demanager/instances/" + testID + "/action",
			`{"action":"start"}`, `{"current_status":"STARTING","previous_state":"STOPPED"}`, "STARTING"},
		{"demanager stop", APIDEManager, true, "/v1/" + testProject + "/demanager/instances/" + testID + "/action",
			`{"action":"stop"}`, `{"current_status":"STOPPING","previous_state":"RUNNING"}`, "STOPPING"},
		{"notebooks start", APINotebooks, false, "/v1/" + testProject + "/notebooks/" + testID + "/start",
			"", `{"id":"` + testID + `","status":"STARTING","lease":{"duration":3600000,"enable":true,"type":"timing"}}`, "STARTING"},
		{"notebooks stop", APINotebooks, true, "/v1/" + testProject + "/notebooks/" + testID + "/stop",
			"", `{"id":"` + testID + `","status":"STOPPING"}`, "STOPPING"},
	}
	for _, auth := range []string{AuthAKSK, AuthIAM} {
		for _, tc := range tests {
			t.Run(auth+"/"+tc.name, func(t *testing.T) {
				f := newFakeCloud(t, respondWith(200, map[string]string{"X-Request-Id": "req-42"}, tc.resp))
				c := f.client(t, auth, tc.api)
				call := c.StartNotebook
				if tc.stop {
					call = c.StopNotebook
				}
				res, err := call(context.Background(), testID)
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				want := vendors.Result{HTTPStatus: 200, RequestID: "req-42", State: tc.wantState}
				if res != want {
					t.Errorf("result = %+v; want %+v", res, want)
				}
				f.checkAuth(t)
				reqs := f.requests()
				if len(reqs) != 1 {
					t.Fatalf("server saw %d requests; want 1", len(reqs))
				}
				r := reqs[0]
				if r.method != http.MethodPost || r.path != tc.wantPath || r.body != tc.wantBody {
					t.Errorf("request = %s %s %q; want POST %s %q", r.method, r.path, r.body, tc.wantPath, tc.wantBody)
				}
				if auth == AuthIAM {
					if r.header.Get("Authorization") != "" {
						t.Errorf("iam request carries Authorization")
					}
					if r.header.Get("X-Auth-Token") == "" {
						t.Errorf("iam request lacks X-Auth-Token")
					}
				}
			})
		}
	}
}

func TestNotebookStatus(t *testing.T) {
	tests := []struct {
		api, wantPath, resp string
	}{
		{APIDEManager, "/v1/" + testProject + "/demanager/instances/" + testID,
			`{"id":"` + testID + `","name":"nb","status":"RUNNING","error_code":null,"flavor":"modelarts.vm.cpu.2u"}`},
		{APINotebooks, "/v1/" + testProject + "/notebooks/" + testID,
			`{"id":"` + testID + `","status":"RUNNING","action_progress":[{"step":1,"status":"COMPLETED"}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.api, func(t *testing.T) {
			f := newFakeCloud(t, respondWith(200, nil, tc.resp))
			got, err := f.client(t, AuthAKSK, tc.api).NotebookStatus(context.Background(), testID)
			if err != nil || got != "RUNNING" {
				t.Fatalf("NotebookStatus = %q, %v; want RUNNING", got, err)
			}
			f.checkAuth(t)
			if r := f.requests()[0]; r.method != http.MethodGet || r.path != tc.wantPath || r.body != "" {
				t.Errorf("request = %s %s %q; want GET %s", r.method, r.path, r.body, tc.wantPath)
			}
		})
	}
}

type callKind int

const (
	callStart callKind = iota
	callStop
	callStatus
)

func TestResponses(t *testing.T) {
	const lockHint = "check AK/SK and the host clock; the AK locks after 5 failures"
	httpDate := time.Date(2025, 3, 3, 8, 0, 30, 0, time.UTC).Format(http.TimeFormat) // fake clock + 30 s
	tests := []struct {
		name   string
		call   callKind
		status int
		hdr    map[string]string
		body   string

		wantErr       bool
		wantTransient bool
		wantAlready   bool
		wantCode      string
		wantRetry     time.Duration
		wantMsg       string // substring of Error() or Result.Message
	}{
		{name: "already running on start is success", call: callStart, status: 400,
			body:        `{"error_code":"ModelArts.6305","error_msg":"The instance is already running."}`,
			wantAlready: true, wantCode: "ModelArts.6305", wantMsg: "already running"},
		{name: "already stopped on stop is success", call: callStop, status: 400,
			body:        `{"error_code":"ModelArts.6307","error_message":"The instance has already been stopped."}`,
			wantAlready: true, wantCode: "ModelArts.6307", wantMsg: "already been stopped"},
		{name: "already stopped on start is permanent", call: callStart, status: 400,
			body:    `{"error_code":"ModelArts.6307","error_msg":"The instance has already been stopped."}`,
			wantErr: true, wantCode: "ModelArts.6307"},
		{name: "does not exist is permanent", call: callStart, status: 400,
			body:    `{"error_message":"The instance does not exist.","error_code":"ModelArts.6309"}`,
			wantErr: true, wantCode: "ModelArts.6309", wantMsg: "The instance does not exist."},
		{name: "app signature error is permanent", call: callStart, status: 401,
			body:    `{"error_code":"APIG.0303","error_msg":"Incorrect app authentication information: signature expired"}`,
			wantErr: true, wantCode: "APIG.0303", wantMsg: lockHint},
		{name: "ak locked is permanent", call: callStart, status: 401,
			body:    `{"error_code":"APIG.0301","error_msg":"AK access failed to reach the limit,forbidden"}`,
			wantErr: true, wantCode: "APIG.0301", wantMsg: lockHint},
		{name: "invalid ak/sk is permanent", call: callStop, status: 403,
			body:    `{"error_code":"ModelArts.0206","error_msg":"Invalid AK/SK."}`,
			wantErr: true, wantCode: "ModelArts.0206", wantMsg: lockHint},
		{name: "token error with aksk is permanent", call: callStart, status: 401,
			body:    `{"error_code":"ModelArts.0203","error_msg":"Invalid token."}`,
			wantErr: true, wantCode: "ModelArts.0203", wantMsg: lockHint},
		{name: "429 with Retry-After seconds", call: callStart, status: 429, hdr: map[string]string{"Retry-After": "7"},
			body:    `{"error_code":"APIG.0308","error_msg":"The throttling threshold has been reached"}`,
			wantErr: true, wantTransient: true, wantCode: "APIG.0308", wantRetry: 7 * time.Second},
		{name: "429 with Retry-After date", call: callStop, status: 429, hdr: map[string]string{"Retry-After": httpDate},
			body: `{"code":"APIG.0308","message":"throttled"}`, wantErr: true, wantTransient: true,
			wantCode: "APIG.0308", wantRetry: 30 * time.Second},
		{name: "503 without body is transient", call: callStart, status: 503,
			wantErr: true, wantTransient: true},
		{name: "502 html body is transient", call: callStart, status: 502, body: "<html><h1>502 Bad Gateway</h1></html>",
			wantErr: true, wantTransient: true, wantMsg: "502 Bad Gateway"},
		{name: "504 backend timeout", call: callStart, status: 504,
			body:    `{"error":{"error_code":"APIG.0203","error_msg":"Backend timeout"}}`,
			wantErr: true, wantTransient: true, wantCode: "APIG.0203"},
		{name: "408 is transient", call: callStop, status: 408, wantErr: true, wantTransient: true},
		{name: "instance starting is transient", call: callStart, status: 400,
			body:    `{"error_code":"ModelArts.6306","error_msg":"The instance is starting."}`,
			wantErr: true, wantTransient: true, wantCode: "ModelArts.6306"},
		{name: "unknown 400 is permanent", call: callStart, status: 400,
			body: `{"error_code":"ModelArts.4101","error_msg":"bad parameter"}`, wantErr: true, wantCode: "ModelArts.4101"},
		{name: "404 on status read is permanent", call: callStatus, status: 404, body: `{}`, wantErr: true},
		{name: "malformed 200 is permanent", call: callStart, status: 200, body: `<html>ok</html>`,
			wantErr: true, wantMsg: "malformed response body"},
		{name: "200 without status is permanent", call: callStop, status: 200, body: `{"previous_state":"RUNNING"}`,
			wantErr: true, wantMsg: "malformed response body"},
		{name: "malformed 200 status read is permanent", call: callStatus, status: 200, body: `{"status":`,
			wantErr: true, wantMsg: "malformed response body"},
		{name: "echoed credentials are redacted", call: callStart, status: 400,
			body:    `{"error_code":"ModelArts.0108","error_msg":"AK ` + testAK + ` with SK ` + testSK + ` not authorized"}`,
			wantErr: true, wantCode: "ModelArts.0108", wantMsg: "AK [REDACTED] with SK [REDACTED]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{"X-Request-Id": "req-7"}
			for k, v := range tc.hdr {
				hdr[k] = v
			}
			f := newFakeCloud(t, respondWith(tc.status, hdr, tc.body))
			res, err := tc.call.do(context.Background(), f.client(t, AuthAKSK, APIDEManager), testID)
			f.checkAuth(t)
			if n := len(f.requests()); n != 1 {
				t.Errorf("server saw %d requests; want exactly 1", n)
			}
			f.assertNoSecrets(t, err)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("error = %v; want success", err)
				}
				if res.Already != tc.wantAlready || res.VendorCode != tc.wantCode || res.HTTPStatus != tc.status ||
					res.RequestID != "req-7" || !strings.Contains(res.Message, tc.wantMsg) {
					t.Errorf("result = %+v; want Already=%v code %s status %d message ~%q",
						res, tc.wantAlready, tc.wantCode, tc.status, tc.wantMsg)
				}
				return
			}
			var ve *vendors.Error
			if !errors.As(err, &ve) {
				t.Fatalf("error = %v (%T); want *vendors.Error", err, err)
			}
			if vendors.IsTransient(err) != tc.wantTransient {
				t.Errorf("IsTransient(%v) = %v; want %v", err, !tc.wantTransient, tc.wantTransient)
			}
			if ve.HTTPStatus != tc.status || ve.VendorCode != tc.wantCode || ve.RequestID != "req-7" {
				t.Errorf("error fields: status %d code %q request id %q; want %d %q req-7",
					ve.HTTPStatus, ve.VendorCode, ve.RequestID, tc.status, tc.wantCode)
			}
			if got, _ := vendors.RetryAfter(err); got != tc.wantRetry {
				t.Errorf("RetryAfter = %v; want %v", got, tc.wantRetry)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tc.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), "otc: ") || !strings.Contains(err.Error(), testID) {
				t.Errorf("error %q does not name the operation and the notebook", err)
			}
		})
	}
}

func TestSlowResponseHitsDeadline(t *testing.T) {
	release := make(chan struct{})
	f := newFakeCloud(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release) // before the server's Close waits for the handler
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.client(t, AuthAKSK, APIDEManager).StartNotebook(ctx, testID)
	if err == nil {
		t.Fatal("StartNotebook past the deadline: nil error")
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("call returned after %v; the deadline was 50ms", time.Since(start))
	}
	if !vendors.IsTransient(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v; want transient, wrapping context.DeadlineExceeded", err)
	}
	if strings.Contains(err.Error(), f.srv.URL) {
		t.Errorf("transport error %q carries the URL", err)
	}
	f.assertNoSecrets(t, err)
}

func TestDroppedConnection(t *testing.T) {
	tests := []struct {
		name string
		raw  string // written on the hijacked connection before closing it
	}{
		{"before the response", ""},
		{"in the middle of the body", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"current_sta"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCloud(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				conn, buf, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("hijack: %v", err)
					return
				}
				buf.WriteString(tc.raw)
				buf.Flush()
				conn.Close()
			})
			_, err := f.client(t, AuthAKSK, APIDEManager).StartNotebook(context.Background(), testID)
			var ve *vendors.Error
			if !errors.As(err, &ve) || !ve.Transient || ve.HTTPStatus != 0 {
				t.Fatalf("error = %v; want a transient *vendors.Error without HTTP status", err)
			}
			f.assertNoSecrets(t, err)
		})
	}
}

func TestIAMTokenFetchedOnceAndCached(t *testing.T) {
	f := newFakeCloud(t, respondWith(200, nil, `{"current_status":"STARTING","previous_state":"STOPPED"}`))
	f.tokenTTL = time.Hour
	c := f.client(t, AuthIAM, APIDEManager)
	for range 3 {
		if _, err := c.StartNotebook(context.Background(), testID); err != nil {
			t.Fatalf("StartNotebook: %v", err)
		}
	}
	if f.fetchCount() != 1 {
		t.Errorf("token fetches = %d; want 1", f.fetchCount())
	}

	f.mu.Lock()
	iamBody, iamHdr, issued := f.iamBody, f.iamHdr, slices.Clone(f.issued)
	f.mu.Unlock()
	var got tokenRequest
	if err := json.Unmarshal(iamBody, &got); err != nil {
		t.Fatalf("token request body: %v", err)
	}
	var want tokenRequest
	want.Auth.Identity.Methods = []string{"password"}
	want.Auth.Identity.Password.User.Name = testUser
	want.Auth.Identity.Password.User.Password = testPassword
	want.Auth.Identity.Password.User.Domain.Name = testDomain
	want.Auth.Scope.Project.ID = testProject
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("token request = %+v; want %+v", got, want)
	}
	if ct := iamHdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("token request Content-Type = %q", ct)
	}
	for _, r := range f.requests() {
		if r.header.Get("X-Auth-Token") != issued[0] {
			t.Errorf("request token = %q; want the issued %q", r.header.Get("X-Auth-Token"), issued[0])
		}
	}

	// 54 minutes into a 60-minute token: still cached. 56: inside the
	// 5-minute margin, fetched again.
	f.clock.Advance(54 * time.Minute)
	if _, err := c.StopNotebook(context.Background(), testID); err != nil {
		t.Fatal(err)
	}
	if f.fetchCount() != 1 {
		t.Errorf("token fetches at 54 min = %d; want 1", f.fetchCount())
	}
	f.clock.Advance(2 * time.Minute)
	if _, err := c.StopNotebook(context.Background(), testID); err != nil {
		t.Fatal(err)
	}
	if f.fetchCount() != 2 {
		t.Errorf("token fetches at 56 min = %d; want 2", f.fetchCount())
	}
}

func TestIAMConcurrentCallsShareOneFetch(t *testing.T) {
	f := newFakeCloud(t, respondWith(200, nil, `{"current_status":"STARTING"}`))
	f.holdIAM(t)
	c := f.client(t, AuthIAM, APIDEManager)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := c.StartNotebook(context.Background(), testID)
			errs <- err
		})
	}
	// One caller fetches, held by the server; the seven others wait on it.
	waitCond(t, "seven callers waiting on one token fetch", func() bool { return c.tokenWaiters() == 7 })
	f.releaseIAM()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("StartNotebook: %v", err)
		}
	}
	if f.fetchCount() != 1 {
		t.Errorf("token fetches = %d; want 1", f.fetchCount())
	}
}

// holdIAM makes the server hold the first token fetch until releaseIAM,
// which also runs at cleanup, before the server closes (which waits for
// its handlers).
func (f *fakeCloud) holdIAM(t *testing.T) {
	f.iamHold = make(chan struct{})
	t.Cleanup(f.releaseIAM)
}

func (f *fakeCloud) releaseIAM() { f.releaseOnce.Do(func() { close(f.iamHold) }) }

// tokenWaiters is how many callers wait on the token fetch in flight.
func (c *Client) tokenWaiters() int {
	c.tokens.mu.Lock()
	defer c.tokens.mu.Unlock()
	if c.tokens.inflight == nil {
		return 0
	}
	return c.tokens.inflight.waiters
}

// waitCond polls cond until it holds, failing after 10 s.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestIAMRefreshOnTokenError(t *testing.T) {
	tests := []struct {
		name        string
		rejectFirst int    // answer this many valid requests with code
		code        string // a token error
		wantErr     bool
		wantReqs    int
	}{
		{"refresh once and replay", 1, "ModelArts.0203", false, 2},
		{"expired token at the gateway", 1, "APIG.0307", false, 2},
		{"iam auth information incorrect", 1, "APIG.0301", false, 2},
		{"second rejection is permanent", 2, "ModelArts.0203", true, 2},
		{"second apig rejection is permanent", 2, "APIG.0301", true, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCloud(t, func(w http.ResponseWriter, _ *http.Request, n int) {
				if n < tc.rejectFirst {
					w.WriteHeader(http.StatusUnauthorized)
					fmt.Fprintf(w, `{"error_code":%q,"error_msg":"Invalid token, refresh the user token."}`, tc.code)
					return
				}
				io.WriteString(w, `{"current_status":"STARTING","previous_state":"STOPPED"}`)
			})
			c := f.client(t, AuthIAM, APIDEManager)
			res, err := c.StartNotebook(context.Background(), testID)
			reqs := f.requests()
			if len(reqs) != tc.wantReqs {
				t.Errorf("ModelArts requests = %d; want %d", len(reqs), tc.wantReqs)
			}
			if f.fetchCount() != 2 {
				t.Errorf("token fetches = %d; want 2", f.fetchCount())
			}
			if len(reqs) == 2 && reqs[0].header.Get("X-Auth-Token") == reqs[1].header.Get("X-Auth-Token") {
				t.Errorf("the replay used the rejected token")
			}
			if reqs[len(reqs)-1].body != `{"action":"start"}` {
				t.Errorf("replayed body = %q", reqs[len(reqs)-1].body)
			}
			f.assertNoSecrets(t, err)
			if !tc.wantErr {
				if err != nil || res.State != "STARTING" {
					t.Errorf("StartNotebook = %+v, %v; want STARTING", res, err)
				}
				return
			}
			if err == nil || vendors.IsTransient(err) {
				t.Errorf("error = %v; want permanent", err)
			}
		})
	}
}

func TestIAMTokenErrors(t *testing.T) {
	tests := []struct {
		name          string
		status        int
		body          string
		header        map[string]string
		wantTransient bool
		wantMsg       string
	}{
		{"wrong password", 401, `{"error":{"code":401,"message":"The username or password is wrong: ` + testUser + `","title":"Unauthorized"}}`,
			nil, false, "check the IAM user"},
		{"iam unavailable", 503, `{"error_code":"APIG.0613","error_msg":"IAM unavailable"}`, nil, true, "get iam token"},
		{"201 without token header", 201, `{"token":{}}`, nil, false, "X-Subject-Token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCloud(t, respondWith(200, nil, `{"current_status":"STARTING"}`))
			f.iamRespond = func(w http.ResponseWriter) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}
			_, err := f.client(t, AuthIAM, APIDEManager).StartNotebook(context.Background(), testID)
			if err == nil {
				t.Fatal("StartNotebook: nil error")
			}
			if vendors.IsTransient(err) != tc.wantTransient {
				t.Errorf("IsTransient(%v) = %v; want %v", err, !tc.wantTransient, tc.wantTransient)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tc.wantMsg)
			}
			if n := len(f.requests()); n != 0 {
				t.Errorf("ModelArts requests = %d; want 0 without a token", n)
			}
			f.assertNoSecrets(t, err)
		})
	}
}

func TestNew(t *testing.T) {
	ak, sk := secret.New(testAK), secret.New(testSK)
	user, pw := secret.New(testUser), secret.New(testPassword)
	tests := []struct {
		name          string
		cfg           Config
		wantErr       string
		wantBase, iam string
	}{
		{name: "defaults to eu-de", cfg: Config{ProjectID: "p", AccessKey: ak, SecretKey: sk},
			wantBase: "https://modelarts.eu-de.otc.t-systems.com"},
		{name: "eu-nl iam", cfg: Config{ProjectID: "p", Region: "eu-nl", Auth: AuthIAM, Username: user, Password: pw, Domain: "d"},
			wantBase: "https://modelarts.eu-nl.otc.t-systems.com", iam: "https://iam.eu-nl.otc.t-systems.com/v3/auth/tokens"},
		{name: "overrides, iam with /v3", cfg: Config{ProjectID: "p", Region: "eu-ch2", ModelArtsURL: "http://127.0.0.1:9/ma/",
			IAMURL: "https://iam-pub.eu-ch2.sc.otc.t-systems.com/v3", Auth: AuthIAM, Username: user, Password: pw, Domain: "d"},
			wantBase: "http://127.0.0.1:9/ma", iam: "https://iam-pub.eu-ch2.sc.otc.t-systems.com/v3/auth/tokens"},
		{name: "no project", cfg: Config{AccessKey: ak, SecretKey: sk}, wantErr: "project_id"},
		{name: "unknown region", cfg: Config{ProjectID: "p", Region: "eu-xx", AccessKey: ak, SecretKey: sk}, wantErr: "region"},
		{name: "unknown auth", cfg: Config{ProjectID: "p", Auth: "token", AccessKey: ak, SecretKey: sk}, wantErr: "unknown auth"},
		{name: "unknown api", cfg: Config{ProjectID: "p", API: "v2", AccessKey: ak, SecretKey: sk}, wantErr: "unknown api"},
		{name: "aksk without sk", cfg: Config{ProjectID: "p", AccessKey: ak}, wantErr: "secret_key"},
		{name: "iam without domain", cfg: Config{ProjectID: "p", Auth: AuthIAM, Username: user, Password: pw}, wantErr: "domain"},
		{name: "bad endpoint", cfg: Config{ProjectID: "p", ModelArtsURL: "modelarts.example", AccessKey: ak, SecretKey: sk},
			wantErr: "endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New error = %v; want one mentioning %q", err, tc.wantErr)
				}
				for _, s := range []string{testAK, testSK, testUser, testPassword} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error %q contains a secret", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if c.base != tc.wantBase {
				t.Errorf("ModelArts base = %q; want %q", c.base, tc.wantBase)
			}
			if tc.iam != "" && c.tokens.url != tc.iam {
				t.Errorf("IAM url = %q; want %q", c.tokens.url, tc.iam)
			}
		})
	}
}

func TestEmptyID(t *testing.T) {
	f := newFakeCloud(t, respondWith(200, nil, `{}`))
	c := f.client(t, AuthAKSK, APIDEManager)
	for _, k := range []callKind{callStart, callStop, callStatus} {
		if _, err := k.do(context.Background(), c, ""); err == nil || vendors.IsTransient(err) {
			t.Errorf("call %d with empty id: %v; want a permanent error", k, err)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("server saw %d requests; want 0", n)
	}
}

func (k callKind) do(ctx context.Context, c *Client, id string) (vendors.Result, error) {
	switch k {
	case callStart:
		return c.StartNotebook(ctx, id)
	case callStop:
		return c.StopNotebook(ctx, id)
	}
	s, err := c.NotebookStatus(ctx, id)
	return vendors.Result{State: s}, err
}

// A caller whose context ends while it fetches the token for others must
// not fail them: they fetch again under their own context.
func TestIAMWaiterSurvivesCancelledFetcher(t *testing.T) {
	f := newFakeCloud(t, respondWith(200, nil, `{"current_status":"STARTING"}`))
	f.holdIAM(t) // A's fetch stays in flight until A gives up
	c := f.client(t, AuthIAM, APIDEManager)

	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() {
		_, err := c.StartNotebook(ctxA, testID)
		errA <- err
	}()
	waitCond(t, "A's token fetch in flight", func() bool { return f.fetchCount() == 1 })
	errB := make(chan error, 1)
	go func() {
		_, err := c.StartNotebook(context.Background(), testID)
		errB <- err
	}()
	waitCond(t, "B waiting on A's fetch", func() bool { return c.tokenWaiters() == 1 })
	cancelA()
	if err := <-errA; err == nil || !vendors.IsTransient(err) {
		t.Errorf("cancelled caller: %v; want a transient error", err)
	}
	if err := <-errB; err != nil {
		t.Errorf("waiting caller: %v; want success after its own fetch", err)
	}
	if n := f.fetchCount(); n != 2 {
		t.Errorf("token fetches = %d; want 2", n)
	}
}

// A state-conflict answer (6327 "instance not running", 6357 "operation in
// progress or already in target state") is settled by one status read.
func TestStateConflictReadsStatus(t *testing.T) {
	conflict := func(code string) string {
		return `{"error_code":"` + code + `","error_msg":"state conflict"}`
	}
	tests := []struct {
		name, code, state string
		call              callKind
		wantAlready       bool
		wantTransient     bool
	}{
		{"stop not running, stopped", "ModelArts.6327", "STOPPED", callStop, true, false},
		{"stop not running, start failed", "ModelArts.6327", "START_FAILED", callStop, false, false},
		{"start in progress, running", "ModelArts.6357", "RUNNING", callStart, true, false},
		{"start in progress, starting", "ModelArts.6357", "STARTING", callStart, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCloud(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if r.Method == http.MethodGet {
					respondWith(200, nil, `{"id":"`+testID+`","status":"`+tc.state+`"}`)(w, r, n)
					return
				}
				respondWith(400, nil, conflict(tc.code))(w, r, n)
			})
			res, err := tc.call.do(context.Background(), f.client(t, AuthAKSK, APIDEManager), testID)
			if got := len(f.requests()); got != 2 {
				t.Fatalf("%d requests; want the action and one status read", got)
			}
			if tc.wantAlready {
				if err != nil || !res.Already || res.State != tc.state {
					t.Fatalf("= %+v, %v; want success, already, state %s", res, err, tc.state)
				}
				return
			}
			if err == nil || vendors.IsTransient(err) != tc.wantTransient || !strings.Contains(err.Error(), tc.state) {
				t.Fatalf("err = %v (transient %v); want an error naming %s, transient %v", err, vendors.IsTransient(err), tc.state, tc.wantTransient)
			}
		})
	}
}
