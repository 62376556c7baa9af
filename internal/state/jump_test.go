package state

import (
	"testing"
	"time"
)

func TestJumpDetector(t *testing.T) {
	type reading struct {
		wall time.Duration // since base
		mono time.Duration
		want JumpKind
	}
	base := utc("2026-03-02T18:30:00Z")
	tests := []struct {
		name     string
		readings []reading
	}{
		{"steady ticks", []reading{{0, 0, NoJump}, {time.Second, time.Second, NoJump}, {2 * time.Second, 2 * time.Second, NoJump}}},
		{"late tick is no jump", []reading{{0, 0, NoJump}, {10 * time.Second, 10 * time.Second, NoJump}}},
		{"small skew below threshold", []reading{{0, 0, NoJump}, {time.Second + 1900*time.Millisecond, time.Second, NoJump}}},
		{"forward jump (clock set ahead or host suspended)", []reading{
			{0, 0, NoJump}, {time.Second, time.Second, NoJump},
			{2*time.Second + 3*time.Hour, 2 * time.Second, JumpForward},
			{3*time.Second + 3*time.Hour, 3 * time.Second, NoJump}, // reported once
		}},
		{"backward jump", []reading{
			{0, 0, NoJump}, {time.Second - time.Hour, time.Second, JumpBackward},
			{2*time.Second - time.Hour, 2 * time.Second, NoJump},
		}},
		{"backward by less than elapsed still counts", []reading{
			{0, 0, NoJump}, {7 * time.Second, 10 * time.Second, JumpBackward},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewJumpDetector(0)
			for i, r := range tc.readings {
				j := d.ObserveReadings(base.Add(r.wall), r.mono)
				if j.Kind != r.want {
					t.Errorf("reading %d (wall +%v, mono %v) = %v (skew %v); want %v", i, r.wall, r.mono, j.Kind, j.Skew, r.want)
				}
				if j.Kind == JumpForward && (j.Skew <= 0 || !j.To.Equal(base.Add(r.wall))) {
					t.Errorf("reading %d: forward jump %+v", i, j)
				}
				if j.Kind == JumpBackward && j.Skew >= 0 {
					t.Errorf("reading %d: backward jump with skew %v", i, j.Skew)
				}
			}
		})
	}
}

func TestJumpDetectorThreshold(t *testing.T) {
	d := NewJumpDetector(10 * time.Second)
	base := utc("2026-03-02T18:30:00Z")
	d.ObserveReadings(base, 0)
	if j := d.ObserveReadings(base.Add(6*time.Second), time.Second); j.Kind != NoJump {
		t.Errorf("5s skew with a 10s threshold = %v; want none", j.Kind)
	}
	if j := d.ObserveReadings(base.Add(20*time.Second), 2*time.Second); j.Kind != JumpForward || j.Skew != 13*time.Second {
		t.Errorf("13s skew = %v %v; want forward 13s", j.Kind, j.Skew)
	}
}

func TestJumpDetectorObserveRealClock(t *testing.T) {
	d := NewJumpDetector(0)
	now := time.Now()
	d.Observe(now)
	// Add moves both clock readings of a time.Now value: no jump.
	if j := d.Observe(now.Add(time.Minute)); j.Kind != NoJump {
		t.Errorf("Observe(now+1m) = %+v; want no jump", j)
	}
	if j := d.Observe(time.Now()); j.Kind != NoJump {
		t.Errorf("Observe(time.Now()) = %+v; want no jump", j)
	}
	if NoJump.String() != "none" || JumpForward.String() != "forward" || JumpBackward.String() != "backward" {
		t.Error("JumpKind.String")
	}
}
