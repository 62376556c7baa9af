// Package scnet is the client for SCNet notebooks (Sugon OpenAPI 2.0,
// scnet.cn / accloud.cn), as described in vendors.md §5 and seed 001.
//
// Every request carries the header "token: <token>" and Content-Type
// application/json, and every response is the envelope
// {"code":"0","msg":"success","data":…}, where code is a string ("0" is
// success; a JSON number is accepted too). A failed call returns a
// *vendors.Error whose VendorCode is the envelope's code; classify documents
// which failures are transient.
//
// Two ways to authenticate:
//   - Mode 1, Config.Token: a ready token, sent to every host as is. It is
//     never renewed; an auth failure is permanent.
//   - Mode 2, Config.User, AccessKey and SecretKey: region tokens are fetched
//     with a signed POST {auth}/api/user/v3/tokens (SignTokenRequest), renewed
//     through POST {platform}/ac/openapi/v2/tokens/next shortly before the
//     JWT's expireTime, and fetched afresh when renewal fails. An auth-looking
//     failure (HTTP 401/403, code 10008/10009) triggers one fresh token and
//     one retry of the call.
//
// Hosts: the start call goes to the platform host with the region token
// (vendors.md §5.1 step 4); stop, list and detail go to the region's ai host,
// configured or discovered once through GET {platform}/ac/openapi/v2/center
// and cached for the life of the Client. The stop and detail calls have no
// vendor page (third-party only, vendors.md §7 #6); the status read prefers
// the documented list call and falls back to detail.
//
// The token appears in no error: transport errors are reduced by
// vendors.TransportError and vendor messages are scrubbed of every secret.
package scnet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors"
)

// Default hosts (vendors.md §5, third-party clients).
const (
	DefaultAuthURL     = "https://api.scnet.cn"
	DefaultPlatformURL = "https://www.scnet.cn"
)

// Notebook states reported by SCNet (vendors.md §5.3).
const (
	StatusCreating   = "Creating"
	StatusRestarting = "Restarting" // booting
	StatusRunning    = "Running"
	StatusTerminated = "Terminated" // shut down
	StatusFailed     = "Failed"
	StatusShutting   = "Shutting" // shutting down
)

const (
	listPageSize = 20
	listMaxPages = 50 // 1000 notebooks; past that, fall back to detail
	maxMsgLen    = 512
)

// Config configures a Client. Set either Token (mode 1) or all of User,
// AccessKey and SecretKey (mode 2).
type Config struct {
	// Token is a ready token, used on every host (mode 1).
	Token secret.Value
	// User, AccessKey and SecretKey get region tokens via
	// POST {auth}/api/user/v3/tokens (mode 2).
	User, AccessKey, SecretKey secret.Value
	// Cluster is the computing region (clusterId) whose token to use in
	// mode 2; default the first region whose clusterId is not "0" (the
	// platform token).
	Cluster string
	// AuthURL is the token host; default DefaultAuthURL.
	AuthURL string
	// PlatformURL is the platform host (start, center, token renewal);
	// default DefaultPlatformURL.
	PlatformURL string
	// AIURL is the region's ai host. Empty: discovered via
	// GET {platform}/ac/openapi/v2/center → aiUrls (the enabled one).
	// Either way it is normalised to end in "/ai" (vendors.md §5.1 step 3).
	AIURL string
	// HTTPClient sends the requests; default a client that follows no
	// redirects (the token header would follow them). Per-attempt timeouts
	// come from the caller's context.
	HTTPClient *http.Client
	// Now is the clock for token expiry and Retry-After; default time.Now.
	Now func() time.Time
}

// Client calls the SCNet notebook API. It is safe for concurrent use.
type Client struct {
	http     *http.Client
	now      func() time.Time
	platform string
	tokens   tokenProvider
	secrets  []string // scrubbed from vendor messages

	aiSem chan struct{} // one discovery at a time, ctx-aware
	aiMu  sync.Mutex
	ai    string // normalised, ends in /ai; "" until known
}

// tokenProvider hands out the token for the next call.
type tokenProvider interface {
	token(ctx context.Context) (string, error)
	// invalidate drops tok after an auth failure and reports whether a
	// different token may now be obtained (mode 2 only).
	invalidate(tok string) bool
}

type staticToken string

func (s staticToken) token(context.Context) (string, error) { return string(s), nil }
func (s staticToken) invalidate(string) bool                { return false }

