package otc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors"
)

// Auth modes of Config.Auth.
const (
	AuthAKSK = "aksk" // APIG SDK-HMAC-SHA256 signing, the default
	AuthIAM  = "iam"  // a project-scoped IAM password token
)

// APIs of Config.API.
const (
	APIDEManager = "demanager" // historical DevEnviron API of seed 004, the default
	APINotebooks = "notebooks" // the current Notebook API (vendors.md §4.5)
)

// Config configures a Client.
type Config struct {
	ProjectID string
	// Region picks the default hosts https://modelarts.{region}.otc.t-systems.com
	// and https://iam.{region}.otc.t-systems.com: eu-de (default) or eu-nl.
	Region       string
	ModelArtsURL string // overrides the ModelArts host, e.g. a proxy or the emulated cloud
	IAMURL       string // overrides the IAM host (with or without the trailing /v3)
	Auth         string // AuthAKSK (default) or AuthIAM

	AccessKey, SecretKey secret.Value // auth aksk

	Username, Password secret.Value // auth iam
	Domain             string       // auth iam: the account's domain name

	// API is APIDEManager (default: POST …/demanager/instances/{id}/action
	// {"action":"start"|"stop"}) or APINotebooks (POST …/notebooks/{id}/start
	// and /stop, no body).
	API string

	HTTPClient *http.Client     // default: 60 s timeout, redirects not followed
	Now        func() time.Time // default time.Now: X-Sdk-Date, token expiry, Retry-After dates
}

// Client calls ModelArts for one account. It is safe for concurrent use.
type Client struct {
	projectID string
	base      string // ModelArts base URL without a trailing "/"
	api       string
	auth      string
	signer    Signer
	tokens    *tokenSource
	secrets   []secret.Value // redacted from vendor messages
	hc        *http.Client
	now       func() time.Time
}

