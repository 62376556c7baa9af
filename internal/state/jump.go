package state

import "time"

// JumpKind says which way the wall clock jumped.
type JumpKind int

const (
	// NoJump: wall and monotonic clocks advanced alike (within the threshold).
	NoJump JumpKind = iota
	// JumpForward: the wall clock advanced more than the monotonic clock
	// (clock set forward, or the host was suspended): fires may have been
	// missed, run Plan.
	JumpForward
	// JumpBackward: the wall clock advanced less than the monotonic clock
	// (clock set back): fires already done come round again, ShouldRun
	// refuses them.
	JumpBackward
)

// String returns "none", "forward" or "backward".
func (k JumpKind) String() string {
	switch k {
	case JumpForward:
		return "forward"
	case JumpBackward:
		return "backward"
	}
	return "none"
}

// Jump is what JumpDetector observed between two readings.
type Jump struct {
	Kind JumpKind
	// Skew is the wall clock's advance minus the monotonic clock's:
	// positive forward, negative backward.
	Skew time.Duration
	// From and To are the wall readings before and after.
	From, To time.Time
}

// DefaultJumpThreshold is the skew JumpDetector ignores by default: NTP
// slewing and timer latency stay far below it.
const DefaultJumpThreshold = 2 * time.Second

// JumpDetector notices wall-clock jumps by comparing, between successive
// readings, how far the wall clock and the monotonic clock advanced. Feed
// it from a ticker. It is not safe for concurrent use.
type JumpDetector struct {
	threshold time.Duration
	have      bool
	wall      time.Time // without monotonic reading
	mono      time.Duration
	base      time.Time // first reading of Observe, with monotonic reading
}

// NewJumpDetector returns a detector that reports skews larger than
// threshold (DefaultJumpThreshold if threshold ≤ 0).
func NewJumpDetector(threshold time.Duration) *JumpDetector {
	if threshold <= 0 {
		threshold = DefaultJumpThreshold
	}
	return &JumpDetector{threshold: threshold}
}

// Observe takes a reading from time.Now(), which carries both clocks. A
// time without monotonic reading (e.g. after Round(0)) reads the wall
// clock for both, so no jump is seen.
func (d *JumpDetector) Observe(now time.Time) Jump {
	if d.base.IsZero() {
		d.base = now
	}
	return d.ObserveReadings(now.Round(0), now.Sub(d.base))
}

// ObserveReadings takes a wall reading and a monotonic reading (any origin,
// the same for every call) and reports the jump since the previous reading;
// the first reading reports NoJump. After a jump the new readings are the
// baseline, so each jump is reported once.
func (d *JumpDetector) ObserveReadings(wall time.Time, mono time.Duration) Jump {
	wall = wall.Round(0)
	j := Jump{Kind: NoJump, From: d.wall, To: wall}
	if d.have {
		j.Skew = wall.Sub(d.wall) - (mono - d.mono)
		switch {
		case j.Skew > d.threshold:
			j.Kind = JumpForward
		case j.Skew < -d.threshold:
			j.Kind = JumpBackward
		}
	}
	d.have, d.wall, d.mono = true, wall, mono
	return j
}