// New returns a Client for cfg. It makes no request.
func New(cfg Config) (*Client, error) {
	aksk := !cfg.User.IsZero() || !cfg.AccessKey.IsZero() || !cfg.SecretKey.IsZero()
	switch {
	case !cfg.Token.IsZero() && aksk:
		return nil, errors.New("scnet: set either token or user, access_key and secret_key, not both")
	case cfg.Token.IsZero() && !aksk:
		return nil, errors.New("scnet: no credentials: set token, or user, access_key and secret_key")
	case aksk && (cfg.User.IsZero() || cfg.AccessKey.IsZero() || cfg.SecretKey.IsZero()):
		return nil, errors.New("scnet: user, access_key and secret_key must all be set")
	}
	auth, err := baseURL("auth", cfg.AuthURL, DefaultAuthURL)
	if err != nil {
		return nil, err
	}
	platform, err := baseURL("platform", cfg.PlatformURL, DefaultPlatformURL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		http:     cfg.HTTPClient,
		now:      cfg.Now,
		platform: platform,
		aiSem:    make(chan struct{}, 1),
	}
	if c.http == nil {
		c.http = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if cfg.AIURL != "" {
		ai, err := normaliseAI(cfg.AIURL)
		if err != nil {
			return nil, fmt.Errorf("scnet: ai endpoint: %w", err)
		}
		c.ai = ai
	}
	if aksk {
		c.secrets = []string{cfg.User.Reveal(), cfg.AccessKey.Reveal(), cfg.SecretKey.Reveal()}
		c.tokens = &tokenSource{
			c:       c,
			auth:    auth,
			user:    cfg.User,
			ak:      cfg.AccessKey,
			sk:      cfg.SecretKey,
			cluster: cfg.Cluster,
			sem:     make(chan struct{}, 1),
		}
	} else {
		c.secrets = []string{cfg.Token.Reveal()}
		c.tokens = staticToken(cfg.Token.Reveal())
	}
	return c, nil
}

// baseURL checks an endpoint and strips trailing slashes.
func baseURL(name, v, def string) (string, error) {
	if v == "" {
		v = def
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("scnet: %s endpoint %q: want an http(s) URL", name, v)
	}
	return strings.TrimRight(v, "/"), nil
}

// normaliseAI strips trailing slashes and appends "/ai" if absent
// (vendors.md §5.1 step 3): "https://h/" and "https://h/ai/" both become
// "https://h/ai".
func normaliseAI(v string) (string, error) {
	v = strings.TrimSpace(v)
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q: want an http(s) URL", v)
	}
	v = strings.TrimRight(v, "/")
	if !strings.HasSuffix(v, "/ai") {
		v += "/ai"
	}
	return v, nil
}

// PlatformURL is the platform host the client calls (notebook start,
// center, token renewal).
func (c *Client) PlatformURL() string { return c.platform }

// AIURL is the ai host the client calls (notebook stop, status), once
// configured or discovered; "" before the first discovery.
func (c *Client) AIURL() string { return c.cachedAI() }

// StartNotebook boots a notebook: POST {platform}/ac/openapi/v2/notebook/actions/start
// {"notebookId"} (seed 001). If SCNet answers data:false and the notebook
// is already Running, the result is a success with Already set.
func (c *Client) StartNotebook(ctx context.Context, id string) (vendors.Result, error) {
	op := "scnet: start notebook " + id
	body := map[string]any{"notebookId": id}
	return c.action(ctx, op, id, false, "/ac/openapi/v2/notebook/actions/start", body, StatusRunning)
}

// StopNotebook shuts a notebook down without saving its environment:
// POST {ai}/ai/openapi/v2/notebook/actions/stop {"notebookId","saveEnv":false}
// (third-party, vendors.md §5.3). If SCNet answers data:false and the
// notebook is already Terminated, the result is a success with Already set.
func (c *Client) StopNotebook(ctx context.Context, id string) (vendors.Result, error) {
	op := "scnet: stop notebook " + id
	body := map[string]any{"notebookId": id, "saveEnv": false}
	return c.action(ctx, op, id, true, "/openapi/v2/notebook/actions/stop", body, StatusTerminated)
}

