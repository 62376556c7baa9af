package ncp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors"
)

// Fake credentials; every error is checked not to contain them.
const (
	testAccessKey = "AK-TEST-7f3c9a1e2b"
	testSecretKey = "SK-TEST-d41d8cd98f00b204e9800998ecf8427e"
)

// clockStart is the first signature timestamp a test client uses.
var clockStart = time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)

// stepClock returns clockStart + n ms on its n-th call, so consecutive
// requests carry distinct timestamps.
type stepClock struct {
	mu sync.Mutex
	n  int
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := clockStart.Add(time.Duration(c.n) * time.Millisecond)
	c.n++
	return t
}

// wantRequest is what the fake gateway expects to receive.
type wantRequest struct {
	method string
	uri    string // the exact request URI on the request line
	id     string // the {"id"} body of a POST; "" for a GET without body
}

// fakeGateway starts a server that verifies every request like the NCP
// API Gateway would (signature recomputed over the received request line,
// timestamp header, access key, Content-Type, exact body), records the
// timestamps it saw, and then calls respond.
type fakeGateway struct {
	*httptest.Server
	mu         sync.Mutex
	timestamps []string
}

func newFakeGateway(t *testing.T, want wantRequest, respond http.HandlerFunc) *fakeGateway {
	t.Helper()
	g := &fakeGateway{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts := r.Header.Get(headerTimestamp)
		g.mu.Lock()
		g.timestamps = append(g.timestamps, ts)
		g.mu.Unlock()
		checkRequest(t, r, want, ts)
		respond(w, r)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *fakeGateway) seen() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.timestamps...)
}

