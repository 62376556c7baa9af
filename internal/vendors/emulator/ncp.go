package emulator

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ncpGatewayError is the NCP API gateway's error body (vendors.md §1.4).
func ncpGatewayError(status int, code, msg string) reply {
	return jsonReply(status, code, map[string]any{"error": map[string]string{"errorCode": code, "message": msg}})
}

func authNCP(c *Cloud, k *call) *reply {
	if err := verifyNCP(k.r, k.now, c.creds.NCPAccessKey, c.creds.NCPSecretKey); err != nil {
		c.log.Debug().Str("reason", err.Error()).Msg("ncp authentication failed")
		rep := ncpGatewayError(http.StatusUnauthorized, "200", "Authentication Failed")
		return &rep
	}
	return nil
}

// ---- Data Forest (vendors.md §2) ----

func dfError(status int, msg string) reply {
	return jsonReply(status, "", map[string]any{"success": false, "message": msg})
}

func dfNotFound() reply { return dfError(http.StatusNotFound, "no such element") }

func dfInvalid() reply { return dfError(http.StatusBadRequest, "invalid request parameters") }

func dfReject(_ *Cloud, k *call) reply {
	return dfError(http.StatusForbidden, fmt.Sprintf("resource ('%s') is not allowed or not exists", k.target))
}

type dfOp struct {
	action string
	handle func(c *Cloud, k *call) reply
}

var dfOps = map[string]dfOp{
	"notebooks/restart":   {"dataforest.notebook.restart", dfNotebookRestart},
	"notebooks/getDetail": {"dataforest.notebook.getDetail", dfNotebookDetail},
	"notebooks/getList":   {"dataforest.notebook.getList", dfNotebookList},
	"aiapps/kill":         {"dataforest.aiapp.kill", dfAIAppKill},
	"aiapps/getDetail":    {"dataforest.aiapp.getDetail", dfAIAppDetail},
	"aiapps/getList":      {"dataforest.aiapp.getList", dfAIAppList},
	"apps/start":          {"dataforest.app.start", dfAppStart},
	"apps/stop":           {"dataforest.app.stop", dfAppStop},
	"apps/getDetail":      {"dataforest.app.getDetail", dfAppDetail},
	"apps/getList":        {"dataforest.app.getList", dfAppList},
}

func routeDF(k *call) (*route, reply) {
	op, ok := dfOps[strings.TrimPrefix(k.r.URL.Path, "/api/v2/")]
	if !ok || k.r.Method != http.MethodPost {
		return nil, dfNotFound()
	}
	var body struct {
		ID string `json:"id"`
	}
	_ = decodeJSON(k.body, &body) // a bad body is the handler's 400
	return &route{vendor: VendorNCP, action: op.action, target: body.ID, auth: authNCP, handle: op.handle, reject: dfReject}, reply{}
}

// dfID returns the body's id, or false when the body is not {"id": "…"}.
func dfID(k *call) (string, bool) {
	var body struct {
		ID string `json:"id"`
	}
	if err := decodeJSON(k.body, &body); err != nil || body.ID == "" {
		return "", false
	}
	return body.ID, true
}

func dfTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

func dfNotebookRestart(c *Cloud, k *call) reply {
	id, ok := dfID(k)
	if !ok {
		return dfInvalid()
	}
	r := c.resLocked(KindDFNotebook, id, k.now)
	r.begin(k.now, c.opts.TransitionDelay, "ACCEPTED", "RUNNING", true)
	return jsonReply(http.StatusOK, "", map[string]any{"success": true, "id": id})
}

func dfNotebookView(r *resource) map[string]any {
	return map[string]any{
		"id": r.id, "name": "nb-" + r.id, "typeName": "JupyterLab", "state": r.state,
		"createdAt": dfTime(r.created), "serverDesc": "vCPU 4EA, Memory 16GB",
		"subnetName": "emu-subnet", "subnetNo": 1, "vpcName": "emu-vpc", "vpcNo": 1,
	}
}

func dfNotebookDetail(c *Cloud, k *call) reply {
	id, ok := dfID(k)
	if !ok {
		return dfInvalid()
	}
	v := dfNotebookView(c.resLocked(KindDFNotebook, id, k.now))
	v["success"] = true
	v["domain"] = "nb-" + id + ".emulated.invalid"
	v["acgName"], v["acgNo"] = "emu-acg", 1
	v["additionalStorage"] = map[string]any{"storageGB": 100, "storageType": "SSD"}
	v["loginKeyName"], v["sshAccount"] = "emu-key", "forest"
	v["userConfigurations"] = []any{}
	return jsonReply(http.StatusOK, "", v)
}

