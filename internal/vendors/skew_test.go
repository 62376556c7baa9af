package vendors

import (
	"net/http"
	"testing"
	"time"
)

func TestServerSkewAndRenewAt(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	h := http.Header{}
	if s := ServerSkew(h, now); s != 0 {
		t.Errorf("no Date: skew %v; want 0", s)
	}
	h.Set("Date", "garbage")
	if s := ServerSkew(h, now); s != 0 {
		t.Errorf("bad Date: skew %v; want 0", s)
	}
	h.Set("Date", now.Add(-2*time.Minute).Format(http.TimeFormat))
	if s := ServerSkew(h, now); s != -2*time.Minute+time.Second {
		t.Errorf("server 2 min behind: skew %v; want -1m59s (a second of Date resolution taken ahead)", s)
	}
	for _, tc := range []struct {
		life, margin, want time.Duration
	}{
		{time.Hour, 5 * time.Minute, 55 * time.Minute},
		{30 * time.Second, 5 * time.Minute, 15 * time.Second},
		{-time.Minute, 5 * time.Minute, -time.Minute},
	} {
		if got := RenewAt(now, now.Add(tc.life), tc.margin).Sub(now); got != tc.want {
			t.Errorf("RenewAt(lifetime %v, margin %v) = now%+v; want now%+v", tc.life, tc.margin, got, tc.want)
		}
	}
}
