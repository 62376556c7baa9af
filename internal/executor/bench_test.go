package executor

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/ratelimit"
	"github.com/cloudcron/scheduler/internal/vendors"
)

// countingAuditor keeps no records, only their number: the benchmark
// measures the executor, not the audit log (which has its own benchmarks).
type countingAuditor struct{ n atomic.Int64 }

func (a *countingAuditor) Append(audit.Record) error { a.n.Add(1); return nil }

func (a *countingAuditor) AppendBatch(rs []audit.Record) error {
	a.n.Add(int64(len(rs)))
	return nil
}

// BenchmarkBurst is issue 10's burst: one job with 10 000 targets on one
// account, concurrency 64, every call taking 20 ms. It reports the fire's
// duration as a ratio to the bound N·L/C (x-bound, the worst iteration),
// the peak of heap objects plus goroutine stacks sampled during the fire
// (peak-live-MB), and the process's peak RSS (peak-RSS-MB: VmHWM, reset
// before each fire; it includes the in-process server).
//
//	go test -run '^$' -bench Burst -benchtime 3x ./internal/executor
//
// Variants: call=http goes to a loopback httptest server that answers
// after 20 ms, through an http.Client wrapped by the account's
// ratelimit.Limiter as the daemon builds it; call=inproc is an action that
// takes 20 ms without HTTP (the executor's own overhead). audit=file
// writes a real audit log (an fsync per group commit); audit=discard
// counts the records.
func BenchmarkBurst(b *testing.B) {
	for _, v := range []struct{ call, audit string }{
		{"inproc", "discard"},
		{"http", "discard"},
		{"http", "file"},
	} {
		b.Run("call="+v.call+"/audit="+v.audit, func(b *testing.B) { benchBurst(b, v.call, v.audit) })
	}
}

func benchBurst(b *testing.B, callKind, auditKind string) {
	const (
		targets     = 10_000
		concurrency = 64
		latency     = 20 * time.Millisecond
	)
	bound := time.Duration(targets) * latency / concurrency
	lim := ratelimit.New(ratelimit.Options{})
	do := func(ctx context.Context, target string) (vendors.Result, error) {
		t := time.NewTimer(latency)
		defer t.Stop()
		select {
		case <-t.C:
			return vendors.Result{HTTPStatus: 200}, nil
		case <-ctx.Done():
			return vendors.Result{}, ctx.Err()
		}
	}
	if callKind == "http" {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(latency)
			_, _ = io.WriteString(w, `{}`)
		}))
		defer srv.Close()
		tr := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			MaxIdleConns:        100,
			MaxIdleConnsPerHost: concurrency,
		}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: lim.Wrap(tr)}
		do = func(ctx context.Context, target string) (vendors.Result, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/start/"+target, nil)
			if err != nil {
				return vendors.Result{}, err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return vendors.Result{}, vendors.TransportError("bench: start "+target, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			return vendors.Result{HTTPStatus: resp.StatusCode}, nil
		}
	}
	ids := make([]string, targets)
	for i := range ids {
		ids[i] = "nb-" + strconv.Itoa(i)
	}
	j := testJob(do, ids...)
	j.Account = "burst"

	var worst float64
	var peakLive, peakRSS uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var aud Auditor = &countingAuditor{}
		var closeLog func()
		if auditKind == "file" {
			l, err := audit.Open(filepath.Join(b.TempDir(), fmt.Sprintf("audit-%d.jsonl", i)))
			if err != nil {
				b.Fatal(err)
			}
			aud, closeLog = l, func() { _ = l.Close() }
		}
		e := New(newBenchOptions(aud, concurrency, lim))
		runtime.GC()
		resetPeakRSS()
		stop := sampleLive()
		b.StartTimer()

		start := time.Now()
		out := e.Fire(context.Background(), j, sched, time.Time{})
		took := time.Since(start)

		b.StopTimer()
		live := stop()
		if closeLog != nil {
			closeLog()
		}
		if f := out.Failed(); len(f) != 0 {
			b.Fatalf("%d targets failed, first: %+v", len(f), f[0])
		}
		worst = max(worst, float64(took)/float64(bound))
		peakLive = max(peakLive, live)
		peakRSS = max(peakRSS, vmHWM())
		b.StartTimer()
	}
	b.ReportMetric(worst, "x-bound")
	b.ReportMetric(float64(peakLive)/(1<<20), "peak-live-MB")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-RSS-MB")
}

// sampleLive samples heap objects plus goroutine stacks every 2 ms until
// the returned func is called, which returns the peak seen.
func sampleLive() (stop func() uint64) {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
	}
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(samples)
			peak = max(peak, samples[0].Value.Uint64()+samples[1].Value.Uint64())
			select {
			case <-t.C:
			case <-done:
				return
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// resetPeakRSS resets the process's VmHWM (Linux: clear_refs 5); a no-op
// where that is not possible.
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// vmHWM returns the process's peak resident set size in bytes, 0 where
// /proc is not available.
func vmHWM() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func newBenchOptions(aud Auditor, concurrency int, lim *ratelimit.Limiter) Options {
	return Options{
		Log:         zerolog.Nop(),
		Audit:       aud,
		Concurrency: func(string) int { return concurrency },
		Limiter:     func(string) *ratelimit.Limiter { return lim },
	}
}
