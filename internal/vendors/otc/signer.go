package otc

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
)

// Algorithm is the APIG signing algorithm name, the first word of the
// Authorization header and of the string to sign.
const Algorithm = "SDK-HMAC-SHA256"

// SDKDateLayout is the Go layout of the X-Sdk-Date header, always in UTC.
const SDKDateLayout = "20060102T150405Z"

// DefaultSignedHeaders are the headers a Signer with no Headers signs, when
// the request carries them. The OTC APIG example signs content-type, host
// and x-sdk-date; we add x-project-id (set before signing, as the
// huaweicloud SDK does) so that the project a request acts on is covered by
// the signature too. The gateway recomputes over whatever SignedHeaders
// lists, so the choice only has to be consistent.
var DefaultSignedHeaders = []string{"content-type", "host", "x-project-id", "x-sdk-date"}

// Signer signs requests with the APIG "SDK-HMAC-SHA256" scheme in its
// current "Access=" form (vendors.md §4.2).
type Signer struct {
	AccessKey, SecretKey secret.Value
	// Headers are the lower-case names of the headers to sign when the
	// request has them; nil means DefaultSignedHeaders. x-sdk-date is
	// always signed.
	Headers []string
}

// Sign sets X-Sdk-Date from sdkDate (in UTC) and the Authorization header
// on req. body must be the exact bytes sent (nil for none). Set every
// header that should be signed, X-Project-Id included, before calling
// Sign; the host comes from req.Host, or req.URL.Host when that is empty.
func (s Signer) Sign(req *http.Request, body []byte, sdkDate time.Time) error {
	if s.AccessKey.IsZero() || s.SecretKey.IsZero() {
		return errors.New("sign request: empty access key or secret key")
	}
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	date := sdkDate.UTC().Format(SDKDateLayout)
	req.Header.Set("X-Sdk-Date", date)
	signed := signedHeaders(req, s.Headers)
	canonical := CanonicalRequest(req, signed, hashHex(body))
	sig := signature(s.SecretKey.Reveal(), StringToSign(canonical, date))
	req.Header.Set("Authorization", fmt.Sprintf("%s Access=%s, SignedHeaders=%s, Signature=%s",
		Algorithm, s.AccessKey.Reveal(), strings.Join(signed, ";"), sig))
	return nil
}

// signedHeaders returns the sorted lower-case names out of want (or
// DefaultSignedHeaders) that req carries, plus x-sdk-date.
func signedHeaders(req *http.Request, want []string) []string {
	if want == nil {
		want = DefaultSignedHeaders
	}
	seen := map[string]bool{"x-sdk-date": true}
	out := []string{"x-sdk-date"}
	for _, h := range want {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" || seen[h] {
			continue
		}
		if h == "host" && requestHost(req) == "" {
			continue
		}
		if h != "host" && len(req.Header.Values(h)) == 0 {
			continue
		}
		seen[h] = true
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// CanonicalRequest returns the canonical request of §4.2 for req: method,
// canonical URI (each segment RFC 3986-escaped, with a trailing "/"),
// canonical query, canonical headers for the lower-case names in signed
// (which must be sorted), the signed-header list and bodyHash (hex SHA-256
// of the body). It reads the host from req.Host, or req.URL.Host, so it
// serves both a request about to be sent and one a server received.
func CanonicalRequest(req *http.Request, signed []string, bodyHash string) string {
	var b strings.Builder
	b.WriteString(req.Method)
	b.WriteByte('\n')
	b.WriteString(canonicalURI(req.URL))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(req.URL.RawQuery))
	b.WriteByte('\n')
	for _, h := range signed {
		b.WriteString(h)
		b.WriteByte(':')
		b.WriteString(headerValue(req, h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(bodyHash)
	return b.String()
}

// StringToSign returns the string the signature is the HMAC of.
func StringToSign(canonicalRequest, sdkDate string) string {
	return Algorithm + "\n" + sdkDate + "\n" + hashHex([]byte(canonicalRequest))
}

func signature(sk, stringToSign string) string {
	m := hmac.New(sha256.New, []byte(sk))
	m.Write([]byte(stringToSign))
	return hex.EncodeToString(m.Sum(nil))
}

func hashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func requestHost(req *http.Request) string {
	if req.Host != "" {
		return req.Host
	}
	if req.URL != nil {
		return req.URL.Host
	}
	return ""
}

func headerValue(req *http.Request, name string) string {
	if name == "host" {
		return strings.TrimSpace(requestHost(req))
	}
	vs := req.Header.Values(name)
	out := make([]string, len(vs)) // Values shares the header's slice
	for i, v := range vs {
		out[i] = strings.TrimSpace(v)
	}
	return strings.Join(out, ",")
}

// canonicalURI escapes each segment of u's path per RFC 3986 and appends
// the trailing "/" the signature always has. Segments are taken from the
// escaped path, so an encoded "/" inside an id stays one segment.
func canonicalURI(u *url.URL) string {
	p := u.EscapedPath()
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if dec, err := url.PathUnescape(s); err == nil {
			s = dec
		}
		segs[i] = escape(s)
	}
	out := strings.Join(segs, "/")
	if !strings.HasSuffix(out, "/") {
		out += "/"
	}
	return out
}

// canonicalQuery sorts the parameters by name, then value, and escapes
// both; an empty value keeps its "=".
func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	q, _ := url.ParseQuery(raw) // unparseable pairs are dropped, as the server would
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			parts = append(parts, escape(k)+"="+escape(v))
		}
	}
	return strings.Join(parts, "&")
}

// escape percent-encodes everything but the RFC 3986 unreserved characters
// A-Z a-z 0-9 - _ . ~, with upper-case hex digits.
func escape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xF])
	}
	return b.String()
}

// Verify checks the SDK-HMAC-SHA256 Authorization header of a request a
// server received, as the gateway does: it recomputes the signature over
// the headers the request says it signed and the body. secretKey looks up
// the secret key of an access key. The error names what is wrong, never a
// key. It does not check the age of X-Sdk-Date.
func Verify(r *http.Request, body []byte, secretKey func(accessKey string) (secret.Value, bool)) error {
	ak, signed, sig, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	sk, ok := secretKey(ak)
	if !ok {
		return errors.New("unknown access key")
	}
	if !sort.StringsAreSorted(signed) {
		return errors.New("signed headers are not sorted")
	}
	date := r.Header.Get("X-Sdk-Date")
	if _, err := time.Parse(SDKDateLayout, date); err != nil {
		return errors.New("missing or malformed X-Sdk-Date")
	}
	want := signature(sk.Reveal(), StringToSign(CanonicalRequest(r, signed, hashHex(body)), date))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return errors.New("signature mismatch")
	}
	return nil
}

// parseAuthorization splits "SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b,
// Signature=hex".
func parseAuthorization(h string) (ak string, signed []string, sig string, err error) {
	rest, ok := strings.CutPrefix(h, Algorithm+" ")
	if !ok {
		return "", nil, "", errors.New("authorization is not " + Algorithm)
	}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Access":
			ak = v
		case "SignedHeaders":
			signed = strings.Split(v, ";")
		case "Signature":
			sig = v
		}
	}
	if ak == "" || len(signed) == 0 || sig == "" {
		return "", nil, "", errors.New("authorization lacks Access, SignedHeaders or Signature")
	}
	return ak, signed, sig, nil
}
