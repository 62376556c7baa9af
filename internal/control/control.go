// Package control is the local control channel of a running daemon: HTTP
// over the Unix socket <state.dir>/control.sock (mode 0600, in the state
// directory, which is 0700). Commands such as `scheduler status` reach the
// daemon through it without the optional TCP listener (`http.listen`).
//
// # Server
//
// The daemon calls Listen with an *http.ServeMux it filled, and Close on
// a clean stop, which removes the socket. Listen replaces a stale socket
// left by a crashed daemon (nothing answers on it) and refuses one that a
// live daemon still answers on.
//
// # Adding a route
//
// Routes live under /v1/ and are registered by internal/daemon in
// control.go (func (d *Daemon) controlRoutes): one line per route, with a
// Go 1.22 method pattern, e.g.
//
//	mux.HandleFunc("POST /v1/overrides", d.handleOverrideSet)
//
// A handler reads its body with DecodeJSON (unknown fields refused, 1 MiB
// at most) and answers with WriteJSON, or with WriteError for a refusal:
// a status code and a message the command prints as is. Every answer is
// JSON; errors are {"error": "..."}.
//
// # Client
//
// Dial(stateDir) finds the socket and checks that a daemon answers; its
// Get and Post exchange JSON and turn an error answer into an *Error
// carrying the status code and the daemon's message. A missing socket or a
// stale one (the daemon is not running) is ErrNotRunning, wrapped with the
// path and what to do.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// SocketName is the control socket's file name in the state directory.
const SocketName = "control.sock"

// maxBody bounds a request body a handler reads.
const maxBody = 1 << 20

// maxSocketPath is the longest socket path bind(2) accepts on Linux
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = 107

// ErrNotRunning is wrapped by Dial when no daemon answers on the socket.
var ErrNotRunning = errors.New("no running daemon")

// SocketPath returns the control socket of the daemon whose state.dir is
// stateDir.
func SocketPath(stateDir string) string { return filepath.Join(stateDir, SocketName) }

// Server serves a mux on the control socket.
type Server struct {
	path string
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// Listen starts serving h on <stateDir>/control.sock. A socket file left
// by a daemon that is gone is removed first; one that answers belongs to a
// running daemon and Listen fails. The serving goroutine ends with Close.
func Listen(stateDir string, h http.Handler) (*Server, error) {
	path := SocketPath(stateDir)
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control socket %s: path is %d bytes, longer than the %d a Unix socket allows; use a shorter state.dir", path, len(path), maxSocketPath)
	}
	if _, err := os.Lstat(path); err == nil {
		if answers(path) {
			return nil, fmt.Errorf("control socket %s: another daemon answers on it; stop it first", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket %s: remove the stale socket of a stopped daemon: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// The directory is 0700 already; the socket says so too.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Close removes the file; the listener must not do it again (it would
	// remove a socket a new daemon created meanwhile).
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	s := &Server{path: path, ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // ErrServerClosed after Close
	}()
	return s, nil
}

// answers reports whether something accepts connections on the socket.
func answers(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops accepting, lets requests in progress finish (up to ctx),
// and removes the socket file.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, fmt.Errorf("control socket: %w", rerr))
	}
	return err
}

// WriteJSON answers with status and v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		WriteError(w, http.StatusInternalServerError, "encode answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// WriteError answers with status and {"error": msg}; the client returns
// msg in an *Error.
func WriteError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(errorBody{Error: msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

type errorBody struct {
	Error string `json:"error"`
}

// DecodeJSON reads r's JSON body into v, refusing unknown fields, trailing
// data and bodies over 1 MiB. On error it has answered 400 already and the
// handler just returns.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		WriteError(w, http.StatusBadRequest, "request body: "+err.Error())
		return false
	}
	return true
}

// Client talks to the daemon on its control socket.
type Client struct {
	path string
	hc   *http.Client
}

// Dial returns a client for the daemon whose state.dir is stateDir, after
// checking that something answers on its socket.
func Dial(stateDir string) (*Client, error) {
	path := SocketPath(stateDir)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s not found; start it with `scheduler run`", ErrNotRunning, path)
		}
		return nil, fmt.Errorf("control socket: %w", err)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w: nothing answers on %s (a stale socket: the daemon stopped without cleaning up); start it with `scheduler run`", ErrNotRunning, path)
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("control socket %s: permission denied; run as the daemon's user (or root)", path)
		}
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	c.Close()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{path: path, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// SetTimeout bounds each request of the client (default 30s); 0 means no
// bound, for a request that waits for a whole fire (trigger).
func (c *Client) SetTimeout(d time.Duration) { c.hc.Timeout = d }

// Path returns the socket the client talks to.
func (c *Client) Path() string { return c.path }

// Close releases the client's idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Error is an error answer from the daemon.
type Error struct {
	Status  int    // HTTP status code
	Message string // the daemon's message
}

func (e *Error) Error() string { return e.Message }

// Get fetches path (such as "/v1/status") and decodes the JSON answer into
// out (nil: ignore the body).
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

// Post sends in as JSON to path and decodes the answer into out (nil:
// ignore the body).
func (c *Client) Post(ctx context.Context, path string, in, out any) error {
	return c.do(ctx, http.MethodPost, path, in, out)
}

// Delete sends a DELETE to path (in, if not nil, as JSON body).
func (c *Client) Delete(ctx context.Context, path string, in, out any) error {
	return c.do(ctx, http.MethodDelete, path, in, out)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("control: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://scheduler"+path, body)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("control: %s %s on %s: %w", method, path, c.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("control: %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var eb errorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			return &Error{Status: resp.StatusCode, Message: eb.Error}
		}
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			return &Error{Status: resp.StatusCode, Message: fmt.Sprintf("the running daemon does not know %s %s: it is older than this command; restart it with the new binary", method, path)}
		}
		return &Error{Status: resp.StatusCode, Message: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("control: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}
