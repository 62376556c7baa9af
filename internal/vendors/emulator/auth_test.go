package emulator

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Vectors copied from vendors.md §1.3 ([COMPUTED] with the NCP SDK).
func TestNCPSignatureVectors(t *testing.T) {
	const (
		ts     = "1700000000000"
		ak     = "ACCESSKEY-EXAMPLE"
		secret = "SECRETKEY-EXAMPLE-0123456789abcdefghijklm"
	)
	tests := []struct {
		method, uri, want string
	}{
		{"POST", "/api/v2/notebooks/restart", "goFquDDw6O5xxepwdYtmOXn2ITQPFO4wBeMT10H2YM0="},
		{"GET", "/api/v1/cluster/restartCMAKService/1484848", "7683/dyfOpHBjF44RqfBQkx1/HW/Yc5Qr62MTSq94xA="},
		{"GET", "/vserver/v2/getServerInstanceList?regionCode=KR&responseFormatType=json", "ovsKlhBia/Z7K+IOA8bpdo7B7kGIUEGsKKkPHOmtG6w="},
	}
	now := time.UnixMilli(1700000000000)
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.uri, func(t *testing.T) {
			if got := ncpSignature(tc.method, tc.uri, ts, ak, secret); got != tc.want {
				t.Errorf("ncpSignature(%s %s) = %s; want %s", tc.method, tc.uri, got, tc.want)
			}
			r := httptest.NewRequest(tc.method, tc.uri, nil)
			r.Header.Set("x-ncp-apigw-timestamp", ts)
			r.Header.Set("x-ncp-iam-access-key", ak)
			r.Header.Set("x-ncp-apigw-signature-v2", tc.want)
			if err := verifyNCP(r, now, ak, secret); err != nil {
				t.Errorf("verifyNCP(vector) = %v; want nil", err)
			}
			if err := verifyNCP(r, now.Add(5*time.Minute), ak, secret); err == nil {
				t.Error("verifyNCP with the clock 5 minutes ahead = nil; want an error")
			}
			if err := verifyNCP(r, now, ak, secret+"x"); err == nil {
				t.Error("verifyNCP with another secret = nil; want an error")
			}
		})
	}
}

// Vector 1 of vendors.md §4.2: Huawei's worked example.
func TestAPIGHuaweiVector(t *testing.T) {
	const (
		ak = "QTWAOYTTINDUT2QVKYUC"
		sk = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
	)
	r := httptest.NewRequest("GET", "https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0", nil)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Sdk-Date", "20191115T033655Z")
	wantCanonical := "GET\n/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/\nlimit=2&marker=13551d6b-755d-4757-b956-536f674975c0\n" +
		"content-type:application/json\nhost:service.region.example.com\nx-sdk-date:20191115T033655Z\n\n" +
		"content-type;host;x-sdk-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	a := apigRequest{
		method: "GET", path: r.URL.Path, query: r.URL.Query(),
		headers:       map[string]string{"content-type": "application/json", "host": r.Host, "x-sdk-date": "20191115T033655Z"},
		signedHeaders: []string{"content-type", "host", "x-sdk-date"},
		bodyHash:      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	}
	if got := a.canonical(); got != wantCanonical {
		t.Fatalf("canonical request =\n%s\nwant\n%s", got, wantCanonical)
	}
	const wantSig = "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
	if got := apigSignature(a, "20191115T033655Z", sk); got != wantSig {
		t.Fatalf("apigSignature = %s; want %s", got, wantSig)
	}
	r.Header.Set("Authorization", "SDK-HMAC-SHA256 Access="+ak+", SignedHeaders=content-type;host;x-sdk-date, Signature="+wantSig)
	now := time.Date(2019, 11, 15, 3, 37, 0, 0, time.UTC)
	if _, err := verifyAPIG(r, nil, now, ak, sk); err != nil {
		t.Errorf("verifyAPIG(vector 1) = %v; want nil", err)
	}
	if _, err := verifyAPIG(r, nil, now.Add(16*time.Minute), ak, sk); err == nil {
		t.Error("verifyAPIG 16 minutes later = nil; want a clock-skew error")
	}
	r.Header.Set("Content-Type", "application/xml")
	if _, err := verifyAPIG(r, nil, now, ak, sk); err == nil {
		t.Error("verifyAPIG with a changed signed header = nil; want an error")
	}
}

