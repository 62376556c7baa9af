package emulator

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNCPAuthentication(t *testing.T) {
	e := newEnv(t)
	body := mustJSON(t, map[string]string{"id": "7kHeVWhiRsxdRl0nXz04ri"})
	tests := []struct {
		name       string
		req        func() *httpRequest
		wantStatus int
	}{
		{"signed", func() *httpRequest {
			return e.ncpRequest("POST", "/api/v2/notebooks/restart", body, e.creds.NCPSecretKey, 0)
		}, 200},
		{"clock 4m59s off", func() *httpRequest {
			return e.ncpRequest("POST", "/api/v2/notebooks/restart", body, e.creds.NCPSecretKey, -4*time.Minute-59*time.Second)
		}, 200},
		{"wrong secret", func() *httpRequest {
			return e.ncpRequest("POST", "/api/v2/notebooks/restart", body, e.creds.NCPSecretKey+"x", 0)
		}, 401},
		{"timestamp 5 minutes ahead", func() *httpRequest {
			return e.ncpRequest("POST", "/api/v2/notebooks/restart", body, e.creds.NCPSecretKey, 5*time.Minute)
		}, 401},
		{"timestamp header differs from the signed one", func() *httpRequest {
			r := e.ncpRequest("POST", "/api/v2/notebooks/restart", body, e.creds.NCPSecretKey, 0)
			ts, _ := strconv.ParseInt(r.Header.Get("x-ncp-apigw-timestamp"), 10, 64)
			r.Header.Set("x-ncp-apigw-timestamp", strconv.FormatInt(ts+1, 10))
			return r
		}, 401},
		{"signed GET for a POST path", func() *httpRequest {
			r := e.ncpRequest("GET", "/api/v1/cluster/restartCMAKService/1484848", nil, e.creds.NCPSecretKey, 0)
			r.Method = "POST"
			r.URL.Path = "/api/v2/notebooks/restart"
			return r
		}, 401},
		{"no signature headers", func() *httpRequest {
			return e.newRequest("GET", "/api/v1/cluster/restartCMAKService/1484848", nil)
		}, 401},
		{"cdss signed", func() *httpRequest {
			return e.ncpRequest("GET", "/api/sgn-v1/cluster/restartCMAKService/1484848", nil, e.creds.NCPSecretKey, 0)
		}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.send(tc.req())
			if r.status != tc.wantStatus {
				t.Fatalf("status = %d (%s); want %d", r.status, r.raw, tc.wantStatus)
			}
			if tc.wantStatus == 401 {
				if got := field(r.body, "error", "errorCode"); got != "200" {
					t.Errorf("error.errorCode = %v; want \"200\" (%s)", got, r.raw)
				}
			}
		})
	}
}

