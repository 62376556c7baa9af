package scnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors"
)

const (
	testToken = "tok-SECRET-7f3a9c"
	nbID      = "1821067171420946434" // seed 001
)

// server is a fake SCNet host. Every request must carry the expected token
// and Content-Type; handlers are registered per path.
type server struct {
	t     *testing.T
	srv   *httptest.Server
	token func() string    // expected token header; nil: don't check
	date  func() time.Time // the server's clock for the Date header; nil: the real one

	mu     sync.Mutex
	counts map[string]int
	routes map[string]http.HandlerFunc
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{t: t, counts: map[string]int{}, routes: map[string]http.HandlerFunc{}}
	s.token = func() string { return testToken }
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts[r.URL.Path]++
	h := s.routes[r.URL.Path]
	want, date := s.token, s.date
	s.mu.Unlock()
	if date != nil {
		w.Header().Set("Date", date().UTC().Format(http.TimeFormat))
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		s.t.Errorf("%s %s: Content-Type = %q; want application/json", r.Method, r.URL.Path, got)
	}
	if want != nil && r.URL.Path != "/api/user/v3/tokens" {
		if got := r.Header.Get("token"); got != want() {
			s.t.Errorf("%s %s: token header = %q; want %q", r.Method, r.URL.Path, got, want())
		}
	}
	if h == nil {
		s.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.NotFound(w, r)
		return
	}
	h(w, r)
}

func (s *server) handle(path string, h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[path] = h
}

func (s *server) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[path]
}

func reply(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}
}

const okTrue = `{"code":"0","msg":"success","data":true}`

// newClient returns a mode 1 client whose platform and ai hosts are s.
func newClient(t *testing.T, s *server, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{Token: secret.New(testToken), PlatformURL: s.srv.URL, AIURL: s.srv.URL + "/"}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func decodeBody(t *testing.T, r *http.Request) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		t.Errorf("%s: body is not JSON: %v", r.URL.Path, err)
	}
	return m
}

func TestActionsSuccess(t *testing.T) {
	tests := []struct {
		name     string
		do       func(*Client, context.Context, string) (vendors.Result, error)
		path     string
		wantBody map[string]any
	}{
		{"start", (*Client).StartNotebook, "/ac/openapi/v2/notebook/actions/start",
			map[string]any{"notebookId": nbID}},
		{"stop", (*Client).StopNotebook, "/ai/openapi/v2/notebook/actions/stop",
			map[string]any{"notebookId": nbID, "saveEnv": false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			s.handle(tc.path, func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost {
					t.Errorf("method = %s; want POST", r.Method)
				}
				if got := decodeBody(t, r); !reflect.DeepEqual(got, tc.wantBody) {
					t.Errorf("body = %v; want %v", got, tc.wantBody)
				}
				reply(okTrue)(w, r)
			})
			res, err := tc.do(newClient(t, s, nil), context.Background(), nbID)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			want := vendors.Result{HTTPStatus: 200, VendorCode: "0", Message: "success"}
			if res != want {
				t.Errorf("result = %+v; want %+v", res, want)
			}
			if n := s.count(tc.path); n != 1 {
				t.Errorf("%s called %d times; want 1", tc.path, n)
			}
		})
	}
}