// action runs start or stop. A "data": false answer (the call was refused
// without an error code) is checked against the notebook's status: in the
// target state it is Already; otherwise a permanent error naming the state.
func (c *Client) action(ctx context.Context, op, id string, onAI bool, path string, body any, target string) (vendors.Result, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return vendors.Result{}, fmt.Errorf("%s: %w", op, err)
	}
	env, status, err := c.call(ctx, op, http.MethodPost, onAI, path, nil, b)
	if err != nil {
		return vendors.Result{}, err
	}
	res := vendors.Result{HTTPStatus: status, VendorCode: string(env.Code), Message: c.scrub(env.Msg)}
	if !bytes.Equal(bytes.TrimSpace(env.Data), []byte("false")) {
		return res, nil
	}
	state, serr := c.NotebookStatus(ctx, id)
	if serr == nil && state == target {
		res.Already, res.State = true, state
		return res, nil
	}
	msg := "vendor answered data false"
	if serr == nil {
		msg += "; notebook is " + state
	}
	return vendors.Result{}, &vendors.Error{Op: op, HTTPStatus: status, VendorCode: string(env.Code), Message: msg, Err: serr}
}

// NotebookStatus returns the notebook's notebookStatus (see the Status
// constants). It pages through GET {ai}/ai/openapi/v2/notebook/list
// (documented) looking for id, and asks GET {ai}/ai/openapi/v2/notebook/detail
// (third-party) when the list does not have it.
func (c *Client) NotebookStatus(ctx context.Context, id string) (string, error) {
	op := "scnet: read notebook " + id + " status"
	for page := 1; page <= listMaxPages; page++ {
		q := url.Values{
			"notebookName":   {""},
			"notebookStatus": {""},
			"size":           {strconv.Itoa(listPageSize)},
			"page":           {strconv.Itoa(page)},
		}
		env, status, err := c.call(ctx, op, http.MethodGet, true, "/openapi/v2/notebook/list", q, nil)
		if err != nil {
			return "", err
		}
		var data struct {
			Total   flexString `json:"total"`
			Records []struct {
				ID     flexString `json:"id"`
				Status string     `json:"notebookStatus"`
			} `json:"records"`
		}
		if err := json.Unmarshal(env.Data, &data); err != nil {
			return "", malformed(op, status, err)
		}
		for _, r := range data.Records {
			if string(r.ID) == id {
				return r.Status, nil
			}
		}
		total, _ := strconv.Atoi(string(data.Total))
		if len(data.Records) == 0 || page*listPageSize >= total {
			break
		}
	}
	env, status, err := c.call(ctx, op, http.MethodGet, true, "/openapi/v2/notebook/detail", url.Values{"notebookId": {id}}, nil)
	if err != nil {
		return "", err
	}
	var d struct {
		ID     flexString `json:"id"`
		Status string     `json:"notebookStatus"`
	}
	if len(env.Data) > 0 && !bytes.Equal(env.Data, []byte("null")) {
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return "", malformed(op, status, err)
		}
	}
	if d.Status == "" {
		return "", &vendors.Error{Op: op, HTTPStatus: status, VendorCode: string(env.Code), Message: "notebook not found"}
	}
	return d.Status, nil
}

// call sends one API call with the current token to the platform host or
// the ai host (path relative to the normalised ".../ai" base). In mode 2 an
// auth failure fetches a fresh token and retries once.
func (c *Client) call(ctx context.Context, op, method string, onAI bool, path string, q url.Values, body []byte) (*envelope, int, error) {
	for retried := false; ; retried = true {
		tok, err := c.tokens.token(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", op, err)
		}
		base := c.platform
		if onAI {
			var cls class
			base, cls, err = c.aiBase(ctx, op, tok)
			if err != nil {
				if cls == authFailed && !retried && c.tokens.invalidate(tok) {
					continue
				}
				return nil, 0, err
			}
		}
		u := base + path
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		env, status, cls, err := c.send(ctx, request{op: op, method: method, url: u, body: body, token: tok})
		if cls == authFailed && !retried && c.tokens.invalidate(tok) {
			continue
		}
		return env, status, err
	}
}

