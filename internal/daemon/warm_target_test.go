package daemon

import (
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/schedule"
	"github.com/cloudcron/scheduler/internal/secret"
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

// Every action of every vendor knows where its calls connect, so that a
// burst of any of them gets its connections ahead: at once, or (scnet's
// stop, on the ai host) once the host is known.
func TestEveryActionHasADialTarget(t *testing.T) {
	res := secret.Resolver{LookupEnv: func(string) (string, bool) { return "0123456789ABCDEF0123", true }}
	key := &secret.Ref{Env: "K"}
	for _, acc := range []*schedule.Account{
		{Name: "n", Vendor: "ncp", AccessKey: key, SecretKey: key},
		{Name: "o", Vendor: "otc", AccessKey: key, SecretKey: key, ProjectID: strings.Repeat("a", 32)},
		{Name: "s", Vendor: "scnet", Token: key, Endpoints: map[string]string{"ai": "https://ai.example.com:8443/ai"}},
		{Name: "sb", Vendor: "sandbox"},
	} {
		a, err := buildAccount(acc, res, zerolog.Nop())
		if err != nil {
			t.Fatalf("%s: %v", acc.Vendor, err)
		}
		for action := range a.actions {
			tg, ok := a.targets[action]
			if !ok && a.later[action] != nil {
				tg, ok = dialTarget(a.later[action]())
			}
			switch {
			case !ok:
				t.Errorf("%s %s: no dial target", acc.Vendor, action)
			case acc.Vendor == "sandbox" && (tg.TLS || !strings.HasPrefix(tg.Addr, "127.0.0.1:")):
				t.Errorf("%s %s: %+v; want the emulated cloud on loopback", acc.Vendor, action, tg)
			case acc.Vendor != "sandbox" && !tg.TLS:
				t.Errorf("%s %s: %+v; want TLS to the vendor's https host", acc.Vendor, action, tg)
			}
		}
		if acc.Vendor == "scnet" {
			if tg := a.targets["scnet.notebook.start"]; tg.Addr != "www.scnet.cn:443" {
				t.Errorf("scnet start connects to %+v; want the platform host", tg)
			}
			if ai := a.later["scnet.notebook.stop"]; ai == nil {
				t.Error("scnet stop has no ai host to connect to once it is known")
			} else if tg, _ := dialTarget(ai()); tg.Addr != "ai.example.com:8443" {
				t.Errorf("scnet stop connects to %+v; want the configured ai host", tg)
			}
		}
		a.close()
	}
}
