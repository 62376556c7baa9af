// Package secret holds credential values and the references that name them.
//
// A Value never prints itself: String, GoString, Format, MarshalJSON,
// MarshalText and zerolog marshalling all produce a fixed redaction, so a
// secret that reaches a log line, an audit record or an error by accident
// shows up as "[REDACTED]". Code that must send the secret to a vendor calls
// Reveal, and only there.
package secret

import (
	"fmt"

	"github.com/rs/zerolog"
)

// Redacted is what a Value prints in place of its content.
const Redacted = "[REDACTED]"

// Value is a secret string that refuses to be printed.
type Value struct {
	s string
}

// New wraps s as a secret Value.
func New(s string) Value { return Value{s: s} }

// Reveal returns the secret itself. Call it only where the secret is sent
// or used as a key; never pass its result to a logger or an error.
func (v Value) Reveal() string { return v.s }

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return v.s == "" }

// String implements fmt.Stringer with a redaction.
func (v Value) String() string { return Redacted }

// GoString implements fmt.GoStringer with a redaction.
func (v Value) GoString() string { return "secret.Value(" + Redacted + ")" }

// Format implements fmt.Formatter so that every verb, %x and %q included,
// prints the redaction.
func (v Value) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(v.GoString()))
		return
	}
	_, _ = f.Write([]byte(Redacted))
}

// MarshalJSON implements json.Marshaler with a redaction.
func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler with a redaction.
func (v Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// MarshalZerologObject implements zerolog.LogObjectMarshaler with a redaction.
func (v Value) MarshalZerologObject(e *zerolog.Event) { e.Str("secret", Redacted) }

var _ zerolog.LogObjectMarshaler = Value{}
