// Package vendors holds what every vendor client shares: the result of one
// call, the classified error a failed call returns, and the helpers the
// executor uses to decide whether to retry.
//
// Each vendor lives in its own sub-package (ncp, scnet, otc) and returns
// *Error for every failure it can classify: a vendor envelope that says
// "no", an HTTP status, or a transport failure (always Transient). The
// emulated cloud used by `scheduler demo` and the tests is in
// internal/vendors/emulator.
package vendors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Result describes a call the vendor accepted.
type Result struct {
	HTTPStatus int    // HTTP status of the response
	VendorCode string // the envelope's code, where it has one ("0", "0" for CDSS, …)
	RequestID  string // the vendor's request id, where it returns one
	Message    string // the vendor's message, if any
	// Already is set when the vendor said the resource was already in the
	// target state ("already running" on start, "already stopped" on stop);
	// the action counts as a success.
	Already bool
	State   string // a resource state the response reported, if any
}

// Error is a failed vendor call, classified.
type Error struct {
	Op         string // what was being done, e.g. "otc: start notebook 6fa4…"
	Transient  bool   // retrying may succeed
	HTTPStatus int    // 0 when no response arrived
	VendorCode string
	RequestID  string
	Message    string        // the vendor's message; never contains secrets we sent
	RetryAfter time.Duration // from a Retry-After header, 0 if none
	Err        error         // underlying cause (transport errors are redacted)
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.HTTPStatus)
	}
	if e.VendorCode != "" {
		fmt.Fprintf(&b, " code %s", e.VendorCode)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// IsTransient reports whether err is worth retrying: a *Error marked
// Transient, or a context deadline of the attempt itself. Any other error
// is permanent.
func IsTransient(err error) bool {
	var ve *Error
	if errors.As(err, &ve) {
		return ve.Transient
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// RetryAfter returns the server's Retry-After hint carried by err, if any.
func RetryAfter(err error) (time.Duration, bool) {
	var ve *Error
	if errors.As(err, &ve) && ve.RetryAfter > 0 {
		return ve.RetryAfter, true
	}
	return 0, false
}

// ParseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
// It returns 0 when the header is absent or unreadable.
func ParseRetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// TransportError wraps a failure to get a response (dial, TLS, timeout,
// reset) as a transient *Error. The cause is reduced to its message with
// the URL removed, because URLs may carry query-string credentials.
func TransportError(op string, err error) *Error {
	return &Error{Op: op, Transient: true, Err: redactURLError(err)}
}

// redactURLError strips the URL from a *url.Error, keeping the method and
// the cause (errors.Is still sees context.DeadlineExceeded through it).
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// MaxBody is the most of a response body any client reads.
const MaxBody = 1 << 20