// aiBase returns the ai host, discovering it once via /center.
func (c *Client) aiBase(ctx context.Context, op, tok string) (string, class, error) {
	if ai := c.cachedAI(); ai != "" {
		return ai, success, nil
	}
	select {
	case c.aiSem <- struct{}{}:
	case <-ctx.Done():
		return "", transient, vendors.TransportError(op+": discover ai host", ctx.Err())
	}
	defer func() { <-c.aiSem }()
	if ai := c.cachedAI(); ai != "" {
		return ai, success, nil
	}
	op += ": discover ai host"
	env, status, cls, err := c.send(ctx, request{op: op, method: http.MethodGet, url: c.platform + "/ac/openapi/v2/center", token: tok})
	if err != nil {
		return "", cls, err
	}
	ai, err := pickAI(env.Data)
	if err != nil {
		return "", permanent, &vendors.Error{Op: op, HTTPStatus: status, VendorCode: string(env.Code), Message: err.Error()}
	}
	c.aiMu.Lock()
	c.ai = ai
	c.aiMu.Unlock()
	return ai, success, nil
}

func (c *Client) cachedAI() string {
	c.aiMu.Lock()
	defer c.aiMu.Unlock()
	return c.ai
}

// pickAI reads the /center data: a list of regions (or a single one), each
// with aiUrls [{url, enable}]. It takes the first URL marked enable:true
// (bool or "true"); failing that, a URL whose region lists only one and
// leaves enable out.
func pickAI(data json.RawMessage) (string, error) {
	type aiURL struct {
		URL    string    `json:"url"`
		Enable *flexBool `json:"enable"`
	}
	type region struct {
		AIURLs []aiURL `json:"aiUrls"`
	}
	var regions []region
	if err := json.Unmarshal(data, &regions); err != nil {
		var one region
		if err := json.Unmarshal(data, &one); err != nil {
			return "", errors.New("malformed center data")
		}
		regions = []region{one}
	}
	fallback := ""
	for _, r := range regions {
		for _, a := range r.AIURLs {
			if a.URL == "" {
				continue
			}
			if a.Enable != nil && bool(*a.Enable) {
				return normaliseAI(a.URL)
			}
			if a.Enable == nil && len(r.AIURLs) == 1 && fallback == "" {
				fallback = a.URL
			}
		}
	}
	if fallback != "" {
		return normaliseAI(fallback)
	}
	return "", errors.New("center lists no enabled ai url")
}

// request is one HTTP exchange.
type request struct {
	op, method, url string
	body            []byte            // nil: no body
	token           string            // "" for the token request itself
	header          map[string]string // extra headers
}

// send performs one exchange and decodes the envelope. On anything but
// success it returns a *vendors.Error and the class; a transport failure is
// transient.
func (c *Client) send(ctx context.Context, r request) (*envelope, int, class, error) {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return nil, 0, permanent, &vendors.Error{Op: r.op, Message: "build request", Err: errors.New("invalid request URL")}
	}
	req.Header.Set("Content-Type", "application/json")
	if r.token != "" {
		req.Header.Set("token", r.token)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, transient, vendors.TransportError(r.op, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, vendors.MaxBody))
	if err != nil {
		return nil, resp.StatusCode, transient, vendors.TransportError(r.op, err)
	}
	var env envelope
	decodeErr := json.Unmarshal(raw, &env)
	if decodeErr != nil {
		env = envelope{}
	}
	code := string(env.Code)
	cls := classify(resp.StatusCode, code)
	if cls == success {
		env.skew = vendors.ServerSkew(resp.Header, c.now())
		return &env, resp.StatusCode, success, nil
	}
	e := &vendors.Error{
		Op:         r.op,
		Transient:  cls == transient,
		HTTPStatus: resp.StatusCode,
		VendorCode: code,
		Message:    c.scrub(env.Msg),
		RetryAfter: vendors.ParseRetryAfter(resp.Header, c.now()),
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 && code == "" {
		e.Message = "malformed response body"
		if decodeErr == nil {
			e.Message = "response without a code"
		}
	}
	return nil, resp.StatusCode, cls, e
}

// malformed is the error for a success envelope whose data cannot be read.
func malformed(op string, status int, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	if errors.As(err, &se) || errors.As(err, &te) {
		err = errors.New("unexpected data shape")
	}
	return &vendors.Error{Op: op, HTTPStatus: status, VendorCode: "0", Message: "malformed response data", Err: err}
}

// scrub removes every secret from a vendor message and bounds its length.
func (c *Client) scrub(msg string) string {
	for _, s := range c.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, secret.Redacted)
		}
	}
	if tp, ok := c.tokens.(*tokenSource); ok {
		for _, t := range tp.known() {
			msg = strings.ReplaceAll(msg, t, secret.Redacted)
		}
	}
	if len(msg) > maxMsgLen {
		msg = msg[:maxMsgLen] + "…"
	}
	return msg
}
