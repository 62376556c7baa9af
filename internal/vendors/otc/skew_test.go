package otc

import (
	"context"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors/emulator"
)

// TestShortIAMTokenSkewedClock is the OTC sibling of issue 14's SCNet
// case, against the emulated cloud: IAM tokens that live 30 seconds, and
// an IAM clock two minutes ahead of or behind ours. expires_at is judged
// on our clock through the Date header, and a token is reused until half
// its life has passed, never sent expired (before: a fresh token for every
// call, since 30 s is inside the fixed 5-minute margin).
func TestShortIAMTokenSkewedClock(t *testing.T) {
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
			c, err := New(Config{ProjectID: cr.OTCProjectID, ModelArtsURL: cloud.URL(), IAMURL: cloud.URL(), Auth: AuthIAM,
				Username: secret.New(cr.OTCUsername), Password: secret.New(cr.OTCPassword), Domain: cr.OTCDomain, Now: local.Now})
			if err != nil {
				t.Fatal(err)
			}
			const calls = 19 // one every 10 seconds for 3 minutes: six token lifetimes
			for i := range calls {
				if _, err := c.StartNotebook(context.Background(), testID); err != nil {
					t.Fatalf("call %d (+%ds): %v", i, i*10, err)
				}
				local.Advance(10 * time.Second)
			}
			fetches, refused := 0, 0
			for _, r := range cloud.Requests() {
				switch {
				case r.Status == 401:
					refused++
				case r.Path == "/v3/auth/tokens":
					fetches++
				}
			}
			if refused != 0 || fetches < 6 || fetches > 13 {
				for _, r := range cloud.Requests() {
					t.Logf("%s %s %d %s", r.Time.Format("15:04:05"), r.Path, r.Status, r.VendorCode)
				}
				t.Errorf("refused %d, fetched %d tokens for %d calls; want none refused and a token per half lifetime", refused, fetches, calls)
			}
		})
	}
}
