package window

import (
	"strings"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/holiday"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustCal(t *testing.T, code string) holiday.Calendar {
	t.Helper()
	c, err := holiday.Builtin(code)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// period builds a Period from "MON-FRI 09:00 19:00"-like parts.
func period(t *testing.T, days string, from, to string) Period {
	t.Helper()
	var p Period
	names := map[string]time.Weekday{"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
	for _, part := range strings.Split(days, ",") {
		a, b, isRange := strings.Cut(part, "-")
		lo, hi := names[a], names[a]
		if isRange {
			hi = names[b]
		}
		for d := lo; d <= hi; d++ {
			p.Days[d] = true
		}
	}
	var err error
	if p.From, err = ParseClock(from); err != nil {
		t.Fatal(err)
	}
	if p.To, err = ParseClock(to); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDesired(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	ny := mustZone(t, "America/New_York")
	lab := &Window{Name: "lab", Loc: berlin, On: []Period{
		period(t, "MON-FRI", "09:00", "19:00"),
		period(t, "SAT", "22:00", "02:00"),
		period(t, "SUN", "02:30", "03:30"),
	}, OffDates: map[holiday.Date]bool{{Year: 2026, Month: 12, Day: 24}: true}}
	nightNY := &Window{Name: "ny", Loc: ny, On: []Period{period(t, "SUN-SAT", "01:30", "02:30")}}
	bavaria := &Window{Name: "by", Loc: berlin, Holidays: mustCal(t, "DE-BY"), On: []Period{
		period(t, "MON-FRI", "09:00", "17:00"),
		period(t, "WED", "22:00", "06:00"),
	}}
	seoul := &Window{Name: "kr", Loc: mustZone(t, "Asia/Seoul"), Holidays: mustCal(t, "KR"),
		On: []Period{period(t, "MON-FRI", "09:00", "19:00")}}
	shanghai := &Window{Name: "cn", Loc: mustZone(t, "Asia/Shanghai"), Holidays: mustCal(t, "CN"),
		On: []Period{period(t, "MON-FRI", "09:00", "19:00")}}
	allDay := &Window{Name: "day", Loc: berlin, On: []Period{period(t, "MON-FRI", "00:00", "24:00")}}

	tests := []struct {
		name   string
		w      *Window
		at     string
		want   State
		reason string
	}{
		{"before the period", lab, "2026-03-30T08:59:59+02:00", Off, "outside"},
		{"at from", lab, "2026-03-30T09:00:00+02:00", On, "period"},
		{"before to", lab, "2026-03-30T18:59:59+02:00", On, "period"},
		{"at to", lab, "2026-03-30T19:00:00+02:00", Off, "outside"},
		{"weekend", lab, "2026-03-28T12:00:00+01:00", Off, "outside"},
		{"overnight, evening", lab, "2026-03-28T23:00:00+01:00", On, "period"},
		// 2026-03-29: Berlin springs forward 02:00 CET → 03:00 CEST (01:00Z).
		// The SAT period's 02:00 does not exist: it ends at 03:00 CEST.
		{"overnight into the gap, before", lab, "2026-03-29T00:59:59Z", On, "period"},
		{"overnight into the gap, after", lab, "2026-03-29T01:00:00Z", On, "period"}, // SUN 02:30 → 03:00 CEST joins it
		{"gap period runs from the gap's end", lab, "2026-03-29T01:29:59Z", On, "period"},
		{"gap period ends at 03:30 CEST", lab, "2026-03-29T01:30:00Z", Off, "outside"},
		// 2026-10-25: Berlin falls back 03:00 CEST → 02:00 CET (01:00Z).
		// 02:00 (the SAT period's end) is repeated: first occurrence, 00:00Z.
		{"fall back, before the first 02:00", lab, "2026-10-24T23:59:59Z", On, "period"},
		{"fall back, after the first 02:00", lab, "2026-10-25T00:00:00Z", Off, "outside"},
		{"fall back, SUN 02:30 first occurrence", lab, "2026-10-25T00:30:00Z", On, "period"},
		{"fall back, SUN 03:30 CET", lab, "2026-10-25T02:29:59Z", On, "period"},
		{"fall back, after 03:30 CET", lab, "2026-10-25T02:30:00Z", Off, "outside"},
		{"off date", lab, "2026-12-24T10:00:00+01:00", Off, "off date 2026-12-24"},
		{"day after the off date", lab, "2026-12-25T10:00:00+01:00", On, "period"},
		// New York: 2026-03-08 02:00 EST → 03:00 EDT (07:00Z); 2026-11-01
		// 02:00 EDT → 01:00 EST (06:00Z).
		{"NY spring, 01:30 EST", nightNY, "2026-03-08T06:30:00Z", On, "period"},
		{"NY spring, 02:30 is 03:00 EDT", nightNY, "2026-03-08T07:00:00Z", Off, "outside"},
		{"NY fall, first 01:30", nightNY, "2026-11-01T05:30:00Z", On, "period"},
		{"NY fall, second 01:30 still on", nightNY, "2026-11-01T06:30:00Z", On, "period"},
		{"NY fall, 02:30 EST", nightNY, "2026-11-01T07:30:00Z", Off, "outside"},
		{"NY fall, between", nightNY, "2026-11-01T05:29:59Z", Off, "outside"},
		{"holiday DE-BY Corpus Christi", bavaria, "2026-06-04T10:00:00+02:00", Off, "holiday: Fronleichnam"},
		{"overnight before the holiday", bavaria, "2026-06-03T23:00:00+02:00", On, "period"},
		{"overnight cut at the holiday's midnight", bavaria, "2026-06-04T00:00:00+02:00", Off, "holiday"},
		{"overnight uncut on an ordinary day", bavaria, "2026-06-11T05:59:00+02:00", On, "period"},
		{"KR Seollal", seoul, "2026-02-17T10:00:00+09:00", Off, "holiday: Seollal"},
		{"KR ordinary day", seoul, "2026-02-19T10:00:00+09:00", On, "period"},
		{"CN Spring Festival", shanghai, "2026-02-17T10:00:00+08:00", Off, "holiday: Spring Festival"},
		{"CN make-up Saturday", shanghai, "2026-02-14T10:00:00+08:00", On, "period"},
		{"CN ordinary Saturday", shanghai, "2026-03-07T10:00:00+08:00", Off, "outside"},
		{"24:00 ends the day", allDay, "2026-03-27T23:59:59+01:00", On, "period"},
		{"Saturday after 24:00", allDay, "2026-03-28T00:00:00+01:00", Off, "outside"},
		{"days merge over midnight", allDay, "2026-03-31T00:00:00+02:00", On, "period"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := mustTime(t, tc.at)
			d := tc.w.Desired("nb-1", at, nil)
			if d.State != tc.want || !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("Desired(%s) = %v (%s); want %v (%s)", tc.at, d.State, d.Reason, tc.want, tc.reason)
			}
		})
	}
}

func TestOverrides(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	w := &Window{Name: "lab", Loc: berlin, On: []Period{period(t, "MON-FRI", "09:00", "19:00")}}
	t0 := mustTime(t, "2026-03-30T10:00:00+02:00") // Monday, on by schedule
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	winOff := Override{Window: "lab", State: Off, From: t0, Until: h(2)}
	nbOn := Override{Window: "lab", Target: "nb-1", State: On, From: t0, Until: h(1)}
	otherWin := Override{Window: "other", State: Off, From: t0, Until: h(5)}
	laterWinOn := Override{Window: "lab", State: On, From: h(1).Add(30 * time.Minute), Until: h(3)}
	night := Override{Window: "lab", State: On, From: h(10), Until: h(12)}
	tests := []struct {
		name      string
		target    string
		at        time.Time
		overrides []Override
		want      State
		reason    string
	}{
		{"no override", "nb-1", t0, nil, On, "period"},
		{"window override", "nb-2", h(1), []Override{winOff, nbOn}, Off, "override"},
		{"target beats window", "nb-1", t0.Add(30 * time.Minute), []Override{winOff, nbOn}, On, "override"},
		{"target expired, window holds", "nb-1", h(1), []Override{winOff, nbOn}, Off, "override"},
		{"all expired", "nb-1", h(2), []Override{winOff, nbOn}, On, "period"},
		{"other window ignored", "nb-1", t0, []Override{otherWin}, On, "period"},
		{"set last wins", "nb-2", h(1).Add(45 * time.Minute), []Override{winOff, laterWinOn}, On, "override"},
		{"not yet in force", "nb-2", h(9), []Override{night}, Off, "outside"},
		{"on at night", "nb-2", h(11), []Override{night}, On, "override"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := w.Desired(tc.target, tc.at, tc.overrides)
			if d.State != tc.want || !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("Desired(%s, %s) = %v (%s); want %v (%s)", tc.target, tc.at, d.State, d.Reason, tc.want, tc.reason)
			}
		})
	}
	if next, ok := w.NextChange("nb-1", t0, []Override{winOff, nbOn}); !ok || !next.Equal(h(1)) {
		t.Errorf("NextChange = %v, %v; want %v (the target override's end)", next, ok, h(1))
	}
}