func checkRequest(t *testing.T, r *http.Request, want wantRequest, ts string) {
	t.Helper()
	if r.Method != want.method {
		t.Errorf("method = %s; want %s", r.Method, want.method)
	}
	if r.RequestURI != want.uri {
		t.Errorf("request URI = %q; want %q", r.RequestURI, want.uri)
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || ms < clockStart.UnixMilli() || ms > clockStart.UnixMilli()+1000 {
		t.Errorf("%s = %q; want ms since the epoch from the client's clock (%d…)", headerTimestamp, ts, clockStart.UnixMilli())
	}
	if got := r.Header.Get(headerAccessKey); got != testAccessKey {
		t.Errorf("%s = %q; want the access key", headerAccessKey, got)
	}
	// Recomputing over the received request line and timestamp header
	// also proves the header equals the signed timestamp.
	if got, want := r.Header.Get(headerSignature), Sign(r.Method, r.RequestURI, ts, testAccessKey, testSecretKey); got != want {
		t.Errorf("%s = %q; want %q (signed over %q %q %q)", headerSignature, got, want, r.Method, r.RequestURI, ts)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q; want application/json", got)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("reading request body: %v", err)
	}
	if want.id == "" {
		if len(body) != 0 {
			t.Errorf("body = %q; want none", body)
		}
		return
	}
	wantBody := `{"id":"` + want.id + `"}`
	if string(body) != wantBody {
		t.Errorf("body = %q; want %q", body, wantBody)
	}
}

func newTestClient(t *testing.T, url, region string) *Client {
	t.Helper()
	c, err := New(Config{
		AccessKey:     secret.New(testAccessKey),
		SecretKey:     secret.New(testSecretKey),
		Region:        region,
		DataForestURL: url,
		CDSSURL:       url,
		Now:           (&stepClock{}).Now,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func reply(status int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// assertNoSecret fails if either key appears in anything err prints.
func assertNoSecret(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	texts := []string{err.Error(), fmt.Sprintf("%+v", err)}
	var ve *vendors.Error
	if errors.As(err, &ve) {
		texts = append(texts, fmt.Sprintf("%+v", *ve))
	}
	for _, s := range texts {
		for _, k := range []string{testAccessKey, testSecretKey} {
			if strings.Contains(s, k) {
				t.Errorf("error %q contains a key", s)
			}
		}
	}
}

type action func(*Client, context.Context) (vendors.Result, error)

func TestActionsSucceed(t *testing.T) {
	const cdssOK = `{"code":0,"message":"SUCCESS","result":true,"requestId":"2757144e-8548-472d-9d65-962406b4efa0"}`
	cdssRes := vendors.Result{HTTPStatus: 200, VendorCode: "0", RequestID: "2757144e-8548-472d-9d65-962406b4efa0", Message: "SUCCESS"}
	tests := []struct {
		name   string
		region string
		call   action
		want   wantRequest
		body   string
		res    vendors.Result
	}{
		{"restart notebook", "", func(c *Client, ctx context.Context) (vendors.Result, error) {
			return c.RestartNotebook(ctx, "7kHeVWhiRsxdRl0nXz04ri")
		}, wantRequest{"POST", "/api/v2/notebooks/restart", "7kHeVWhiRsxdRl0nXz04ri"},
			`{"success": true, "id": "7kHeVWhiRsxdRl0nXz04ri"}`, vendors.Result{HTTPStatus: 200}},
		{"kill ai app", "", func(c *Client, ctx context.Context) (vendors.Result, error) {
			return c.KillAIApp(ctx, "cMmEw7HCjVQdcHh3JVOptL")
		}, wantRequest{"POST", "/api/v2/aiapps/kill", "cMmEw7HCjVQdcHh3JVOptL"},
			`{"success":true,"message":"success","id":"cMmEw7HCjVQdcHh3JVOptL"}`, vendors.Result{HTTPStatus: 200, Message: "success"}},
		{"start app", "", func(c *Client, ctx context.Context) (vendors.Result, error) {
			return c.StartApp(ctx, "aB3dE5fG7hI9jK1lM3nO5p")
		}, wantRequest{"POST", "/api/v2/apps/start", "aB3dE5fG7hI9jK1lM3nO5p"},
			`{"success":true,"id":"aB3dE5fG7hI9jK1lM3nO5p"}`, vendors.Result{HTTPStatus: 200}},
		{"stop app", "", func(c *Client, ctx context.Context) (vendors.Result, error) {
			return c.StopApp(ctx, "aB3dE5fG7hI9jK1lM3nO5p")
		}, wantRequest{"POST", "/api/v2/apps/stop", "aB3dE5fG7hI9jK1lM3nO5p"},
			`{"success":true,"id":"aB3dE5fG7hI9jK1lM3nO5p"}`, vendors.Result{HTTPStatus: 200}},
		{"restart cmak KR", "KR", func(c *Client, ctx context.Context) (vendors.Result, error) {
			return c.RestartCMAK(ctx, "1484848")
		}, wantRequest{"GET", "/api/v1/cluster/restartCMAKService/1484848", ""}, cdssOK, cdssRes},
		{"restart cmak sgn lower case", "sgn", func(c *Client, ctx context.Context) (vendors.Result, error) {
			return c.RestartCMAK(ctx, "1484848")
		}, wantRequest{"GET", "/api/sgn-v1/cluster/restartCMAKService/1484848", ""}, cdssOK, cdssRes},
		{"restart cmak JPN", "JPN", func(c *Client, ctx context.Context) (vendors.Result, error) {
			return c.RestartCMAK(ctx, "1484848")
		}, wantRequest{"GET", "/api/jpn-v1/cluster/restartCMAKService/1484848", ""}, cdssOK, cdssRes},
		{"restart kafka default region", "", func(c *Client, ctx context.Context) (vendors.Result, error) {
			return c.RestartKafka(ctx, "2001")
		}, wantRequest{"GET", "/api/v1/cluster/restartKafkaService/2001", ""}, cdssOK, cdssRes},
		{"restart kafka SGN", "SGN", func(c *Client, ctx context.Context) (vendors.Result, error) {
			return c.RestartKafka(ctx, "2001")
		}, wantRequest{"GET", "/api/sgn-v1/cluster/restartKafkaService/2001", ""}, cdssOK, cdssRes},
		{"restart all services KR", "KR", func(c *Client, ctx context.Context) (vendors.Result, error) {
			return c.RestartAllServices(ctx, "2002")
		}, wantRequest{"GET", "/api/v1/cluster/restartAllServices/2002", ""}, cdssOK, cdssRes},
		{"restart all services jpn", "jpn", func(c *Client, ctx context.Context) (vendors.Result, error) {
			return c.RestartAllServices(ctx, "2002")
		}, wantRequest{"GET", "/api/jpn-v1/cluster/restartAllServices/2002", ""}, cdssOK, cdssRes},
		{"restart all services gov KRS", "KRS", func(c *Client, ctx context.Context) (vendors.Result, error) {
			return c.RestartAllServices(ctx, "2002")
		}, wantRequest{"GET", "/api/krs-v1/cluster/restartAllServices/2002", ""}, cdssOK, cdssRes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGateway(t, tc.want, reply(200, tc.body))
			c := newTestClient(t, g.URL, tc.region)
			res, err := tc.call(c, context.Background())
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if res != tc.res {
				t.Errorf("result = %+v; want %+v", res, tc.res)
			}
			if n := len(g.seen()); n != 1 {
				t.Errorf("server saw %d requests; want 1", n)
			}
		})
	}
}

func TestEveryCallIsSignedAfresh(t *testing.T) {
	g := newFakeGateway(t, wantRequest{"POST", "/api/v2/notebooks/restart", "7kHeVWhiRsxdRl0nXz04ri"},
		reply(200, `{"success":true,"id":"7kHeVWhiRsxdRl0nXz04ri"}`))
	c := newTestClient(t, g.URL, "")
	for range 3 {
		if _, err := c.RestartNotebook(context.Background(), "7kHeVWhiRsxdRl0nXz04ri"); err != nil {
			t.Fatalf("RestartNotebook: %v", err)
		}
	}
	ts := g.seen()
	if len(ts) != 3 || ts[0] == ts[1] || ts[1] == ts[2] {
		t.Errorf("timestamps = %q; want three distinct ones (one signature per call)", ts)
	}
}

func TestBaseURLPathPrefixIsSentAndSigned(t *testing.T) {
	g := newFakeGateway(t, wantRequest{"GET", "/proxy/ncp/api/sgn-v1/cluster/restartCMAKService/77", ""},
		reply(200, `{"code":0,"message":"SUCCESS","result":true,"requestId":"r"}`))
	c := newTestClient(t, g.URL+"/proxy/ncp/", "SGN")
	if _, err := c.RestartCMAK(context.Background(), "77"); err != nil {
		t.Fatalf("RestartCMAK: %v", err)
	}
}

func TestStatusReads(t *testing.T) {
	t.Run("notebook state", func(t *testing.T) {
		g := newFakeGateway(t, wantRequest{"POST", "/api/v2/notebooks/getDetail", "7kHeVWhiRsxdRl0nXz04ri"},
			reply(200, `{"success":true,"id":"7kHeVWhiRsxdRl0nXz04ri","name":"nb","state":"RUNNING","additionalStorage":{"storageGB":100}}`))
		got, err := newTestClient(t, g.URL, "").NotebookState(context.Background(), "7kHeVWhiRsxdRl0nXz04ri")
		if err != nil || got != "RUNNING" {
			t.Errorf("NotebookState = %q, %v; want RUNNING", got, err)
		}
	})
	t.Run("app state", func(t *testing.T) {
		g := newFakeGateway(t, wantRequest{"POST", "/api/v2/apps/getDetail", "aB3dE5fG7hI9jK1lM3nO5p"},
			reply(200, `{"success":true,"id":"aB3dE5fG7hI9jK1lM3nO5p","state":"STOPPED","components":[{"state":"STABLE"}]}`))
		got, err := newTestClient(t, g.URL, "").AppState(context.Background(), "aB3dE5fG7hI9jK1lM3nO5p")
		if err != nil || got != "STOPPED" {
			t.Errorf("AppState = %q, %v; want STOPPED", got, err)
		}
	})
	t.Run("cluster status JPN", func(t *testing.T) {
		g := newFakeGateway(t, wantRequest{"GET", "/api/jpn-v1/cluster/getClusterStatus/1484848", ""},
			reply(200, `{"code":0,"message":"SUCCESS","requestId":"req-9","result":{
				"clusterName":"kafka-a","brokerNodeTotalNumber":3,"brokerNumber":3,"brokerStatus":"running",
				"brokerStatusPerNode":[{"hostname":"b1","status":"running"}],
				"zookeeperTotalNumber":3,"zookeeperNumber":3,"zookeeperStatus":"running",
				"zookeeperStatusPerNode":[],"cmakStatus":"running"}}`))
		got, err := newTestClient(t, g.URL, "JPN").ClusterStatus(context.Background(), "1484848")
		if err != nil {
			t.Fatalf("ClusterStatus: %v", err)
		}
		if got.CMAKStatus != "running" || got.BrokerStatus != "running" || got.ZookeeperStatus != "running" ||
			got.ClusterName != "kafka-a" || got.RequestID != "req-9" ||
			len(got.BrokerStatusPerNode) != 1 || got.BrokerStatusPerNode[0] != (NodeStatus{"b1", "running"}) {
			t.Errorf("ClusterStatus = %+v", got)
		}
	})
}

func TestFailures(t *testing.T) {
	restartNotebook := func(c *Client, ctx context.Context) (vendors.Result, error) {
		return c.RestartNotebook(ctx, "7kHeVWhiRsxdRl0nXz04ri")
	}
	restartCMAK := func(c *Client, ctx context.Context) (vendors.Result, error) {
		return c.RestartCMAK(ctx, "1484848")
	}
	notebookState := func(c *Client, ctx context.Context) (vendors.Result, error) {
		s, err := c.NotebookState(ctx, "7kHeVWhiRsxdRl0nXz04ri")
		return vendors.Result{State: s}, err
	}
	clusterStatus := func(c *Client, ctx context.Context) (vendors.Result, error) {
		_, err := c.ClusterStatus(ctx, "1484848")
		return vendors.Result{}, err
	}
	dfReq := wantRequest{"POST", "/api/v2/notebooks/restart", "7kHeVWhiRsxdRl0nXz04ri"}
	cdssReq := wantRequest{"GET", "/api/v1/cluster/restartCMAKService/1484848", ""}
	const dfOp, cdssOp = "ncp: restart notebook 7kHeVWhiRsxdRl0nXz04ri", "ncp: restart cmak 1484848"
	httpDate := clockStart.Add(30 * time.Second).Format(http.TimeFormat)

	tests := []struct {
		name      string
		call      action
		want      wantRequest
		respond   http.HandlerFunc
		op        string
		transient bool
		status    int
		code      string
		requestID string
		msg       string // contained in Message
		retry     time.Duration
	}{
		{name: "df success false inside 200", call: restartNotebook, want: dfReq,
			respond: reply(200, `{"success":false,"message":"invalid request parameters"}`),
			op:      dfOp, status: 200, msg: "invalid request parameters"},
		{name: "df 403 not exists", call: restartNotebook, want: dfReq,
			respond: reply(403, `{"message":"resource ('7kHeVWhiRsxdRl0nXz04ri') is not allowed or not exists","success":false}`),
			op:      dfOp, status: 403, msg: "is not allowed or not exists"},
		{name: "df 500 unexpected error", call: restartNotebook, want: dfReq,
			respond: reply(500, `{"success":false,"message":"unexpected error"}`),
			op:      dfOp, transient: true, status: 500, msg: "unexpected error"},
		{name: "gateway 401/200", call: restartNotebook, want: dfReq,
			respond: reply(401, `{"error":{"errorCode":"200","message":"Authentication Failed","details":"Invalid authentication information."}}`),
			op:      dfOp, status: 401, code: "200", msg: "Authentication Failed"},
		{name: "gateway 401/210 integer code", call: restartCMAK, want: cdssReq,
			respond: reply(401, `{"error":{"errorCode":210,"message":"Permission Denied"}}`),
			op:      cdssOp, status: 401, code: "210", msg: "Permission Denied"},
		{name: "gateway 429/410 with Retry-After seconds", call: restartCMAK, want: cdssReq,
			respond: reply(429, `{"error":{"errorCode":"410","message":"Throttle Limited"}}`, "Retry-After", "7"),
			op:      cdssOp, transient: true, status: 429, code: "410", msg: "Throttle Limited", retry: 7 * time.Second},
		{name: "gateway 429/420 with Retry-After date", call: restartNotebook, want: dfReq,
			respond: reply(429, `{"error":{"errorCode":"420","message":"Rate Limited"}}`, "Retry-After", httpDate),
			op:      dfOp, transient: true, status: 429, code: "420", msg: "Rate Limited", retry: 30 * time.Second},
		{name: "gateway 503/500", call: restartCMAK, want: cdssReq,
			respond: reply(503, `{"error":{"errorCode":"500","message":"Endpoint Error"}}`),
			op:      cdssOp, transient: true, status: 503, code: "500", msg: "Endpoint Error"},
		{name: "cdss result null", call: restartCMAK, want: cdssReq,
			respond: reply(200, `{"code":0,"message":"SUCCESS","result":null,"requestId":"5b1f-null"}`),
			op:      cdssOp, status: 200, code: "0", requestID: "5b1f-null", msg: "result null"},
		{name: "cdss non-zero code", call: restartCMAK, want: cdssReq,
			respond: reply(200, `{"code":1002,"message":"cluster is changing","result":null,"requestId":"5b1f-1002"}`),
			op:      cdssOp, status: 200, code: "1002", requestID: "5b1f-1002", msg: "cluster is changing"},
		{name: "malformed 200", call: restartNotebook, want: dfReq,
			respond: reply(200, "<html><body>maintenance</body></html>"+strings.Repeat(" ", 4096)),
			op:      dfOp, status: 200, msg: `response body not understood: "<html><body>maintenance</body></html>`},
		{name: "malformed 502 stays transient", call: restartCMAK, want: cdssReq,
			respond: reply(502, "<html>bad gateway</html>"),
			op:      cdssOp, transient: true, status: 502, msg: "not understood"},
		{name: "redirect is not followed", call: restartNotebook, want: dfReq,
			respond: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/elsewhere", http.StatusFound)
			},
			op: dfOp, status: 302, msg: "unexpected redirect"},
		{name: "notebook state missing", call: notebookState,
			want:    wantRequest{"POST", "/api/v2/notebooks/getDetail", "7kHeVWhiRsxdRl0nXz04ri"},
			respond: reply(200, `{"success":true,"id":"7kHeVWhiRsxdRl0nXz04ri"}`),
			op:      "ncp: read notebook 7kHeVWhiRsxdRl0nXz04ri", status: 200, msg: `not understood: no "state"`},
		{name: "cluster status result null", call: clusterStatus,
			want:    wantRequest{"GET", "/api/v1/cluster/getClusterStatus/1484848", ""},
			respond: reply(200, `{"code":0,"message":"SUCCESS","result":null,"requestId":"q"}`),
			op:      "ncp: read cluster status 1484848", status: 200, code: "0", requestID: "q", msg: "result null"},
		{name: "cluster status wrong types", call: clusterStatus,
			want:    wantRequest{"GET", "/api/v1/cluster/getClusterStatus/1484848", ""},
			respond: reply(200, `{"code":0,"result":{"cmakStatus":5},"requestId":"q"}`),
			op:      "ncp: read cluster status 1484848", status: 200, requestID: "q", msg: "result has unexpected types"},
		{name: "echoed keys are redacted", call: restartNotebook, want: dfReq,
			respond: func(w http.ResponseWriter, r *http.Request) {
				reply(400, `{"success":false,"message":"bad key `+r.Header.Get(headerAccessKey)+` / `+testSecretKey+`"}`)(w, r)
			},
			op: dfOp, status: 400, msg: "bad key [REDACTED] / [REDACTED]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGateway(t, tc.want, tc.respond)
			_, err := tc.call(newTestClient(t, g.URL, ""), context.Background())
			assertNoSecret(t, err)
			var ve *vendors.Error
			if !errors.As(err, &ve) {
				t.Fatalf("error = %v; want a *vendors.Error", err)
			}
			if ve.Op != tc.op || ve.Transient != tc.transient || ve.HTTPStatus != tc.status ||
				ve.VendorCode != tc.code || ve.RequestID != tc.requestID {
				t.Errorf("error = %+v; want op %q, transient %v, HTTP %d, code %q, request id %q",
					*ve, tc.op, tc.transient, tc.status, tc.code, tc.requestID)
			}
			if vendors.IsTransient(err) != tc.transient {
				t.Errorf("IsTransient(%v) = %v; want %v", err, !tc.transient, tc.transient)
			}
			if !strings.Contains(ve.Message, tc.msg) {
				t.Errorf("message = %q; want it to contain %q", ve.Message, tc.msg)
			}
			if len(ve.Message) > 300 {
				t.Errorf("message is %d bytes; want the body quoted briefly", len(ve.Message))
			}
			if got, _ := vendors.RetryAfter(err); got > tc.retry || got < tc.retry-time.Second {
				t.Errorf("RetryAfter = %v; want %v", got, tc.retry)
			}
			if n := len(g.seen()); n != 1 {
				t.Errorf("server saw %d requests; want exactly 1", n)
			}
		})
	}
}

func TestSlowResponseIsTransientDeadline(t *testing.T) {
	tests := []struct {
		name    string
		status  int // HTTP status in the error: 0 when no response arrived
		respond http.HandlerFunc
	}{
		{"no headers before the deadline", 0, func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // until the client gives up
		}},
		{"body stalls after the headers", 200, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			_, _ = io.WriteString(w, `{"success":`)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGateway(t, wantRequest{"POST", "/api/v2/aiapps/kill", "cMmEw7HCjVQdcHh3JVOptL"}, tc.respond)
			c := newTestClient(t, g.URL, "")
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			_, err := c.KillAIApp(ctx, "cMmEw7HCjVQdcHh3JVOptL")
			assertNoSecret(t, err)
			var ve *vendors.Error
			if !errors.As(err, &ve) || !ve.Transient || ve.Op != "ncp: kill ai app cMmEw7HCjVQdcHh3JVOptL" {
				t.Fatalf("error = %#v; want a transient *vendors.Error for the kill", err)
			}
			if ve.HTTPStatus != tc.status {
				t.Errorf("HTTPStatus = %d; want %d", ve.HTTPStatus, tc.status)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("errors.Is(%v, context.DeadlineExceeded) = false", err)
			}
			if strings.Contains(err.Error(), g.URL) {
				t.Errorf("error %q contains the URL", err)
			}
		})
	}
}

