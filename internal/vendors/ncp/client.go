package ncp

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
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors"
)

// Default endpoints (vendors.md §2, §3.1).
const (
	DefaultDataForestURL = "https://df.apigw.ntruss.com"
	DefaultCDSSURL       = "https://clouddatastreamingservice.apigw.ntruss.com"
)

// cdssPrefixes maps a region to the CDSS path prefix (vendors.md §3.1):
// KR, SGN and JPN on the public cloud; FKR (financial cloud) and KRS
// (government cloud) for use with those clouds' hosts in CDSSURL.
var cdssPrefixes = map[string]string{
	"KR":  "/api/v1",
	"SGN": "/api/sgn-v1",
	"JPN": "/api/jpn-v1",
	"FKR": "/api/v1",
	"KRS": "/api/krs-v1",
}

// ErrInvalidID is wrapped by the error a call returns, without sending
// anything, when a target id is empty or has characters other than
// letters, digits, '-', '.', '_' and '~' (or is "." or "..").
var ErrInvalidID = errors.New("invalid id: want letters, digits, '-', '.', '_' or '~'")

// Config configures a Client. AccessKey and SecretKey are required.
type Config struct {
	AccessKey, SecretKey secret.Value
	// Region picks the CDSS path prefix: KR (default) → /api/v1, SGN →
	// /api/sgn-v1, JPN → /api/jpn-v1; FKR → /api/v1 and KRS →
	// /api/krs-v1 for the financial and government clouds, whose hosts
	// are set in the URLs below. Case-insensitive.
	Region string
	// DataForestURL is the Data Forest base URL, default
	// DefaultDataForestURL. An http or https URL without query, fragment
	// or user info; a path is kept as a prefix.
	DataForestURL string
	// CDSSURL is the CDSS base URL, default DefaultCDSSURL; same rules.
	CDSSURL string
	// HTTPClient sends the requests; share one per account so connections
	// are kept alive. Default: a new http.Client. The Client uses a copy
	// that does not follow redirects; per-attempt timeouts come from ctx.
	HTTPClient *http.Client
	// Now gives the signature timestamp; default time.Now.
	Now func() time.Time
}

