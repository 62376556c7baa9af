package warm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// server is a real HTTP server on loopback that counts the connections it
// accepted, answers each request with its protocol, and, while a burst
// has set release, holds each request until release is closed.
type server struct {
	*httptest.Server
	accepted atomic.Int64
	closed   atomic.Int64
	inFlight sync.WaitGroup
	release  chan struct{}
}

// unstarted returns a server not started yet.
func unstarted() *server {
	s := &server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.release != nil {
			s.inFlight.Done()
			<-s.release
		}
		_, _ = io.WriteString(w, r.Proto)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.accepted.Add(1)
		case http.StateClosed:
			s.closed.Add(1)
		}
	}
	return s
}

func newServer(t testing.TB) *server {
	s := unstarted()
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *server) addr() string { return s.Listener.Addr().String() }

func client(d *Dialer, idle int) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: idle}}
}

// fillEnded waits until d has stopped opening connections to t.
func fillEnded(t *testing.T, d *Dialer, target Target) {
	t.Helper()
	waitFor(t, "the fill ended", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		h := d.hosts[target.key()]
		return h != nil && !h.filling
	})
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// burst makes n requests at once, each held by the server until all n
// arrived, so each needs its own connection.
func burst(t *testing.T, s *server, hc *http.Client, n int) {
	t.Helper()
	s.inFlight.Add(n)
	s.release = make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			res, err := hc.Get(s.URL)
			if err != nil {
				errs <- err
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
		})
	}
	s.inFlight.Wait()
	close(s.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("request: %v", err)
	}
}

// Told ahead that 40 calls are due, the dialer opens 40 connections before
// the burst; the burst's 40 requests go out on them and dial nothing.
// A second burst of the same size needs none: the transport keeps them.
func TestWantOpensTheBurstsConnectionsAhead(t *testing.T) {
	s := newServer(t)
	d := New(&net.Dialer{}, nil)
	defer d.Close()
	hc := client(d, 64)

	d.Want(Target{Addr: s.addr()}, time.Now().Add(time.Minute), 40, 64)
	waitFor(t, "40 connections are open and waiting", func() bool { _, idle := d.Open(Target{Addr: s.addr()}); return idle == 40 })
	if got := s.accepted.Load(); got != 40 {
		t.Fatalf("server accepted %d connections before the burst; want 40", got)
	}
	burst(t, s, hc, 40)
	if got := s.accepted.Load(); got != 40 {
		t.Errorf("server accepted %d connections after a burst of 40 on 40 opened early; want 40", got)
	}
	if early, taken := d.Stats(); early != 40 || taken != 40 {
		t.Errorf("Stats() = %d opened early, %d taken; want 40, 40", early, taken)
	}

	// The transport keeps the 40 idle: they count as open.
	d.Want(Target{Addr: s.addr()}, time.Now().Add(time.Minute), 40, 64)
	burst(t, s, hc, 40)
	if got := s.accepted.Load(); got != 40 {
		t.Errorf("server accepted %d connections after a second burst; want still 40", got)
	}
	if open, _ := d.Open(Target{Addr: s.addr()}); open != 40 {
		t.Errorf("Open() = %d; want the transport's 40", open)
	}
}

// The calls due together at one instant add up, capped by the limit (the
// account's concurrency); calls due at two instants need the larger.
func TestWantAddsUpToTheLimit(t *testing.T) {
	s := newServer(t)
	d := New(&net.Dialer{}, nil)
	defer d.Close()
	at := time.Now().Add(time.Minute)
	for range 10 {
		d.Want(Target{Addr: s.addr()}, at, 3, 25) // 30 due, 25 at most in flight
	}
	d.Want(Target{Addr: s.addr()}, at.Add(time.Second), 12, 25)
	waitFor(t, "25 connections are open", func() bool { open, idle := d.Open(Target{Addr: s.addr()}); return open == 25 && idle == 25 })
	// Nothing more comes: the fill is over when the count is reached.
	d.Want(Target{Addr: s.addr()}, at, 1, 25)
	fillEnded(t, d, Target{Addr: s.addr()})
	if got := s.accepted.Load(); got != 25 {
		t.Errorf("server accepted %d connections; want 25 (the limit)", got)
	}
}

