package emulator

import (
	"strings"
	"time"
)

// FaultManualStop is not a request fault: the cloud itself stops the
// target every Fault.Delay while it is running, as a colleague stopping a
// notebook by hand would (Times bounds how often; 0 = forever). Action
// names the resource's stop action (modelarts.notebook.stop,
// scnet.notebook.stop or dataforest.app.stop) and Target its id. The demo
// uses it to show a window under drift: enforce putting the target back.
const FaultManualStop FaultKind = "manual_stop"

// manualStops maps a stop action to the resource kind and its running and
// stopped states.
var manualStops = map[string]struct{ kind, running, stopped string }{
	"modelarts.notebook.stop": {KindOTCNotebook, "RUNNING", "STOPPED"},
	"scnet.notebook.stop":     {KindSCNetNotebook, "Running", "Terminated"},
	"dataforest.app.stop":     {KindDFApp, "RUNNING", "STOPPED"},
}

// ManualStopActions lists the actions FaultManualStop accepts.
func ManualStopActions() []string {
	return []string{"dataforest.app.stop", "modelarts.notebook.stop", "scnet.notebook.stop"}
}

// startManualStop runs a manual-stop fault until Close; Inject calls it.
func (c *Cloud) startManualStop(f Fault) {
	m, ok := manualStops[f.Action]
	if !ok || f.Delay <= 0 || f.Target == "" {
		c.log.Warn().Str("action", f.Action).Msg("manual_stop fault needs a stop action of a notebook or app, a target and a delay; ignored")
		return
	}
	go func() {
		t := time.NewTicker(f.Delay)
		defer t.Stop()
		for n := 0; f.Times == 0 || n < f.Times; {
			select {
			case <-c.done:
				return
			case <-t.C:
			}
			c.mu.Lock()
			now := c.opts.Now()
			r := c.resLocked(m.kind, f.Target, now)
			if strings.EqualFold(r.state, m.running) {
				r.set(now, m.stopped)
				n++
				c.log.Info().Str("target", f.Target).Str("state", m.stopped).Msg("emulated cloud: the target was stopped by hand (manual_stop fault)")
			}
			c.mu.Unlock()
		}
	}()
}
