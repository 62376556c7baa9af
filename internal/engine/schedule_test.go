package engine

import (
	"strings"
	"testing"
	"time"
)

func mustZone(tb testing.TB, name string) *time.Location {
	tb.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		tb.Fatalf("LoadLocation(%q): %v", name, err)
	}
	return loc
}

func mustTime(tb testing.TB, s string) time.Time {
	tb.Helper()
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		tb.Fatalf("time.Parse(%q): %v", s, err)
	}
	return t
}

func mustParse(tb testing.TB, spec string, loc *time.Location, anchor time.Time) Schedule {
	tb.Helper()
	s, err := Parse(spec, loc, anchor)
	if err != nil {
		tb.Fatalf("Parse(%q): %v", spec, err)
	}
	return s
}

// formatAll renders fires as RFC3339 with the offset of the zone they are in.
func formatAll(ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Format(time.RFC3339)
	}
	return out
}

// The expected instants were checked with python3 zoneinfo and a brute-force
// minute-by-minute model of the rule, independent of this package.
func TestNextDST(t *testing.T) {
	tests := []struct {
		name string
		zone string
		spec string
		from string
		want []string
	}{
		// Europe/Berlin: 2026-03-29 02:00 → 03:00, 2026-10-25 03:00 → 02:00.
		{"berlin fixed spring gap fires once after the gap", "Europe/Berlin", "30 2 * * *", "2026-03-28T12:00:00+01:00",
			[]string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"}},
		{"berlin fixed fall-back fires at first occurrence only", "Europe/Berlin", "30 2 * * *", "2026-10-24T12:00:00+02:00",
			[]string{"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"}},
		// The wall time right at the end of the repeated hour happens once,
		// in the second pass: it must fire then, not be skipped as "seen".
		{"berlin fixed at the end of the repeated hour fires once", "Europe/Berlin", "0 3 * * *", "2026-10-24T12:00:00+02:00",
			[]string{"2026-10-25T03:00:00+01:00", "2026-10-26T03:00:00+01:00"}},
		{"berlin fixed from inside the second pass", "Europe/Berlin", "30 2 * * *", "2026-10-25T02:15:00+01:00",
			[]string{"2026-10-26T02:30:00+01:00"}},
		{"berlin fixed several wall times in the gap fire once", "Europe/Berlin", "0,20,40 2 * * *", "2026-03-29T01:00:00+01:00",
			[]string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"}},
		{"berlin interval spring skips the gap", "Europe/Berlin", "*/30 * * * *", "2026-03-29T01:00:00+01:00",
			[]string{"2026-03-29T01:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00", "2026-03-29T04:00:00+02:00"}},
		{"berlin interval fall fires both passes", "Europe/Berlin", "*/30 * * * *", "2026-10-25T01:30:00+02:00",
			[]string{"2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00",
				"2026-10-25T02:30:00+01:00", "2026-10-25T03:00:00+01:00", "2026-10-25T03:30:00+01:00"}},
		{"berlin minute 0 hour star is interval, spring", "Europe/Berlin", "0 * * * *", "2026-03-29T00:30:00+01:00",
			[]string{"2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"}},
		{"berlin minute 0 hour star is interval, fall", "Europe/Berlin", "0 * * * *", "2026-10-25T00:30:00+02:00",
			[]string{"2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"}},
		{"berlin hourly spring", "Europe/Berlin", "@hourly", "2026-03-29T00:30:00+01:00",
			[]string{"2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"}},
		{"berlin hourly fall", "Europe/Berlin", "@hourly", "2026-10-25T00:30:00+02:00",
			[]string{"2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"}},
		{"berlin daily spring", "Europe/Berlin", "@daily", "2026-03-28T12:00:00+01:00",
			[]string{"2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"}},
		{"berlin daily fall", "Europe/Berlin", "@daily", "2026-10-24T12:00:00+02:00",
			[]string{"2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"}},
		{"berlin 6 fields fixed in gap", "Europe/Berlin", "15 30 2 * * *", "2026-03-28T12:00:00+01:00",
			[]string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:15+02:00"}},
		{"berlin 6 fields interval skips gap", "Europe/Berlin", "*/30 59 1,2,3 * * *", "2026-03-29T01:58:00+01:00",
			[]string{"2026-03-29T01:59:00+01:00", "2026-03-29T01:59:30+01:00", "2026-03-29T03:59:00+02:00", "2026-03-29T03:59:30+02:00"}},

		// America/New_York: 2026-03-08 02:00 → 03:00, 2026-11-01 02:00 → 01:00.
		{"new york fixed spring", "America/New_York", "30 2 * * *", "2026-03-07T12:00:00-05:00",
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"}},
		{"new york interval spring", "America/New_York", "*/30 * * * *", "2026-03-08T01:00:00-05:00",
			[]string{"2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"}},
		{"new york fixed fall", "America/New_York", "30 1 * * *", "2026-10-31T12:00:00-04:00",
			[]string{"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"}},
		{"new york fixed at the end of the repeated hour fires once", "America/New_York", "0 2 * * *", "2026-10-31T12:00:00-04:00",
			[]string{"2026-11-01T02:00:00-05:00", "2026-11-02T02:00:00-05:00"}},
		{"new york interval fall", "America/New_York", "0 * * * *", "2026-11-01T00:30:00-04:00",
			[]string{"2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"}},

		// Australia/Lord_Howe: 30-minute DST; 2026-10-04 02:00 → 02:30, 2026-04-05 02:00 → 01:30.
		{"lord howe fixed spring", "Australia/Lord_Howe", "15 2 * * *", "2026-10-03T12:00:00+10:30",
			[]string{"2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"}},
		{"lord howe interval spring", "Australia/Lord_Howe", "*/15 * * * *", "2026-10-04T01:30:00+10:30",
			[]string{"2026-10-04T01:45:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-04T02:45:00+11:00"}},
		{"lord howe fixed fall", "Australia/Lord_Howe", "45 1 * * *", "2026-04-04T12:00:00+11:00",
			[]string{"2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"}},
		{"lord howe interval fall", "Australia/Lord_Howe", "*/15 * * * *", "2026-04-05T01:30:00+11:00",
			[]string{"2026-04-05T01:45:00+11:00", "2026-04-05T01:30:00+10:30", "2026-04-05T01:45:00+10:30",
				"2026-04-05T02:00:00+10:30", "2026-04-05T02:15:00+10:30"}},

		// Midnight skipped: America/Santiago 2026-09-06 00:00 → 01:00, Asia/Beirut 2026-03-29 00:00 → 01:00.
		{"santiago midnight gap", "America/Santiago", "0 0 * * *", "2026-09-04T12:00:00-04:00",
			[]string{"2026-09-05T00:00:00-04:00", "2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00"}},
		{"santiago interval across midnight gap", "America/Santiago", "0 * * * *", "2026-09-05T22:30:00-04:00",
			[]string{"2026-09-05T23:00:00-04:00", "2026-09-06T01:00:00-03:00", "2026-09-06T02:00:00-03:00"}},
		{"beirut midnight gap", "Asia/Beirut", "@midnight", "2026-03-28T12:00:00+02:00",
			[]string{"2026-03-29T01:00:00+03:00", "2026-03-30T00:00:00+03:00"}},

		// No DST; names; day-of-month / day-of-week.
		{"seoul weekdays by name", "Asia/Seoul", "0 9 * * MON-FRI", "2026-01-01T12:00:00+09:00",
			[]string{"2026-01-02T09:00:00+09:00", "2026-01-05T09:00:00+09:00", "2026-01-06T09:00:00+09:00", "2026-01-07T09:00:00+09:00"}},
		{"month names, either case", "UTC", "0 12 * JAN,jul MON", "2026-01-20T00:00:00Z",
			[]string{"2026-01-26T12:00:00Z", "2026-07-06T12:00:00Z", "2026-07-13T12:00:00Z"}},
		{"dom or dow when both restricted", "Europe/Berlin", "0 0 1,15 * MON", "2026-06-28T00:00:00+02:00",
			[]string{"2026-06-29T00:00:00+02:00", "2026-07-01T00:00:00+02:00", "2026-07-06T00:00:00+02:00",
				"2026-07-13T00:00:00+02:00", "2026-07-15T00:00:00+02:00", "2026-07-20T00:00:00+02:00"}},
		{"dow */2 counts as restricted", "UTC", "0 0 13 * */2", "2026-02-10T00:00:00Z",
			[]string{"2026-02-12T00:00:00Z", "2026-02-13T00:00:00Z", "2026-02-14T00:00:00Z", "2026-02-15T00:00:00Z", "2026-02-17T00:00:00Z"}},
		{"dow star means dom only", "UTC", "0 0 13 * *", "2026-02-10T00:00:00Z",
			[]string{"2026-02-13T00:00:00Z", "2026-03-13T00:00:00Z"}},
		{"leap day within the horizon", "UTC", "0 0 29 2 *", "2026-01-01T00:00:00Z",
			[]string{"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"}},
		{"weekly", "Europe/Berlin", "@weekly", "2026-03-25T00:00:00+01:00",
			[]string{"2026-03-29T00:00:00+01:00", "2026-04-05T00:00:00+02:00"}},
		{"yearly", "Asia/Seoul", "@yearly", "2026-06-01T00:00:00+09:00",
			[]string{"2027-01-01T00:00:00+09:00", "2028-01-01T00:00:00+09:00"}},
		{"seconds field every 20s", "UTC", "*/20 * * * * *", "2026-01-01T10:00:05Z",
			[]string{"2026-01-01T10:00:20Z", "2026-01-01T10:00:40Z", "2026-01-01T10:01:00Z"}},
		{"strictly after an exact fire", "UTC", "0 9 * * *", "2026-01-01T09:00:00Z",
			[]string{"2026-01-02T09:00:00Z"}},

		// Years after the zone's last explicit transition, where Go's
		// ZoneBounds ends leap years a day early (golang/go#81583).
		{"footer rule, end of a leap year", "Europe/Berlin", "0 9 * * MON-FRI", "2040-12-28T13:00:00+01:00",
			[]string{"2040-12-31T09:00:00+01:00", "2041-01-01T09:00:00+01:00", "2041-01-02T09:00:00+01:00"}},
		{"footer rule, southern summer over new year", "America/Santiago", "30 0 * * *", "2040-12-30T09:00:00-03:00",
			[]string{"2040-12-31T00:30:00-03:00", "2041-01-01T00:30:00-03:00"}},
		{"footer rule, search across new year", "Australia/Lord_Howe", "0 3 * 4 SUN", "2044-12-31T11:00:00+11:00",
			[]string{"2045-04-02T03:00:00+10:30", "2045-04-09T03:00:00+10:30"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			loc := mustZone(t, tc.zone)
			s := mustParse(t, tc.spec, loc, time.Time{})
			from := mustTime(t, tc.from)
			got := Upcoming(s, from, len(tc.want))
			if g, w := strings.Join(formatAll(got), " "), strings.Join(tc.want, " "); g != w {
				t.Errorf("Upcoming(%q in %s, %s)\n got %s\nwant %s", tc.spec, tc.zone, tc.from, g, w)
			}
			for _, g := range got {
				if g.Location() != loc {
					t.Errorf("Next(%q) returned a time in %v; want %v", tc.spec, g.Location(), loc)
				}
			}
		})
	}
}

func TestNextEvery(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	tests := []struct {
		name   string
		spec   string
		anchor string
		from   string
		want   []string
	}{
		{"90m across spring forward", "@every 90m", "2026-03-29T00:00:00+01:00", "2026-03-29T00:00:00+01:00",
			[]string{"2026-03-29T01:30:00+01:00", "2026-03-29T04:00:00+02:00", "2026-03-29T05:30:00+02:00"}},
		{"90m across fall back", "@every 90m", "2026-10-25T00:00:00+02:00", "2026-10-25T00:00:00+02:00",
			[]string{"2026-10-25T01:30:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:30:00+01:00"}},
		{"from between fires keeps the anchor's phase", "@every 90m", "2026-03-29T00:00:00+01:00", "2026-03-29T04:10:00+02:00",
			[]string{"2026-03-29T05:30:00+02:00", "2026-03-29T07:00:00+02:00"}},
		{"from before the anchor", "@every 1h", "2026-03-01T12:00:00Z", "2026-02-01T00:00:00Z",
			[]string{"2026-03-01T14:00:00+01:00", "2026-03-01T15:00:00+01:00"}},
		{"zero anchor counts from year 1", "@every 7m", "0001-01-01T00:00:00Z", "2026-01-01T00:00:30Z",
			[]string{"2026-01-01T01:06:00+01:00", "2026-01-01T01:13:00+01:00"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParse(t, tc.spec, berlin, mustTime(t, tc.anchor))
			got := formatAll(Upcoming(s, mustTime(t, tc.from), len(tc.want)))
			if g, w := strings.Join(got, " "), strings.Join(tc.want, " "); g != w {
				t.Errorf("Upcoming(%q anchored %s, %s)\n got %s\nwant %s", tc.spec, tc.anchor, tc.from, g, w)
			}
		})
	}
}

func TestNextImpossibleReturnsZero(t *testing.T) {
	for _, spec := range []string{"0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 *"} {
		t.Run(spec, func(t *testing.T) {
			for _, zone := range []string{"UTC", "Europe/Berlin", "Australia/Lord_Howe"} {
				s := mustParse(t, spec, mustZone(t, zone), time.Time{})
				start := time.Now()
				if got := s.Next(mustTime(t, "2026-01-01T00:00:00Z")); !got.IsZero() {
					t.Errorf("Next(%q in %s) = %v; want the zero time", spec, zone, got)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("Next(%q in %s) took %v", spec, zone, d)
				}
				if got := Upcoming(s, time.Time{}, 3); len(got) != 0 {
					t.Errorf("Upcoming(%q in %s) = %v; want none", spec, zone, got)
				}
			}
		})
	}
}

func TestKind(t *testing.T) {
	tests := []struct {
		spec string
		want Kind
	}{
		{"30 2 * * *", KindFixed},
		{"0 9 * * MON-FRI", KindFixed},
		{"0,30 8-18 * * *", KindFixed},
		{"0 30 2 * * *", KindFixed},
		{"@daily", KindFixed},
		{"@midnight", KindFixed},
		{"@weekly", KindFixed},
		{"@monthly", KindFixed},
		{"@yearly", KindFixed},
		{"@annually", KindFixed},
		{"*/15 * * * *", KindInterval},
		{"0 * * * *", KindInterval},
		{"0 */2 * * *", KindInterval},
		{"* 0 2 * * *", KindInterval}, // seconds field starts with *
		{"@hourly", KindInterval},
		{"@every 10m", KindEvery},
	}
	for _, tc := range tests {
		s := mustParse(t, tc.spec, time.UTC, time.Time{}).(*Spec)
		if got := s.Kind(); got != tc.want {
			t.Errorf("Parse(%q).Kind() = %v; want %v", tc.spec, got, tc.want)
		}
		if got, want := IsFixedTime(tc.spec), tc.want == KindFixed; got != want {
			t.Errorf("IsFixedTime(%q) = %v; want %v", tc.spec, got, want)
		}
		if got := s.String(); got != tc.spec {
			t.Errorf("Parse(%q).String() = %q", tc.spec, got)
		}
	}
	if IsFixedTime("0 0 32 * *") {
		t.Error(`IsFixedTime("0 0 32 * *") = true for an invalid spec`)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		spec string
		want string // the whole message: it is what `validate` shows the user
	}{
		{"", "empty schedule; use 5 fields (minute hour day-of-month month day-of-week), 6 with leading seconds, or a descriptor such as @daily"},
		{"0 9 *", "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, got 3"},
		{"0 0 9 * * * *", "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, got 7"},
		{"TZ=Europe/Berlin 0 9 * * *", "TZ= and CRON_TZ= prefixes are not supported; remove it and set the job's timezone field instead"},
		{"CRON_TZ=UTC 0 9 * * *", "TZ= and CRON_TZ= prefixes are not supported; remove it and set the job's timezone field instead"},
		{"60 9 * * *", `minute "60": 60 is out of range; use 0-59`},
		{"0 24 * * *", `hour "24": 24 is out of range; use 0-23`},
		{"0 0 0 * *", `day-of-month "0": 0 is out of range; use 1-31`},
		{"0 0 * 13 *", `month "13": 13 is out of range; use 1-12 or JAN-DEC`},
		{"0 0 * * 7", `day-of-week "7": 7 is out of range; use 0-6 or SUN-SAT (0 is sunday)`},
		{"0 0 * * MON-FOO", `day-of-week "MON-FOO": unknown value "FOO"; use 0-6 or SUN-SAT (0 is sunday)`},
		{"0 0 * JANUARY *", `month "JANUARY": unknown value "JANUARY"; use 1-12 or JAN-DEC`},
		{"0 MON * * *", `hour "MON": "MON" is not a number; use 0-23`},
		{"*/0 * * * *", `minute "*/0": step "0" must be a positive number, e.g. */15`},
		{"*/x * * * *", `minute "*/x": step "x" must be a positive number, e.g. */15`},
		{"0 22-2 * * *", `hour "22-2": range 22-2 starts after it ends; ranges do not wrap, split it, e.g. 22-23,0-2`},
		{"1,,2 * * * *", `minute "1,,2": empty list item; separate values with single commas, e.g. 1,15`},
		{"1-2-3 * * * *", `minute "1-2-3": "1-2-3" has more than one -; write start-end`},
		{"*/5/2 * * * *", `minute "*/5/2": "*/5/2" has more than one /; write start-end/step, e.g. */15`},
		{"*-5 * * * *", `minute "*-5": * cannot be part of a range; use * alone or start-end`},
		{"61 * * * * *", `second "61": 61 is out of range; use 0-59`},
		{"@daly", `unknown descriptor "@daly"; use @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every DURATION`},
		{"@daily 9", "@daily takes no arguments; use @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every DURATION"},
		{"@every", "@every needs one duration, such as @every 10m or @every 1h30m"},
		{"@every 10x", `@every "10x": not a duration; write a Go duration such as 90s, 10m or 1h30m`},
		{"@every 500ms", "@every 500ms: interval must be at least 1s"},
		{"@every -1h", "@every -1h: interval must be at least 1s"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			s, err := Parse(tc.spec, time.UTC, time.Time{})
			if err == nil {
				t.Fatalf("Parse(%q) = %v, nil; want error %q", tc.spec, s, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("Parse(%q) error\n got %q\nwant %q", tc.spec, err, tc.want)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	for _, spec := range []string{
		"0 9 * * mon-fri", "0 9 * * Mon,Wed,Fri", "0 0 1 jan-mar *", "5/15 * * * *", "0 9-17/2 * * *",
		"0 0 ? * SUN", "  0 9 * * *  ", "@DAILY", "@every 1s", "@every 1h30m", "0 0 0 1 1 ?",
	} {
		if _, err := Parse(spec, time.UTC, time.Time{}); err != nil {
			t.Errorf("Parse(%q) = %v; want success", spec, err)
		}
	}
}

func TestParseNilLocationIsUTC(t *testing.T) {
	s := mustParse(t, "0 9 * * *", nil, time.Time{})
	got := s.Next(mustTime(t, "2026-01-01T00:00:00+09:00"))
	if want := "2026-01-01T09:00:00Z"; got.Format(time.RFC3339) != want {
		t.Errorf("Next = %s; want %s", got.Format(time.RFC3339), want)
	}
}

// BenchmarkNext walks a weekday schedule through 2026 in Berlin, both DST
// changes included.
func BenchmarkNext(b *testing.B) {
	s := mustParse(b, "0 9 * * MON-FRI", mustZone(b, "Europe/Berlin"), time.Time{})
	first := mustTime(b, "2026-01-01T00:00:00+01:00")
	last := mustTime(b, "2027-01-01T00:00:00+01:00")
	t := first
	for b.Loop() {
		if t = s.Next(t); t.After(last) {
			t = first
		}
	}
}

// FuzzParseNext: no panic, and fires strictly increase and are in the zone.
func FuzzParseNext(f *testing.F) {
	for _, seed := range []string{
		"30 2 * * *", "*/15 * * * *", "0 0 1,15 * MON", "@hourly", "@daily", "@every 90m",
		"15 30 2 * * *", "0 0 30 2 *", "0 9 * * MON-FRI", "0 0 13 * */2", "5/15 1-3 * JAN,jul ?",
	} {
		f.Add(seed, "Europe/Berlin", int64(1774738800)) // 2026-03-29T00:00:00+01:00
	}
	f.Add("0 0 * * *", "America/Santiago", int64(1788580800))
	f.Add("*/15 * * * *", "Australia/Lord_Howe", int64(1775316600))
	f.Fuzz(func(t *testing.T, spec, zone string, unix int64) {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			return
		}
		from := time.Unix(unix%(1<<35), 0) // years 1971..3058 and back
		s, err := Parse(spec, loc, from)
		if err != nil {
			return
		}
		prev := from
		for range 20 {
			next := s.Next(prev)
			if next.IsZero() {
				return
			}
			if !next.After(prev) {
				t.Fatalf("Parse(%q in %s): Next(%v) = %v, not after", spec, zone, prev, next)
			}
			if next.Location() != loc {
				t.Fatalf("Parse(%q in %s): Next(%v) = %v, in %v", spec, zone, prev, next, next.Location())
			}
			prev = next
		}
	})
}
