package otc

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
)

// Test vector 1 (vendors.md §4.2): the worked example of Huawei's "API
// Request Signing Guide" (api-sign-algorithm-002/-003/-004).
func TestSignHuaweiWorkedExample(t *testing.T) {
	const (
		ak            = "QTWAOYTTINDUT2QVKYUC"
		sk            = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
		wantCanonical = "GET\n" +
			"/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/\n" +
			"limit=2&marker=13551d6b-755d-4757-b956-536f674975c0\n" +
			"content-type:application/json\n" +
			"host:service.region.example.com\n" +
			"x-sdk-date:20191115T033655Z\n" +
			"\n" +
			"content-type;host;x-sdk-date\n" +
			"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
		wantHash = "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
		wantSig  = "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
		wantAuth = "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, " +
			"Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
	)
	req, err := http.NewRequest(http.MethodGet,
		"https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	date := time.Date(2019, 11, 15, 3, 36, 55, 0, time.UTC)
	s := Signer{AccessKey: secret.New(ak), SecretKey: secret.New(sk)}
	if err := s.Sign(req, nil, date); err != nil {
		t.Fatalf("Sign: %v", err)
	}

	signed := signedHeaders(req, nil)
	canonical := CanonicalRequest(req, signed, hashHex(nil))
	if canonical != wantCanonical {
		t.Errorf("CanonicalRequest =\n%s\nwant\n%s", canonical, wantCanonical)
	}
	if got := hashHex([]byte(canonical)); got != wantHash {
		t.Errorf("hash(CanonicalRequest) = %s; want %s", got, wantHash)
	}
	if got := req.Header.Get("X-Sdk-Date"); got != "20191115T033655Z" {
		t.Errorf("X-Sdk-Date = %q; want 20191115T033655Z", got)
	}
	if got := req.Header.Get("Authorization"); got != wantAuth {
		t.Errorf("Authorization =\n%s\nwant\n%s", got, wantAuth)
	}
	if !strings.Contains(req.Header.Get("Authorization"), wantSig) {
		t.Errorf("signature %s missing", wantSig)
	}
}

// Test vectors 2 (vendors.md §4.2): huaweicloud-sdk-go-v3
// core/auth/signer/signer_test.go, signing x-sdk-date only.
func TestSignSDKVectors(t *testing.T) {
	tests := []struct {
		name, method, url, body string
		want                    string
	}{
		{"get", http.MethodGet, "https://example.huaweicloud.com/path?limit=1", "",
			"5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624"},
		{"post json.Encoder output with trailing newline", http.MethodPost, "https://example.huaweicloud.com/path?key=value",
			"{\"Name\":\"test\",\"Id\":1}\n", "cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59"},
		{"post without the newline (negative)", http.MethodPost, "https://example.huaweicloud.com/path?key=value",
			"{\"Name\":\"test\",\"Id\":1}", "83599e5230b5b31fb58837c5760b4c2d407542df1f9493834ead538696e17a35"},
	}
	s := Signer{AccessKey: secret.New("AccessKey"), SecretKey: secret.New("SecretKey"), Headers: []string{"x-sdk-date"}}
	date := time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			req, err := http.NewRequest(tc.method, tc.url, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Sign(req, body, date); err != nil {
				t.Fatalf("Sign: %v", err)
			}
			want := "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, Signature=" + tc.want
			if got := req.Header.Get("Authorization"); got != want {
				t.Errorf("Authorization = %s; want %s", got, want)
			}
		})
	}

	req, _ := http.NewRequest(http.MethodGet, "https://example.huaweicloud.com/path?limit=1", nil)
	req.Header.Set("X-Sdk-Date", "20060102T150405Z")
	want := "GET\n/path/\nlimit=1\nx-sdk-date:20060102T150405Z\n\nx-sdk-date\n" +
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if got := CanonicalRequest(req, []string{"x-sdk-date"}, hashHex(nil)); got != want {
		t.Errorf("CanonicalRequest(GET row) = %q; want %q", got, want)
	}
}

func TestSignNonUTCDate(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "https://example.huaweicloud.com/path", nil)
	seoul := time.FixedZone("KST", 9*3600)
	s := Signer{AccessKey: secret.New("a"), SecretKey: secret.New("b")}
	if err := s.Sign(req, nil, time.Date(2006, 1, 3, 0, 4, 5, 0, seoul)); err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get("X-Sdk-Date"); got != "20060102T150405Z" {
		t.Errorf("X-Sdk-Date = %q; want the UTC instant 20060102T150405Z", got)
	}
}