func TestConnectionDroppedIsTransient(t *testing.T) {
	hangUp := func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	}
	tests := []struct {
		name string
		want wantRequest
		call action
	}{
		{"data forest post", wantRequest{"POST", "/api/v2/notebooks/restart", "7kHeVWhiRsxdRl0nXz04ri"},
			func(c *Client, ctx context.Context) (vendors.Result, error) {
				return c.RestartNotebook(ctx, "7kHeVWhiRsxdRl0nXz04ri")
			}},
		{"cdss get", wantRequest{"GET", "/api/v1/cluster/restartKafkaService/1484848", ""},
			func(c *Client, ctx context.Context) (vendors.Result, error) { return c.RestartKafka(ctx, "1484848") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGateway(t, tc.want, hangUp)
			_, err := tc.call(newTestClient(t, g.URL, ""), context.Background())
			assertNoSecret(t, err)
			var ve *vendors.Error
			if !errors.As(err, &ve) || !ve.Transient || ve.HTTPStatus != 0 {
				t.Fatalf("error = %v; want a transient *vendors.Error without HTTP status", err)
			}
			if strings.Contains(err.Error(), g.URL) {
				t.Errorf("error %q contains the URL", err)
			}
		})
	}
}

func TestInvalidIDsAreNotSent(t *testing.T) {
	g := newFakeGateway(t, wantRequest{}, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request sent for an invalid id: %s %s", r.Method, r.RequestURI)
	})
	c := newTestClient(t, g.URL, "")
	ctx := context.Background()
	for _, id := range []string{"", ".", "..", "12/../34", "a b", "x?y=1", "%2F", "ü", "id\n"} {
		_, err1 := c.RestartCMAK(ctx, id)
		_, err2 := c.RestartNotebook(ctx, id)
		_, err3 := c.ClusterStatus(ctx, id)
		for _, err := range []error{err1, err2, err3} {
			if !errors.Is(err, ErrInvalidID) || vendors.IsTransient(err) {
				t.Errorf("id %q: error = %v; want permanent ErrInvalidID", id, err)
			}
		}
	}
}

