// Package warm opens an account's connections before a burst of fires is
// due, so that the burst's calls go out on open connections rather than
// each first waiting for its own dial and TLS handshake (and, on a busy
// host, for the CPU that a thousand of them take at once).
//
// A Dialer is an http.Transport's DialContext and DialTLSContext. Told
// ahead of time that n calls to a Target are due at an instant (Want), it
// opens connections in the background, up to a limit (the account's
// concurrency), counting those already open, and does their TLS
// handshakes; the transport's next dials to that target take them instead
// of dialing. A connection opened early and not taken within MaxAge is
// closed, and one the server closed meanwhile is never handed out. A TLS
// host whose handshake chose HTTP/2 gets one connection: the transport
// multiplexes every call on it. Where fewer than one in ten of those
// opened early was taken, the next bursts get one connection ahead until
// one is taken again.
package warm

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// Defaults of a Dialer.
const (
	// MaxAge is how long a connection opened early waits to be taken:
	// fires are prepared half a second before they are due, and servers
	// close idle connections after tens of seconds at the earliest.
	MaxAge = 15 * time.Second
	// parallel is how many early dials to one address are in flight at
	// once.
	parallel = 32
	// handshakeTimeout bounds a TLS handshake, as the transport's
	// TLSHandshakeTimeout would (the transport ignores it with a
	// DialTLSContext).
	handshakeTimeout = 10 * time.Second
)

// Target is where calls connect: an address (host:port), and whether the
// connection is TLS (an https endpoint, or an https proxy).
type Target struct {
	Addr string
	TLS  bool
}

func (t Target) key() string {
	if t.TLS {
		return "tls " + t.Addr
	}
	return t.Addr
}

// Dialer dials for one http.Transport and opens connections early on
// request. The zero value is not usable; use New.
type Dialer struct {
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	tls    *tls.Config // cloned per connection, with the host as ServerName
	maxAge time.Duration

	mu     sync.Mutex
	hosts  map[string]*host // by Target.key
	closed bool
	early  int // connections opened early, in all
	taken  int // of them, handed to the transport
}

// host is one address's connections.
type host struct {
	target  Target
	idle    []pooled      // opened early, not taken yet, oldest first
	open    int           // open connections: idle, and handed out and not closed
	want    map[int64]int // calls due, by instant (Unix ns)
	filling bool          // a goroutine is opening connections
	sweep   *time.Timer   // closes idle connections older than maxAge
	// Of the connections opened early since the last sweep, how many were
	// taken. A host where most of them go unused (an HTTP/2 server: the
	// transport multiplexes on one) gets one at a time (shy) until one is
	// taken again.
	opened, taken int
	shy           bool
	// A TLS host: whether a handshake told its protocol yet, and whether
	// that was HTTP/2.
	known, h2 bool
}

type pooled struct {
	c   net.Conn  // what the transport gets: the connection, or TLS over it
	raw net.Conn  // the TCP connection, for the liveness check
	tls bool      // c is TLS: data may wait on raw (session tickets)
	at  time.Time // when it was opened
}

// New returns a Dialer that dials with d and, for TLS targets, does the
// handshake with tlsConfig (nil: the defaults, as http.Transport's).
func New(d *net.Dialer, tlsConfig *tls.Config) *Dialer {
	if tlsConfig == nil {
		tlsConfig = &tls.Config{}
	}
	return &Dialer{dial: d.DialContext, tls: tlsConfig, maxAge: MaxAge, hosts: map[string]*host{}}
}

// Stats reports how many connections were opened early, in all, and how
// many of them the transport took.
func (d *Dialer) Stats() (early, taken int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.early, d.taken
}

// DialContext is the transport's DialContext (http targets, and proxies):
// a connection opened early to addr, if one is still open and fresh, or a
// new one.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	t := Target{Addr: addr}
	if network == "tcp" {
		if c := d.take(t); c != nil {
			return c, nil
		}
	}
	c, _, err := d.open(ctx, network, t)
	return c, err
}

// DialTLSContext is the transport's DialTLSContext (https targets without
// a proxy, and https proxies): a connection opened and handshaken early,
// or a new one. It is a *tls.Conn, as the transport's HTTP/2 needs.
func (d *Dialer) DialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	t := Target{Addr: addr, TLS: true}
	if network == "tcp" {
		if c := d.take(t); c != nil {
			return c, nil
		}
	}
	c, _, err := d.open(ctx, network, t)
	return c, err
}

// open dials t, counted in its host's open connections until closed, and
// does its TLS handshake; it returns the connection for the transport and
// the TCP connection under it.
func (d *Dialer) open(ctx context.Context, network string, t Target) (c, raw net.Conn, err error) {
	raw, err = d.dial(ctx, network, t.Addr)
	if err != nil {
		return nil, nil, err
	}
	d.mu.Lock()
	h := d.hostLocked(t)
	h.open++
	d.mu.Unlock()
	counted := &conn{Conn: raw, d: d, h: h}
	if !t.TLS {
		return counted, raw, nil
	}
	cfg := d.tls.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(t.Addr)
	}
	if cfg.NextProtos == nil {
		cfg.NextProtos = []string{"h2", "http/1.1"} // as http.Transport with ForceAttemptHTTP2
	}
	tc := tls.Client(counted, cfg)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = tc.Close()
		return nil, nil, err
	}
	d.mu.Lock()
	h.known, h.h2 = true, tc.ConnectionState().NegotiatedProtocol == "h2"
	d.mu.Unlock()
	return tc, raw, nil
}

