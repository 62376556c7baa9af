package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ---- NCP signature v2 (vendors.md §1.2) ----

// ncpSignature is Base64(HMAC-SHA256(secret, METHOD+" "+URI+"\n"+ts+"\n"+ak)).
func ncpSignature(method, requestURI, timestamp, accessKey, secretKey string) string {
	m := hmac.New(sha256.New, []byte(secretKey))
	m.Write([]byte(method + " " + requestURI + "\n" + timestamp + "\n" + accessKey))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

const ncpMaxSkew = 5 * time.Minute

// verifyNCP checks the three NCP headers against the signature v2 the
// request should carry. The URI is the request target as sent.
func verifyNCP(r *http.Request, now time.Time, accessKey, secretKey string) error {
	ts := r.Header.Get("x-ncp-apigw-timestamp")
	ak := r.Header.Get("x-ncp-iam-access-key")
	sig := r.Header.Get("x-ncp-apigw-signature-v2")
	if ts == "" || ak == "" || sig == "" {
		return errors.New("missing authentication header")
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("timestamp is not epoch milliseconds")
	}
	skew := now.Sub(time.UnixMilli(ms))
	if skew < 0 {
		skew = -skew
	}
	if skew >= ncpMaxSkew {
		return errors.New("timestamp is 5 minutes or more off")
	}
	if ak != accessKey {
		return errors.New("unknown access key")
	}
	uri := r.RequestURI
	if uri == "" || strings.Contains(uri, "://") {
		uri = r.URL.RequestURI()
	}
	want := ncpSignature(r.Method, uri, ts, accessKey, secretKey)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return errors.New("signature mismatch")
	}
	return nil
}

// ---- APIG SDK-HMAC-SHA256 (vendors.md §4.2) ----

const (
	apigAlgorithm = "SDK-HMAC-SHA256"
	apigDate      = "20060102T150405Z"
	apigMaxSkew   = 15 * time.Minute
)

// apigEscape percent-encodes everything but A-Za-z0-9-_.~, hex upper-case.
func apigEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' ||
			ch == '-' || ch == '_' || ch == '.' || ch == '~' {
			b.WriteByte(ch)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", ch)
	}
	return b.String()
}

// apigCanonicalURI escapes each segment of the decoded path and always
// ends with "/".
func apigCanonicalURI(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = apigEscape(s)
	}
	u := strings.Join(segs, "/")
	if !strings.HasSuffix(u, "/") {
		u += "/"
	}
	return u
}

// apigCanonicalQuery sorts by name, then value.
func apigCanonicalQuery(q url.Values) string {
	type kv struct{ k, v string }
	var all []kv
	for k, vs := range q {
		for _, v := range vs {
			all = append(all, kv{apigEscape(k), apigEscape(v)})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].k != all[j].k {
			return all[i].k < all[j].k
		}
		return all[i].v < all[j].v
	})
	parts := make([]string, len(all))
	for i, p := range all {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

// apigRequest is what the APIG signature covers.
type apigRequest struct {
	method        string
	path          string // decoded
	query         url.Values
	headers       map[string]string // lower-case name → value, signed ones only
	signedHeaders []string          // lower-case, as listed
	bodyHash      string            // hex sha256 of the body, or UNSIGNED-PAYLOAD
}

func (a apigRequest) canonical() string {
	var hdr strings.Builder
	for _, h := range a.signedHeaders {
		hdr.WriteString(h + ":" + strings.TrimSpace(a.headers[h]) + "\n")
	}
	return strings.Join([]string{
		a.method,
		apigCanonicalURI(a.path),
		apigCanonicalQuery(a.query),
		hdr.String(),
		strings.Join(a.signedHeaders, ";"),
		a.bodyHash,
	}, "\n")
}

// apigSignature is hex(HMAC-SHA256(sk, StringToSign)).
func apigSignature(a apigRequest, sdkDate, secretKey string) string {
	sum := sha256.Sum256([]byte(a.canonical()))
	sts := apigAlgorithm + "\n" + sdkDate + "\n" + hex.EncodeToString(sum[:])
	m := hmac.New(sha256.New, []byte(secretKey))
	m.Write([]byte(sts))
	return hex.EncodeToString(m.Sum(nil))
}

// apigAuth is a parsed Authorization header.
type apigAuth struct {
	access, signature string
	signedHeaders     []string
}

func parseAPIGAuth(h string) (apigAuth, error) {
	var a apigAuth
	rest, ok := strings.CutPrefix(h, apigAlgorithm+" ")
	if !ok {
		return a, errors.New("authorization is not SDK-HMAC-SHA256")
	}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, errors.New("malformed authorization")
		}
		switch k {
		case "Access":
			a.access = v
		case "SignedHeaders":
			a.signedHeaders = strings.Split(v, ";")
		case "Signature":
			a.signature = v
		case "Credential":
			return a, errors.New("legacy Credential= form is not accepted")
		}
	}
	if a.access == "" || a.signature == "" || len(a.signedHeaders) == 0 {
		return a, errors.New("incomplete authorization")
	}
	return a, nil
}

