package otc

import "testing"

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		op     opKind
		status int
		code   string
		want   class
	}{
		{"200", opStart, 200, "", classSuccess},
		{"201", opStop, 201, "", classSuccess},
		{"already running on start", opStart, 400, "ModelArts.6305", classAlready},
		{"already stopped on stop", opStop, 400, "ModelArts.6307", classAlready},
		{"already running on stop", opStop, 400, "ModelArts.6305", classPermanent},
		{"already stopped on start", opStart, 400, "ModelArts.6307", classPermanent},
		{"6305 on read", opRead, 400, "ModelArts.6305", classPermanent},
		{"does not exist", opStart, 400, "ModelArts.6309", classPermanent},
		{"frozen", opStart, 400, "ModelArts.6326", classPermanent},
		{"not running", opStop, 400, "ModelArts.6327", classPermanent},
		{"starting", opStart, 400, "ModelArts.6306", classTransient},
		{"stopping", opStop, 400, "ModelArts.6308", classTransient},
		{"restoring", opStart, 400, "ModelArts.6333", classTransient},
		{"initialising", opStart, 400, "ModelArts.6355", classTransient},
		{"operation in progress", opStart, 400, "ModelArts.6357", classTransient},
		{"insufficient resources", opStart, 400, "ModelArts.6360", classTransient},
		{"flavor sold out", opStart, 400, "ModelArts.6329", classTransient},
		{"evs sold out 6716", opStart, 400, "ModelArts.6716", classTransient},
		{"evs sold out 6528", opStart, 400, "ModelArts.6528", classTransient},
		{"internal error", opStart, 500, "ModelArts.0010", classTransient},
		{"throttled", opStart, 429, "APIG.0308", classTransient},
		{"backend unavailable", opStart, 502, "APIG.0201", classTransient},
		{"backend 0202", opStart, 502, "APIG.0202", classTransient},
		{"backend timeout", opStart, 504, "APIG.0203", classTransient},
		{"iam unavailable", opStart, 503, "APIG.0613", classTransient},
		{"apig internal 0601 by status", opStart, 500, "APIG.0601", classTransient},
		{"iam auth info incorrect", opStart, 401, "APIG.0301", classAuth},
		{"app signature wrong", opStart, 401, "APIG.0303", classAuth},
		{"invalid ak/sk", opStart, 403, "ModelArts.0206", classAuth},
		{"token missing", opStart, 401, "ModelArts.0201", classToken},
		{"token expired", opStart, 401, "ModelArts.0202", classToken},
		{"token invalid", opStart, 401, "ModelArts.0203", classToken},
		{"token 0204", opStart, 401, "ModelArts.0204", classToken},
		{"token 6620", opStart, 401, "ModelArts.6620", classToken},
		{"apig token must be updated", opStart, 401, "APIG.0307", classToken},
		{"token lacks project", opStart, 401, "ModelArts.0207", classPermanent},
		{"project mismatch", opStart, 401, "ModelArts.0212", classPermanent},
		{"project forbidden", opStart, 403, "ModelArts.0210", classPermanent},
		{"not authorised", opStart, 403, "ModelArts.0108", classPermanent},
		{"policy", opStart, 403, "ModelArts.0112", classPermanent},
		{"408 no code", opStart, 408, "", classTransient},
		{"429 no code", opStart, 429, "", classTransient},
		{"500 no code", opStart, 500, "", classTransient},
		{"503 no code", opStop, 503, "", classTransient},
		{"504 unknown code", opStop, 504, "X.1", classTransient},
		{"401 no code", opStart, 401, "", classToken},
		{"400 unknown code", opStart, 400, "ModelArts.9999", classPermanent},
		{"404 no code", opRead, 404, "", classPermanent},
		{"405", opStart, 405, "", classPermanent},
		{"302", opStart, 302, "", classPermanent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.op, tc.status, tc.code); got != tc.want {
				t.Errorf("classify(%d, %d, %q) = %v; want %v", tc.op, tc.status, tc.code, got, tc.want)
			}
		})
	}
}

func TestParseEnvelope(t *testing.T) {
	tests := []struct {
		name, body string
		want       envelope
		ok         bool
	}{
		{"error_code and error_msg", `{"error_code":"ModelArts.6309","error_msg":"gone"}`,
			envelope{"ModelArts.6309", "gone"}, true},
		{"error_code and error_message (seed 004)", `{"error_message":"The instance does not exist.","error_code":"ModelArts.6309"}`,
			envelope{"ModelArts.6309", "The instance does not exist."}, true},
		{"code and message", `{"code":"APIG.0303","message":"Incorrect app authentication information"}`,
			envelope{"APIG.0303", "Incorrect app authentication information"}, true},
		{"nested", `{"request_id":"r","error":{"error_code":"APIG.0308","error_msg":"throttled"}}`,
			envelope{"APIG.0308", "throttled"}, true},
		{"iam numeric code nested", `{"error":{"code":401,"message":"The username or password is wrong.","title":"Unauthorized"}}`,
			envelope{"401", "The username or password is wrong."}, true},
		{"code without message", `{"error_code":"ModelArts.0010"}`, envelope{"ModelArts.0010", ""}, true},
		{"no code", `{"message":"oops"}`, envelope{}, false},
		{"html", `<html>502 Bad Gateway</html>`, envelope{}, false},
		{"array", `[{"error_code":"x"}]`, envelope{}, false},
		{"empty", ``, envelope{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseEnvelope([]byte(tc.body))
			if got != tc.want || ok != tc.ok {
				t.Errorf("parseEnvelope(%s) = %+v, %v; want %+v, %v", tc.body, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSnippet(t *testing.T) {
	long := make([]byte, 1000)
	for i := range long {
		long[i] = 'a'
	}
	tests := []struct{ in, want string }{
		{"<html>\n  <h1>502 Bad\tGateway</h1>\n</html>", "<html> <h1>502 Bad Gateway</h1> </html>"},
		{string(long), string(long[:200]) + "…"},
		{"", ""},
	}
	for _, tc := range tests {
		if got := snippet([]byte(tc.in)); got != tc.want {
			t.Errorf("snippet(%.20q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}
