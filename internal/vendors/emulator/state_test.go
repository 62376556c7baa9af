package emulator

import (
	"testing"
	"time"
)

func TestModelArtsStateMachine(t *testing.T) {
	e := newEnv(t)
	id := "6fa459ea-ee8a-3ca4-894e-db77e160355e"
	de := "/v1/" + e.creds.OTCProjectID + "/demanager/instances/" + id
	nb := "/v1/" + e.creds.OTCProjectID + "/notebooks/" + id
	action := func(a string) resp { return e.otc("POST", de+"/action", map[string]string{"action": a}) }
	status := func() string { return e.otc("GET", de, nil).body["status"].(string) }

	steps := []struct {
		name       string
		do         func() resp
		advance    time.Duration
		wantStatus int
		wantCode   string
		wantState  string // GET after the step
	}{
		{"stop on STOPPED", func() resp { return action("stop") }, 0, 400, "ModelArts.6307", "STOPPED"},
		{"start", func() resp { return action("start") }, 0, 200, "", "STARTING"},
		{"start while STARTING", func() resp { return action("start") }, 0, 400, "ModelArts.6306", "STARTING"},
		{"stop while STARTING", func() resp { return action("stop") }, testDelay - time.Nanosecond, 400, "ModelArts.6306", "STARTING"},
		{"read at TransitionDelay", func() resp { return resp{status: 200} }, time.Nanosecond, 200, "", "RUNNING"},
		{"start on RUNNING", func() resp { return action("start") }, 0, 400, "ModelArts.6305", "RUNNING"},
		{"restart", func() resp { return action("restart") }, 0, 200, "", "RESTARTING"},
		{"restart done", func() resp { return resp{status: 200} }, testDelay, 200, "", "RUNNING"},
		{"stop via notebooks API", func() resp { return e.otc("POST", nb+"/stop", nil) }, 0, 200, "", "STOPPING"},
		{"start while STOPPING", func() resp { return e.otc("POST", nb+"/start", nil) }, 0, 400, "ModelArts.6308", "STOPPING"},
		{"stopped", func() resp { return resp{status: 200} }, testDelay, 200, "", "STOPPED"},
		{"stop on STOPPED via notebooks API", func() resp { return e.otc("POST", nb+"/stop", nil) }, 0, 400, "ModelArts.6307", "STOPPED"},
		{"restart on STOPPED", func() resp { return action("restart") }, 0, 400, "ModelArts.6327", "STOPPED"},
		{"unknown action", func() resp { return action("dance") }, 0, 400, "ModelArts.0104", "STOPPED"},
	}
	for _, s := range steps {
		r := s.do()
		e.clk.Advance(s.advance)
		if r.status != s.wantStatus {
			t.Fatalf("%s: status = %d %s; want %d", s.name, r.status, r.raw, s.wantStatus)
		}
		if s.wantCode != "" && r.body["error_code"] != s.wantCode {
			t.Fatalf("%s: error_code = %v (%s); want %s", s.name, r.body["error_code"], r.raw, s.wantCode)
		}
		if got := status(); got != s.wantState {
			t.Fatalf("%s: status after = %s; want %s", s.name, got, s.wantState)
		}
	}
	if got := e.c.State("modelarts.notebook.start", id); got != "STOPPED" {
		t.Errorf("State = %s; want STOPPED", got)
	}
}

func TestModelArtsDemanagerResponseShape(t *testing.T) {
	e := newEnv(t)
	r := e.otc("POST", "/v1/"+e.creds.OTCProjectID+"/demanager/instances/nb/action", map[string]string{"action": "start"})
	if r.body["current_status"] != "STARTING" || r.body["previous_state"] != "STOPPED" {
		t.Errorf("start = %s; want current_status STARTING, previous_state STOPPED", r.raw)
	}
	r = e.otc("POST", "/v1/"+e.creds.OTCProjectID+"/demanager/instances/nb/action", map[string]string{"action": "start"})
	if r.body["error_message"] == nil {
		t.Errorf("demanager error = %s; want the documented error_message field", r.raw)
	}
}

