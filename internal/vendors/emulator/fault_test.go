package emulator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"sync"
	"testing"
	"time"
)

func TestFaultKinds(t *testing.T) {
	e := newEnv(t)
	de := func(id string) string {
		return "/v1/" + e.creds.OTCProjectID + "/demanager/instances/" + id + "/action"
	}
	tests := []struct {
		name       string
		fault      Fault
		do         func() resp
		wantStatus int
		check      func(r resp) bool
	}{
		{"ncp unavailable", Fault{Kind: FaultUnavailable, Action: "cdss.cmak.restart", Times: 1},
			func() resp { return e.ncp("GET", "/api/v1/cluster/restartCMAKService/1", nil) }, 503,
			func(r resp) bool { return field(r.body, "error", "errorCode") == "500" }},
		{"otc unavailable", Fault{Kind: FaultUnavailable, Target: "u1", Times: 1},
			func() resp { return e.otc("POST", de("u1"), map[string]string{"action": "start"}) }, 503,
			func(r resp) bool { return r.body["error_code"] != nil && r.header.Get("X-Request-Id") != "" }},
		{"otc throttle", Fault{Kind: FaultThrottle, Target: "t1", Times: 1, RetryAfter: 1500 * time.Millisecond},
			func() resp { return e.otc("POST", de("t1"), map[string]string{"action": "start"}) }, 429,
			func(r resp) bool { return r.body["error_code"] == "APIG.0308" && r.header.Get("Retry-After") == "2" }},
		{"ncp throttle default Retry-After", Fault{Kind: FaultThrottle, Action: "dataforest.aiapp.kill", Times: 1},
			func() resp { return e.ncp("POST", "/api/v2/aiapps/kill", map[string]string{"id": "a"}) }, 429,
			func(r resp) bool {
				return field(r.body, "error", "errorCode") == "410" && r.header.Get("Retry-After") == "1"
			}},
		{"df reject", Fault{Kind: FaultReject, Target: "gone", Times: 1},
			func() resp { return e.ncp("POST", "/api/v2/notebooks/restart", map[string]string{"id": "gone"}) }, 403,
			func(r resp) bool {
				return r.body["success"] == false && r.body["message"] == "resource ('gone') is not allowed or not exists"
			}},
		{"cdss reject", Fault{Kind: FaultReject, Action: "cdss.cluster.restart", Times: 1},
			func() resp { return e.ncp("GET", "/api/v1/cluster/restartAllServices/7", nil) }, 200,
			func(r resp) bool { v, ok := r.body["result"]; return ok && v == nil && r.body["requestId"] != nil }},
		{"scnet reject", Fault{Kind: FaultReject, Action: "scnet.notebook.start", Times: 1},
			func() resp {
				return e.scnet("POST", "/ac/openapi/v2/notebook/actions/start", e.creds.SCNetToken, map[string]string{"notebookId": "9"})
			}, 200,
			func(r resp) bool { return r.body["code"] == "10004" }},
		{"otc reject", Fault{Kind: FaultReject, Action: "modelarts.notebook.start", Target: "r1", Times: 1},
			func() resp { return e.otc("POST", de("r1"), map[string]string{"action": "start"}) }, 400,
			func(r resp) bool { return r.body["error_code"] == "ModelArts.6309" }},
		{"otc reject notebooks API", Fault{Kind: FaultReject, Target: "r2", Times: 1},
			func() resp { return e.otc("POST", "/v1/"+e.creds.OTCProjectID+"/notebooks/r2/start", nil) }, 404,
			func(r resp) bool { return r.body["error_code"] == "ModelArts.6309" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.c.Inject(tc.fault)
			r := tc.do()
			if r.status != tc.wantStatus || !tc.check(r) {
				t.Fatalf("faulted = %d %v %s; want %d with the vendor's envelope", r.status, r.header, r.raw, tc.wantStatus)
			}
			// Times 1: the next matching request goes through.
			if r := tc.do(); r.status == tc.wantStatus && tc.check(r) {
				t.Fatalf("second request = %d %s; want the fault used up", r.status, r.raw)
			}
		})
	}
}

func TestFaultRejectLeavesStateAlone(t *testing.T) {
	e := newEnv(t)
	e.c.Inject(Fault{Kind: FaultReject, Target: "x", Times: 1})
	e.otc("POST", "/v1/"+e.creds.OTCProjectID+"/notebooks/x/start", nil)
	if got := e.c.State("modelarts.notebook.start", "x"); got != "STOPPED" {
		t.Errorf("state after a rejected start = %s; want STOPPED", got)
	}
}