// New checks cfg and returns a Client. Its errors never contain secrets.
func New(cfg Config) (*Client, error) {
	if cfg.ProjectID == "" {
		return nil, errors.New("otc: project_id is required")
	}
	region := cfg.Region
	if region == "" {
		region = "eu-de"
	}
	knownRegion := region == "eu-de" || region == "eu-nl"
	c := &Client{projectID: cfg.ProjectID, api: cfg.API, auth: cfg.Auth, hc: cfg.HTTPClient, now: cfg.Now}
	if c.api == "" {
		c.api = APIDEManager
	}
	if c.api != APIDEManager && c.api != APINotebooks {
		return nil, fmt.Errorf("otc: unknown api %q; use %s or %s", cfg.API, APIDEManager, APINotebooks)
	}
	if c.auth == "" {
		c.auth = AuthAKSK
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.hc == nil {
		c.hc = &http.Client{
			Timeout: 60 * time.Second,
			// A redirect would replay a signature or token to another URL.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}

	var err error
	c.base, err = baseURL("modelarts", cfg.ModelArtsURL, region, knownRegion)
	if err != nil {
		return nil, err
	}

	switch c.auth {
	case AuthAKSK:
		if cfg.AccessKey.IsZero() || cfg.SecretKey.IsZero() {
			return nil, errors.New("otc: auth aksk needs access_key and secret_key")
		}
		c.signer = Signer{AccessKey: cfg.AccessKey, SecretKey: cfg.SecretKey}
		c.secrets = []secret.Value{cfg.AccessKey, cfg.SecretKey}
	case AuthIAM:
		if cfg.Username.IsZero() || cfg.Password.IsZero() || cfg.Domain == "" {
			return nil, errors.New("otc: auth iam needs username, password and domain")
		}
		iam, err := baseURL("iam", cfg.IAMURL, region, knownRegion)
		if err != nil {
			return nil, err
		}
		c.tokens = &tokenSource{
			url:       strings.TrimSuffix(iam, "/v3") + "/v3/auth/tokens",
			projectID: cfg.ProjectID,
			username:  cfg.Username,
			password:  cfg.Password,
			domain:    cfg.Domain,
			hc:        c.hc,
			now:       c.now,
		}
		c.secrets = []secret.Value{cfg.Username, cfg.Password}
	default:
		return nil, fmt.Errorf("otc: unknown auth %q; use %s or %s", cfg.Auth, AuthAKSK, AuthIAM)
	}
	return c, nil
}

// baseURL returns the override, checked, or the region's default host.
func baseURL(service, override, region string, knownRegion bool) (string, error) {
	if override == "" {
		if !knownRegion {
			return "", fmt.Errorf("otc: unknown region %q; use eu-de or eu-nl, or set the %s endpoint", region, service)
		}
		return "https://" + service + "." + region + ".otc.t-systems.com", nil
	}
	u, err := url.Parse(override)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("otc: %s endpoint %q: want an http(s) URL with a host and no query or user info", service, override)
	}
	return strings.TrimRight(override, "/"), nil
}

// ModelArtsURL is the ModelArts base URL the client calls (its notebook
// actions and status reads).
func (c *Client) ModelArtsURL() string { return c.base }

// StartNotebook starts notebook id. "Already running" (ModelArts.6305) is a
// success with Result.Already set; Result.State is the status the vendor
// reported (current_status, or the notebook's status with api notebooks).
func (c *Client) StartNotebook(ctx context.Context, id string) (vendors.Result, error) {
	return c.action(ctx, opStart, id)
}

// StopNotebook stops notebook id. "Already stopped" (ModelArts.6307) is a
// success with Result.Already set.
func (c *Client) StopNotebook(ctx context.Context, id string) (vendors.Result, error) {
	return c.action(ctx, opStop, id)
}

// settleConflict reads the notebook's status after a state-conflict answer
// (vendors.md §4.6: ModelArts.6327 "instance not running", 6357 "another
// operation in progress, or already in the target state"): a notebook
// already in the wanted state is a success with Result.Already; otherwise
// the original error stands (6357 stays transient, 6327 permanent), with
// the state seen added to its message.
func (c *Client) settleConflict(ctx context.Context, kind opKind, id string, err error) (vendors.Result, error) {
	var ve *vendors.Error
	if !errors.As(err, &ve) || (ve.VendorCode != "ModelArts.6327" && ve.VendorCode != "ModelArts.6357") {
		return vendors.Result{}, err
	}
	want := map[opKind]string{opStart: "RUNNING", opStop: "STOPPED"}[kind]
	state, serr := c.NotebookStatus(ctx, id)
	if serr != nil {
		return vendors.Result{}, err
	}
	if state == want {
		return vendors.Result{
			HTTPStatus: ve.HTTPStatus, VendorCode: ve.VendorCode, RequestID: ve.RequestID,
			Message: ve.Message, Already: true, State: state,
		}, nil
	}
	ve.Message = strings.TrimSpace(ve.Message + " (notebook is " + state + ")")
	return vendors.Result{}, err
}

// NotebookStatus reads the status of notebook id: GET
// /v1/{project_id}/demanager/instances/{id}, or /v1/{project_id}/notebooks/{id}
// with api notebooks. Values are the vendor's (RUNNING, STOPPED, STARTING…).
func (c *Client) NotebookStatus(ctx context.Context, id string) (string, error) {
	op := "otc: read notebook status " + id
	if id == "" {
		return "", &vendors.Error{Op: op, Err: errors.New("empty notebook id")}
	}
	path := c.instancePath(id)
	rep, err := c.do(ctx, request{op: op, kind: opRead, method: http.MethodGet, path: path})
	if err != nil {
		return "", err
	}
	var obj struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(rep.body, &obj) != nil || obj.Status == "" {
		return "", c.malformed(op, rep)
	}
	return obj.Status, nil
}

func (c *Client) instancePath(id string) string {
	if c.api == APINotebooks {
		return "/v1/" + url.PathEscape(c.projectID) + "/notebooks/" + url.PathEscape(id)
	}
	return "/v1/" + url.PathEscape(c.projectID) + "/demanager/instances/" + url.PathEscape(id)
}

func (c *Client) action(ctx context.Context, kind opKind, id string) (vendors.Result, error) {
	verb := map[opKind]string{opStart: "start", opStop: "stop"}[kind]
	op := "otc: " + verb + " notebook " + id
	if id == "" {
		return vendors.Result{}, &vendors.Error{Op: op, Err: errors.New("empty notebook id")}
	}
	req := request{op: op, kind: kind, method: http.MethodPost}
	if c.api == APINotebooks {
		req.path = c.instancePath(id) + "/" + verb // no body
	} else {
		req.path = c.instancePath(id) + "/action"
		req.body = []byte(`{"action":"` + verb + `"}`)
	}
	rep, err := c.do(ctx, req)
	if err != nil {
		return c.settleConflict(ctx, kind, id, err)
	}
	res := vendors.Result{
		HTTPStatus: rep.status,
		VendorCode: rep.env.Code,
		RequestID:  rep.requestID,
		Message:    c.redact(rep.env.Message),
		Already:    rep.already,
	}
	if rep.already {
		return res, nil
	}
	var obj struct {
		CurrentStatus string `json:"current_status"` // demanager
		Status        string `json:"status"`         // notebooks
	}
	if json.Unmarshal(rep.body, &obj) != nil {
		return vendors.Result{}, c.malformed(op, rep)
	}
	res.State = obj.CurrentStatus
	if c.api == APINotebooks {
		res.State = obj.Status
	}
	if res.State == "" {
		return vendors.Result{}, c.malformed(op, rep)
	}
	return res, nil
}

// malformed is the permanent error for a 2xx body we cannot read: the call
// may have been accepted, so it is not retried blindly; a status read
// settles it.
func (c *Client) malformed(op string, rep *reply) error {
	return &vendors.Error{Op: op, HTTPStatus: rep.status, RequestID: rep.requestID,
		Message: c.redact(snippet(rep.body)), Err: errors.New("malformed response body")}
}

type request struct {
	op     string
	kind   opKind
	method string
	path   string // escaped, from the base URL on
	body   []byte // nil: none
}

type reply struct {
	status    int
	requestID string
	body      []byte
	env       envelope // set when already
	already   bool
}

var (
	errAKSK  = errors.New("request rejected: check AK/SK and the host clock; the AK locks after 5 failures")
	errIAM   = errors.New("request rejected: check the IAM user, password, domain and project")
	errToken = errors.New("iam token rejected after a refresh")
)

// do sends req and classifies the response. It returns a reply for 2xx and
// for "already" answers, and a *vendors.Error for everything else. With
// auth iam, a token error invalidates the token and replays req once.
func (c *Client) do(ctx context.Context, req request) (*reply, error) {
	for attempt := 0; ; attempt++ {
		hreq, err := http.NewRequestWithContext(ctx, req.method, c.base+req.path, bytes.NewReader(req.body))
		if err != nil {
			return nil, &vendors.Error{Op: req.op, Err: errors.New("build request: invalid url")}
		}
		if req.body == nil {
			hreq.Body, hreq.GetBody, hreq.ContentLength = http.NoBody, nil, 0
		}
		hreq.Header.Set("Content-Type", "application/json")
		hreq.Header.Set("Accept", "application/json")
		hreq.Header.Set("X-Project-Id", c.projectID)
		token := ""
		if c.auth == AuthIAM {
			if token, err = c.tokens.get(ctx, req.op); err != nil {
				return nil, err
			}
			hreq.Header.Set("X-Auth-Token", token)
		} else if err := c.signer.Sign(hreq, req.body, c.now()); err != nil {
			return nil, &vendors.Error{Op: req.op, Err: err}
		}

		resp, err := c.hc.Do(hreq)
		if err != nil {
			return nil, vendors.TransportError(req.op, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, vendors.MaxBody))
		resp.Body.Close()
		if err != nil {
			return nil, vendors.TransportError(req.op, fmt.Errorf("read response: %w", err))
		}
		rep := &reply{status: resp.StatusCode, requestID: resp.Header.Get("X-Request-Id"), body: body}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return rep, nil
		}

		env, ok := parseEnvelope(body)
		cls := classify(req.kind, resp.StatusCode, env.Code)
		// With a token, APIG.0301 ("IAM authentication information
		// incorrect") is a token problem too, and no AK can lock: refresh.
		if c.auth == AuthIAM && attempt == 0 && (cls == classToken || env.Code == "APIG.0301") {
			c.tokens.invalidate(token)
			continue
		}
		if cls == classAlready {
			rep.env, rep.already = env, true
			return rep, nil
		}
		ve := &vendors.Error{
			Op:         req.op,
			HTTPStatus: resp.StatusCode,
			VendorCode: env.Code,
			RequestID:  rep.requestID,
			Message:    c.redact(env.Message),
		}
		if !ok {
			ve.Message = c.redact(snippet(body))
		}
		switch cls {
		case classTransient:
			ve.Transient = true
			ve.RetryAfter = vendors.ParseRetryAfter(resp.Header, c.now())
		case classAuth, classToken:
			switch {
			case c.auth == AuthAKSK:
				ve.Err = errAKSK
			case cls == classToken:
				ve.Err = errToken
			default:
				ve.Err = errIAM
			}
		}
		return nil, ve
	}
}

// redact removes every credential of the account from a vendor message,
// in case the vendor echoes one.
func (c *Client) redact(s string) string {
	for _, v := range c.secrets {
		if r := v.Reveal(); r != "" {
			s = strings.ReplaceAll(s, r, secret.Redacted)
		}
	}
	if c.tokens != nil {
		if t := c.tokens.current(); t != "" {
			s = strings.ReplaceAll(s, t, secret.Redacted)
		}
	}
	return s
}