func TestSetStateMakesNotebookFailToStart(t *testing.T) {
	e := newEnv(t)
	e.c.SetState(KindOTCNotebook, "nb-f", "START_FAILED")
	nb := "/v1/" + e.creds.OTCProjectID + "/notebooks/nb-f"
	if r := e.otc("POST", nb+"/start", nil); r.status != 200 || r.body["status"] != "STARTING" {
		t.Fatalf("start = %d %s; want 200 STARTING", r.status, r.raw)
	}
	e.clk.Advance(testDelay)
	if got := e.c.State("modelarts.notebook.start", "nb-f"); got != "START_FAILED" {
		t.Fatalf("state after delay = %s; want START_FAILED", got)
	}
	e.c.SetState(KindOTCNotebook, "nb-f", "STOPPED") // repaired
	e.otc("POST", nb+"/start", nil)
	e.clk.Advance(testDelay)
	if got := e.c.State("modelarts.notebook.start", "nb-f"); got != "RUNNING" {
		t.Fatalf("state after repair = %s; want RUNNING", got)
	}
	e.c.SetState(KindOTCNotebook, "nb-s", "STARTING") // stuck: no transition
	e.clk.Advance(time.Hour)
	if got := e.c.State("modelarts.notebook.start", "nb-s"); got != "STARTING" {
		t.Fatalf("stuck state = %s; want STARTING", got)
	}
}

func TestSCNetStateMachine(t *testing.T) {
	e := newEnv(t)
	tok := e.scnetTokens()["11112"]
	const id = "1821067171420946434"
	detail := func() string {
		r := e.scnet("GET", "/ai/openapi/v2/notebook/detail?notebookId="+id, tok, nil)
		return field(r.body, "data", "notebookStatus").(string)
	}
	listed := func() string {
		r := e.scnet("GET", "/ai/openapi/v2/notebook/list?notebookName=&notebookStatus=&size=20&page=1", tok, nil)
		for _, rec := range field(r.body, "data", "records").([]any) {
			if m := rec.(map[string]any); m["id"] == id {
				return m["notebookStatus"].(string)
			}
		}
		return "(absent)"
	}
	if got := detail(); got != "Terminated" {
		t.Fatalf("new notebook = %s; want Terminated", got)
	}
	steps := []struct {
		name      string
		path      string
		body      any
		advance   time.Duration
		wantState string
	}{
		{"start", "/ac/openapi/v2/notebook/actions/start", map[string]string{"notebookId": id}, 0, "Restarting"},
		{"start again while booting", "/ac/openapi/v2/notebook/actions/start", map[string]string{"notebookId": id}, testDelay, "Running"},
		{"start on Running succeeds", "/ac/openapi/v2/notebook/actions/start", map[string]string{"notebookId": id}, 0, "Running"},
		{"stop", "/ai/openapi/v2/notebook/actions/stop", map[string]any{"notebookId": id, "saveEnv": false}, 0, "Shutting"},
		{"stopped", "", nil, testDelay, "Terminated"},
		{"stop on Terminated succeeds", "/ai/openapi/v2/notebook/actions/stop", map[string]any{"notebookId": id, "saveEnv": false}, 0, "Terminated"},
	}
	for _, s := range steps {
		if s.path != "" {
			r := e.scnet("POST", s.path, tok, s.body)
			if r.status != 200 || r.body["code"] != "0" || r.body["data"] != true {
				t.Fatalf("%s = %d %s; want 200 code \"0\" data true", s.name, r.status, r.raw)
			}
		}
		e.clk.Advance(s.advance)
		if got := detail(); got != s.wantState {
			t.Fatalf("%s: detail = %s; want %s", s.name, got, s.wantState)
		}
		if got := listed(); got != s.wantState {
			t.Fatalf("%s: list = %s; want %s", s.name, got, s.wantState)
		}
	}
	if r := e.scnet("POST", "/ac/openapi/v2/notebook/actions/start", tok, map[string]string{}); r.body["code"] != "10003" {
		t.Errorf("start without notebookId = %s; want code 10003", r.raw)
	}
}

