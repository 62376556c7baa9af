package emulator

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// scnetRenewWindow is how long after expiry a token can still be renewed
// (vendors.md §5.2).
const scnetRenewWindow = 24 * time.Hour

func scnetError(status int, code, msg string) reply {
	return jsonReply(status, code, map[string]any{"code": code, "msg": msg, "data": nil})
}

func scnetOK(data any) reply {
	return jsonReply(http.StatusOK, "0", map[string]any{"code": "0", "msg": "success", "data": data})
}

// scnetAuthError is the emulator's answer to a bad token: SCNet documents
// no auth code, so HTTP 401 with 10009 (no permission to access the
// interface).
func scnetAuthError(msg string) *reply {
	rep := scnetError(http.StatusUnauthorized, "10009", msg)
	return &rep
}

func scnetReject(_ *Cloud, _ *call) reply {
	return scnetError(http.StatusOK, "10004", "invalid parameters")
}

type scnetOp struct {
	method string
	action string
	auth   func(c *Cloud, k *call) *reply
	handle func(c *Cloud, k *call) reply
}

var scnetOps = map[string]scnetOp{
	"/api/user/v3/tokens":                   {http.MethodPost, "scnet.tokens", authSCNetAKSK, scnetTokens},
	"/ac/openapi/v2/tokens/next":            {http.MethodPost, "scnet.tokens.next", authSCNetRenew, scnetTokensNext},
	"/ac/openapi/v2/tokens/state":           {http.MethodGet, "scnet.tokens.state", authSCNetAny, scnetTokensState},
	"/ac/openapi/v2/center":                 {http.MethodGet, "scnet.center", authSCNetAny, scnetCenter},
	"/ac/openapi/v2/notebook/actions/start": {http.MethodPost, "scnet.notebook.start", authSCNetRegion, scnetStart},
	"/ai/openapi/v2/notebook/actions/stop":  {http.MethodPost, "scnet.notebook.stop", authSCNetRegion, scnetStop},
	"/ai/openapi/v2/notebook/list":          {http.MethodGet, "scnet.notebook.list", authSCNetRegion, scnetList},
	"/ai/openapi/v2/notebook/detail":        {http.MethodGet, "scnet.notebook.detail", authSCNetRegion, scnetDetail},
}

func routeSCNet(k *call) (*route, reply) {
	op, ok := scnetOps[k.r.URL.Path]
	if !ok || op.method != k.r.Method {
		return nil, scnetError(http.StatusNotFound, "10009", "interface not found")
	}
	target := ""
	switch op.action {
	case "scnet.notebook.start", "scnet.notebook.stop":
		target, _ = scnetNotebookID(k.body)
	case "scnet.notebook.detail":
		target = k.r.URL.Query().Get("notebookId")
	}
	return &route{vendor: VendorSCNet, action: op.action, target: target, auth: op.auth, handle: op.handle, reject: scnetReject}, reply{}
}

// scnetNotebookID reads notebookId from a body, as a string or a number.
func scnetNotebookID(body []byte) (string, bool) {
	var b struct {
		NotebookID json.RawMessage `json:"notebookId"`
	}
	if err := decodeJSON(body, &b); err != nil || len(b.NotebookID) == 0 {
		return "", false
	}
	var s string
	if err := json.Unmarshal(b.NotebookID, &s); err == nil {
		return s, s != ""
	}
	var n json.Number
	if err := json.Unmarshal(b.NotebookID, &n); err == nil {
		return n.String(), true
	}
	return "", false
}

// ---- authentication ----

func authSCNetAKSK(c *Cloud, k *call) *reply {
	h := k.r.Header
	user, ak, ts, sig := h.Get("user"), h.Get("accessKey"), h.Get("timestamp"), h.Get("signature")
	if user == "" || ak == "" || ts == "" || sig == "" {
		rep := scnetError(http.StatusOK, "10003", "missing parameters")
		return &rep
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		rep := scnetError(http.StatusOK, "10004", "invalid parameters")
		return &rep
	}
	skew := k.now.Sub(time.Unix(secs, 0))
	if skew < 0 {
		skew = -skew
	}
	if skew > scnetMaxSkew || user != c.creds.SCNetUser || ak != c.creds.SCNetAccessKey ||
		sig != scnetTokenSignature(user, ak, ts, c.creds.SCNetSecretKey) {
		return scnetAuthError("access key authentication failed")
	}
	return nil
}

// scnetToken checks the token header's signature; within is how long
// after expiry it is still accepted.
func (c *Cloud) scnetToken(k *call, within time.Duration) *reply {
	tok := k.r.Header.Get("token")
	if tok == "" {
		return scnetAuthError("token is missing")
	}
	cl, err := c.parseSCNetToken(tok)
	if err != nil {
		return scnetAuthError("token is invalid")
	}
	if !k.now.Before(cl.expires().Add(within)) {
		return scnetAuthError("token has expired")
	}
	k.scnetClaims = cl
	return nil
}

func authSCNetAny(c *Cloud, k *call) *reply { return c.scnetToken(k, 0) }

