package scnet

import (
	"context"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
)

// TestShortTokenSkewedClock is issue 14's SCNet case, against the emulated
// cloud: region tokens that live 30 seconds, and a server clock two
// minutes ahead of or behind ours. The client judges the skew from the
// answers' Date header, renews through tokens/next before the token's own
// expiry, and never sends an expired token (no 401, one AK/SK fetch).
func TestShortTokenSkewedClock(t *testing.T) {
	for _, skew := range []time.Duration{2 * time.Minute, -2 * time.Minute, 0} {
		t.Run(skew.String(), func(t *testing.T) {
			local := &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
			cloud := emulator.New(emulator.Options{
				Now:             func() time.Time { return local.Now().Add(skew) },
				TokenLifetime:   30 * time.Second,
				TransitionDelay: -1,
			})
			if err := cloud.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cloud.Close() })
			cr := cloud.Credentials()
			c, err := New(Config{
				User: secret.New(cr.SCNetUser), AccessKey: secret.New(cr.SCNetAccessKey), SecretKey: secret.New(cr.SCNetSecretKey),
				AuthURL: cloud.URL(), PlatformURL: cloud.URL(), AIURL: cloud.URL(), Now: local.Now,
			})
			if err != nil {
				t.Fatal(err)
			}
			// A call every 10 seconds for 3 minutes: six token lifetimes.
			for i := range 19 {
				if _, err := c.StartNotebook(context.Background(), nbID); err != nil {
					t.Fatalf("call %d (+%ds): %v", i, i*10, err)
				}
				local.Add(10 * time.Second)
			}
			fetch, renew, refused := 0, 0, 0
			for _, r := range cloud.Requests() {
				switch {
				case r.Status == 401 || r.VendorCode == "10002" || r.VendorCode == "10008" && r.Path != "/ac/openapi/v2/tokens/next":
					refused++
				case r.Path == "/api/user/v3/tokens":
					fetch++
				case r.Path == "/ac/openapi/v2/tokens/next":
					renew++
				}
			}
			if refused != 0 || fetch != 1 || renew < 5 {
				for _, r := range cloud.Requests() {
					t.Logf("%s %s %d %s", r.Time.Format("15:04:05"), r.Path, r.Status, r.VendorCode)
				}
				t.Errorf("refused %d, fetched %d, renewed %d; want 0 refused, 1 fetch, a renewal per token lifetime", refused, fetch, renew)
			}
		})
	}
}