// hangup closes the connection without answering.
func hangup(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

func TestActionErrors(t *testing.T) {
	tests := []struct {
		name       string
		h          http.HandlerFunc
		transient  bool
		status     int
		code       string
		retryAfter time.Duration
		msgHas     string
	}{
		{name: "internal error 10001", h: reply(`{"code":"10001","msg":"内部错误","data":null}`),
			transient: true, status: 200, code: "10001", msgHas: "内部错误"},
		{name: "connection interrupted 10012 as number", h: reply(`{"code":10012,"msg":"连接中断"}`),
			transient: true, status: 200, code: "10012"},
		{name: "invalid parameters 10004", h: reply(`{"code":"10004","msg":"参数无效","data":null}`),
			status: 200, code: "10004", msgHas: "参数无效"},
		{name: "user frozen 10007", h: reply(`{"code":"10007","msg":"frozen"}`), status: 200, code: "10007"},
		{name: "permission 10008 with a ready token", h: reply(`{"code":"10008","msg":"权限不足"}`),
			status: 200, code: "10008"},
		{name: "task creation 716865", h: reply(`{"code":"716865","msg":"创建任务错误"}`), status: 200, code: "716865"},
		{name: "unknown code", h: reply(`{"code":"55555","msg":"?"}`), status: 200, code: "55555"},
		{name: "HTTP 503", h: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		}, transient: true, status: 503},
		{name: "HTTP 429 with Retry-After", h: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		}, transient: true, status: 429, retryAfter: 7 * time.Second},
		{name: "HTTP 400 with envelope", h: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"code":"10003","msg":"参数不全"}`)
		}, status: 400, code: "10003"},
		{name: "HTTP 401 with a ready token", h: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
		}, status: 401},
		{name: "HTTP 404", h: http.NotFound, status: 404},
		{name: "malformed body", h: reply(`<html>gateway</html>`), status: 200, msgHas: "malformed"},
		{name: "envelope without code", h: reply(`{"msg":"ok"}`), status: 200, msgHas: "without a code"},
		{name: "message echoes the token", h: reply(`{"code":"10004","msg":"bad token ` + testToken + `"}`),
			status: 200, code: "10004", msgHas: secret.Redacted},
		{name: "dropped connection", h: hangup, transient: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			const path = "/ac/openapi/v2/notebook/actions/start"
			s.handle(path, tc.h)
			_, err := newClient(t, s, nil).StartNotebook(context.Background(), nbID)
			var ve *vendors.Error
			if !errors.As(err, &ve) {
				t.Fatalf("StartNotebook error = %v; want *vendors.Error", err)
			}
			if got := vendors.IsTransient(err); got != tc.transient {
				t.Errorf("IsTransient(%v) = %v; want %v", err, got, tc.transient)
			}
			if ve.HTTPStatus != tc.status || ve.VendorCode != tc.code {
				t.Errorf("error HTTP %d code %q; want HTTP %d code %q", ve.HTTPStatus, ve.VendorCode, tc.status, tc.code)
			}
			if ra, _ := vendors.RetryAfter(err); ra != tc.retryAfter {
				t.Errorf("RetryAfter = %v; want %v", ra, tc.retryAfter)
			}
			if !strings.Contains(err.Error(), tc.msgHas) || !strings.HasPrefix(err.Error(), "scnet: start notebook "+nbID) {
				t.Errorf("error %q; want prefix %q and to contain %q", err, "scnet: start notebook "+nbID, tc.msgHas)
			}
			assertNoSecret(t, err, testToken)
			if n := s.count(path); n != 1 {
				t.Errorf("start called %d times; want exactly 1 (no retry inside the client)", n)
			}
		})
	}
}

func assertNoSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("error text leaks a secret: %s", text)
			}
		}
	}
}

func TestSlowResponseBeyondDeadline(t *testing.T) {
	s := newServer(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the server closes
	s.handle("/ai/openapi/v2/notebook/actions/stop", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := newClient(t, s, nil).StopNotebook(ctx, nbID)
	if !errors.Is(err, context.DeadlineExceeded) || !vendors.IsTransient(err) {
		t.Fatalf("StopNotebook past deadline = %v; want transient DeadlineExceeded", err)
	}
	if strings.Contains(err.Error(), s.srv.URL) {
		t.Errorf("transport error names the URL: %v", err)
	}
	assertNoSecret(t, err, testToken)
}

func TestStartDataFalse(t *testing.T) {
	tests := []struct {
		name      string
		state     string
		wantErr   bool
		wantState string
	}{
		{"already running", StatusRunning, false, StatusRunning},
		{"refused while terminated", StatusTerminated, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			s.handle("/ac/openapi/v2/notebook/actions/start", reply(`{"code":"0","msg":"success","data":false}`))
			s.handle("/ai/openapi/v2/notebook/list", reply(`{"code":"0","msg":"success","data":{"total":1,"records":[{"id":"`+nbID+`","notebookStatus":"`+tc.state+`"}]}}`))
			res, err := newClient(t, s, nil).StartNotebook(context.Background(), nbID)
			if tc.wantErr {
				if err == nil || vendors.IsTransient(err) || !strings.Contains(err.Error(), tc.state) {
					t.Fatalf("StartNotebook = %+v, %v; want a permanent error naming %s", res, err, tc.state)
				}
				return
			}
			if err != nil || !res.Already || res.State != tc.wantState {
				t.Fatalf("StartNotebook = %+v, %v; want Already with state %s", res, err, tc.wantState)
			}
		})
	}
}

func TestNotebookStatus(t *testing.T) {
	records := func(from, n int) string {
		var rs []string
		for i := from; i < from+n; i++ {
			rs = append(rs, fmt.Sprintf(`{"id":"%d","notebookName":"nb%d","notebookStatus":"Running"}`, i, i))
		}
		return strings.Join(rs, ",")
	}
	tests := []struct {
		name        string
		pages       map[string]string // page → data
		detail      string            // data of detail; "" = not called
		want        string
		wantErr     bool
		wantListHit int
	}{
		{name: "first page, id as a string",
			pages: map[string]string{"1": `{"total":2,"records":[` + records(1, 1) + `,{"id":"` + nbID + `","notebookStatus":"Terminated"}]}`},
			want:  StatusTerminated, wantListHit: 1},
		{name: "second page, id as a JSON number",
			pages: map[string]string{
				"1": `{"total":"25","records":[` + records(1, 20) + `]}`,
				"2": `{"total":"25","records":[` + records(21, 4) + `,{"id":` + nbID + `,"notebookStatus":"Shutting"}]}`,
			},
			want: StatusShutting, wantListHit: 2},
		{name: "absent from the list, detail has it",
			pages:  map[string]string{"1": `{"total":1,"records":[` + records(1, 1) + `]}`},
			detail: `{"id":"` + nbID + `","notebookStatus":"Restarting"}`, want: StatusRestarting, wantListHit: 1},
		{name: "absent everywhere",
			pages:  map[string]string{"1": `{"total":0,"records":[]}`},
			detail: `null`, wantErr: true, wantListHit: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			s.handle("/ai/openapi/v2/notebook/list", func(w http.ResponseWriter, r *http.Request) {
				q := r.URL.Query()
				if r.Method != http.MethodGet || q.Get("size") != "20" || !q.Has("notebookName") || !q.Has("notebookStatus") {
					t.Errorf("list request %s %s; want GET with notebookName, notebookStatus, size=20, page", r.Method, r.URL.RawQuery)
				}
				data, ok := tc.pages[q.Get("page")]
				if !ok {
					t.Errorf("unexpected page %q", q.Get("page"))
					data = `{"total":0,"records":[]}`
				}
				reply(`{"code":"0","msg":"success","data":`+data+`}`)(w, r)
			})
			if tc.detail != "" {
				s.handle("/ai/openapi/v2/notebook/detail", func(w http.ResponseWriter, r *http.Request) {
					if got := r.URL.Query().Get("notebookId"); got != nbID {
						t.Errorf("detail notebookId = %q; want %q", got, nbID)
					}
					reply(`{"code":"0","msg":"success","data":`+tc.detail+`}`)(w, r)
				})
			}
			got, err := newClient(t, s, nil).NotebookStatus(context.Background(), nbID)
			if tc.wantErr {
				if err == nil || vendors.IsTransient(err) {
					t.Fatalf("NotebookStatus = %q, %v; want a permanent error", got, err)
				}
			} else if err != nil || got != tc.want {
				t.Fatalf("NotebookStatus = %q, %v; want %q", got, err, tc.want)
			}
			if n := s.count("/ai/openapi/v2/notebook/list"); n != tc.wantListHit {
				t.Errorf("list called %d times; want %d", n, tc.wantListHit)
			}
		})
	}
}

func TestAIDiscovery(t *testing.T) {
	tests := []struct {
		name   string
		center func(srv string) string // data of /center
	}{
		{"trailing slash, no /ai", func(srv string) string {
			return `[{"name":"区域","aiUrls":[{"url":"` + srv + `/","enable":true}]}]`
		}},
		{"already ends in /ai/", func(srv string) string {
			return `[{"aiUrls":[{"url":"` + srv + `/ai/","enable":"true"}]}]`
		}},
		{"picks the enabled one", func(srv string) string {
			return `[{"aiUrls":[{"url":"http://127.0.0.1:1","enable":false},{"url":"` + srv + `/ai","enable":true}]}]`
		}},
		{"single object, one url without enable", func(srv string) string {
			return `{"aiUrls":[{"url":"` + srv + `"}]}`
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			s.handle("/ac/openapi/v2/center", func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet {
					t.Errorf("center method = %s; want GET", r.Method)
				}
				reply(`{"code":"0","msg":"success","data":`+tc.center(s.srv.URL)+`}`)(w, r)
			})
			s.handle("/ai/openapi/v2/notebook/actions/stop", reply(okTrue))
			s.handle("/ai/openapi/v2/notebook/list", reply(`{"code":"0","msg":"success","data":{"total":1,"records":[{"id":"`+nbID+`","notebookStatus":"Terminated"}]}}`))
			c := newClient(t, s, func(c *Config) { c.AIURL = "" })

			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					if _, err := c.StopNotebook(context.Background(), nbID); err != nil {
						t.Errorf("StopNotebook: %v", err)
					}
				})
			}
			wg.Wait()
			if st, err := c.NotebookStatus(context.Background(), nbID); err != nil || st != StatusTerminated {
				t.Errorf("NotebookStatus = %q, %v; want Terminated", st, err)
			}
			if n := s.count("/ac/openapi/v2/center"); n != 1 {
				t.Errorf("/center called %d times for 9 operations; want 1", n)
			}
			if n := s.count("/ai/openapi/v2/notebook/actions/stop"); n != 8 {
				t.Errorf("stop called %d times; want 8", n)
			}
		})
	}
}

func TestAIDiscoveryFailures(t *testing.T) {
	tests := []struct {
		name      string
		center    http.HandlerFunc
		transient bool
	}{
		{"no enabled url", reply(`{"code":"0","msg":"success","data":[{"aiUrls":[{"url":"http://x","enable":false}]}]}`), false},
		{"center 10001", reply(`{"code":"10001","msg":"内部错误"}`), true},
		{"center 502", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			s.handle("/ac/openapi/v2/center", tc.center)
			c := newClient(t, s, func(c *Config) { c.AIURL = "" })
			for range 2 { // a failed discovery is not cached
				_, err := c.StopNotebook(context.Background(), nbID)
				if err == nil || vendors.IsTransient(err) != tc.transient || !strings.Contains(err.Error(), "discover ai host") {
					t.Fatalf("StopNotebook = %v; want transient=%v discovery error", err, tc.transient)
				}
				assertNoSecret(t, err, testToken)
			}
			if n := s.count("/ac/openapi/v2/center"); n != 2 {
				t.Errorf("/center called %d times; want 2", n)
			}
		})
	}
}

func TestNormaliseAI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://ai.example.cn", "https://ai.example.cn/ai"},
		{"https://ai.example.cn/", "https://ai.example.cn/ai"},
		{"https://ai.example.cn/ai", "https://ai.example.cn/ai"},
		{"https://ai.example.cn/ai//", "https://ai.example.cn/ai"},
		{"https://ai.example.cn:65102/prefix/", "https://ai.example.cn:65102/prefix/ai"},
	}
	for _, tc := range tests {
		if got, err := normaliseAI(tc.in); err != nil || got != tc.want {
			t.Errorf("normaliseAI(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := normaliseAI("ai.example.cn"); err == nil {
		t.Errorf("normaliseAI without scheme: want an error")
	}
}

func TestNewValidation(t *testing.T) {
	tok, u, ak, sk := secret.New("t-SECRET"), secret.New("u-SECRET"), secret.New("ak-SECRET"), secret.New("sk-SECRET")
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"token", Config{Token: tok}, false},
		{"aksk", Config{User: u, AccessKey: ak, SecretKey: sk}, false},
		{"nothing", Config{}, true},
		{"both", Config{Token: tok, User: u, AccessKey: ak, SecretKey: sk}, true},
		{"aksk without user", Config{AccessKey: ak, SecretKey: sk}, true},
		{"bad platform", Config{Token: tok, PlatformURL: "www.scnet.cn"}, true},
		{"bad auth", Config{User: u, AccessKey: ak, SecretKey: sk, AuthURL: "ftp://x"}, true},
		{"bad ai", Config{Token: tok, AIURL: "://"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("New = %v; want error %v", err, tc.wantErr)
			}
			if err != nil {
				assertNoSecret(t, err, "SECRET")
			}
		})
	}
}

func TestSignTokenRequest(t *testing.T) {
	// [COMPUTED] vector of vendors.md §5.2.
	msg, sig := SignTokenRequest("bob", "85f96a42b13f4d2c8b760d2775bbcca8", "SK-EXAMPLE-SECRET", "1764597591")
	wantMsg := `{"accessKey":"85f96a42b13f4d2c8b760d2775bbcca8","timestamp":"1764597591","user":"bob"}`
	wantSig := "92c90d756221ae59dae8c449d95e98ccbd4a736877ef91fa0d6f87d09a8caae7"
	if msg != wantMsg {
		t.Errorf("msg = %s; want %s", msg, wantMsg)
	}
	if sig != wantSig {
		t.Errorf("signature = %s; want %s", sig, wantSig)
	}
}