func authSCNetRenew(c *Cloud, k *call) *reply { return c.scnetToken(k, scnetRenewWindow) }

// authSCNetRegion also refuses the platform token, which is valid only for
// platform-level APIs.
func authSCNetRegion(c *Cloud, k *call) *reply {
	if rep := c.scnetToken(k, 0); rep != nil {
		return rep
	}
	if k.scnetClaims.ClusterID == scnetRegions[0].id {
		return scnetAuthError("the platform token cannot call a computing-region interface")
	}
	return nil
}

// ---- handlers ----

func scnetTokens(c *Cloud, k *call) reply {
	exp := k.now.Add(c.opts.TokenLifetime)
	data := make([]any, len(scnetRegions))
	for i, reg := range scnetRegions {
		data[i] = map[string]any{"clusterId": reg.id, "clusterName": reg.name, "token": c.mintSCNetToken(reg, exp)}
	}
	return scnetOK(data)
}

// scnetTokensNext answers the new token as data (a string); the vendor
// page does not show the response.
func scnetTokensNext(c *Cloud, k *call) reply {
	reg := scnetRegion{id: k.scnetClaims.ClusterID}
	for _, r := range scnetRegions {
		if r.id == reg.id {
			reg = r
		}
	}
	return scnetOK(c.mintSCNetToken(reg, k.now.Add(c.opts.TokenLifetime)))
}

func scnetTokensState(_ *Cloud, _ *call) reply { return scnetOK("token is valid") }

// scnetCenter returns the region's hosts, all pointing back at this
// server (the host the request came to). aiUrls lists a disabled entry
// first, so a client must pick the enabled one.
func scnetCenter(_ *Cloud, k *call) reply {
	scheme := "http"
	if k.r.TLS != nil {
		scheme = "https"
	}
	base := scheme + "://" + k.r.Host
	id := k.scnetClaims.ClusterID
	name := ""
	for _, r := range scnetRegions {
		if r.id == id {
			name = r.name
		}
	}
	urls := func() []any { return []any{map[string]any{"url": base, "enable": true}} }
	return scnetOK(map[string]any{
		"clusterId": id, "clusterName": name,
		"hpcUrls":   urls(),
		"efileUrls": urls(),
		"aiUrls": []any{
			map[string]any{"url": "http://127.0.0.1:9", "enable": false},
			map[string]any{"url": base, "enable": true},
		},
	})
}

func scnetStart(c *Cloud, k *call) reply {
	id, ok := scnetNotebookID(k.body)
	if !ok {
		return scnetError(http.StatusOK, "10003", "missing parameters")
	}
	r := c.resLocked(KindSCNetNotebook, id, k.now)
	switch r.state {
	case "Running", "Restarting":
		// SCNet documents no "already running" code: success, no change.
	default:
		r.begin(k.now, c.opts.TransitionDelay, "Restarting", "Running", true)
	}
	return scnetOK(true)
}

func scnetStop(c *Cloud, k *call) reply {
	id, ok := scnetNotebookID(k.body)
	if !ok {
		return scnetError(http.StatusOK, "10003", "missing parameters")
	}
	r := c.resLocked(KindSCNetNotebook, id, k.now)
	switch r.state {
	case "Terminated", "Shutting":
		// No documented "already stopped" code: success, no change.
	default:
		r.begin(k.now, c.opts.TransitionDelay, "Shutting", "Terminated", false)
	}
	return scnetOK(true)
}

func scnetView(r *resource) map[string]any {
	return map[string]any{
		"id": r.id, "notebookName": "notebook-" + r.id, "notebookStatus": r.state,
		"clusterId": scnetRegions[1].id, "imageName": "jupyterlab-pytorch", "acceleratorType": "DCU",
		"acceleratorNumber": 1, "createTime": r.created.UTC().Format("2006-01-02 15:04:05"),
	}
}

func scnetList(c *Cloud, k *call) reply {
	q := k.r.URL.Query()
	name, status := q.Get("notebookName"), q.Get("notebookStatus")
	size, err := strconv.Atoi(q.Get("size"))
	if err != nil || size <= 0 {
		size = 20
	}
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page <= 0 {
		page = 1
	}
	var all []any
	for _, r := range c.listLocked(KindSCNetNotebook, k.now) {
		v := scnetView(r)
		if name != "" && !strings.Contains(v["notebookName"].(string), name) {
			continue
		}
		if status != "" && r.state != status {
			continue
		}
		all = append(all, v)
	}
	records := []any{}
	if from := (page - 1) * size; from < len(all) {
		records = all[from:min(from+size, len(all))]
	}
	return scnetOK(map[string]any{"total": len(all), "size": size, "current": page, "records": records})
}

func scnetDetail(c *Cloud, k *call) reply {
	id := k.r.URL.Query().Get("notebookId")
	if id == "" {
		return scnetError(http.StatusOK, "10003", "missing parameters")
	}
	return scnetOK(scnetView(c.resLocked(KindSCNetNotebook, id, k.now)))
}