// verifyAPIG recomputes the signature over the headers the request lists.
// It returns the access key it claims, so lockouts can be counted.
func verifyAPIG(r *http.Request, body []byte, now time.Time, accessKey, secretKey string) (claimed string, err error) {
	auth, err := parseAPIGAuth(r.Header.Get("Authorization"))
	if err != nil {
		return "", err
	}
	date := r.Header.Get("X-Sdk-Date")
	t, err := time.Parse(apigDate, date)
	if err != nil {
		return auth.access, errors.New("missing or malformed X-Sdk-Date")
	}
	skew := now.Sub(t)
	if skew < 0 {
		skew = -skew
	}
	if skew > apigMaxSkew {
		return auth.access, errors.New("X-Sdk-Date is more than 15 minutes off")
	}
	a := apigRequest{method: r.Method, path: r.URL.Path, query: r.URL.Query(), headers: map[string]string{}}
	for _, h := range auth.signedHeaders {
		h = strings.ToLower(h)
		a.signedHeaders = append(a.signedHeaders, h)
		switch h {
		case "host":
			a.headers[h] = r.Host
		case "content-length":
			a.headers[h] = r.Header.Get("Content-Length")
			if a.headers[h] == "" && r.ContentLength >= 0 {
				a.headers[h] = strconv.FormatInt(r.ContentLength, 10)
			}
		default:
			a.headers[h] = strings.Join(r.Header.Values(h), ",")
		}
	}
	if r.Header.Get("X-Sdk-Content-Sha256") == "UNSIGNED-PAYLOAD" {
		a.bodyHash = "UNSIGNED-PAYLOAD"
	} else {
		sum := sha256.Sum256(body)
		a.bodyHash = hex.EncodeToString(sum[:])
	}
	if auth.access != accessKey {
		return auth.access, errors.New("unknown access key")
	}
	want := apigSignature(a, date, secretKey)
	if !hmac.Equal([]byte(auth.signature), []byte(want)) {
		return auth.access, errors.New("signature mismatch")
	}
	return auth.access, nil
}

// ---- SCNet (vendors.md §5.2) ----

// scnetTokenSignature is lower-hex HMAC-SHA256(sk, compact JSON of
// accessKey, timestamp, user in that order).
func scnetTokenSignature(user, accessKey, timestamp, secretKey string) string {
	msg, _ := json.Marshal(map[string]string{"accessKey": accessKey, "timestamp": timestamp, "user": user})
	m := hmac.New(sha256.New, []byte(secretKey))
	m.Write(msg)
	return hex.EncodeToString(m.Sum(nil))
}

const scnetMaxSkew = 5 * time.Minute

// scnetRegion is a computing region the emulator hands tokens for.
type scnetRegion struct{ id, name string }

// scnetRegions: index 0 is the platform ("ac"), the others are computing
// regions.
var scnetRegions = []scnetRegion{
	{"0", "ac"},
	{"11112", "kunshan"},
	{"11116", "xian"},
}

// scnetClaims is the payload of an SCNet token, shaped like the doc
// sample.
type scnetClaims struct {
	ComputeUser   string `json:"computeUser"`
	AccountStatus string `json:"accountStatus"`
	Creator       string `json:"creator"`
	Role          string `json:"role"`
	ExpireTime    string `json:"expireTime"` // epoch ms, as a string
	ClusterID     string `json:"clusterId"`
	Invoker       string `json:"invoker"`
	User          string `json:"user"`
	UserID        string `json:"userId"`
	Nonce         string `json:"jti"`
}

func (s scnetClaims) expires() time.Time {
	ms, _ := strconv.ParseInt(s.ExpireTime, 10, 64)
	return time.UnixMilli(ms)
}

var b64 = base64.RawURLEncoding

// mintSCNetToken returns an HS256 JWT for a region.
func (c *Cloud) mintSCNetToken(reg scnetRegion, expires time.Time) string {
	head := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	payload, _ := json.Marshal(scnetClaims{
		ComputeUser:   c.creds.SCNetUser,
		AccountStatus: "Trial",
		Creator:       "ac",
		Role:          "USER",
		ExpireTime:    strconv.FormatInt(expires.UnixMilli(), 10),
		ClusterID:     reg.id,
		Invoker:       "openapi",
		User:          c.creds.SCNetUser,
		UserID:        "1000001",
		Nonce:         randomHex(8),
	})
	unsigned := head + "." + b64.EncodeToString(payload)
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(unsigned))
	return unsigned + "." + b64.EncodeToString(m.Sum(nil))
}

// parseSCNetToken checks a token's signature and returns its claims; it
// does not check expiry.
func (c *Cloud) parseSCNetToken(tok string) (*scnetClaims, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("token is not a JWT")
	}
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(parts[0] + "." + parts[1]))
	// Strict: a signature is accepted only in its canonical encoding, not
	// with the last character's unused bits set.
	sig, err := b64.Strict().DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, m.Sum(nil)) {
		return nil, errors.New("token signature invalid")
	}
	raw, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("token payload unreadable")
	}
	var cl scnetClaims
	if err := json.Unmarshal(raw, &cl); err != nil {
		return nil, errors.New("token payload unreadable")
	}
	return &cl, nil
}

// ---- OTC IAM tokens ----

type iamToken struct {
	expires   time.Time
	projectID string // "" for a token without project scope
}
