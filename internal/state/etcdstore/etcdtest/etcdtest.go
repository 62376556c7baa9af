// Package etcdtest runs a real etcd for tests: the etcd binary (Debian's
// etcd-server package; .ci/run installs it) on free loopback ports in a
// temporary directory, and a TCP proxy that cuts one client off it.
//
// Tests that need etcd call Start, which skips the test, saying why, when
// no etcd binary is installed. SCHEDULER_TEST_ETCD names another binary.
package etcdtest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// readyLine is what etcd logs once it serves clients (on every start;
// "ready to serve client requests" only on the first).
const readyLine = "serving client traffic"

// startTimeout bounds the wait for readyLine.
const startTimeout = 30 * time.Second

// Binary returns the etcd binary to run, or "" when there is none.
func Binary() string {
	if b := os.Getenv("SCHEDULER_TEST_ETCD"); b != "" {
		return b
	}
	b, err := exec.LookPath("etcd")
	if err != nil {
		return ""
	}
	return b
}

// Server is one etcd process with its data directory. It is stopped at
// the end of the test.
type Server struct {
	bin, dir        string
	tls             *TLSFiles // nil: plain http
	clientURL, peer string
	mu              sync.Mutex
	cmd             *exec.Cmd
	exited          chan struct{}
	stderr          *strings.Builder
	stderrMu        *sync.Mutex
}

// Start starts an etcd for t, skipping t when no etcd binary is
// installed.
func Start(t testing.TB) *Server {
	t.Helper()
	return startWith(t, nil)
}

// TLSFiles are the PEM files of an etcd serving clients over TLS.
type TLSFiles struct {
	Cert, Key string // the server's certificate (for 127.0.0.1) and key
	CA        string // the CA that client certificates must be signed by
}

// StartTLS starts an etcd for t that serves clients on https and requires
// a client certificate signed by f.CA (--client-cert-auth), skipping t
// when no etcd binary is installed.
func StartTLS(t testing.TB, f TLSFiles) *Server {
	t.Helper()
	return startWith(t, &f)
}

func startWith(t testing.TB, f *TLSFiles) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		t.Skip("no etcd binary: install the Debian package etcd-server (apt-get install -y etcd-server), " +
			"or name one in SCHEDULER_TEST_ETCD, to run the tests against a real etcd")
	}
	s := &Server{bin: bin, dir: t.TempDir(), tls: f}
	scheme := "http://"
	if f != nil {
		scheme = "https://"
	}
	var err error
	for range 3 { // a free port can be taken between the probe and etcd's bind
		s.clientURL, s.peer = scheme+freeAddr(t), "http://"+freeAddr(t)
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(s.Kill)
	return s
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs etcd and waits for its ready line.
func (s *Server) start() error {
	cmd := exec.Command(s.bin,
		"--name", "test",
		"--data-dir", filepath.Join(s.dir, "data"),
		"--listen-client-urls", s.clientURL, "--advertise-client-urls", s.clientURL,
		"--listen-peer-urls", s.peer, "--initial-advertise-peer-urls", s.peer,
		"--initial-cluster", "test="+s.peer,
		"--logger", "zap", "--log-level", "info",
	)
	if s.tls != nil {
		cmd.Args = append(cmd.Args, "--cert-file", s.tls.Cert, "--key-file", s.tls.Key,
			"--trusted-ca-file", s.tls.CA, "--client-cert-auth")
	}
	pr, pw := io.Pipe()
	cmd.Stdout = io.Discard
	cmd.Stderr = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(exited)
	}()
	ready := make(chan struct{})
	logBuf, logMu := &strings.Builder{}, &sync.Mutex{}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := false
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			if logBuf.Len() < 64<<10 {
				logBuf.WriteString(line + "\n")
			}
			logMu.Unlock()
			if !once && strings.Contains(line, readyLine) {
				once = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-ready:
	case <-exited:
		logMu.Lock()
		defer logMu.Unlock()
		return fmt.Errorf("etcd exited before it was ready:\n%s", tail(logBuf.String()))
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-exited
		logMu.Lock()
		defer logMu.Unlock()
		return fmt.Errorf("etcd not ready after %s:\n%s", startTimeout, tail(logBuf.String()))
	}
	s.mu.Lock()
	s.cmd, s.exited, s.stderr, s.stderrMu = cmd, exited, logBuf, logMu
	s.mu.Unlock()
	return nil
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}

// Endpoint returns the client URL.
func (s *Server) Endpoint() string { return s.clientURL }

// Kill ends etcd with SIGKILL and waits for it; nothing if not running.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Stop ends etcd with SIGTERM and waits for it.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Restart starts etcd again on the same data and ports after Stop or
// Kill.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("etcdtest: restart: %v", err)
	}
}

// Client returns a client of endpoint (the server's or a proxy's), closed
// at the end of the test.
func Client(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