// take returns a connection opened early to t, or nil.
func (d *Dialer) take(t Target) net.Conn {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.hosts[t.key()]
	for h != nil && len(h.idle) > 0 {
		p := h.idle[len(h.idle)-1] // the newest: the least likely to be closed by the server
		h.idle = h.idle[:len(h.idle)-1]
		if now.Sub(p.at) < d.maxAge && alive(p.raw, p.tls) {
			d.taken++
			h.taken++
			h.shy = false
			return p.c
		}
		go p.c.Close() // counted out by its conn, which takes d.mu
	}
	return nil
}

// Want tells d that n calls to t are due at instant at, and that at most
// limit of them can be in flight at once: it opens, in the background, as
// many connections as that needs beyond those open. It returns at once.
func (d *Dialer) Want(t Target, at time.Time, n, limit int) {
	if n <= 0 || limit <= 0 || t.Addr == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	h := d.hostLocked(t)
	if h.want == nil {
		h.want = map[int64]int{}
	}
	k := at.UnixNano()
	h.want[k] = min(h.want[k]+n, limit)
	if !h.filling && d.needLocked(h) > 0 { // a job's every fire finds its connection open: nothing to start
		h.filling = true
		go d.fill(h)
	}
}

// fill opens connections to h's target until the calls due there have
// enough, parallel dials at a time; a TLS host whose protocol is not known
// yet gets one first, in case it is HTTP/2. A failed dial ends it: the
// transport dials on its own when the calls go out.
func (d *Dialer) fill(h *host) {
	for {
		d.mu.Lock()
		need := d.needLocked(h)
		if need > 0 && h.target.TLS && !h.known {
			need = 1
		}
		if need <= 0 || d.closed {
			h.filling = false
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()

		got := d.openN(h.target, need)

		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			for _, p := range got {
				_ = p.c.Close()
			}
			return
		}
		now := time.Now()
		for i := range got {
			got[i].at = now
			h.idle = append(h.idle, got[i])
		}
		d.early += len(got)
		h.opened += len(got)
		d.sweepLaterLocked(h)
		if len(got) < need {
			h.filling = false
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
	}
}

// needLocked is how many more connections h's due calls need: the most
// due at any instant still to come (capped by the limit Want was given),
// less those open. Instants that passed are forgotten.
func (d *Dialer) needLocked(h *host) int {
	now := time.Now().UnixNano()
	most := 0
	for k, n := range h.want {
		if k < now {
			delete(h.want, k)
			continue
		}
		most = max(most, n)
	}
	if h.shy || h.h2 {
		most = min(most, 1)
	}
	return most - h.open
}

// openN opens n connections to t, parallel at a time, and returns those
// that opened.
func (d *Dialer) openN(t Target, n int) []pooled {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []pooled
	var wg sync.WaitGroup
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	for range min(n, parallel) {
		wg.Go(func() {
			for range work {
				c, raw, err := d.open(ctx, "tcp", t)
				if err != nil {
					cancel() // the others would fail alike
					return
				}
				mu.Lock()
				got = append(got, pooled{c: c, raw: raw, tls: t.TLS})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return got
}

// sweepLaterLocked makes sure h's idle connections are closed once they
// are older than maxAge, if nothing took them.
func (d *Dialer) sweepLaterLocked(h *host) {
	if h.sweep != nil {
		return
	}
	h.sweep = time.AfterFunc(d.maxAge, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		h.sweep = nil
		cut := time.Now().Add(-d.maxAge)
		keep := h.idle[:0]
		for _, p := range h.idle {
			if p.at.After(cut) {
				keep = append(keep, p)
				continue
			}
			go p.c.Close() // counted out by its conn, which takes d.mu
		}
		if h.opened >= 4 && h.taken*10 < h.opened {
			h.shy = true // fewer than one in ten was used
		}
		h.opened, h.taken = 0, 0
		clear(h.idle[len(keep):])
		h.idle = keep
		if len(h.idle) > 0 {
			d.sweepLaterLocked(h)
		}
	})
}

func (d *Dialer) hostLocked(t Target) *host {
	h := d.hosts[t.key()]
	if h == nil {
		h = &host{target: t}
		d.hosts[t.key()] = h
	}
	return h
}

// Close closes the connections opened early and not taken, and opens no
// more. Connections the transport took are the transport's to close.
func (d *Dialer) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for _, h := range d.hosts {
		for _, p := range h.idle {
			go p.c.Close() // counted out by its conn, which takes d.mu
		}
		h.idle = nil
		if h.sweep != nil {
			h.sweep.Stop()
			h.sweep = nil
		}
	}
}

// Open reports how many connections to t are open: opened early and
// waiting, and handed to the transport and not closed yet.
func (d *Dialer) Open(t Target) (open, idle int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.hosts[t.key()]
	if h == nil {
		return 0, 0
	}
	return h.open, len(h.idle)
}

// conn is a connection handed to the transport: its Close counts it out.
type conn struct {
	net.Conn
	d    *Dialer
	h    *host
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.d.mu.Lock()
		c.h.open--
		c.d.mu.Unlock()
	})
	return c.Conn.Close()
}
