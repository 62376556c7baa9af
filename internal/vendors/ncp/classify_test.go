package ncp

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	htmlPage := "<html><head><title>502 Bad Gateway</title></head><body>" + strings.Repeat("x", 500) + "</body></html>"
	tests := []struct {
		name   string
		env    Envelope
		status int
		body   string
		want   Verdict
		// wantMsg, if set, must be contained in Message instead of an
		// exact match of want.Message.
		wantMsg string
	}{
		// Data Forest (vendors.md §2).
		{name: "df success", env: DataForest, status: 200,
			body: `{"success":true,"id":"7kHeVWhiRsxdRl0nXz04ri"}`,
			want: Verdict{OK: true}},
		{name: "df success with message", env: DataForest, status: 200,
			body: `{"success":true,"message":"success","id":"cMmEw7HCjVQdcHh3JVOptL"}`,
			want: Verdict{OK: true, Message: "success"}},
		{name: "df success false in 200", env: DataForest, status: 200,
			body: `{"success":false,"message":"invalid request parameters"}`,
			want: Verdict{Message: "invalid request parameters"}},
		{name: "df success false without message", env: DataForest, status: 200,
			body: `{"success":false}`,
			want: Verdict{Message: `"success":false without a message`}},
		{name: "df 400 quota", env: DataForest, status: 400,
			body: `{"success":false,"message":"exceeded limit on resource quota"}`,
			want: Verdict{Message: "exceeded limit on resource quota"}},
		{name: "df 403 not exists", env: DataForest, status: 403,
			body: `{"message":"resource ('string') is not allowed or not exists","success":false}`,
			want: Verdict{Message: "resource ('string') is not allowed or not exists"}},
		{name: "df 404", env: DataForest, status: 404,
			body: `{"success":false,"message":"no such element"}`,
			want: Verdict{Message: "no such element"}},
		{name: "df 500 unexpected error", env: DataForest, status: 500,
			body: `{"success":false,"message":"unexpected error"}`,
			want: Verdict{Transient: true, Message: "unexpected error"}},
		{name: "df 200 without success", env: DataForest, status: 200,
			body: `{"id":"x"}`, wantMsg: `response body not understood: no boolean "success": "{\"id\":\"x\"}"`},
		{name: "df 200 success not a bool", env: DataForest, status: 200,
			body: `{"success":"true"}`, wantMsg: `no boolean "success"`},
		{name: "df 200 not json", env: DataForest, status: 200,
			body: htmlPage, wantMsg: `response body not understood: "<html>`},
		{name: "df 200 json array", env: DataForest, status: 200,
			body: `[true]`, wantMsg: `response body not understood: "[true]"`},
		{name: "df 200 empty", env: DataForest, status: 200,
			body: ``, want: Verdict{Message: "response body not understood: empty body"}},

		// Gateway errors (vendors.md §1.4), errorCode as string or integer.
		{name: "gw 400/100", env: DataForest, status: 400,
			body: `{"error":{"errorCode":"100","message":"Bad Request Exception"}}`,
			want: Verdict{VendorCode: "100", Message: "Bad Request Exception"}},
		{name: "gw 401/200 string code", env: DataForest, status: 401,
			body: `{"error":{"errorCode":"200","message":"Authentication Failed"}}`,
			want: Verdict{VendorCode: "200", Message: "Authentication Failed"}},
		{name: "gw 401/210 integer code", env: CDSSAction, status: 401,
			body: `{"error":{"errorCode":210,"message":"Permission Denied"}}`,
			want: Verdict{VendorCode: "210", Message: "Permission Denied"}},
		{name: "gw 404/300", env: CDSSAction, status: 404,
			body: `{"error":{"errorCode":"300","message":"Not Found Exception"}}`,
			want: Verdict{VendorCode: "300", Message: "Not Found Exception"}},
		{name: "gw 413/430", env: DataForest, status: 413,
			body: `{"error":{"errorCode":430,"message":"Request Entity Too Large"}}`,
			want: Verdict{VendorCode: "430", Message: "Request Entity Too Large"}},
		{name: "gw 429/400 quota", env: DataForest, status: 429,
			body: `{"error":{"errorCode":"400","message":"Quota Exceeded"}}`,
			want: Verdict{Transient: true, VendorCode: "400", Message: "Quota Exceeded"}},
		{name: "gw 429/410 throttle", env: CDSSAction, status: 429,
			body: `{"error":{"errorCode":"410","message":"Throttle Limited"}}`,
			want: Verdict{Transient: true, VendorCode: "410", Message: "Throttle Limited"}},
		{name: "gw 429/420 rate", env: CDSSAction, status: 429,
			body: `{"error":{"errorCode":420,"message":"Rate Limited"}}`,
			want: Verdict{Transient: true, VendorCode: "420", Message: "Rate Limited"}},
		{name: "gw 503/500", env: DataForest, status: 503,
			body: `{"error":{"errorCode":"500","message":"Endpoint Error"}}`,
			want: Verdict{Transient: true, VendorCode: "500", Message: "Endpoint Error"}},
		{name: "gw 504/510", env: CDSSAction, status: 504,
			body: `{"error":{"errorCode":"510","message":"Endpoint Timeout"}}`,
			want: Verdict{Transient: true, VendorCode: "510", Message: "Endpoint Timeout"}},
		{name: "gw 500/900", env: CDSSAction, status: 500,
			body: `{"error":{"errorCode":"900","message":"Unexpected Error"}}`,
			want: Verdict{Transient: true, VendorCode: "900", Message: "Unexpected Error"}},
		{name: "gw envelope on 200 is a failure", env: DataForest, status: 200,
			body: `{"error":{"errorCode":"200","message":"Authentication Failed"}}`,
			want: Verdict{VendorCode: "200", Message: "Authentication Failed"}},

		// Status alone.
		{name: "429 without body", env: DataForest, status: 429, body: ``,
			want: Verdict{Transient: true, Message: "response body not understood: empty body"}},
		{name: "408", env: DataForest, status: 408, body: ``,
			want: Verdict{Transient: true, Message: "response body not understood: empty body"}},
		{name: "502 html stays transient", env: CDSSAction, status: 502, body: htmlPage,
			want: Verdict{Transient: true}, wantMsg: `response body not understood: "<html><head><title>502 Bad Gateway`},
		{name: "404 html is permanent", env: DataForest, status: 404, body: `<html>Not Found</html>`,
			want: Verdict{Message: `response body not understood: "<html>Not Found</html>"`}},
		{name: "302 redirect is permanent", env: DataForest, status: 302, body: ``,
			want: Verdict{Message: "response body not understood: empty body"}},

		// CDSS (vendors.md §3.2, seed 002).
		{name: "cdss success", env: CDSSAction, status: 200,
			body: `{"code":0,"message":"SUCCESS","result":true,"requestId":"2757144e-8548-472d-9d65-962406b4efa0"}`,
			want: Verdict{OK: true, VendorCode: "0", RequestID: "2757144e-8548-472d-9d65-962406b4efa0", Message: "SUCCESS"}},
		{name: "cdss success string code", env: CDSSAction, status: 200,
			body: `{"code":"0","message":"SUCCESS","result":true,"requestId":"r1"}`,
			want: Verdict{OK: true, VendorCode: "0", RequestID: "r1", Message: "SUCCESS"}},
		{name: "cdss result null", env: CDSSAction, status: 200,
			body: `{"code":0,"message":"SUCCESS","result":null,"requestId":"r2"}`,
			want: Verdict{VendorCode: "0", RequestID: "r2", Message: "SUCCESS (result null)"}},
		{name: "cdss result false", env: CDSSAction, status: 200,
			body: `{"code":0,"result":false,"requestId":"r3"}`,
			want: Verdict{VendorCode: "0", RequestID: "r3", Message: "result false"}},
		{name: "cdss non-zero code", env: CDSSAction, status: 200,
			body: `{"code":1001,"message":"cluster is not running","result":null,"requestId":"r4"}`,
			want: Verdict{VendorCode: "1001", RequestID: "r4", Message: "cluster is not running"}},
		{name: "cdss non-zero code with result true", env: CDSSAction, status: 200,
			body: `{"code":7,"message":"odd","result":true}`,
			want: Verdict{VendorCode: "7", Message: "odd"}},
		{name: "cdss no code", env: CDSSAction, status: 200,
			body: `{"message":"SUCCESS","result":true}`, wantMsg: `response body not understood: no "code"`},
		{name: "cdss no result", env: CDSSAction, status: 200,
			body: `{"code":0,"message":"SUCCESS","requestId":"r5"}`,
			want: Verdict{VendorCode: "0", RequestID: "r5"}, wantMsg: `no "result"`},
		{name: "cdss action result object", env: CDSSAction, status: 200,
			body: `{"code":0,"result":{"a":1}}`,
			want: Verdict{VendorCode: "0"}, wantMsg: `unexpected "result"`},
		{name: "cdss read result object", env: CDSSRead, status: 200,
			body: `{"code":0,"message":"SUCCESS","result":{"cmakStatus":"running"},"requestId":"r6"}`,
			want: Verdict{OK: true, VendorCode: "0", RequestID: "r6", Message: "SUCCESS"}},
		{name: "cdss read result true", env: CDSSRead, status: 200,
			body: `{"code":0,"result":true}`,
			want: Verdict{VendorCode: "0"}, wantMsg: `unexpected "result"`},
		{name: "cdss read result null", env: CDSSRead, status: 200,
			body: `{"code":0,"result":null}`,
			want: Verdict{VendorCode: "0", Message: "result null"}},
		{name: "cdss error envelope on 500", env: CDSSAction, status: 500,
			body: `{"code":"9999","message":"internal","requestId":"r7"}`,
			want: Verdict{Transient: true, VendorCode: "9999", RequestID: "r7", Message: "internal"}},
		{name: "cdss error envelope on 400", env: CDSSAction, status: 400,
			body: `{"code":400,"message":"bad cluster number"}`,
			want: Verdict{VendorCode: "400", Message: "bad cluster number"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Classify(tc.env, tc.status, []byte(tc.body))
			if tc.wantMsg != "" {
				if !strings.Contains(got.Message, tc.wantMsg) {
					t.Errorf("Classify(%d, %q).Message = %q; want it to contain %q", tc.status, tc.body, got.Message, tc.wantMsg)
				}
				got.Message = tc.want.Message
			}
			if got != tc.want {
				t.Errorf("Classify(%d, %q) = %+v; want %+v", tc.status, tc.body, got, tc.want)
			}
		})
	}
}

func TestClassifyQuotesAtMost200Bytes(t *testing.T) {
	body := "<html>" + strings.Repeat("é", 1000) + "</html>"
	v := Classify(DataForest, 200, []byte(body))
	if v.OK || v.Transient {
		t.Fatalf("Classify(200, html) = %+v; want permanent", v)
	}
	if len(v.Message) > len("response body not understood: ")+maxQuote+20 {
		t.Errorf("message is %d bytes; want the body quoted to at most %d bytes: %q", len(v.Message), maxQuote, v.Message)
	}
	if !strings.HasSuffix(v.Message, `…"`) {
		t.Errorf("message %q does not mark the cut", v.Message)
	}
}