func TestEdges(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	w := &Window{Name: "lab", Loc: berlin, On: []Period{
		period(t, "MON-FRI", "09:00", "19:00"),
		period(t, "SAT", "22:00", "02:00"),
	}, OffDates: map[holiday.Date]bool{{Year: 2026, Month: 3, Day: 25}: true}}
	from := mustTime(t, "2026-03-23T00:00:00+01:00") // Monday; DST starts Sunday
	got := w.Edges(from, from.AddDate(0, 0, 7))
	want := []struct {
		at    string
		state State
		note  string
	}{
		{"2026-03-23T09:00:00+01:00", On, ""},
		{"2026-03-23T19:00:00+01:00", Off, ""},
		{"2026-03-24T09:00:00+01:00", On, ""},
		{"2026-03-24T19:00:00+01:00", Off, ""},
		// 03-25 is an off date.
		{"2026-03-26T09:00:00+01:00", On, ""},
		{"2026-03-26T19:00:00+01:00", Off, ""},
		{"2026-03-27T09:00:00+01:00", On, ""},
		{"2026-03-27T19:00:00+01:00", Off, ""},
		{"2026-03-28T22:00:00+01:00", On, ""},
		{"2026-03-29T03:00:00+02:00", Off, "skipped by DST"},
	}
	if len(got) != len(want) {
		t.Fatalf("Edges = %v; want %d edges", got, len(want))
	}
	for i, w := range want {
		at := mustTime(t, w.at)
		if !got[i].At.Equal(at) || got[i].State != w.state || !strings.Contains(got[i].Note, w.note) || (w.note == "" && got[i].Note != "") {
			t.Errorf("edge %d = %v %v %q; want %v %v %q", i, got[i].At, got[i].State, got[i].Note, at, w.state, w.note)
		}
	}

	fall := mustTime(t, "2026-10-24T12:00:00+02:00")
	e, ok := w.NextEdge(fall)
	if !ok || !e.At.Equal(mustTime(t, "2026-10-24T22:00:00+02:00")) {
		t.Fatalf("NextEdge(%v) = %v, %v", fall, e, ok)
	}
	e, ok = w.NextEdge(e.At)
	if !ok || !e.At.Equal(mustTime(t, "2026-10-25T02:00:00+02:00")) || !strings.Contains(e.Note, "repeated") {
		t.Fatalf("NextEdge after 22:00 = %v %q, %v; want the first 02:00, marked repeated", e.At, e.Note, ok)
	}
	never := &Window{Name: "never", Loc: berlin}
	if e, ok := never.NextEdge(fall); ok {
		t.Fatalf("NextEdge of a window without periods = %v; want none", e)
	}
}

