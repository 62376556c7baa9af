package ncp

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// Vectors of vendors.md §1.3 [COMPUTED]: the SDK's hmac/hmac.go and an
// independent Python implementation agree on them.
const (
	vectorTimestamp = "1700000000000"
	vectorAccessKey = "ACCESSKEY-EXAMPLE"
	vectorSecretKey = "SECRETKEY-EXAMPLE-0123456789abcdefghijklm"
)

func TestSign(t *testing.T) {
	tests := []struct {
		method, uri, want string
	}{
		{"POST", "/api/v2/notebooks/restart", "goFquDDw6O5xxepwdYtmOXn2ITQPFO4wBeMT10H2YM0="},
		{"GET", "/api/v1/cluster/restartCMAKService/1484848", "7683/dyfOpHBjF44RqfBQkx1/HW/Yc5Qr62MTSq94xA="},
		{"GET", "/vserver/v2/getServerInstanceList?regionCode=KR&responseFormatType=json", "ovsKlhBia/Z7K+IOA8bpdo7B7kGIUEGsKKkPHOmtG6w="},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.uri, func(t *testing.T) {
			if got := Sign(tc.method, tc.uri, vectorTimestamp, vectorAccessKey, vectorSecretKey); got != tc.want {
				t.Errorf("Sign(%q, %q, …) = %q; want %q", tc.method, tc.uri, got, tc.want)
			}
		})
	}
}

func TestStringToSign(t *testing.T) {
	got := stringToSign("POST", "/api/v2/notebooks/restart", vectorTimestamp, vectorAccessKey)
	want := "POST /api/v2/notebooks/restart\n1700000000000\nACCESSKEY-EXAMPLE"
	if got != want {
		t.Errorf("stringToSign = %q; want %q", got, want)
	}
}

func TestSignDependsOnEveryInput(t *testing.T) {
	base := Sign("POST", "/api/v2/notebooks/restart", vectorTimestamp, vectorAccessKey, vectorSecretKey)
	variants := map[string]string{
		"method":     Sign("GET", "/api/v2/notebooks/restart", vectorTimestamp, vectorAccessKey, vectorSecretKey),
		"uri":        Sign("POST", "/api/v2/notebooks/restart?x=1", vectorTimestamp, vectorAccessKey, vectorSecretKey),
		"timestamp":  Sign("POST", "/api/v2/notebooks/restart", "1700000000001", vectorAccessKey, vectorSecretKey),
		"access key": Sign("POST", "/api/v2/notebooks/restart", vectorTimestamp, "ACCESSKEY-EXAMPLF", vectorSecretKey),
		"secret key": Sign("POST", "/api/v2/notebooks/restart", vectorTimestamp, vectorAccessKey, vectorSecretKey+"x"),
	}
	for name, sig := range variants {
		if sig == base {
			t.Errorf("changing the %s does not change the signature", name)
		}
	}
}

// TestSignerMatchesSign checks that the client's pooled, reused HMACs sign
// as Sign does, call after call, long request URIs included.
func TestSignerMatchesSign(t *testing.T) {
	s := newSigner(vectorSecretKey)
	long := "/api/v2/apps/getList?" + strings.Repeat("q=1&", 100)
	for i := range 50 {
		uri := "/api/v2/notebooks/restart"
		if i%3 == 0 {
			uri = long
		}
		ts := strconv.Itoa(1700000000000 + i)
		if got, want := s.sign("POST", uri, ts, vectorAccessKey), Sign("POST", uri, ts, vectorAccessKey, vectorSecretKey); got != want {
			t.Fatalf("call %d: signer.sign = %q; Sign = %q", i, got, want)
		}
	}
}

func TestIDBodyEscapes(t *testing.T) {
	for _, id := range []string{"app-1", "7kHe.x_y~z", "a\"b", "<x>", "日本"} {
		want, _ := json.Marshal(struct {
			ID string `json:"id"`
		}{id})
		if got := idBody(id); string(got) != string(want) {
			t.Errorf("idBody(%q) = %s; want %s", id, got, want)
		}
	}
}