// Vectors 2 of vendors.md §4.2: huaweicloud-sdk-go-v3 signer tests.
func TestAPIGSDKVectors(t *testing.T) {
	const ak, sk, date = "AccessKey", "SecretKey", "20060102T150405Z"
	now := time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)
	tests := []struct {
		name, method, target, body, sig string
		ok                              bool
	}{
		{"get", "GET", "/path?limit=1", "", "5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624", true},
		{"post with newline", "POST", "/path?key=value", "{\"Name\":\"test\",\"Id\":1}\n", "cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59", true},
		{"post without newline", "POST", "/path?key=value", `{"Name":"test","Id":1}`, "83599e5230b5b31fb58837c5760b4c2d407542df1f9493834ead538696e17a35", true},
		{"newline signature, body without it", "POST", "/path?key=value", `{"Name":"test","Id":1}`, "cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "https://example.huaweicloud.com"+tc.target, strings.NewReader(tc.body))
			r.Header.Set("X-Sdk-Date", date)
			r.Header.Set("Authorization", "SDK-HMAC-SHA256 Access="+ak+", SignedHeaders=x-sdk-date, Signature="+tc.sig)
			_, err := verifyAPIG(r, []byte(tc.body), now, ak, sk)
			if (err == nil) != tc.ok {
				t.Errorf("verifyAPIG(%s %s) = %v; want ok=%v", tc.method, tc.target, err, tc.ok)
			}
		})
	}
}

func TestAPIGEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc-_.~XYZ09", "abc-_.~XYZ09"},
		{"a b", "a%20b"},
		{"ü/=", "%C3%BC%2F%3D"},
	}
	for _, tc := range tests {
		if got := apigEscape(tc.in); got != tc.want {
			t.Errorf("apigEscape(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
	if got := apigCanonicalURI("/v1/p/a b"); got != "/v1/p/a%20b/" {
		t.Errorf("apigCanonicalURI = %q; want /v1/p/a%%20b/", got)
	}
}

// Vector of vendors.md §5.2 ([COMPUTED]).
func TestSCNetSignatureVector(t *testing.T) {
	got := scnetTokenSignature("bob", "85f96a42b13f4d2c8b760d2775bbcca8", "1764597591", "SK-EXAMPLE-SECRET")
	const want = "92c90d756221ae59dae8c449d95e98ccbd4a736877ef91fa0d6f87d09a8caae7"
	if got != want {
		t.Errorf("scnetTokenSignature = %s; want %s", got, want)
	}
}

func TestSCNetTokenRoundTrip(t *testing.T) {
	c := New(Options{})
	exp := time.UnixMilli(1686036760954)
	tok := c.mintSCNetToken(scnetRegions[1], exp)
	if n := strings.Count(tok, "."); n != 2 {
		t.Fatalf("token has %d dots; want a JWT with 2", n)
	}
	cl, err := c.parseSCNetToken(tok)
	if err != nil {
		t.Fatalf("parseSCNetToken = %v", err)
	}
	if cl.ExpireTime != "1686036760954" || cl.ClusterID != "11112" || !cl.expires().Equal(exp) {
		t.Errorf("claims = %+v; want expireTime 1686036760954, clusterId 11112", cl)
	}
	other := New(Options{})
	if _, err := other.parseSCNetToken(tok); err == nil {
		t.Error("another Cloud accepted the token; want a signature error")
	}
	// Forgeries that always differ from the token: a signature with one
	// bit flipped; the payload changed under the old signature; and the
	// same signature in a non-canonical encoding (the last character's
	// unused low bits set), which must not pass for the token either.
	// (The test used to replace the last two characters by "AA": about one
	// token in a thousand ends in "AA", and the "forgery" was the token.)
	parts := strings.Split(tok, ".")
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)-1] ^= 1
	payload := strings.Replace(mustB64Decode(t, parts[1]), `"clusterId":"11112"`, `"clusterId":"22222"`, 1)
	last := strings.IndexByte(scnetAlphabet, parts[2][len(parts[2])-1])
	for name, forged := range map[string]string{
		"bit flipped in the signature": parts[0] + "." + parts[1] + "." + b64.EncodeToString(sig),
		"payload changed":              parts[0] + "." + b64.EncodeToString([]byte(payload)) + "." + parts[2],
		"non-canonical signature":      parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + string(scnetAlphabet[last|1]),
	} {
		if forged == tok {
			t.Fatalf("%s: the forgery is the token", name)
		}
		if _, err := c.parseSCNetToken(forged); err == nil {
			t.Errorf("parseSCNetToken(%s) = nil; want an error", name)
		}
	}
}

// scnetAlphabet is base64url's: a character's index is its 6 bits.
const scnetAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func mustB64Decode(t *testing.T, s string) string {
	t.Helper()
	b, err := b64.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
