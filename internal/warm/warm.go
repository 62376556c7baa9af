// Package warm opens an account's connections before a burst of fires is
// due, so that the burst's calls go out on open connections rather than
// each first waiting for its own dial (and, on a busy host, for the CPU
// that a thousand dials and accepts take at once).
//
// A Dialer is an http.Transport's DialContext. Told ahead of time that n
// calls to an address are due at an instant (Want), it opens connections
// in the background, up to a limit (the account's concurrency), counting
// those already open; the transport's next dials to that address take
// them instead of dialing. A connection opened early and not taken within
// MaxAge is closed, and one the server closed meanwhile is never handed
// out. Where fewer than one in ten of those opened early was taken (an
// HTTP/2 server, on which the transport multiplexes every call), the
// next bursts get one connection ahead until one is taken again. Only TCP
// is opened early: an https transport still does its TLS handshake when
// it takes the connection.
package warm

import (
	"context"
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
)

// Dialer dials for one http.Transport and opens connections early on
// request. The zero value is not usable; use New.
type Dialer struct {
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	maxAge time.Duration

	mu     sync.Mutex
	hosts  map[string]*host // by address
	closed bool
	early  int // connections opened early, in all
	taken  int // of them, handed to the transport
}

// host is one address's connections.
type host struct {
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
}

type pooled struct {
	c  net.Conn
	at time.Time // when it was opened
}

// New returns a Dialer that dials with d.
func New(d *net.Dialer) *Dialer {
	return &Dialer{dial: d.DialContext, maxAge: MaxAge, hosts: map[string]*host{}}
}

// Stats reports how many connections were opened early, in all, and how
// many of them the transport took.
func (d *Dialer) Stats() (early, taken int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.early, d.taken
}

// DialContext is the transport's dial: a connection opened early to addr,
// if one is still open and fresh, or a new one.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if network == "tcp" {
		if c := d.take(addr); c != nil {
			return c, nil
		}
	}
	c, err := d.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	h := d.hostLocked(addr)
	h.open++
	d.mu.Unlock()
	return &conn{Conn: c, d: d, h: h}, nil
}

// take returns a connection opened early to addr, or nil.
func (d *Dialer) take(addr string) net.Conn {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.hosts[addr]
	for h != nil && len(h.idle) > 0 {
		p := h.idle[len(h.idle)-1] // the newest: the least likely to be closed by the server
		h.idle = h.idle[:len(h.idle)-1]
		if now.Sub(p.at) < d.maxAge && alive(p.c) {
			d.taken++
			h.taken++
			h.shy = false
			return &conn{Conn: p.c, d: d, h: h}
		}
		_ = p.c.Close()
		h.open--
	}
	return nil
}

// Want tells d that n calls to addr are due at instant at, and that at
// most limit of them can be in flight at once: it opens, in the
// background, as many connections as that needs beyond those open. It
// returns at once.
func (d *Dialer) Want(addr string, at time.Time, n, limit int) {
	if n <= 0 || limit <= 0 || addr == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	h := d.hostLocked(addr)
	if h.want == nil {
		h.want = map[int64]int{}
	}
	k := at.UnixNano()
	h.want[k] = min(h.want[k]+n, limit)
	if !h.filling {
		h.filling = true
		go d.fill(addr, h)
	}
}

// fill opens connections to addr until the calls due there have enough,
// parallel dials at a time. A failed dial ends it: the transport dials on
// its own when the calls go out.
func (d *Dialer) fill(addr string, h *host) {
	for {
		d.mu.Lock()
		need := d.needLocked(h)
		if need <= 0 || d.closed {
			h.filling = false
			d.mu.Unlock()
			return
		}
		h.open += need // counted now, so a dial of the transport meanwhile does not look short
		d.mu.Unlock()

		got := d.dialN(addr, need)

		d.mu.Lock()
		h.open -= need - len(got)
		if d.closed {
			h.open -= len(got)
			d.mu.Unlock()
			for _, c := range got {
				_ = c.Close()
			}
			return
		}
		now := time.Now()
		for _, c := range got {
			h.idle = append(h.idle, pooled{c: c, at: now})
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
	if h.shy {
		most = min(most, 1)
	}
	return most - h.open
}

// dialN opens n connections to addr, parallel at a time, and returns
// those that opened.
func (d *Dialer) dialN(addr string, n int) []net.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []net.Conn
	var wg sync.WaitGroup
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	for range min(n, parallel) {
		wg.Go(func() {
			for range work {
				c, err := d.dial(ctx, "tcp", addr)
				if err != nil {
					cancel() // the others would fail alike
					return
				}
				mu.Lock()
				got = append(got, c)
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
			_ = p.c.Close()
			h.open--
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

func (d *Dialer) hostLocked(addr string) *host {
	h := d.hosts[addr]
	if h == nil {
		h = &host{}
		d.hosts[addr] = h
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
			_ = p.c.Close()
			h.open--
		}
		h.idle = nil
		if h.sweep != nil {
			h.sweep.Stop()
			h.sweep = nil
		}
	}
}

// Open reports how many connections to addr are open: opened early and
// waiting, and handed to the transport and not closed yet.
func (d *Dialer) Open(addr string) (open, idle int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.hosts[addr]
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