func TestDataForestStates(t *testing.T) {
	e := newEnv(t)
	const nb, app, ai = "7kHeVWhiRsxdRl0nXz04ri", "appAAAAAAAAAAAAAAAAAAA", "cMmEw7HCjVQdcHh3JVOptL"
	body := func(id string) map[string]string { return map[string]string{"id": id} }

	if r := e.ncp("POST", "/api/v2/notebooks/restart", body(nb)); r.status != 200 || r.body["success"] != true || r.body["id"] != nb {
		t.Fatalf("restart = %d %s; want success and id", r.status, r.raw)
	}
	if r := e.ncp("POST", "/api/v2/notebooks/getDetail", body(nb)); r.body["state"] != "ACCEPTED" {
		t.Fatalf("notebook during restart = %s; want ACCEPTED", r.raw)
	}
	e.clk.Advance(testDelay)
	if r := e.ncp("POST", "/api/v2/notebooks/getDetail", body(nb)); r.body["state"] != "RUNNING" {
		t.Fatalf("notebook after restart = %s; want RUNNING", r.raw)
	}
	if r := e.ncp("POST", "/api/v2/notebooks/restart", map[string]string{}); r.status != 400 || r.body["message"] != "invalid request parameters" {
		t.Errorf("restart without id = %d %s; want 400 invalid request parameters", r.status, r.raw)
	}

	if r := e.ncp("POST", "/api/v2/aiapps/kill", body(ai)); r.status != 200 || r.body["message"] != "success" {
		t.Fatalf("kill = %d %s; want 200 success", r.status, r.raw)
	}
	r := e.ncp("POST", "/api/v2/aiapps/getDetail", body(ai))
	if got := field(r.body, "containers", "worker-0", "status"); got != "KILLED" {
		t.Errorf("aiapp containers.worker-0.status = %v; want KILLED", got)
	}
	r = e.ncp("POST", "/api/v2/aiapps/getList", map[string]any{"search": map[string]string{"accountId": "a"}})
	if c := r.body["contents"].([]any); len(c) != 1 || c[0].(map[string]any)["state"] != "KILLED" || c[0].(map[string]any)["finalStatus"] != "KILLED" {
		t.Errorf("aiapp getList = %s; want one KILLED/KILLED", r.raw)
	}
	if r := e.ncp("POST", "/api/v2/aiapps/kill", body(ai)); r.status != 400 {
		t.Errorf("second kill = %d %s; want 400", r.status, r.raw)
	}

	if got := e.c.State("dataforest.app.stop", app); got != "RUNNING" {
		t.Fatalf("new app = %s; want RUNNING", got)
	}
	e.ncp("POST", "/api/v2/apps/stop", body(app))
	if got := e.c.State("dataforest.app.stop", app); got != "STOPPING" {
		t.Errorf("app after stop = %s; want STOPPING", got)
	}
	e.clk.Advance(testDelay)
	if r := e.ncp("POST", "/api/v2/apps/getDetail", body(app)); r.body["state"] != "STOPPED" {
		t.Errorf("app getDetail = %s; want STOPPED", r.raw)
	}
	if r := e.ncp("POST", "/api/v2/apps/stop", body(app)); r.status != 200 {
		t.Errorf("stop on STOPPED = %d %s; want 200", r.status, r.raw)
	}
	e.ncp("POST", "/api/v2/apps/start", body(app))
	e.clk.Advance(testDelay)
	if got := e.c.State("dataforest.app.start", app); got != "RUNNING" {
		t.Errorf("app after start = %s; want RUNNING", got)
	}
}

func TestCDSSRestarts(t *testing.T) {
	e := newEnv(t)
	const no = "1484848"
	status := func() map[string]any {
		r := e.ncp("GET", "/api/v1/cluster/getClusterStatus/"+no, nil)
		res, _ := r.body["result"].(map[string]any)
		return res
	}
	tests := []struct {
		op     string
		orange []string
	}{
		{"restartCMAKService", []string{"cmakStatus"}},
		{"restartKafkaService", []string{"brokerStatus"}},
		{"restartAllServices", []string{"cmakStatus", "brokerStatus", "zookeeperStatus"}},
	}
	for _, tc := range tests {
		t.Run(tc.op, func(t *testing.T) {
			r := e.ncp("GET", "/api/jpn-v1/cluster/"+tc.op+"/"+no, nil)
			if r.body["code"] != float64(0) || r.body["result"] != true || r.body["message"] != "SUCCESS" {
				t.Fatalf("%s = %s; want code 0 result true", tc.op, r.raw)
			}
			if id, _ := r.body["requestId"].(string); len(id) != 36 {
				t.Errorf("requestId = %q; want a uuid", id)
			}
			st := status()
			for _, f := range []string{"cmakStatus", "brokerStatus", "zookeeperStatus"} {
				want := "green"
				for _, o := range tc.orange {
					if o == f {
						want = "orange"
					}
				}
				if st[f] != want {
					t.Errorf("%s during %s = %v; want %s", f, tc.op, st[f], want)
				}
			}
			e.clk.Advance(testDelay)
			st = status()
			if st["cmakStatus"] != "green" || st["brokerStatus"] != "green" || st["zookeeperStatus"] != "green" {
				t.Errorf("after delay = %v; want all green", st)
			}
		})
	}
}
