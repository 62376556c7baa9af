package schedule

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxFileBytes is the largest schedule file Load and LoadFile accept. A
// file over it is refused before it is read or parsed: decoding a file of
// hundreds of megabytes takes seconds and gigabytes of memory, and no
// honest schedule comes near it (100 000 jobs are about 15 MiB).
const MaxFileBytes = 64 << 20

// tooBig is the problem reported for a file of size bytes.
func tooBig(name string, size int64) Problems {
	return Problems{{File: name, Msg: fmt.Sprintf("the file is %d bytes, over the limit of %d MiB for a schedule; was the wrong file given?", size, MaxFileBytes>>20)}}
}

// NameProblem returns what is wrong with a job or window name, or "" when
// nothing is. Names are printed in `next`, in logs and in the audit log, so
// control characters (a newline would forge a line of output), bidi
// controls (they reorder what a reader sees) and line or paragraph
// separators are refused; the message names the first offending character.
func NameProblem(name string) string {
	const fix = "; names may use letters, digits, spaces and punctuation"
	for i, r := range name {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(name[i:]); n <= 1 {
				return fmt.Sprintf("name is not valid UTF-8 (byte %d)", i)
			}
		}
		if what := forbiddenRune(r); what != "" {
			return fmt.Sprintf("name contains %U (%s) at byte %d%s", r, what, i, fix)
		}
	}
	return ""
}

// controlNames names the control characters people meet.
var controlNames = map[rune]string{
	'\t': "tab", '\n': "line feed", '\v': "vertical tab", '\f': "form feed", '\r': "carriage return",
	0x1b: "escape", 0x7f: "delete", 0x85: "next line", 0: "NUL",
}

// forbiddenRune describes r when a name may not contain it.
func forbiddenRune(r rune) string {
	switch {
	case unicode.Is(unicode.Cc, r):
		if n, ok := controlNames[r]; ok {
			return "control character, " + n
		}
		return "control character"
	case r == 0x2028:
		return "line separator"
	case r == 0x2029:
		return "paragraph separator"
	case unicode.Is(unicode.Bidi_Control, r):
		return "bidi control character"
	}
	return ""
}

// endpointLoopback reports whether the endpoint URL s names a loopback
// host (localhost, 127.0.0.0/8, ::1).
func endpointLoopback(u *url.URL) bool {
	h := u.Hostname()
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// insecureEndpoints lists the endpoints of a that are plain http on a host
// other than loopback, as "name=URL", sorted.
func insecureEndpoints(a *Account) []string {
	var out []string
	for k, s := range a.Endpoints {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "http" || endpointLoopback(u) {
			continue
		}
		out = append(out, k+"="+s)
	}
	sort.Strings(out)
	return out
}

// checkInsecure refuses plain http endpoints on a network host unless the
// account says insecure_http: true.
func (v *validator) checkInsecure(base string, a *Account) {
	if a.InsecureHTTP {
		return
	}
	for _, e := range insecureEndpoints(a) {
		k, s, _ := strings.Cut(e, "=")
		v.errAt(child(child(base, "endpoints"), k),
			"%s is plain http to a host that is not loopback: the account's credentials or signatures would cross the network in clear; use https://, or set insecure_http: true on the account if the network is trusted", s)
	}
}

// Warnings returns what a valid schedule does that deserves a loud
// warning on every start and validate: accounts that send credentials in
// clear (insecure_http: true with plain http endpoints).
func (c *Config) Warnings() []string {
	names := make([]string, 0, len(c.Accounts))
	for n := range c.Accounts {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		a := c.Accounts[n]
		if a == nil || !a.InsecureHTTP {
			continue
		}
		eps := insecureEndpoints(a)
		if len(eps) == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("accounts.%s: insecure_http: true: credentials and signatures cross the network in clear to %s; anyone on the path can read and replay them",
			n, strings.Join(eps, ", ")))
	}
	return append(out, c.windowWarnings()...)
}
