package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/daemon"
	"github.com/cloudcron/scheduler/internal/secret"
)

// readyTimeout bounds how long a daemon may take to be ready: generous,
// since a slow start is a figure to report, not an error.
const readyTimeout = 10 * time.Minute

// handle is a running daemon, in this process or a child.
type handle interface {
	startedAt() time.Time // just before daemon.Start or exec
	readyAt() time.Time   // the Ready callback or READY=1
	reload() error        // what SIGHUP does
	stop() (time.Duration, error)
}

// inproc is a daemon started with daemon.Start in this process.
type inproc struct {
	d      *daemon.Daemon
	logf   *os.File
	t0, t1 time.Time
}

// startInProcess starts a daemon on cfg and returns once it is ready. Its
// log (info level, JSON) goes to dir/daemon.log.
func startInProcess(dir, cfg string, res secret.Resolver) (*inproc, error) {
	logf, err := os.OpenFile(filepath.Join(dir, "daemon.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	ready := make(chan time.Time, 1)
	h := &inproc{logf: logf}
	h.t0 = time.Now()
	d, err := daemon.Start(daemon.Options{
		ConfigPath: cfg, Resolver: res, Grace: 10 * time.Second,
		Log:   zerolog.New(logf).Level(zerolog.InfoLevel).With().Timestamp().Logger(),
		Ready: func(daemon.Status) { ready <- time.Now() },
	})
	if err != nil {
		_ = logf.Close()
		return nil, err
	}
	h.d = d
	select {
	case h.t1 = <-ready:
	case <-time.After(time.Minute):
		_, _ = h.stop()
		return nil, errors.New("daemon.Start returned but Ready was not called within a minute")
	}
	return h, nil
}

func (h *inproc) startedAt() time.Time { return h.t0 }
func (h *inproc) readyAt() time.Time   { return h.t1 }
func (h *inproc) reload() error        { h.d.Reload(true); return nil }

func (h *inproc) stop() (time.Duration, error) {
	t := time.Now()
	err := h.d.Shutdown()
	took := time.Since(t)
	_ = h.logf.Close()
	return took, err
}

// inprocRun is a daemon driven by daemon.Run in this process, as `scheduler
// run` drives it: reload is a receive on its reload channel (the SIGHUP
// path) and Watch reloads it when the config file changes.
type inprocRun struct {
	cancel context.CancelFunc
	sighup chan struct{}
	done   chan error
	logf   *os.File
	t0, t1 time.Time
}

func runInProcess(dir, cfg string, res secret.Resolver) (*inprocRun, error) {
	logf, err := os.OpenFile(filepath.Join(dir, "daemon.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &inprocRun{cancel: cancel, sighup: make(chan struct{}, 1), done: make(chan error, 1), logf: logf}
	ready := make(chan time.Time, 1)
	opts := daemon.Options{
		ConfigPath: cfg, Resolver: res, Grace: 10 * time.Second, Watch: true,
		Log:   zerolog.New(logf).Level(zerolog.InfoLevel).With().Timestamp().Logger(),
		Ready: func(daemon.Status) { ready <- time.Now() },
	}
	h.t0 = time.Now()
	go func() { h.done <- daemon.Run(ctx, opts, h.sighup) }()
	select {
	case h.t1 = <-ready:
		return h, nil
	case err := <-h.done:
		cancel()
		_ = logf.Close()
		if err == nil {
			err = errors.New("daemon.Run returned before Ready")
		}
		return nil, err
	case <-time.After(readyTimeout):
		cancel()
		<-h.done
		_ = logf.Close()
		return nil, fmt.Errorf("daemon not ready within %s", readyTimeout)
	}
}

func (h *inprocRun) startedAt() time.Time { return h.t0 }
func (h *inprocRun) readyAt() time.Time   { return h.t1 }

func (h *inprocRun) reload() error {
	select {
	case h.sighup <- struct{}{}:
	default: // one is pending, as with signal.Notify
	}
	return nil
}

func (h *inprocRun) stop() (time.Duration, error) {
	t := time.Now()
	h.cancel()
	err := <-h.done
	took := time.Since(t)
	_ = h.logf.Close()
	return took, err
}

// child is `scheduler run` in a child process, with NOTIFY_SOCKET pointed
// at a socket of ours so that READY=1 is seen as systemd sees it.
type child struct {
	cmd    *exec.Cmd
	logPth string
	sock   *net.UnixConn
	done   chan error
	t0, t1 time.Time

	mu    sync.Mutex
	notes []string // sd_notify messages received
	wake  chan struct{}
}

func startChild(bin, dir, cfg string, env []string) (*child, error) {
	sockPath := filepath.Join(dir, "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	c := &child{sock: sock, done: make(chan error, 1), wake: make(chan struct{}, 1), logPth: filepath.Join(dir, "daemon.log")}
	go c.readNotify()
	logf, err := os.OpenFile(c.logPth, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		_ = sock.Close()
		return nil, err
	}
	defer logf.Close()
	c.cmd = exec.Command(bin, "run", "--config", cfg, "--log-level", "info")
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	var base []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "NOTIFY_SOCKET" || strings.HasPrefix(k, "WATCHDOG_") || k == "LISTEN_FDS" {
			continue
		}
		base = append(base, kv)
	}
	c.cmd.Env = append(append(base, "NOTIFY_SOCKET="+sockPath), env...)
	c.t0 = time.Now()
	if err := c.cmd.Start(); err != nil {
		_ = sock.Close()
		return nil, err
	}
	go func() { c.done <- c.cmd.Wait() }()
	deadline := time.After(readyTimeout)
	for {
		c.mu.Lock()
		for _, n := range c.notes {
			if strings.Contains("\n"+n+"\n", "\nREADY=1\n") {
				c.mu.Unlock()
				return c, nil
			}
		}
		c.mu.Unlock()
		select {
		case <-c.wake:
		case err := <-c.done:
			_ = sock.Close()
			return nil, fmt.Errorf("scheduler run exited before READY=1 (%v): %s", err, tailOf(c.logPth))
		case <-deadline:
			_, _ = c.stop()
			return nil, fmt.Errorf("no READY=1 within %s: %s", readyTimeout, tailOf(c.logPth))
		}
	}
}

func (c *child) readNotify() {
	buf := make([]byte, 4096)
	for {
		n, _, err := c.sock.ReadFromUnix(buf)
		if err != nil {
			return
		}
		now := time.Now()
		msg := string(buf[:n])
		c.mu.Lock()
		if c.t1.IsZero() && strings.Contains("\n"+msg+"\n", "\nREADY=1\n") {
			c.t1 = now
		}
		c.notes = append(c.notes, msg)
		c.mu.Unlock()
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

func (c *child) pid() int             { return c.cmd.Process.Pid }
func (c *child) startedAt() time.Time { return c.t0 }
func (c *child) readyAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t1
}
func (c *child) reload() error { return c.cmd.Process.Signal(syscall.SIGHUP) }

func (c *child) stop() (time.Duration, error) {
	defer c.sock.Close()
	t := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case err := <-c.done:
		return time.Since(t), err
	case <-time.After(time.Minute):
		_ = c.cmd.Process.Kill()
		<-c.done
		return time.Since(t), errors.New("scheduler run did not stop within a minute of SIGTERM; killed")
	}
}

// tailOf returns the last lines of a log file, for error messages.
func tailOf(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}

// procMem reads VmRSS and VmHWM of a process, in bytes.
func procMem(pid int) (rss, hwm uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc/%d/status: unexpected %q", pid, line)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if k == "VmRSS" {
			rss = n * 1024
		} else {
			hwm = n * 1024
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS or VmHWM", pid)
	}
	return rss, hwm, nil
}

// clockTick is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTick = 100

// procCPU reads the user+system CPU time a process used so far (10 ms
// resolution).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64) // field 14 utime
	st, err2 := strconv.ParseUint(f[12], 10, 64) // field 15 stime
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

const mb = 1 << 20