// A connection the server closed while it waited is never handed to the
// transport: the request dials a new one and succeeds.
func TestClosedByTheServerIsNotHandedOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	d := New(&net.Dialer{}, nil)
	defer d.Close()
	d.Want(Target{Addr: ln.Addr().String()}, time.Now().Add(time.Minute), 3, 8)
	for range 3 {
		(<-accepted).Close() // the server closes each at once
	}
	waitFor(t, "3 connections wait", func() bool { _, idle := d.Open(Target{Addr: ln.Addr().String()}); return idle == 3 })
	// The peer's FIN may take a moment on loopback to be readable.
	waitFor(t, "the closes reach the client", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, p := range d.hosts[ln.Addr().String()].idle {
			if alive(p.raw, p.tls) {
				return false
			}
		}
		return true
	})
	c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fresh := <-accepted
	defer fresh.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(fresh, buf); err != nil || buf[0] != 'x' {
		t.Errorf("the dial did not reach the new connection: %v %q", err, buf)
	}
	if early, taken := d.Stats(); early != 3 || taken != 0 {
		t.Errorf("Stats() = %d, %d; want 3 opened early and none taken", early, taken)
	}
	waitFor(t, "the dead ones are counted out", func() bool {
		open, idle := d.Open(Target{Addr: ln.Addr().String()})
		return open == 1 && idle == 0
	})
}

// Connections not taken within maxAge are closed; Close closes those
// still waiting and stops opening more.
func TestUntakenConnectionsAreClosed(t *testing.T) {
	s := newServer(t)
	d := New(&net.Dialer{}, nil)
	d.maxAge = 50 * time.Millisecond
	d.Want(Target{Addr: s.addr()}, time.Now().Add(time.Minute), 5, 8)
	waitFor(t, "5 connections wait", func() bool { return s.accepted.Load() == 5 })
	waitFor(t, "they are closed after maxAge", func() bool { open, idle := d.Open(Target{Addr: s.addr()}); return open == 0 && idle == 0 })
	waitFor(t, "the server sees them closed", func() bool { return s.closed.Load() == 5 })

	d = New(&net.Dialer{}, nil)
	d.Want(Target{Addr: s.addr()}, time.Now().Add(time.Minute), 4, 8)
	waitFor(t, "4 more wait", func() bool { _, idle := d.Open(Target{Addr: s.addr()}); return idle == 4 })
	d.Close()
	waitFor(t, "Close closed them", func() bool { return s.closed.Load() == 9 })
	d.Want(Target{Addr: s.addr()}, time.Now().Add(time.Minute), 4, 8)
	if open, idle := d.Open(Target{Addr: s.addr()}); open != 0 || idle != 0 {
		t.Errorf("after Close, Want opened %d (%d idle)", open, idle)
	}
	if got := s.accepted.Load(); got != 9 {
		t.Errorf("server accepted %d; want 9", got)
	}
}

// Calls due at an instant that passed need nothing more.
func TestPastInstantsNeedNothing(t *testing.T) {
	s := newServer(t)
	d := New(&net.Dialer{}, nil)
	defer d.Close()
	d.Want(Target{Addr: s.addr()}, time.Now().Add(-time.Millisecond), 5, 8)
	fillEnded(t, d, Target{Addr: s.addr()})
	if got := s.accepted.Load(); got != 0 {
		t.Errorf("server accepted %d connections for calls already past; want 0", got)
	}
}

// A host where the connections opened early go unused (an HTTP/2 server
// multiplexes every call on one) gets one at a time afterwards, until one
// is taken again; then bursts get their full count again.
func TestUnusedConnectionsMakeTheHostShy(t *testing.T) {
	s := newServer(t)
	d := New(&net.Dialer{}, nil)
	defer d.Close()
	d.maxAge = 50 * time.Millisecond
	d.Want(Target{Addr: s.addr()}, time.Now().Add(time.Minute), 10, 16)
	waitFor(t, "10 open early", func() bool { return s.accepted.Load() == 10 })
	waitFor(t, "they are closed unused", func() bool { return s.closed.Load() == 10 })
	d.mu.Lock()
	d.maxAge = time.Minute // from now on nothing is closed for age during the test
	d.mu.Unlock()

	d.Want(Target{Addr: s.addr()}, time.Now().Add(time.Minute), 10, 16)
	fillEnded(t, d, Target{Addr: s.addr()})
	if got := s.accepted.Load(); got != 11 {
		t.Fatalf("server accepted %d connections; want 11: one ahead for a host whose early connections went unused", got)
	}
	// The one is used: the host is trusted again.
	burst(t, s, client(d, 16), 1)
	d.Want(Target{Addr: s.addr()}, time.Now().Add(2*time.Minute), 10, 16)
	waitFor(t, "10 open again", func() bool { open, _ := d.Open(Target{Addr: s.addr()}); return open == 10 })
	if got := s.accepted.Load(); got != 20 {
		t.Errorf("server accepted %d connections; want 20 (9 more beside the one kept)", got)
	}
}