func TestOTCAuthentication(t *testing.T) {
	e := newEnv(t)
	p := "/v1/" + e.creds.OTCProjectID + "/demanager/instances/nb-1"
	t.Run("signed", func(t *testing.T) {
		r := e.send(e.otcRequest("GET", p, nil, e.creds.OTCSecretKey))
		if r.status != 200 || r.body["status"] != "STOPPED" {
			t.Fatalf("GET instance = %d %s; want 200 status STOPPED", r.status, r.raw)
		}
		if r.header.Get("X-Request-Id") == "" {
			t.Error("no X-Request-Id on an OTC answer")
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		r := e.send(e.otcRequest("GET", p, nil, "nope"))
		if r.status != 401 || r.body["error_code"] != "APIG.0303" {
			t.Fatalf("= %d %s; want 401 APIG.0303", r.status, r.raw)
		}
		if r.header.Get("X-Request-Id") == "" {
			t.Error("no X-Request-Id on an OTC error")
		}
	})
	t.Run("body changed after signing", func(t *testing.T) {
		req := e.otcRequest("POST", p+"/action", mustJSON(t, map[string]string{"action": "start"}), e.creds.OTCSecretKey)
		req.Body = noCloseReader(`{"action":"stop"}`)
		req.ContentLength = int64(len(`{"action":"stop"}`))
		r := e.send(req)
		if r.status != 401 || r.body["error_code"] != "APIG.0303" {
			t.Fatalf("= %d %s; want 401 APIG.0303", r.status, r.raw)
		}
	})
	t.Run("project of someone else", func(t *testing.T) {
		r := e.send(e.otcRequest("GET", "/v1/0123456789abcdef0123456789abcdef/demanager/instances/nb-1", nil, e.creds.OTCSecretKey))
		if r.status != 403 || r.body["error_code"] != "ModelArts.0210" {
			t.Fatalf("= %d %s; want 403 ModelArts.0210", r.status, r.raw)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		r := e.send(e.newRequest("GET", p, nil))
		if r.status != 401 || r.body["error_code"] != "APIG.0301" {
			t.Fatalf("= %d %s; want 401 APIG.0301", r.status, r.raw)
		}
	})
}

func TestOTCLockoutAfterFiveSignatureFailures(t *testing.T) {
	e := newEnv(t)
	p := "/v1/" + e.creds.OTCProjectID + "/demanager/instances/nb-1"
	for i := range 5 {
		if r := e.send(e.otcRequest("GET", p, nil, "nope")); r.body["error_code"] != "APIG.0303" {
			t.Fatalf("failure %d = %s; want APIG.0303", i+1, r.raw)
		}
	}
	r := e.send(e.otcRequest("GET", p, nil, e.creds.OTCSecretKey))
	if r.status != 401 || r.body["error_code"] != "APIG.0301" || !strings.Contains(r.body["error_msg"].(string), "limit") {
		t.Fatalf("good request while locked = %d %s; want 401 APIG.0301 lockout", r.status, r.raw)
	}
	e.clk.Advance(otcLockFor)
	if r := e.send(e.otcRequest("GET", p, nil, e.creds.OTCSecretKey)); r.status != 200 {
		t.Fatalf("good request after the lock = %d %s; want 200", r.status, r.raw)
	}
}

func TestIAMTokens(t *testing.T) {
	e := newEnv(t)
	auth := func(user, password string, scope any) map[string]any {
		a := map[string]any{
			"identity": map[string]any{
				"methods": []string{"password"},
				"password": map[string]any{"user": map[string]any{
					"name": user, "password": password, "domain": map[string]any{"name": e.creds.OTCDomain},
				}},
			},
		}
		if scope != nil {
			a["scope"] = scope
		}
		return map[string]any{"auth": a}
	}
	project := map[string]any{"project": map[string]any{"name": "eu-de"}}
	getToken := func(t *testing.T, body any) string {
		t.Helper()
		req := e.newRequest("POST", "/v3/auth/tokens?nocatalog=true", mustJSON(t, body))
		req.Header.Set("Content-Type", "application/json;charset=utf8")
		r := e.send(req)
		if r.status != 201 {
			t.Fatalf("POST /v3/auth/tokens = %d %s; want 201", r.status, r.raw)
		}
		exp, err := time.Parse(time.RFC3339, field(r.body, "token", "expires_at").(string))
		if err != nil || !exp.Equal(e.clk.Now().Add(24*time.Hour)) {
			t.Errorf("token.expires_at = %v (%v); want now+24h", field(r.body, "token", "expires_at"), err)
		}
		tok := r.header.Get("X-Subject-Token")
		if tok == "" {
			t.Fatal("no X-Subject-Token header")
		}
		return tok
	}
	nb := "/v1/" + e.creds.OTCProjectID + "/notebooks/nb-2"
	withToken := func(tok string) resp {
		req := e.newRequest("GET", nb, nil)
		req.Header.Set("X-Auth-Token", tok)
		return e.send(req)
	}

	tok := getToken(t, auth(e.creds.OTCUsername, e.creds.OTCPassword, project))
	if r := withToken(tok); r.status != 200 || r.body["status"] != "STOPPED" {
		t.Fatalf("GET notebook with token = %d %s; want 200 STOPPED", r.status, r.raw)
	}
	unscoped := getToken(t, auth(e.creds.OTCUsername, e.creds.OTCPassword, nil))
	if r := withToken(unscoped); r.status != 401 || r.body["error_code"] != "ModelArts.0207" {
		t.Errorf("unscoped token = %d %s; want 401 ModelArts.0207", r.status, r.raw)
	}
	if r := withToken("MIIforged"); r.status != 401 || r.body["error_code"] != "APIG.0301" {
		t.Errorf("unknown token = %d %s; want 401 APIG.0301", r.status, r.raw)
	}
	r := e.send(e.newRequest("POST", "/v3/auth/tokens", mustJSON(t, auth(e.creds.OTCUsername, "wrong", project))))
	if r.status != 401 || r.header.Get("X-Subject-Token") != "" {
		t.Errorf("wrong password = %d %s; want 401 and no token", r.status, r.raw)
	}
	e.clk.Advance(24 * time.Hour)
	if r := withToken(tok); r.status != 401 || r.body["error_code"] != "APIG.0307" {
		t.Errorf("expired token = %d %s; want 401 APIG.0307", r.status, r.raw)
	}
}

func TestSCNetAuthentication(t *testing.T) {
	e := newEnv(t)
	toks := e.scnetTokens()
	if len(toks) != 3 || toks["0"] == "" || toks["11112"] == "" {
		t.Fatalf("tokens = %v; want platform 0 and regions 11112, 11116", keys(toks))
	}
	// expireTime in epoch ms, readable without the key (vendors.md §5.2).
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(toks["11112"], ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var cl struct{ ExpireTime, ClusterID string }
	if err := json.Unmarshal(payload, &cl); err != nil {
		t.Fatal(err)
	}
	wantExp := e.clk.Now().Add(24 * time.Hour).UnixMilli()
	if cl.ExpireTime != strconvI(wantExp) || cl.ClusterID != "11112" {
		t.Errorf("claims = %+v; want expireTime %d, clusterId 11112", cl, wantExp)
	}

	r := e.send(e.scnetTokenRequest("wrong-secret"))
	if r.status != 401 || r.body["code"] != "10009" {
		t.Errorf("tokens with a wrong signature = %d %s; want 401 code 10009", r.status, r.raw)
	}

	start := map[string]string{"notebookId": "1821067171420946434"}
	tests := []struct {
		name, token, wantCode string
	}{
		{"region token", toks["11112"], "0"},
		{"ready token", e.creds.SCNetToken, "0"},
		{"platform token", toks["0"], "10009"},
		{"forged token", toks["11112"][:len(toks["11112"])-3] + "abc", "10009"},
		{"no token", "", "10009"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.scnet("POST", "/ac/openapi/v2/notebook/actions/start", tc.token, start)
			if r.body["code"] != tc.wantCode {
				t.Errorf("start = %d %s; want code %q", r.status, r.raw, tc.wantCode)
			}
			if tc.wantCode != "0" && r.status != 401 {
				t.Errorf("status = %d; want 401", r.status)
			}
		})
	}

	if r := e.scnet("GET", "/ac/openapi/v2/tokens/state", toks["11112"], nil); r.body["data"] != "token is valid" {
		t.Errorf("tokens/state = %s; want data \"token is valid\"", r.raw)
	}
	e.clk.Advance(25 * time.Hour)
	if r := e.scnet("GET", "/ai/openapi/v2/notebook/list", toks["11112"], nil); r.status != 401 {
		t.Errorf("expired token = %d %s; want 401", r.status, r.raw)
	}
	r = e.scnet("POST", "/ac/openapi/v2/tokens/next", toks["11112"], nil)
	next, _ := r.body["data"].(string)
	if r.body["code"] != "0" || next == "" {
		t.Fatalf("tokens/next within 24h of expiry = %s; want a new token", r.raw)
	}
	if r := e.scnet("GET", "/ai/openapi/v2/notebook/list", next, nil); r.body["code"] != "0" {
		t.Errorf("renewed token = %s; want code \"0\"", r.raw)
	}
	e.clk.Advance(24 * time.Hour)
	if r := e.scnet("POST", "/ac/openapi/v2/tokens/next", toks["11112"], nil); r.status != 401 {
		t.Errorf("tokens/next 49h after issue = %d %s; want 401", r.status, r.raw)
	}
}

func TestSCNetCenterPointsBack(t *testing.T) {
	e := newEnv(t)
	r := e.scnet("GET", "/ac/openapi/v2/center", e.creds.SCNetToken, nil)
	urls, _ := field(r.body, "data", "aiUrls").([]any)
	var enabled []string
	for _, u := range urls {
		m := u.(map[string]any)
		if m["enable"] == true {
			enabled = append(enabled, m["url"].(string))
		}
	}
	if len(enabled) != 1 || enabled[0] != e.srv.URL {
		t.Fatalf("enabled aiUrls = %v (%s); want [%s]", enabled, r.raw, e.srv.URL)
	}
	// the advised join: base + "/ai" + "/openapi/v2/..."
	if r := e.scnet("GET", strings.TrimPrefix(enabled[0]+"/ai/openapi/v2/notebook/list", e.srv.URL), e.creds.SCNetToken, nil); r.body["code"] != "0" {
		t.Errorf("list on the aiUrl = %s; want code \"0\"", r.raw)
	}
}

func TestNotFoundInVendorFormat(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		method, path string
		check        func(r resp) bool
	}{
		{"POST", "/api/v2/notebooks/start", func(r resp) bool { return r.body["success"] == false && r.body["message"] == "no such element" }},
		{"GET", "/api/v2/notebooks/restart", func(r resp) bool { return r.body["success"] == false }},
		{"GET", "/api/v1/cluster/restartNothing/1", func(r resp) bool { return field(r.body, "error", "errorCode") == "300" }},
		{"GET", "/api/krs-v1/cluster/restartCMAKService/1", func(r resp) bool { return field(r.body, "error", "errorCode") == "300" }},
		{"GET", "/ai/openapi/v2/notebook/nothing", func(r resp) bool { return r.body["code"] == "10009" }},
		{"GET", "/v1/p/notebooks/x/start", func(r resp) bool { return r.body["error_code"] == "APIG.0101" && r.header.Get("X-Request-Id") != "" }},
		{"GET", "/nothing", func(r resp) bool { return true }},
	}
	for _, tc := range tests {
		r := e.send(e.newRequest(tc.method, tc.path, nil))
		if r.status != 404 || !tc.check(r) {
			t.Errorf("%s %s = %d %s; want 404 in the vendor's format", tc.method, tc.path, r.status, r.raw)
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
