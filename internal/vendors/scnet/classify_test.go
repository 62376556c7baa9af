package scnet

import (
	"encoding/json"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		status int
		code   string
		want   class
	}{
		{200, "0", success},
		{200, "10001", transient}, // internal error
		{200, "10012", transient}, // connection interrupted
		{200, "10003", permanent},
		{200, "10004", permanent},
		{200, "10007", permanent}, // user frozen
		{200, "10008", authFailed},
		{200, "10009", authFailed},
		{200, "10010", permanent},
		{200, "10011", permanent},
		{200, "716865", permanent},
		{200, "424242", permanent}, // unknown code
		{200, "", permanent},       // malformed or missing envelope
		{201, "0", success},
		{429, "", transient},
		{429, "10004", transient}, // the status decides first
		{500, "", transient},
		{502, "0", transient},
		{503, "", transient},
		{504, "", transient},
		{401, "", authFailed},
		{403, "10004", authFailed},
		{400, "10003", permanent},
		{404, "", permanent},
		{408, "", permanent},
		{302, "", permanent},
	}
	for _, tc := range tests {
		if got := classify(tc.status, tc.code); got != tc.want {
			t.Errorf("classify(%d, %q) = %v; want %v", tc.status, tc.code, got, tc.want)
		}
	}
}

func TestEnvelopeCode(t *testing.T) {
	tests := []struct {
		body, want string
	}{
		{`{"code":"0","msg":"success","data":true}`, "0"},
		{`{"code":0,"msg":"success"}`, "0"},
		{`{"code":10004}`, "10004"},
		{`{"code":null}`, ""},
		{`{"msg":"no code"}`, ""},
	}
	for _, tc := range tests {
		var env envelope
		if err := json.Unmarshal([]byte(tc.body), &env); err != nil {
			t.Fatalf("Unmarshal(%s): %v", tc.body, err)
		}
		if string(env.Code) != tc.want {
			t.Errorf("code of %s = %q; want %q", tc.body, env.Code, tc.want)
		}
	}
}
