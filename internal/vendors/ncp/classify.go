package ncp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// Envelope says which response body a call expects on success.
type Envelope int

// Envelopes of the NCP APIs (vendors.md §2, §3.2).
const (
	// DataForest is {"success":true,"id":…,"message":…}; "success":false
	// is a failure whatever the HTTP status.
	DataForest Envelope = iota + 1
	// CDSSAction is {"code":0,"message":"SUCCESS","result":true,"requestId":…}:
	// success needs code 0 and result exactly true.
	CDSSAction
	// CDSSRead is the same envelope with an object in result.
	CDSSRead
)

// Verdict is what Classify makes of one HTTP response.
type Verdict struct {
	OK         bool   // the vendor accepted the call
	Transient  bool   // when !OK: retrying may succeed
	VendorCode string // gateway errorCode or CDSS code; empty for Data Forest
	RequestID  string // CDSS requestId
	Message    string // the vendor's message, or why the body was not understood
}

// Sizes of the text Classify copies out of a response.
const (
	maxQuote   = 200 // bytes of an unintelligible body quoted in a message
	maxMessage = 300 // bytes of a vendor message kept
)

// Classify decides, from the HTTP status and the body alone, whether a
// response of the given envelope kind is a success, a transient failure
// or a permanent one (vendors.md §1.4, §2, §3.2, §6):
//
//   - A gateway error {"error":{"errorCode":…,"message":…}} (errorCode a
//     string or an integer) yields VendorCode errorCode, whatever the status.
//   - HTTP 429 (gateway codes 400, 410, 420), 408 and every 5xx (503/500,
//     504/510, 500/900, Data Forest 500 "unexpected error") are transient,
//     even when the body cannot be read.
//   - Every other non-2xx status is permanent: 400/100, 401/200, 401/210,
//     404/300, 413/430, Data Forest 400s, 403 "not allowed or not exists",
//     404, and unexpected redirects.
//   - A 2xx is a success only when its envelope says so; "success":false,
//     a non-zero CDSS code or a CDSS result other than the expected one is
//     permanent, and a body that is not the expected JSON is permanent with
//     a message quoting at most 200 bytes of it.
func Classify(env Envelope, status int, body []byte) Verdict {
	var top map[string]json.RawMessage
	parsed := json.Unmarshal(body, &top) == nil && top != nil

	if status < 200 || status > 299 {
		v := Verdict{Transient: status == http.StatusTooManyRequests ||
			status == http.StatusRequestTimeout || status >= 500}
		if parsed {
			if code, msg, ok := gatewayError(top); ok {
				v.VendorCode, v.Message = code, msg
				return v
			}
			v.Message = stringField(top, "message")
			if env == CDSSAction || env == CDSSRead {
				v.VendorCode, _ = codeField(top["code"])
				v.RequestID = stringField(top, "requestId")
			}
		}
		if v.Message == "" && v.VendorCode == "" {
			v.Message = notUnderstood("", body)
		}
		return v
	}

	if !parsed {
		return Verdict{Message: notUnderstood("", body)}
	}
	if code, msg, ok := gatewayError(top); ok {
		return Verdict{VendorCode: code, Message: msg}
	}
	switch env {
	case DataForest:
		return classifyDataForest(top, body)
	case CDSSAction, CDSSRead:
		return classifyCDSS(env, top, body)
	}
	return Verdict{Message: fmt.Sprintf("unknown envelope kind %d", int(env))}
}

func classifyDataForest(top map[string]json.RawMessage, body []byte) Verdict {
	msg := stringField(top, "message")
	var ok bool
	raw, present := top["success"]
	if !present || json.Unmarshal(raw, &ok) != nil {
		return Verdict{Message: notUnderstood(`no boolean "success"`, body)}
	}
	if !ok {
		if msg == "" {
			msg = `"success":false without a message`
		}
		return Verdict{Message: msg}
	}
	return Verdict{OK: true, Message: msg}
}

func classifyCDSS(env Envelope, top map[string]json.RawMessage, body []byte) Verdict {
	code, ok := codeField(top["code"])
	if !ok {
		return Verdict{Message: notUnderstood(`no "code"`, body)}
	}
	v := Verdict{VendorCode: code, RequestID: stringField(top, "requestId"), Message: stringField(top, "message")}
	if code != "0" {
		return v
	}
	raw, present := top["result"]
	if !present {
		v.Message = notUnderstood(`no "result"`, body)
		return v
	}
	raw = bytes.TrimSpace(raw)
	switch {
	case env == CDSSAction && bytes.Equal(raw, []byte("true")):
		v.OK = true
	case env == CDSSRead && len(raw) > 0 && raw[0] == '{':
		v.OK = true
	case bytes.Equal(raw, []byte("null")), bytes.Equal(raw, []byte("false")):
		v.Message = joinMessage(v.Message, "result "+string(raw))
	default:
		v.Message = notUnderstood(`unexpected "result"`, body)
	}
	return v
}

// gatewayError recognises the API Gateway envelope
// {"error":{"errorCode":"210","message":"…"}}.
func gatewayError(top map[string]json.RawMessage) (code, msg string, ok bool) {
	raw, present := top["error"]
	if !present {
		return "", "", false
	}
	var e map[string]json.RawMessage
	if json.Unmarshal(raw, &e) != nil || e == nil {
		return "", "", false
	}
	code, ok = codeField(e["errorCode"])
	if !ok {
		return "", "", false
	}
	return code, stringField(e, "message"), true
}

// codeField reads a code that is documented as an integer but may come as
// a string: 210, "210" and 0, "0" all work.
func codeField(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil || s == "" {
			return "", false
		}
		return truncate(s, maxMessage), true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) != nil {
		return "", false
	}
	if i, err := n.Int64(); err == nil {
		return strconv.FormatInt(i, 10), true
	}
	return n.String(), true
}

// stringField returns top[key] if it is a JSON string, truncated.
func stringField(top map[string]json.RawMessage, key string) string {
	var s string
	if raw, ok := top[key]; ok && json.Unmarshal(raw, &s) == nil {
		return truncate(s, maxMessage)
	}
	return ""
}

func joinMessage(msg, detail string) string {
	if msg == "" {
		return detail
	}
	return msg + " (" + detail + ")"
}

// notUnderstood says a body was not the expected JSON, quoting at most
// maxQuote bytes of it.
func notUnderstood(why string, body []byte) string {
	s := "response body not understood"
	if why != "" {
		s += ": " + why
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return s + ": empty body"
	}
	return s + ": " + strconv.Quote(truncate(string(body), maxQuote))
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