func TestSignRejectsEmptyKeys(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "https://example.com/", nil)
	for _, s := range []Signer{{}, {AccessKey: secret.New("a")}, {SecretKey: secret.New("b")}} {
		if err := s.Sign(req, nil, time.Now()); err == nil {
			t.Errorf("Sign with an empty key: nil error")
		}
	}
}

func TestCanonicalURIAndQuery(t *testing.T) {
	tests := []struct {
		name, url string
		wantURI   string
		wantQuery string
	}{
		{"root", "https://h/", "/", ""},
		{"no path", "https://h", "/", ""},
		{"trailing slash kept once", "https://h/v1/p/", "/v1/p/", ""},
		{"unreserved kept", "https://h/a-b_c.d~e", "/a-b_c.d~e/", ""},
		{"space and sub-delims escaped", "https://h/a%20b/c:d@e!f", "/a%20b/c%3Ad%40e%21f/", ""},
		{"encoded slash stays in its segment", "https://h/x/a%2Fb/y", "/x/a%2Fb/y/", ""},
		{"utf-8 upper-case hex", "https://h/caf%C3%A9", "/caf%C3%A9/", ""},
		{"query sorted by name then value", "https://h/p?b=2&a=3&a=1", "/p/", "a=1&a=3&b=2"},
		{"empty value keeps =", "https://h/p?status=&de_type=Notebook", "/p/", "de_type=Notebook&status="},
		{"query escaping", "https://h/p?q=a+b&r=x%2Fy&s=%7E", "/p/", "q=a%20b&r=x%2Fy&s=~"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tc.url, nil)
			if got := canonicalURI(req.URL); got != tc.wantURI {
				t.Errorf("canonicalURI(%s) = %q; want %q", tc.url, got, tc.wantURI)
			}
			if got := canonicalQuery(req.URL.RawQuery); got != tc.wantQuery {
				t.Errorf("canonicalQuery(%s) = %q; want %q", tc.url, got, tc.wantQuery)
			}
		})
	}
}

func TestCanonicalHeadersTrimAndLowercase(t *testing.T) {
	req, _ := http.NewRequest(http.MethodPost, "https://h.example/p", nil)
	req.Host = "other.example:8443"
	req.Header.Set("X-Project-Id", "  p1  ")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Sdk-Date", "20060102T150405Z")
	req.Header.Set("X-Unsigned", "zzz")
	signed := signedHeaders(req, nil)
	if got, want := strings.Join(signed, ";"), "content-type;host;x-project-id;x-sdk-date"; got != want {
		t.Fatalf("signed headers = %s; want %s", got, want)
	}
	got := CanonicalRequest(req, signed, "H")
	want := "POST\n/p/\n\ncontent-type:application/json\nhost:other.example:8443\nx-project-id:p1\nx-sdk-date:20060102T150405Z\n\n" +
		"content-type;host;x-project-id;x-sdk-date\nH"
	if got != want {
		t.Errorf("CanonicalRequest = %q; want %q", got, want)
	}
	if req.Header.Get("X-Project-Id") != "  p1  " {
		t.Errorf("CanonicalRequest modified the request header")
	}
}

func TestVerify(t *testing.T) {
	ak, sk := secret.New("AK1"), secret.New("SK1")
	lookup := func(a string) (secret.Value, bool) {
		if a == "AK1" {
			return sk, true
		}
		return secret.Value{}, false
	}
	sign := func(body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "http://h.example/v1/p/x?a=1", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if err := (Signer{AccessKey: ak, SecretKey: sk}).Sign(r, []byte(body), time.Unix(0, 0)); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if err := Verify(sign("{}"), []byte("{}"), lookup); err != nil {
		t.Errorf("Verify(signed request) = %v; want nil", err)
	}
	if err := Verify(sign("{}"), []byte("{} "), lookup); err == nil {
		t.Errorf("Verify(other body) = nil; want an error")
	}
	r := sign("{}")
	r.Header.Set("Content-Type", "text/plain")
	if err := Verify(r, []byte("{}"), lookup); err == nil {
		t.Errorf("Verify(changed signed header) = nil; want an error")
	}
	r = sign("{}")
	r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "AK1", "AK2", 1))
	if err := Verify(r, []byte("{}"), lookup); err == nil || strings.Contains(err.Error(), "SK1") {
		t.Errorf("Verify(unknown AK) = %v; want an error without the key", err)
	}
}