func TestNew(t *testing.T) {
	ak, sk := secret.New(testAccessKey), secret.New(testSecretKey)
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" for success
	}{
		{"defaults", Config{AccessKey: ak, SecretKey: sk}, ""},
		{"regions are case-insensitive", Config{AccessKey: ak, SecretKey: sk, Region: "Sgn"}, ""},
		{"http endpoints for the emulator", Config{AccessKey: ak, SecretKey: sk, DataForestURL: "http://127.0.0.1:8080/", CDSSURL: "http://127.0.0.1:8080"}, ""},
		{"no access key", Config{SecretKey: sk}, "ncp: access key is empty"},
		{"no secret key", Config{AccessKey: ak}, "ncp: secret key is empty"},
		{"unknown region", Config{AccessKey: ak, SecretKey: sk, Region: "US"}, `ncp: unknown region "US"`},
		{"not http", Config{AccessKey: ak, SecretKey: sk, DataForestURL: "ftp://df.example"}, "ncp: data forest url:"},
		{"no host", Config{AccessKey: ak, SecretKey: sk, CDSSURL: "https://"}, "ncp: cdss url:"},
		{"relative", Config{AccessKey: ak, SecretKey: sk, CDSSURL: "clouddatastreamingservice.apigw.ntruss.com"}, "ncp: cdss url:"},
		{"query", Config{AccessKey: ak, SecretKey: sk, CDSSURL: "https://h/?a=b"}, "ncp: cdss url:"},
		{"user info", Config{AccessKey: ak, SecretKey: sk, CDSSURL: "https://user:" + testSecretKey + "@h"}, "ncp: cdss url: user info is not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg)
			assertNoSecret(t, err)
			if tc.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("New = %v, %v; want a client", c, err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("New error = %v; want prefix %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	shared := &http.Client{Timeout: time.Minute}
	c, err := New(Config{AccessKey: secret.New(testAccessKey), SecretKey: secret.New(testSecretKey), HTTPClient: shared})
	if err != nil {
		t.Fatal(err)
	}
	if c.dataForestURL != DefaultDataForestURL || c.cdssURL != DefaultCDSSURL || c.cdssPrefix != "/api/v1" {
		t.Errorf("defaults = %q, %q, %q; want %q, %q, /api/v1", c.dataForestURL, c.cdssURL, c.cdssPrefix, DefaultDataForestURL, DefaultCDSSURL)
	}
	if c.hc.Transport != shared.Transport || c.hc.Timeout != shared.Timeout {
		t.Errorf("the client does not share the configured http.Client's transport and timeout")
	}
	if shared.CheckRedirect != nil {
		t.Errorf("New modified the caller's http.Client")
	}
	if c.now == nil {
		t.Errorf("Now has no default")
	}
}

// The Data Forest body is the docs' example exactly: compact, one field.
func TestIDBody(t *testing.T) {
	got := string(idBody("7kHeVWhiRsxdRl0nXz04ri"))
	if got != `{"id":"7kHeVWhiRsxdRl0nXz04ri"}` {
		t.Errorf("idBody = %s", got)
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(got), &v); err != nil || len(v) != 1 {
		t.Errorf("idBody is not a one-field object: %v", err)
	}
}
