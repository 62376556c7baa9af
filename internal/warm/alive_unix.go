//go:build unix

package warm

import (
	"net"
	"syscall"
)

// alive reports whether c, a connection nothing has been written to, is
// still open at the other end with nothing sent: a peek that would block.
// A server that closed it (EOF) or sent something unasked (a 408 before
// closing) makes it unusable for a request.
func alive(c net.Conn) bool {
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
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // never wait for readiness
	})
	return err == nil && open
}
