package vendors

import (
	"errors"
	"strings"
)

// maxCodeLen and maxRequestIDLen bound what a vendor may put in the audit
// log's vendor_code and request_id fields.
const (
	maxCodeLen      = 64
	maxRequestIDLen = 128
)

// Scrub removes every occurrence of the given secrets from err (a *Error's
// message, vendor code, request id and cause, or any other error's text),
// and drops a vendor code or request id that is not shaped like one
// (a server that echoes our request back can put anything there). It
// returns err itself when there was nothing to change. Empty secrets are
// ignored. Only the shape of errors.Is/As through a *Error is kept: a
// cause whose text held a secret is replaced by its scrubbed text.
func Scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	var ve *Error
	if !errors.As(err, &ve) {
		if s := scrubString(err.Error(), secrets); s != err.Error() {
			return &scrubbed{msg: s, cause: err}
		}
		return err
	}
	ve.Message = scrubString(ve.Message, secrets)
	if code := scrubString(ve.VendorCode, secrets); code != ve.VendorCode || !wellFormed(code, maxCodeLen) {
		if ve.VendorCode != "" {
			ve.Message = strings.TrimSpace(ve.Message + " (vendor code not understood: " + truncate(code, 80) + ")")
		}
		ve.VendorCode = ""
		if wellFormed(code, maxCodeLen) {
			ve.VendorCode = code
		}
	}
	if id := scrubString(ve.RequestID, secrets); id != ve.RequestID || !wellFormed(id, maxRequestIDLen) {
		ve.RequestID = ""
	}
	if ve.Err != nil {
		if s := scrubString(ve.Err.Error(), secrets); s != ve.Err.Error() {
			ve.Err = &scrubbed{msg: s, cause: ve.Err}
		}
	}
	if s := scrubString(err.Error(), secrets); s != err.Error() {
		// A wrapper around the *Error quoted a secret too.
		return &scrubbed{msg: s, cause: err}
	}
	return err
}

// scrubbed is an error whose text had secrets removed. Unwrap keeps
// errors.Is (context.DeadlineExceeded) and errors.As working; Error never
// shows the original text.
type scrubbed struct {
	msg   string
	cause error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.cause }

func scrubString(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 && strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	return s
}

// wellFormed reports whether s looks like a code or an id: short, and made
// of letters, digits and . _ : - only. The empty string is well formed.
func wellFormed(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == ':' || r == '-') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
