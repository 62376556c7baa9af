package emulator

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestLatency: every answer waits Options.Latency, concurrent requests
// overlap, and the request log keeps the time each request was received.
func TestLatency(t *testing.T) {
	const lat = 50 * time.Millisecond
	c := New(Options{Latency: lat})
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			resp, err := http.Post(srv.URL+"/api/v2/apps/start", "application/json", nil)
			if err != nil {
				t.Error(err)
				return
			}
			_ = resp.Body.Close()
		})
	}
	wg.Wait()
	took := time.Since(start)
	if took < lat {
		t.Errorf("4 requests answered in %s; want >= %s", took, lat)
	}
	if took >= 4*lat {
		t.Errorf("4 concurrent requests took %s; want them to overlap (< %s)", took, 4*lat)
	}
	reqs := c.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests logged; want 4", len(reqs))
	}
	for _, q := range reqs {
		if q.Time.Before(start) || q.Time.Sub(start) >= lat {
			t.Errorf("request logged at start+%s; want the receive time, before the %s latency", q.Time.Sub(start), lat)
		}
	}
}