func TestFaultTimesCountsDown(t *testing.T) {
	e := newEnv(t)
	e.c.Inject(Fault{Kind: FaultUnavailable, Action: "dataforest.app.start", Times: 3})
	var got []int
	for range 5 {
		got = append(got, e.ncp("POST", "/api/v2/apps/start", map[string]string{"id": "a"}).status)
	}
	want := []int{503, 503, 503, 200, 200}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statuses = %v; want %v", got, want)
	}
	// another action is never hit
	e.c.Inject(Fault{Kind: FaultUnavailable, Action: "dataforest.app.stop"})
	if r := e.ncp("POST", "/api/v2/apps/start", map[string]string{"id": "a"}); r.status != 200 {
		t.Errorf("start with a stop fault = %d; want 200", r.status)
	}
	for range 3 { // Times 0 = forever
		if r := e.ncp("POST", "/api/v2/apps/stop", map[string]string{"id": "a"}); r.status != 503 {
			t.Fatalf("stop with a permanent fault = %d; want 503", r.status)
		}
	}
}

func TestFaultDelay(t *testing.T) {
	e := newEnv(t)
	const delay = 150 * time.Millisecond
	e.c.Inject(Fault{Kind: FaultDelay, Target: "slow", Delay: delay})
	p := "/v1/" + e.creds.OTCProjectID + "/demanager/instances/slow"

	start := time.Now()
	r := e.otc("GET", p, nil)
	if took := time.Since(start); r.status != 200 || took < delay {
		t.Fatalf("delayed GET = %d after %v; want 200 after at least %v", r.status, took, delay)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	req := e.otcRequest("GET", p, nil, e.creds.OTCSecretKey).WithContext(ctx)
	start = time.Now()
	_, err := e.srv.Client().Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delayed GET with a 20ms deadline: err = %v; want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took >= delay {
		t.Errorf("client waited %v; want the ctx to cut the delay short", took)
	}
	// the server notices the client going away and logs no answer
	deadline := time.Now().Add(2 * time.Second)
	for {
		reqs := e.c.Requests()
		last := reqs[len(reqs)-1]
		if len(reqs) == 2 && last.Status == 0 && last.Fault == FaultDelay {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("request log = %+v; want a second entry with status 0 and fault delay", reqs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFaultDrop(t *testing.T) {
	e := newEnv(t)
	e.c.Inject(Fault{Kind: FaultDrop, Action: "scnet.notebook.stop", Times: 1})
	req := e.newRequest("POST", "/ai/openapi/v2/notebook/actions/stop", mustJSON(t, map[string]any{"notebookId": "1", "saveEnv": false}))
	req.Header.Set("token", e.creds.SCNetToken)
	res, err := e.srv.Client().Do(req)
	if err == nil {
		res.Body.Close()
		t.Fatalf("dropped request got HTTP %d; want a client-side error", res.StatusCode)
	}
	last := e.c.Requests()[len(e.c.Requests())-1]
	if last.Fault != FaultDrop || last.Status != 0 || last.Action != "scnet.notebook.stop" {
		t.Errorf("log entry = %+v; want the drop with status 0", last)
	}
	// the connection pool recovers: the next request succeeds
	if r := e.scnet("POST", "/ai/openapi/v2/notebook/actions/stop", e.creds.SCNetToken, map[string]any{"notebookId": "1"}); r.status != 200 {
		t.Errorf("request after a drop = %d %s; want 200", r.status, r.raw)
	}
}

func TestRequestLog(t *testing.T) {
	e := newEnv(t)
	e.c.Inject(Fault{Kind: FaultThrottle, Action: "modelarts.notebook.start", Times: 1})
	de := "/v1/" + e.creds.OTCProjectID + "/demanager/instances/nb-9"
	e.otc("POST", de+"/action", map[string]string{"action": "start"})
	e.otc("POST", de+"/action", map[string]string{"action": "start"})
	e.otc("GET", de, nil)
	e.send(e.ncpRequest("GET", "/api/v1/cluster/restartCMAKService/42", nil, "bad", 0))
	e.ncp("GET", "/api/v1/cluster/restartCMAKService/42", nil)

	want := []Request{
		{Vendor: "otc", Action: "modelarts.notebook.start", Target: "nb-9", Method: "POST", Path: de + "/action", Status: 429, VendorCode: "APIG.0308", Fault: FaultThrottle},
		{Vendor: "otc", Action: "modelarts.notebook.start", Target: "nb-9", Method: "POST", Path: de + "/action", Status: 200},
		{Vendor: "otc", Action: "modelarts.notebook.get", Target: "nb-9", Method: "GET", Path: de, Status: 200},
		{Vendor: "ncp", Action: "cdss.cmak.restart", Target: "42", Method: "GET", Path: "/api/v1/cluster/restartCMAKService/42", Status: 401, VendorCode: "200"},
		{Vendor: "ncp", Action: "cdss.cmak.restart", Target: "42", Method: "GET", Path: "/api/v1/cluster/restartCMAKService/42", Status: 200, VendorCode: "0"},
	}
	got := e.c.Requests()
	if len(got) != len(want) {
		t.Fatalf("log has %d entries: %+v; want %d", len(got), got, len(want))
	}
	for i := range want {
		g := got[i]
		if !g.Time.Equal(e.clk.Now()) {
			t.Errorf("entry %d time = %v; want the emulator clock %v", i, g.Time, e.clk.Now())
		}
		g.Time = time.Time{}
		if g != want[i] {
			t.Errorf("entry %d = %+v; want %+v", i, g, want[i])
		}
	}
}

func TestConcurrentRequests(t *testing.T) {
	e := newEnv(t)
	tok := e.scnetTokens()["11116"]
	const workers, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("nb-%d", (w+i)%4) // shared targets
				var status int
				switch i % 4 {
				case 0:
					status = sendStatus(e, e.otcRequest("POST", "/v1/"+e.creds.OTCProjectID+"/notebooks/"+id+"/start", nil, e.creds.OTCSecretKey))
					if status == 400 { // 6305/6306: another worker got there first
						status = 200
					}
				case 1:
					status = sendStatus(e, e.ncpRequest("POST", "/api/v2/notebooks/restart", mustJSON(t, map[string]string{"id": id}), e.creds.NCPSecretKey, 0))
				case 2:
					req := e.newRequest("POST", "/ac/openapi/v2/notebook/actions/start", mustJSON(t, map[string]string{"notebookId": id}))
					req.Header.Set("token", tok)
					status = sendStatus(e, req)
				case 3:
					e.c.SetState(KindCDSSCMAK, id, "green")
					_ = e.c.State("cdss.cmak.restart", id)
					status = sendStatus(e, e.ncpRequest("GET", "/api/v1/cluster/getClusterStatus/"+fmt.Sprint(w), nil, e.creds.NCPSecretKey, 0))
				}
				if status != 200 {
					errs <- fmt.Errorf("worker %d request %d: status %d", w, i, status)
				}
				if i%5 == 0 {
					e.c.Inject(Fault{Kind: FaultDelay, Target: "nobody", Delay: time.Millisecond, Times: 1})
					e.clk.Advance(time.Second)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(e.c.Requests()); n != workers*each+1 {
		t.Errorf("log has %d entries; want %d", n, workers*each+1)
	}
}

func sendStatus(e *env, req *http.Request) int {
	res, err := e.srv.Client().Do(req)
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	return res.StatusCode
}

func TestStartServesOnLoopbackWithKeepAlive(t *testing.T) {
	c := New(Options{TransitionDelay: -1})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Start(); err == nil {
		t.Error("second Start = nil; want an error")
	}
	creds := c.Credentials()
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var conns int
	var mu sync.Mutex
	for i := range 3 {
		req, _ := http.NewRequest("GET", c.URL()+"/ac/openapi/v2/tokens/state", nil)
		req = req.WithContext(withConnCounter(req.Context(), &mu, &conns))
		req.Header.Set("token", creds.SCNetToken)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = res.Body.Read(make([]byte, 512))
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("request %d = %d; want 200", i, res.StatusCode)
		}
	}
	if conns != 1 {
		t.Errorf("3 sequential requests used %d connections; want 1 (keep-alive)", conns)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(c.URL()); err == nil {
		t.Error("server still answers after Close")
	}
}

// withConnCounter counts the new connections a request opens.
func withConnCounter(ctx context.Context, mu *sync.Mutex, n *int) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if !info.Reused {
				mu.Lock()
				*n++
				mu.Unlock()
			}
		},
	})
}
