//go:build !unix

package warm

import "net"

// alive cannot peek at c here: a connection closed by the server fails
// its request, which the executor retries.
func alive(net.Conn, bool) bool { return true }