// newTLSServer is newServer over TLS, speaking HTTP/2 if h2, and a Dialer
// that trusts its certificate.
func newTLSServer(t testing.TB, h2 bool) (*server, *Dialer) {
	s := unstarted()
	s.EnableHTTP2 = h2
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes a burst's client gave up on
	s.StartTLS()
	t.Cleanup(s.Close)
	return s, trusting(s)
}

// trusting returns a Dialer that trusts the TLS server s.
func trusting(s *server) *Dialer {
	roots := x509.NewCertPool()
	roots.AddCert(s.Certificate())
	return New(&net.Dialer{}, &tls.Config{RootCAs: roots})
}

func tlsClient(d *Dialer, idle int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: d.DialContext, DialTLSContext: d.DialTLSContext,
		ForceAttemptHTTP2: true, MaxIdleConnsPerHost: idle,
	}}
}

// An https target's connections are opened and their TLS handshakes done
// ahead; the burst's requests go out on them over HTTP/1.1.
func TestWantHandshakesTLSAhead(t *testing.T) {
	s, d := newTLSServer(t, false)
	defer d.Close()
	target := Target{Addr: s.addr(), TLS: true}
	d.Want(target, time.Now().Add(time.Minute), 8, 16)
	waitFor(t, "8 connections wait", func() bool { _, idle := d.Open(target); return idle == 8 })
	d.mu.Lock()
	for _, p := range d.hosts[target.key()].idle {
		if tc, ok := p.c.(*tls.Conn); !ok || !tc.ConnectionState().HandshakeComplete {
			t.Errorf("a connection opened ahead is %T, handshake complete: %v; want a *tls.Conn, handshaken", p.c, ok)
		}
	}
	d.mu.Unlock()
	burst(t, s, tlsClient(d, 16), 8)
	if got := s.accepted.Load(); got != 8 {
		t.Errorf("server accepted %d connections; want the 8 opened ahead", got)
	}
	if early, taken := d.Stats(); early != 8 || taken != 8 {
		t.Errorf("Stats() = %d, %d; want 8, 8", early, taken)
	}
}

// An HTTP/2 server needs one connection: the first handshake says so, no
// more are opened, and a burst multiplexes on it.
func TestHTTP2TargetGetsOneConnection(t *testing.T) {
	s, d := newTLSServer(t, true)
	defer d.Close()
	target := Target{Addr: s.addr(), TLS: true}
	d.Want(target, time.Now().Add(time.Minute), 8, 16)
	fillEnded(t, d, target)
	if got := s.accepted.Load(); got != 1 {
		t.Fatalf("server accepted %d connections ahead; want 1 for an HTTP/2 server", got)
	}
	// The first request takes it; the transport keeps it as its HTTP/2
	// connection, and a burst of 8 goes out on it. (A first burst with
	// no HTTP/2 connection in the transport yet makes it dial for each
	// request until one is up, as without this package.)
	hc := tlsClient(d, 16)
	res, err := hc.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	proto, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if string(proto) != "HTTP/2.0" {
		t.Errorf("the request went out as %s; want HTTP/2.0", proto)
	}
	burst(t, s, hc, 8)
	if got := s.accepted.Load(); got != 1 {
		t.Errorf("server accepted %d connections for a burst of 8 over HTTP/2; want 1", got)
	}
	d.Want(target, time.Now().Add(time.Minute), 8, 16) // the transport holds the one: nothing to open
	fillEnded(t, d, target)
	if got := s.accepted.Load(); got != 1 {
		t.Errorf("server accepted %d connections after a second Want; want still 1", got)
	}
}

// The handshake verifies the server as the transport's own would: a
// certificate nobody vouches for (here: not in the system's roots) fails
// the dial, early or not, and nothing is handed out.
func TestUntrustedCertificateIsRefused(t *testing.T) {
	s, _ := newTLSServer(t, false)
	d := New(&net.Dialer{}, nil) // the system's roots
	defer d.Close()
	target := Target{Addr: s.addr(), TLS: true}
	d.Want(target, time.Now().Add(time.Minute), 4, 8)
	fillEnded(t, d, target)
	if early, _ := d.Stats(); early != 0 {
		t.Errorf("%d connections opened ahead to an untrusted server", early)
	}
	_, err := tlsClient(d, 8).Get(s.URL)
	var uerr x509.UnknownAuthorityError
	if !errors.As(err, &uerr) {
		t.Errorf("Get = %v; want an unknown authority error", err)
	}
	waitFor(t, "nothing stays open", func() bool { open, idle := d.Open(target); return open == 0 && idle == 0 })
}
