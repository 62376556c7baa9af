//go:build unix

package warm

import (
	"net"
	"syscall"
)

// alive reports whether c, a connection no request has used, is still
// open at the other end: a peek that would block, or, under TLS, one that
// finds data (the server's session tickets come after the handshake).
// A server that closed it (EOF, a reset) makes it unusable, and so, on a
// plain connection, does anything it sent unasked (a 408 before closing).
func alive(c net.Conn, tls bool) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	open := false
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			open = true
		case err == nil && n > 0:
			open = tls
		}
		return true // never wait for readiness
	})
	return err == nil && open
}
