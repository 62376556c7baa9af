package otc

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// opKind is what a call does, which decides how "already in that state"
// codes read.
type opKind int

const (
	opStart opKind = iota
	opStop
	opRead
)

// class is the outcome of one response.
type class int

const (
	classSuccess   class = iota // 2xx
	classAlready                // the target is already in the wanted state: success
	classTransient              // retrying may succeed
	classPermanent              // do not retry
	classAuth                   // signature or AK/SK rejected: permanent, never loop (AK lockout)
	classToken                  // token missing/expired/invalid: with auth iam refresh once and replay; with aksk permanent
)

func (c class) String() string {
	return [...]string{"success", "already", "transient", "permanent", "auth", "token"}[c]
}

// Vendor codes by class (vendors.md §4.6 and §6).
var (
	transientCodes = codeSet(
		"APIG.0308",                                        // 429 throttled
		"APIG.0201", "APIG.0202", "APIG.0203", "APIG.0613", // backend or IAM unavailable
		"ModelArts.6306", "ModelArts.6308", // starting / stopping
		"ModelArts.6333", "ModelArts.6355", "ModelArts.6357", // restoring, initialising, operation in progress
		"ModelArts.6360", "ModelArts.6329", "ModelArts.6716", "ModelArts.6528", // resources sold out
		"ModelArts.0010", // internal error
	)
	authCodes  = codeSet("APIG.0301", "APIG.0303", "ModelArts.0206")
	tokenCodes = codeSet("ModelArts.0201", "ModelArts.0202", "ModelArts.0203", "ModelArts.0204",
		"ModelArts.6620", "APIG.0307")
	permanentCodes = codeSet(
		"ModelArts.6309", "ModelArts.6326", // does not exist, frozen
		"ModelArts.6327",                                     // not running: state conflict, read status
		"ModelArts.0207", "ModelArts.0210", "ModelArts.0212", // token lacks the project / project mismatch
		"ModelArts.0108", "ModelArts.0112", // not authorised
	)
)

func codeSet(codes ...string) map[string]bool {
	m := make(map[string]bool, len(codes))
	for _, c := range codes {
		m[c] = true
	}
	return m
}

// classify maps an HTTP status and the envelope's error code to a class.
// A known code decides before the status; an unknown or missing code falls
// back to the status: 2xx success, 408, 429 and 5xx transient, 401 a token
// problem, any other status permanent.
func classify(op opKind, status int, code string) class {
	switch {
	case code == "ModelArts.6305" && op == opStart, // already running
		code == "ModelArts.6307" && op == opStop: // already stopped
		return classAlready
	case transientCodes[code]:
		return classTransient
	case authCodes[code]:
		return classAuth
	case tokenCodes[code]:
		return classToken
	case permanentCodes[code], code == "ModelArts.6305", code == "ModelArts.6307":
		return classPermanent
	}
	switch {
	case status >= 200 && status < 300:
		return classSuccess
	case status == 408, status == 429, status >= 500:
		return classTransient
	case status == 401:
		return classToken
	}
	return classPermanent
}

// envelope is a ModelArts/APIG/IAM error body.
type envelope struct {
	Code, Message string
}

// parseEnvelope finds the error code and message in body. It accepts
// error_code with error_msg or error_message, and code with message,
// at the top level or in nested objects (as the huaweicloud SDK does;
// IAM nests {"error":{"code":401,"message":…}}). ok is false when body is
// not a JSON object or carries no code.
func parseEnvelope(body []byte) (env envelope, ok bool) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return envelope{}, false
	}
	return findEnvelope(m, 0)
}

func findEnvelope(m map[string]any, depth int) (envelope, bool) {
	if code := scalar(m["error_code"]); code != "" {
		return envelope{Code: code, Message: firstScalar(m, "error_msg", "error_message", "message")}, true
	}
	if code := scalar(m["code"]); code != "" {
		return envelope{Code: code, Message: firstScalar(m, "message", "msg", "error_msg")}, true
	}
	if depth >= 3 {
		return envelope{}, false
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic when several nested objects carry codes
	for _, k := range keys {
		if sub, ok := m[k].(map[string]any); ok {
			if env, ok := findEnvelope(sub, depth+1); ok {
				return env, true
			}
		}
	}
	return envelope{}, false
}

func firstScalar(m map[string]any, keys ...string) string {
	for _, k := range keys {
		if s := scalar(m[k]); s != "" {
			return s
		}
	}
	return ""
}

// scalar renders a JSON string or number; anything else is "".
func scalar(v any) string {
	switch v := v.(type) {
	case string:
		return strings.TrimSpace(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

// snippet makes a short single-line excerpt of a body that is not an
// envelope (an HTML error page from a proxy), for the error message.
func snippet(body []byte) string {
	const max = 200
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(body), ""))
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max]) + "…"
	}
	return s
}
