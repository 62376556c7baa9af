// Command scheduler turns one YAML schedule into cloud lifecycle actions.
// See README.md; `scheduler help` lists the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one kills the process the default way.
	context.AfterFunc(ctx, stop)

	reload := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // one reload is already pending
			}
		}
	}()
	os.Exit(run(ctx, reload, os.Args[1:], os.Stdout, os.Stderr))
}