func TestResolve(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	tests := []struct {
		date  holiday.Date
		clock string
		want  string
		moved bool
	}{
		{holiday.Date{Year: 2026, Month: 3, Day: 29}, "01:59", "2026-03-29T00:59:00Z", false},
		{holiday.Date{Year: 2026, Month: 3, Day: 29}, "02:00", "2026-03-29T01:00:00Z", true},
		{holiday.Date{Year: 2026, Month: 3, Day: 29}, "02:59", "2026-03-29T01:00:00Z", true},
		{holiday.Date{Year: 2026, Month: 3, Day: 29}, "03:00", "2026-03-29T01:00:00Z", false},
		{holiday.Date{Year: 2026, Month: 10, Day: 25}, "02:00", "2026-10-25T00:00:00Z", false},
		{holiday.Date{Year: 2026, Month: 10, Day: 25}, "02:59", "2026-10-25T00:59:00Z", false},
		{holiday.Date{Year: 2026, Month: 10, Day: 25}, "03:00", "2026-10-25T02:00:00Z", false},
	}
	for _, tc := range tests {
		c, err := ParseClock(tc.clock)
		if err != nil {
			t.Fatal(err)
		}
		got, moved := Resolve(tc.date, c, berlin)
		if !got.Equal(mustTime(t, tc.want)) || moved != tc.moved {
			t.Errorf("Resolve(%s %s) = %v, %v; want %s, %v", tc.date, tc.clock, got.UTC(), moved, tc.want, tc.moved)
		}
	}
}

func TestParseClock(t *testing.T) {
	for s, ok := range map[string]bool{"00:00": true, "09:30": true, "24:00": true, "24:01": false, "9:00": false, "12:60": false, "ab:cd": false} {
		if _, err := ParseClock(s); (err == nil) != ok {
			t.Errorf("ParseClock(%q) error = %v; want ok=%v", s, err, ok)
		}
	}
}

func BenchmarkDesired(b *testing.B) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	cal, _ := holiday.Builtin("DE-BY")
	var p Period
	for d := time.Monday; d <= time.Friday; d++ {
		p.Days[d] = true
	}
	p.From, p.To = 9*60, 19*60
	w := &Window{Name: "lab", Loc: berlin, On: []Period{p}, Holidays: cal}
	t := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
	for b.Loop() {
		w.Desired("nb-1", t, nil)
	}
}

func BenchmarkNextEdge(b *testing.B) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	var p Period
	p.Days[time.Monday] = true
	p.From, p.To = 9*60, 19*60
	w := &Window{Name: "lab", Loc: berlin, On: []Period{p}}
	t := time.Date(2026, 3, 24, 12, 0, 0, 0, time.UTC) // Tuesday: the next edge is 6 days away
	for b.Loop() {
		w.NextEdge(t)
	}
}