func dfNotebookList(c *Cloud, k *call) reply {
	contents := []any{}
	for _, r := range c.listLocked(KindDFNotebook, k.now) {
		contents = append(contents, dfNotebookView(r))
	}
	return jsonReply(http.StatusOK, "", map[string]any{"success": true, "total": len(contents), "contents": contents})
}

// dfAIAppFinal is the YARN-like finalStatus of an AI app state.
func dfAIAppFinal(state string) string {
	switch state {
	case "KILLED":
		return "KILLED"
	case "FINISHED":
		return "SUCCEEDED"
	case "FAILED":
		return "FAILED"
	}
	return "UNDEFINED"
}

func dfAIAppKill(c *Cloud, k *call) reply {
	id, ok := dfID(k)
	if !ok {
		return dfInvalid()
	}
	r := c.resLocked(KindDFAIApp, id, k.now)
	switch r.state {
	case "KILLED", "FINISHED", "FAILED":
		// Not documented; a finished YARN application cannot be killed,
		// and "invalid request parameters" is DF's documented 400.
		return dfInvalid()
	}
	r.set(k.now, "KILLED")
	return jsonReply(http.StatusOK, "", map[string]any{"success": true, "message": "success", "id": id})
}

func dfAIAppView(r *resource) map[string]any {
	v := map[string]any{
		"id": r.id, "appId": "application_1700000000000_" + r.id, "name": "aiapp-" + r.id,
		"accountName": "emu", "workspaceName": "emu-ws", "queueName": "gpu", "disabled": false,
		"state": r.state, "finalStatus": dfAIAppFinal(r.state),
		"startedAt": dfTime(r.created), "modifiedAt": dfTime(r.updated), "finishedAt": nil,
	}
	if r.state != "RUNNING" {
		v["finishedAt"] = dfTime(r.updated)
	}
	return v
}

func dfAIAppDetail(c *Cloud, k *call) reply {
	id, ok := dfID(k)
	if !ok {
		return dfInvalid()
	}
	r := c.resLocked(KindDFAIApp, id, k.now)
	v := dfAIAppView(r)
	v["success"] = true
	v["containers"] = map[string]any{
		"worker-0": map[string]any{
			"component": "worker", "containerId": "container_" + id + "_01", "cpuCount": 4,
			"createdAt": dfTime(r.created), "dockerImage": "emulated/aiapp:latest",
			"logUrl": "", "memoryMb": 8192, "status": r.state,
		},
	}
	return jsonReply(http.StatusOK, "", v)
}

func dfAIAppList(c *Cloud, k *call) reply {
	contents := []any{}
	for _, r := range c.listLocked(KindDFAIApp, k.now) {
		contents = append(contents, dfAIAppView(r))
	}
	return jsonReply(http.StatusOK, "", map[string]any{"success": true, "message": "success", "contents": contents})
}

func dfAppStart(c *Cloud, k *call) reply {
	id, ok := dfID(k)
	if !ok {
		return dfInvalid()
	}
	r := c.resLocked(KindDFApp, id, k.now)
	switch r.state {
	case "RUNNING", "ACCEPTED":
		// DF documents no "already running" answer: success, no change.
	default:
		r.begin(k.now, c.opts.TransitionDelay, "ACCEPTED", "RUNNING", true)
	}
	return jsonReply(http.StatusOK, "", map[string]any{"success": true, "id": id})
}

func dfAppStop(c *Cloud, k *call) reply {
	id, ok := dfID(k)
	if !ok {
		return dfInvalid()
	}
	r := c.resLocked(KindDFApp, id, k.now)
	switch r.state {
	case "STOPPED", "STOPPING":
		// DF documents no "already stopped" answer: success, no change.
	default:
		r.begin(k.now, c.opts.TransitionDelay, "STOPPING", "STOPPED", false)
	}
	return jsonReply(http.StatusOK, "", map[string]any{"success": true, "id": id})
}

func dfAppView(r *resource) map[string]any {
	return map[string]any{
		"id": r.id, "name": "app-" + r.id, "state": r.state, "queueName": "longlived",
		"accountId": "emu", "accountName": "emu", "startedAt": dfTime(r.created),
		"lifetimeMillis": 0, "disabled": false,
	}
}

func dfAppDetail(c *Cloud, k *call) reply {
	id, ok := dfID(k)
	if !ok {
		return dfInvalid()
	}
	r := c.resLocked(KindDFApp, id, k.now)
	v := dfAppView(r)
	v["success"] = true
	comp, cont := "STABLE", "READY"
	if r.state != "RUNNING" {
		comp, cont = r.state, r.state
	}
	v["components"] = []any{map[string]any{"name": "main", "state": comp}}
	v["containers"] = []any{map[string]any{"name": "main-0", "state": cont}}
	return jsonReply(http.StatusOK, "", v)
}

