package vendors

import (
	"net/http"
	"time"
)

// ServerSkew judges the server's clock minus ours from an answer's Date
// header, received at now; 0 without a readable one. Token expiry times
// are on the server's clock: adding -ServerSkew puts them on ours. Date
// has whole seconds and was stamped before the answer left, so the
// server's clock is taken to be a second ahead of it: a token is replaced
// early rather than late.
func ServerSkew(h http.Header, now time.Time) time.Duration {
	d, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		return 0
	}
	return d.Add(time.Second).Sub(now)
}

// RenewAt returns when a token that expires at exp (on our clock), and was
// obtained at now, is due for replacement: margin before exp, or half of
// a shorter lifetime, so that a token however short-lived is replaced
// before its own expiry. A token already expired serves the call that
// obtained it only (RenewAt is now or earlier).
func RenewAt(now, exp time.Time, margin time.Duration) time.Time {
	return exp.Add(-min(margin, max(exp.Sub(now), 0)/2))
}
