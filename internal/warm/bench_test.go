package warm

import (
	"io"
	"sync"
	"testing"
	"time"
)

// BenchmarkBurstTLS measures a burst of 64 calls at once to an https
// server (HTTP/1.1, loopback), from the instant they are released to the
// last response: on new connections (each with its TLS handshake in the
// burst), and on connections Want opened and handshook ahead.
func BenchmarkBurstTLS(b *testing.B) {
	const n = 64
	for _, ahead := range []bool{false, true} {
		name := "new"
		if ahead {
			name = "ahead"
		}
		b.Run(name, func(b *testing.B) {
			s, _ := newTLSServer(b, false)
			for b.Loop() {
				b.StopTimer()
				d := trusting(s)
				hc := tlsClient(d, n)
				target := Target{Addr: s.addr(), TLS: true}
				if ahead {
					d.Want(target, time.Now().Add(time.Minute), n, n)
					for _, idle := d.Open(target); idle < n; _, idle = d.Open(target) {
						time.Sleep(time.Millisecond)
					}
				}
				var wg sync.WaitGroup
				b.StartTimer()
				for range n {
					wg.Go(func() {
						res, err := hc.Get(s.URL)
						if err != nil {
							b.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, res.Body)
						_ = res.Body.Close()
					})
				}
				wg.Wait()
				b.StopTimer()
				hc.CloseIdleConnections()
				d.Close()
				b.StartTimer()
			}
		})
	}
}
