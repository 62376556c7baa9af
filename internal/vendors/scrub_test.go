package vendors

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestScrub(t *testing.T) {
	const sec = "SeCrEt-9f8e7d"
	tests := []struct {
		name     string
		err      error
		wantAs   bool   // errors.As finds a *Error in the result
		wantCode string // its VendorCode after scrubbing
		wantID   string // its RequestID after scrubbing
		wantText string // Error() contains this: the secret was replaced, not the text dropped
	}{
		{"message", &Error{Op: "x", Message: "bad key " + sec, VendorCode: "ModelArts.6309", RequestID: "abc-123"}, true, "ModelArts.6309", "abc-123", "bad key [REDACTED]"},
		{"code echoes request", &Error{Op: "x", VendorCode: "echo Authorization=" + sec}, true, "", "", "vendor code not understood: echo Authorization=[REDACTED]"},
		{"code with spaces", &Error{Op: "x", VendorCode: "not a code"}, true, "", "", "vendor code not understood: not a code"},
		{"request id", &Error{Op: "x", VendorCode: "10004", RequestID: "id " + sec}, true, "10004", "", "x code 10004"},
		{"cause", &Error{Op: "x", Err: fmt.Errorf("dial: token=%s: %w", sec, context.DeadlineExceeded)}, true, "", "", "dial: token=[REDACTED]: context deadline exceeded"},
		{"wrapped", fmt.Errorf("get token for %s: %w", sec, &Error{Op: "x", VendorCode: "10001"}), true, "10001", "", "get token for [REDACTED]: x code 10001"},
		{"plain", fmt.Errorf("plain %s", sec), false, "", "", "plain [REDACTED]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Scrub(tc.err, sec, "")
			if got == nil {
				t.Fatal("Scrub returned nil")
			}
			// Every way a log line or an audit record can format the error.
			for _, verb := range []string{"%v", "%+v", "%s", "%q", "%#v"} {
				if s := fmt.Sprintf(verb, got); strings.Contains(s, sec) {
					t.Errorf("Scrub left the secret in %s: %s", verb, s)
				}
			}
			if s := got.Error(); !strings.Contains(s, tc.wantText) {
				t.Errorf("Error() = %q; want it to contain %q", s, tc.wantText)
			}
			var ve *Error
			if ok := errors.As(got, &ve); ok != tc.wantAs {
				t.Fatalf("errors.As(*Error) = %v; want %v (%v)", ok, tc.wantAs, got)
			}
			if tc.wantAs && (ve.VendorCode != tc.wantCode || ve.RequestID != tc.wantID) {
				t.Errorf("code %q id %q; want %q %q", ve.VendorCode, ve.RequestID, tc.wantCode, tc.wantID)
			}
		})
	}
	deadline := Scrub(&Error{Op: "x", Transient: true, Err: fmt.Errorf("%s: %w", sec, context.DeadlineExceeded)}, sec)
	if !errors.Is(deadline, context.DeadlineExceeded) || !IsTransient(deadline) {
		t.Fatalf("Scrub lost the cause or the class: %v", deadline)
	}
	if clean := (&Error{Op: "x", VendorCode: "0"}); Scrub(clean, sec) != error(clean) {
		t.Fatal("Scrub changed an error without secrets")
	}
}
