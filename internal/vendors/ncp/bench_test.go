package ncp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloudcron/scheduler/internal/secret"
)

// BenchmarkStartApp measures one Data Forest call (sign, send, read,
// classify) against a loopback server that answers success at once: the
// client's own cost per call, which a burst of 10 000 targets pays 10 000
// times.
func BenchmarkStartApp(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"success":true,"id":"app-burst-000001","message":"started"}`)
	}))
	defer srv.Close()
	c, err := New(Config{
		AccessKey:     secret.New(testAccessKey),
		SecretKey:     secret.New(testSecretKey),
		DataForestURL: srv.URL,
		HTTPClient:    srv.Client(),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.StartApp(ctx, "app-burst-000001"); err != nil {
			b.Fatal(err)
		}
	}
}
