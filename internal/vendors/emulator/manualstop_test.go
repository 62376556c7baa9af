package emulator

import (
	"testing"
	"time"
)

func TestManualStop(t *testing.T) {
	c := New(Options{})
	defer c.Close()
	c.SetState(KindOTCNotebook, "nb-1", "RUNNING")
	c.Inject(Fault{Target: "nb-1", Action: "modelarts.notebook.stop", Kind: FaultManualStop, Delay: 20 * time.Millisecond, Times: 1})
	deadline := time.Now().Add(10 * time.Second)
	for c.State("modelarts.notebook.stop", "nb-1") != "STOPPED" {
		if time.Now().After(deadline) {
			t.Fatal("the emulated cloud did not stop the notebook by itself")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(c.Requests()); n != 0 {
		t.Fatalf("a manual stop made %d requests; want none", n)
	}
}