// Client calls Data Forest and CDSS for one NCP account. It is safe for
// concurrent use.
type Client struct {
	accessKey, secretKey secret.Value
	dataForestURL        string
	cdssURL              string
	cdssPrefix           string
	hc                   *http.Client
	now                  func() time.Time
	signer               *signer
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.AccessKey.IsZero() {
		return nil, errors.New("ncp: access key is empty")
	}
	if cfg.SecretKey.IsZero() {
		return nil, errors.New("ncp: secret key is empty")
	}
	region := strings.ToUpper(strings.TrimSpace(cfg.Region))
	if region == "" {
		region = "KR"
	}
	prefix, ok := cdssPrefixes[region]
	if !ok {
		return nil, fmt.Errorf("ncp: unknown region %q; use KR, SGN or JPN (or FKR, KRS)", cfg.Region)
	}
	df, err := baseURL(cfg.DataForestURL, DefaultDataForestURL)
	if err != nil {
		return nil, fmt.Errorf("ncp: data forest url: %w", err)
	}
	cdss, err := baseURL(cfg.CDSSURL, DefaultCDSSURL)
	if err != nil {
		return nil, fmt.Errorf("ncp: cdss url: %w", err)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	noRedirect := *hc // shares the Transport, so keep-alive is shared too
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Client{
		accessKey:     cfg.AccessKey,
		secretKey:     cfg.SecretKey,
		dataForestURL: df,
		cdssURL:       cdss,
		cdssPrefix:    prefix,
		hc:            &noRedirect,
		now:           now,
		signer:        newSigner(cfg.SecretKey.Reveal()),
	}, nil
}

// DataForestURL is the Data Forest base URL the client calls (its
// dataforest.* actions).
func (c *Client) DataForestURL() string { return c.dataForestURL }

// CDSSURL is the CDSS base URL the client calls (its cdss.* actions).
func (c *Client) CDSSURL() string { return c.cdssURL }

// baseURL validates a configured base URL and drops a trailing slash.
func baseURL(s, def string) (string, error) {
	if s == "" {
		return def, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", errors.New("not a valid url")
	}
	switch {
	case u.User != nil: // checked first: the other messages quote s
		return "", errors.New("user info is not allowed in the url")
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q: want an http or https url", s)
	case u.Host == "":
		return "", fmt.Errorf("%q: no host", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("%q: no query or fragment allowed", s)
	}
	return strings.TrimRight(s, "/"), nil
}

// RestartNotebook restarts a Data Forest notebook:
// POST /api/v2/notebooks/restart {"id":…} (seed 000).
func (c *Client) RestartNotebook(ctx context.Context, id string) (vendors.Result, error) {
	return c.dataForest(ctx, "restart notebook", "/api/v2/notebooks/restart", id)
}

// KillAIApp force-terminates a Data Forest AI app:
// POST /api/v2/aiapps/kill {"id":…} (seed 003).
func (c *Client) KillAIApp(ctx context.Context, id string) (vendors.Result, error) {
	return c.dataForest(ctx, "kill ai app", "/api/v2/aiapps/kill", id)
}

// StartApp starts a Data Forest app: POST /api/v2/apps/start {"id":…}.
func (c *Client) StartApp(ctx context.Context, id string) (vendors.Result, error) {
	return c.dataForest(ctx, "start app", "/api/v2/apps/start", id)
}

// StopApp stops a Data Forest app: POST /api/v2/apps/stop {"id":…}.
func (c *Client) StopApp(ctx context.Context, id string) (vendors.Result, error) {
	return c.dataForest(ctx, "stop app", "/api/v2/apps/stop", id)
}

// RestartCMAK restarts a CDSS cluster's CMAK:
// GET /api/{v1,sgn-v1,jpn-v1}/cluster/restartCMAKService/{no} (seed 002).
func (c *Client) RestartCMAK(ctx context.Context, clusterNo string) (vendors.Result, error) {
	return c.cdssAction(ctx, "restart cmak", "restartCMAKService", clusterNo)
}

// RestartKafka restarts a CDSS cluster's Kafka service:
// GET /api/{v1,sgn-v1,jpn-v1}/cluster/restartKafkaService/{no}.
func (c *Client) RestartKafka(ctx context.Context, clusterNo string) (vendors.Result, error) {
	return c.cdssAction(ctx, "restart kafka", "restartKafkaService", clusterNo)
}

// RestartAllServices restarts every service of a CDSS cluster:
// GET /api/{v1,sgn-v1,jpn-v1}/cluster/restartAllServices/{no}.
func (c *Client) RestartAllServices(ctx context.Context, clusterNo string) (vendors.Result, error) {
	return c.cdssAction(ctx, "restart all services", "restartAllServices", clusterNo)
}

// NotebookState reads a Data Forest notebook's state (e.g. "RUNNING",
// "ACCEPTED"; the full set is not documented):
// POST /api/v2/notebooks/getDetail {"id":…}. An unknown id answers 403
// "not allowed or not exists", a permanent error.
func (c *Client) NotebookState(ctx context.Context, id string) (string, error) {
	return c.dataForestState(ctx, "read notebook", "/api/v2/notebooks/getDetail", id)
}

// AppState reads a Data Forest app's state (e.g. "RUNNING"):
// POST /api/v2/apps/getDetail {"id":…}.
func (c *Client) AppState(ctx context.Context, id string) (string, error) {
	return c.dataForestState(ctx, "read app", "/api/v2/apps/getDetail", id)
}

// ClusterStatus is the result of CDSS getClusterStatus. The value sets of
// the status fields are not documented; compare them, don't interpret them.
type ClusterStatus struct {
	ClusterName            string       `json:"clusterName"`
	CMAKStatus             string       `json:"cmakStatus"`
	BrokerStatus           string       `json:"brokerStatus"`
	ZookeeperStatus        string       `json:"zookeeperStatus"`
	BrokerStatusPerNode    []NodeStatus `json:"brokerStatusPerNode"`
	ZookeeperStatusPerNode []NodeStatus `json:"zookeeperStatusPerNode"`
	RequestID              string       `json:"-"` // the envelope's requestId
}

// NodeStatus is one node's status in a ClusterStatus.
type NodeStatus struct {
	Hostname string `json:"hostname"`
	Status   string `json:"status"`
}

// ClusterStatus reads a CDSS cluster's status:
// GET /api/{v1,sgn-v1,jpn-v1}/cluster/getClusterStatus/{no}.
func (c *Client) ClusterStatus(ctx context.Context, clusterNo string) (ClusterStatus, error) {
	op := opName("read cluster status", clusterNo)
	if err := checkID(op, clusterNo); err != nil {
		return ClusterStatus{}, err
	}
	res, body, err := c.do(ctx, op, http.MethodGet, c.cdssURL+c.cdssPrefix+"/cluster/getClusterStatus/"+clusterNo, nil, CDSSRead)
	if err != nil {
		return ClusterStatus{}, err
	}
	var env struct {
		Result ClusterStatus `json:"result"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return ClusterStatus{}, malformed(op, res.HTTPStatus, res.RequestID, "result has unexpected types", body)
	}
	env.Result.RequestID = res.RequestID
	return env.Result, nil
}

func (c *Client) dataForest(ctx context.Context, what, path, id string) (vendors.Result, error) {
	op := opName(what, id)
	if err := checkID(op, id); err != nil {
		return vendors.Result{}, err
	}
	res, _, err := c.do(ctx, op, http.MethodPost, c.dataForestURL+path, idBody(id), DataForest)
	return res, err
}

func (c *Client) dataForestState(ctx context.Context, what, path, id string) (string, error) {
	op := opName(what, id)
	if err := checkID(op, id); err != nil {
		return "", err
	}
	res, body, err := c.do(ctx, op, http.MethodPost, c.dataForestURL+path, idBody(id), DataForest)
	if err != nil {
		return "", err
	}
	var detail struct {
		State *string `json:"state"`
	}
	if json.Unmarshal(body, &detail) != nil || detail.State == nil || *detail.State == "" {
		return "", malformed(op, res.HTTPStatus, "", `no "state"`, body)
	}
	return *detail.State, nil
}

func (c *Client) cdssAction(ctx context.Context, what, call, clusterNo string) (vendors.Result, error) {
	op := opName(what, clusterNo)
	if err := checkID(op, clusterNo); err != nil {
		return vendors.Result{}, err
	}
	res, _, err := c.do(ctx, op, http.MethodGet, c.cdssURL+c.cdssPrefix+"/cluster/"+call+"/"+clusterNo, nil, CDSSAction)
	return res, err
}

// do sends one signed request and classifies the response. On success it
// also returns the body, for the status reads.
func (c *Client) do(ctx context.Context, op, method, rawURL string, payload []byte, env Envelope) (vendors.Result, []byte, error) {
	var reqBody io.Reader
	if payload != nil {
		reqBody = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, reqBody)
	if err != nil {
		return vendors.Result{}, nil, &vendors.Error{Op: op, Err: err}
	}
	ts := strconv.FormatInt(c.now().UnixMilli(), 10)
	ak := c.accessKey.Reveal()
	// The transport writes req.URL.RequestURI() on the request line, so
	// the signature covers exactly what the gateway sees. The header is
	// set by its canonical keys, as Header.Set would, with one backing
	// array for the values.
	vals := [...]string{"application/json", "application/json", ts, ak,
		c.signer.sign(method, req.URL.RequestURI(), ts, ak)}
	hv := vals[:]
	for i, k := range requestHeaders {
		req.Header[k] = hv[i : i+1 : i+1]
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return vendors.Result{}, nil, vendors.TransportError(op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, vendors.MaxBody))
	if err != nil {
		e := vendors.TransportError(op, fmt.Errorf("read response body: %w", err))
		e.HTTPStatus = resp.StatusCode
		return vendors.Result{}, nil, e
	}

	v := Classify(env, resp.StatusCode, body)
	v.Message = c.redact(v.Message)
	v.VendorCode = c.redact(v.VendorCode)
	v.RequestID = c.redact(v.RequestID)
	if !v.OK {
		e := &vendors.Error{
			Op:         op,
			Transient:  v.Transient,
			HTTPStatus: resp.StatusCode,
			VendorCode: v.VendorCode,
			RequestID:  v.RequestID,
			Message:    v.Message,
		}
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			e.Message = "unexpected redirect, not followed"
		}
		if v.Transient {
			e.RetryAfter = vendors.ParseRetryAfter(resp.Header, c.now())
		}
		return vendors.Result{}, nil, e
	}
	return vendors.Result{
		HTTPStatus: resp.StatusCode,
		VendorCode: v.VendorCode,
		RequestID:  v.RequestID,
		Message:    v.Message,
	}, body, nil
}

// requestHeaders are the canonical keys of the headers every request
// carries, in the order do fills them in.
var requestHeaders = [...]string{"Content-Type", "Accept",
	http.CanonicalHeaderKey(headerTimestamp), http.CanonicalHeaderKey(headerAccessKey), http.CanonicalHeaderKey(headerSignature)}

// redact removes our keys from text a server sent back: an echoing proxy
// or a verbose error page must not put them in an error or the audit log.
func (c *Client) redact(s string) string {
	for _, k := range []string{c.secretKey.Reveal(), c.accessKey.Reveal()} {
		if k != "" {
			s = strings.ReplaceAll(s, k, secret.Redacted)
		}
	}
	return s
}

// malformed is the permanent error of a 2xx whose envelope said yes but
// whose payload could not be read.
func malformed(op string, status int, requestID, why string, body []byte) *vendors.Error {
	return &vendors.Error{Op: op, HTTPStatus: status, RequestID: requestID, Message: notUnderstood(why, body)}
}

// idBody is the compact JSON body {"id":"…"} of the Data Forest calls.
// An id that checkID accepts has nothing to escape.
func idBody(id string) []byte {
	if checkID("", id) == nil {
		b := make([]byte, 0, len(`{"id":""}`)+len(id))
		b = append(b, `{"id":"`...)
		b = append(b, id...)
		return append(b, `"}`...)
	}
	b, _ := json.Marshal(struct {
		ID string `json:"id"`
	}{id})
	return b
}

// checkID rejects ids that are empty or would need percent-encoding, so
// the signed request URI never depends on escaping rules (vendors.md §7
// question 8). Data Forest ids are Base62, CDSS cluster numbers digits.
func checkID(op, id string) error {
	if id == "" || id == "." || id == ".." {
		return &vendors.Error{Op: op, Err: ErrInvalidID}
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.' || b == '_' || b == '~') {
			return &vendors.Error{Op: op, Err: ErrInvalidID}
		}
	}
	return nil
}

// opName is the Op of a call's errors, e.g. "ncp: restart notebook 7kHe…";
// an id that checkID would reject is quoted.
func opName(what, id string) string {
	if checkID("", id) != nil {
		return "ncp: " + what + " " + strconv.Quote(truncate(id, 64))
	}
	return "ncp: " + what + " " + id
}
