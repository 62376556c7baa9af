package daemon

import (
	"testing"

	"github.com/cloudcron/scheduler/internal/warm"
)

// Where an action's calls connect, from its base URL (no proxy set here).
func TestDialTarget(t *testing.T) {
	for _, c := range []struct {
		base string
		want warm.Target
		ok   bool
	}{
		{"https://df.apigw.ntruss.com", warm.Target{Addr: "df.apigw.ntruss.com:443", TLS: true}, true},
		{"https://modelarts.eu-de.otc.t-systems.com:8443/v1", warm.Target{Addr: "modelarts.eu-de.otc.t-systems.com:8443", TLS: true}, true},
		{"http://127.0.0.1:41234", warm.Target{Addr: "127.0.0.1:41234"}, true},
		{"http://[::1]", warm.Target{Addr: "[::1]:80"}, true},
		{"ftp://example.com", warm.Target{}, false},
		{"://nonsense", warm.Target{}, false},
		{"", warm.Target{}, false},
	} {
		got, ok := dialTarget(c.base)
		if got != c.want || ok != c.ok {
			t.Errorf("dialTarget(%q) = %+v, %v; want %+v, %v", c.base, got, ok, c.want, c.ok)
		}
	}
}
