package bench

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Sizes of the Benchmark functions: short by default; the sizes
// are -bench.jobs 10000 -bench.due 1000 -bench.targets 10000.
var (
	flagJobs    = flag.Int("bench.jobs", 2000, "jobs loaded (start, lag, reload, rss)")
	flagDue     = flag.Int("bench.due", 200, "jobs due in the same second (lag)")
	flagTargets = flag.Int("bench.targets", 2000, "targets of the burst job")
	flagLatency = flag.Duration("bench.latency", time.Millisecond, "the emulated cloud's time per call")
)

// figures indexes a report's figures by name.
func figures(t testing.TB, rep *Report) map[string]Figure {
	t.Helper()
	m := map[string]Figure{}
	for _, f := range rep.Figures {
		if f.Verdict == Error {
			t.Errorf("%s: %s: ERROR %s", f.Scenario, f.Name, f.Note)
		}
		m[f.Name] = f
	}
	return m
}

func table(rep *Report) string {
	var b bytes.Buffer
	_ = rep.WriteTable(&b)
	return b.String()
}

// TestSmoke runs every in-process scenario with small sizes and checks
// that the harness measures what it claims: every due fire reached the
// emulated cloud exactly once, numbers are in range, the burst cannot beat
// its bound. It does not judge the targets.
func TestSmoke(t *testing.T) {
	t.Parallel()
	const due, targets = 20, 200
	cfg := Config{
		Jobs: 100, Due: due, Targets: targets, BurstLatency: 5 * time.Millisecond, BurstConcurrency: 16,
		Fires: 2, RateTargets: 6, Reloads: 1, Lead: 500 * time.Millisecond, FireWait: 30 * time.Second,
		Dir: t.TempDir(),
	}
	if testing.Verbose() {
		cfg.Progress = os.Stderr
	}
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + table(rep))
	f := figures(t, rep)
	check := func(name string, ok func(v float64) bool, want string) {
		t.Helper()
		g, found := f[name]
		if !found {
			t.Errorf("no figure %q", name)
			return
		}
		if g.Verdict != Error && !ok(g.Value) {
			t.Errorf("%s = %v %s; want %s", name, g.Value, g.Unit, want)
		}
	}
	check("fires reaching the cloud", func(v float64) bool { return v == due }, "every due fire")
	check("extra requests", func(v float64) bool { return v == 0 }, "each due fire once, nothing else")
	lagOK := func(v float64) bool { return v > 0 && v < 30000 }
	check("fire lag p50", lagOK, "in (0, 30s)")
	check("fire lag p99", func(v float64) bool { return lagOK(v) && v >= f["fire lag p50"].Value }, ">= p50")
	check("fire lag max", func(v float64) bool { return v >= f["fire lag p99"].Value }, ">= p99")
	check("floor p50, new connections", lagOK, "in (0, 30s)")
	check("floor p99, new connections", func(v float64) bool { return lagOK(v) && v >= f["floor p50, new connections"].Value }, ">= p50")
	check("floor p99, kept-alive connections", lagOK, "in (0, 30s)")
	check("lone fire lag p50", func(v float64) bool { return v > 0 && v < 1000 }, "in (0, 1s)")
	check("start to READY", func(v float64) bool { return v > 0 && v < 30000 }, "in (0, 30s)")
	check("reload after SIGHUP, worst of 1", func(v float64) bool { return v > 0 && v < 30000 }, "in (0, 30s)")
	check("reload after rename-save, worst of 1", func(v float64) bool { return v > 0 && v < 30000 }, "in (0, 30s)")
	// N·L/C is a lower bound: every call takes at least L.
	check("burst duration / N·L/C", func(v float64) bool { return v >= 1 && v < 100 }, ">= 1")
	check("burst targets succeeded", func(v float64) bool { return v == targets }, "every target")
	check("rate-limited targets succeeded", func(v float64) bool { return v >= 0 && v <= 6 }, "in [0, 6]")
	check("attempts spent", func(v float64) bool { return v >= 1 }, ">= 1")
	if f["RSS, idle"].Verdict != Skip {
		t.Errorf("rss without a binary: %+v; want SKIP", f["RSS, idle"])
	}
	entries, _ := os.ReadDir(cfg.Dir)
	if len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds the scheduler (without -race) once.
func binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "scheduler-bench-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "scheduler")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/cloudcron/scheduler/cmd/scheduler").CombinedOutput()
		if err != nil {
			binErr = err
			binPath = string(out)
		}
	})
	if binErr != nil {
		t.Fatalf("build: %v\n%s", binErr, binPath)
	}
	return binPath
}

// TestSmokeChild runs the scenarios that use the real binary.
func TestSmokeChild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	cfg := Config{
		Jobs: 100, Due: 10, Targets: 200, BurstLatency: 5 * time.Millisecond, BurstConcurrency: 16,
		Reloads: 1, Idle: time.Second, Lead: 500 * time.Millisecond, FireWait: 30 * time.Second,
		Binary: binary(t), Dir: t.TempDir(), Only: []string{"rss,burst,reload"},
	}
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + table(rep))
	f := figures(t, rep)
	rss, hwm := f["RSS, idle"].Value, f["peak RSS (VmHWM)"].Value
	if rss < 1 || rss > 1024 || hwm < rss {
		t.Errorf("RSS %v MB, VmHWM %v MB; want 1 MB <= RSS <= VmHWM", rss, hwm)
	}
	if v := f["start to READY=1, binary"].Value; v <= 0 {
		t.Errorf("start to READY=1 = %v ms", v)
	}
	if v := f["CPU per vendor call"].Value; v <= 0 || v > 1e6 {
		t.Errorf("CPU per vendor call = %v µs", v)
	}
	if v := f["burst peak RSS (VmHWM)"].Value; v < 1 {
		t.Errorf("burst VmHWM = %v MB", v)
	}
}

// benchmark runs one scenario per iteration with the -bench.* sizes and
// reports its figures as metrics.
func benchmark(b *testing.B, scenario string, withBinary bool) {
	cfg := Config{Jobs: *flagJobs, Due: *flagDue, Targets: *flagTargets, Latency: *flagLatency, Only: []string{scenario}}
	if withBinary {
		cfg.Binary = binary(b)
	}
	var rep *Report
	for b.Loop() {
		var err error
		rep, err = Run(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Log("\n" + table(rep))
	for _, f := range rep.Figures {
		if f.Verdict == Error {
			b.Fatalf("%s: %s", f.Name, f.Note)
		}
		if f.Verdict != Skip {
			b.ReportMetric(f.Value, metric(f))
		}
	}
}

// metric turns a figure into a benchmark unit: "fire-lag-p99-ms".
func metric(f Figure) string {
	unit := strings.NewReplacer("µs", "us", "%", "pct", "×", "x").Replace(f.Unit)
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(f.Name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-") + "-" + unit
}

func BenchmarkStart(b *testing.B)     { benchmark(b, "start", false) }
func BenchmarkLag(b *testing.B)       { benchmark(b, "lag", false) }
func BenchmarkLone(b *testing.B)      { benchmark(b, "lone", false) }
func BenchmarkReload(b *testing.B)    { benchmark(b, "reload", true) }
func BenchmarkRSS(b *testing.B)       { benchmark(b, "rss", true) }
func BenchmarkBurst(b *testing.B)     { benchmark(b, "burst", true) }
func BenchmarkRateLimit(b *testing.B) { benchmark(b, "ratelimit", false) }
