package control

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// shortDir returns a fresh folder with a short path: t.TempDir paths can
// exceed what a Unix socket allows when test names are long.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type echo struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func testMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, echo{Name: "status", Count: 1})
	})
	mux.HandleFunc("POST /v1/echo", func(w http.ResponseWriter, r *http.Request) {
		var in echo
		if !DecodeJSON(w, r, &in) {
			return
		}
		if in.Name == "" {
			WriteError(w, http.StatusConflict, "refused: name is empty")
			return
		}
		in.Count++
		WriteJSON(w, http.StatusOK, in)
	})
	return mux
}

func listen(t *testing.T, dir string) *Server {
	t.Helper()
	s, err := Listen(dir, testMux())
	if err != nil {
		t.Fatalf("Listen(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func TestRoundTrip(t *testing.T) {
	dir := shortDir(t)
	s := listen(t, dir)
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v; want a socket with 0600", fi.Mode())
	}

	c, err := Dial(dir)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	ctx := context.Background()
	var got echo
	if err := c.Get(ctx, "/v1/status", &got); err != nil || got != (echo{"status", 1}) {
		t.Errorf("Get /v1/status = %+v, %v; want {status 1}, nil", got, err)
	}
	if err := c.Post(ctx, "/v1/echo", echo{Name: "a", Count: 41}, &got); err != nil || got != (echo{"a", 42}) {
		t.Errorf("Post /v1/echo = %+v, %v; want {a 42}, nil", got, err)
	}

	// A refusal comes back as *Error with the daemon's message.
	err = c.Post(ctx, "/v1/echo", echo{}, &got)
	var ce *Error
	if !errors.As(err, &ce) || ce.Status != http.StatusConflict || ce.Message != "refused: name is empty" {
		t.Errorf("Post refused = %v; want *Error 409 with the handler's message", err)
	}
	// Unknown fields are refused with the field named.
	err = c.Post(ctx, "/v1/echo", map[string]any{"name": "a", "bogus": 1}, nil)
	if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || !strings.Contains(ce.Message, "bogus") {
		t.Errorf("Post with unknown field = %v; want 400 naming the field", err)
	}
	// A route this daemon lacks says the daemon is older than the command.
	err = c.Get(ctx, "/v1/nothing", nil)
	if !errors.As(err, &ce) || ce.Status != http.StatusNotFound || !strings.Contains(ce.Message, "older than this command") {
		t.Errorf("Get unknown route = %v; want 404 explaining the version skew", err)
	}
}

func TestCloseRemovesSocket(t *testing.T) {
	dir := shortDir(t)
	s, err := Listen(dir, testMux())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Lstat(SocketPath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Close: %v", err)
	}
	_, err = Dial(dir)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), SocketPath(dir)+" not found") ||
		!strings.Contains(err.Error(), "scheduler run") {
		t.Errorf("Dial after Close = %v; want ErrNotRunning naming the path and `scheduler run`", err)
	}
}

// staleSocket leaves a socket file nothing listens on, as a daemon killed
// with SIGKILL does.
func staleSocket(t *testing.T, dir string) {
	t.Helper()
	ln, err := net.Listen("unix", SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(SocketPath(dir)); err != nil {
		t.Fatalf("stale socket not left: %v", err)
	}
}

func TestStaleSocket(t *testing.T) {
	dir := shortDir(t)
	staleSocket(t, dir)
	_, err := Dial(dir)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "stale socket") {
		t.Errorf("Dial on a stale socket = %v; want ErrNotRunning saying it is stale", err)
	}
	// A new daemon replaces it.
	listen(t, dir)
	c, err := Dial(dir)
	if err != nil {
		t.Fatalf("Dial after Listen replaced the stale socket: %v", err)
	}
	defer c.Close()
	if err := c.Get(context.Background(), "/v1/status", nil); err != nil {
		t.Errorf("Get: %v", err)
	}
}

func TestListenRefusesLiveSocket(t *testing.T) {
	dir := shortDir(t)
	listen(t, dir)
	_, err := Listen(dir, testMux())
	if err == nil || !strings.Contains(err.Error(), "another daemon answers") {
		t.Fatalf("second Listen = %v; want a refusal naming the live daemon", err)
	}
	// The first server still answers: its socket was not removed.
	c, err := Dial(dir)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if err := c.Get(context.Background(), "/v1/status", nil); err != nil {
		t.Errorf("first server after a refused second Listen: %v", err)
	}
}

func TestListenPathTooLong(t *testing.T) {
	dir := filepath.Join(shortDir(t), strings.Repeat("d", 120))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(dir, testMux())
	if err == nil || !strings.Contains(err.Error(), "shorter state.dir") {
		t.Errorf("Listen with a %d-byte path = %v; want an error saying to shorten state.dir", len(SocketPath(dir)), err)
	}
}

func TestCloseWaitsForRequestInProgress(t *testing.T) {
	dir := shortDir(t)
	entered, release := make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/slow", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		WriteJSON(w, http.StatusOK, echo{Name: "slow"})
	})
	s, err := Listen(dir, mux)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan error, 1)
	go func() {
		var e echo
		got <- c.Get(context.Background(), "/v1/slow", &e)
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- s.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a request was in progress", err)
	case <-time.After(50 * time.Millisecond): // Close is waiting, as it should
	}
	close(release)
	if err := <-got; err != nil {
		t.Errorf("request in progress during Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}