func dfAppList(c *Cloud, k *call) reply {
	contents := []any{}
	for _, r := range c.listLocked(KindDFApp, k.now) {
		contents = append(contents, dfAppView(r))
	}
	return jsonReply(http.StatusOK, "", map[string]any{"success": true, "contents": contents})
}

// ---- CDSS (vendors.md §3) ----

var cdssVersions = map[string]bool{"v1": true, "sgn-v1": true, "jpn-v1": true}

type cdssOp struct {
	method string
	action string
	kinds  []string // components a restart restarts
}

var cdssOps = map[string]cdssOp{
	"restartCMAKService":  {http.MethodGet, "cdss.cmak.restart", []string{KindCDSSCMAK}},
	"restartKafkaService": {http.MethodGet, "cdss.kafka.restart", []string{KindCDSSBroker}},
	"restartAllServices":  {http.MethodGet, "cdss.cluster.restart", []string{KindCDSSCMAK, KindCDSSBroker, KindCDSSZookeeper}},
	"getClusterStatus":    {http.MethodGet, "cdss.cluster.getClusterStatus", nil},
	"getClusterInfoList":  {http.MethodPost, "cdss.cluster.getClusterInfo", nil},
}

// cdssEnvelope is {"code":0,"message":…,"result":…,"requestId":uuid}.
func cdssEnvelope(msg string, result any) reply {
	return jsonReply(http.StatusOK, "0", map[string]any{"code": 0, "message": msg, "result": result, "requestId": uuid()})
}

func cdssReject(_ *Cloud, _ *call) reply { return cdssEnvelope("FAIL", nil) }

func routeCDSS(k *call) (*route, reply) {
	notFound := ncpGatewayError(http.StatusNotFound, "300", "Not Found Exception")
	// /api/{ver}/cluster/{op}/{no}
	parts := strings.Split(strings.TrimPrefix(k.r.URL.Path, "/api/"), "/")
	if len(parts) != 4 || !cdssVersions[parts[0]] || parts[1] != "cluster" {
		return nil, notFound
	}
	op, ok := cdssOps[parts[2]]
	if !ok || op.method != k.r.Method {
		return nil, notFound
	}
	no := parts[3]
	if _, err := strconv.ParseUint(no, 10, 64); err != nil {
		return nil, notFound
	}
	rt := &route{vendor: VendorNCP, action: op.action, target: no, auth: authNCP, reject: cdssReject}
	switch {
	case op.kinds != nil:
		rt.handle = func(c *Cloud, k *call) reply {
			for _, kind := range op.kinds {
				c.resLocked(kind, no, k.now).begin(k.now, c.opts.TransitionDelay, "orange", "green", true)
			}
			return cdssEnvelope("SUCCESS", true)
		}
	case parts[2] == "getClusterStatus":
		rt.handle = cdssStatus
	default:
		rt.handle = cdssInfo
	}
	return rt, reply{}
}

func cdssStatus(c *Cloud, k *call) reply {
	no := k.target
	cmak := c.resLocked(KindCDSSCMAK, no, k.now).state
	broker := c.resLocked(KindCDSSBroker, no, k.now).state
	zk := c.resLocked(KindCDSSZookeeper, no, k.now).state
	perNode := func(prefix, status string) ([]any, int) {
		nodes := make([]any, 3)
		for i := range nodes {
			nodes[i] = map[string]any{"hostname": fmt.Sprintf("%s-%s-%d", prefix, no, i+1), "status": status}
		}
		if status == "green" {
			return nodes, 3
		}
		return nodes, 0
	}
	bNodes, bUp := perNode("broker", broker)
	zNodes, zUp := perNode("zookeeper", zk)
	return cdssEnvelope("SUCCESS", map[string]any{
		"clusterName":           "emu-" + no,
		"brokerNodeTotalNumber": 3, "brokerNumber": bUp, "brokerStatus": broker, "brokerStatusPerNode": bNodes,
		"zookeeperTotalNumber": 3, "zookeeperNumber": zUp, "zookeeperStatus": zk, "zookeeperStatusPerNode": zNodes,
		"cmakStatus": cmak,
	})
}

func cdssInfo(c *Cloud, k *call) reply {
	no := k.target
	status := "running"
	for _, kind := range []string{KindCDSSCMAK, KindCDSSBroker, KindCDSSZookeeper} {
		if c.resLocked(kind, no, k.now).state != "green" {
			status = "changing"
		}
	}
	n, _ := strconv.ParseInt(no, 10, 64)
	return cdssEnvelope("SUCCESS", map[string]any{
		"clusterName": "emu-" + no, "serviceGroupInstanceNo": n, "status": status,
	})
}
