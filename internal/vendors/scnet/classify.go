package scnet

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// class is what one SCNet response means for the caller.
type class int

const (
	success   class = iota
	transient       // retrying may succeed
	permanent       // do not retry
	// authFailed is an auth-looking failure: permanent with a ready token
	// (mode 1); with AK/SK (mode 2) the client fetches a fresh token and
	// retries the call once, then treats it as permanent.
	authFailed
)

func (c class) String() string {
	switch c {
	case success:
		return "success"
	case transient:
		return "transient"
	case permanent:
		return "permanent"
	case authFailed:
		return "auth"
	}
	return "invalid"
}

// classify maps an HTTP status and the envelope's code to a class
// (vendors.md §5.4 and §6). The HTTP status decides first: 429 and 5xx are
// transient whatever the body says, 401 and 403 are auth failures, any other
// status outside 2xx is permanent. On 2xx the code decides: "0" is success;
// 10001 (internal error) and 10012 (connection interrupted) are transient;
// 10008 (insufficient permission) and 10009 (no permission to access the
// interface) are auth failures, because SCNet documents no token-expired
// code and these are what an expired or wrong-region token most plausibly
// yields; every other code, an unknown one included, is permanent, and so is
// an empty code (a 2xx body without a readable envelope): retrying an
// answer we do not understand would only repeat it.
func classify(status int, code string) class {
	switch {
	case status == 429 || status >= 500:
		return transient
	case status == 401 || status == 403:
		return authFailed
	case status < 200 || status > 299:
		return permanent
	}
	switch code {
	case "0":
		return success
	case "10001", "10012":
		return transient
	case "10008", "10009":
		return authFailed
	}
	return permanent
}

// envelope is SCNet's response wrapper {"code":"0","msg":"success","data":…}.
type envelope struct {
	Code flexString      `json:"code"`
	Msg  string          `json:"msg"`
	Data json.RawMessage `json:"data"`

	// skew is the server's clock minus ours, judged from the answer's
	// Date header (0 without one); see tokenSource.set.
	skew time.Duration `json:"-"`
}

// flexString decodes a JSON string or number as its text (numbers keep their
// literal digits, so 19-digit ids survive) and null as "".
type flexString string

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*f = ""
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = flexString(n.String())
	return nil
}

// flexBool decodes true/false or the strings "true"/"false"; anything else
// is false.
type flexBool bool

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexBool) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(bytes.TrimSpace(b)), `"`)
	*f = flexBool(strings.EqualFold(s, "true"))
	return nil
}
