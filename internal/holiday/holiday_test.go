package holiday

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustDate(t *testing.T, s string) Date {
	t.Helper()
	d, err := ParseDate(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The expected days are copied from the public sources each calendar
// names: KR from KASI's almanac and the holiday regulations, CN from the
// State Council's notices (国办发明电), JP from the Cabinet Office's list
// (内閣府「国民の祝日について」), DE from the states' holiday laws.
func TestBuiltin(t *testing.T) {
	tests := []struct {
		cal, date string
		want      Kind // 0: an ordinary day
		name      string
	}{
		{"KR", "2026-02-17", Off, "Seollal"},
		{"KR", "2026-05-25", Off, "Substitute"},
		{"KR", "2026-09-25", Off, "Chuseok"},
		{"KR", "2026-09-28", 0, ""},
		{"KR", "2027-02-06", Off, "Seollal"},
		{"KR", "2027-02-09", Off, "Substitute"}, // Seollal on a Sunday, in KST
		{"KR", "2028-01-27", Off, "Seollal"},
		{"KR", "2028-01-25", 0, ""}, // the Chinese calendar's eve
		{"KR", "2028-10-05", Off, "Substitute"},
		{"kr", "2025-10-08", Off, "Substitute"},
		{"CN", "2026-02-17", Off, "Spring Festival"},
		{"CN", "2026-02-14", Workday, "make-up"}, // a Saturday worked
		{"CN", "2026-02-28", Workday, "make-up"},
		{"CN", "2025-10-08", Off, "National Day"},
		{"CN", "2025-09-28", Workday, "make-up"}, // a Sunday worked
		{"CN", "2025-10-13", 0, ""},
		{"JP", "2026-01-12", Off, ""},        // Coming of Age Day
		{"JP", "2026-05-06", Off, ""},        // substitute for Constitution Day on a Sunday
		{"JP", "2026-09-22", Off, "between"}, // 国民の休日
		{"JP", "2026-11-23", Off, ""},
		{"JP", "2026-11-24", 0, ""},
		{"DE", "2026-04-03", Off, "Karfreitag"},
		{"DE", "2026-06-04", 0, ""}, // Corpus Christi is not national
		{"DE-BY", "2026-06-04", Off, "Fronleichnam"},
		{"DE-BY", "2026-11-01", Off, "Allerheiligen"},
		{"DE-BE", "2026-03-08", Off, "Frauentag"},
		{"DE-BY", "2026-03-08", 0, ""},
		{"DE-BB", "2026-10-31", Off, "Reformationstag"},
	}
	for _, tc := range tests {
		t.Run(tc.cal+"/"+tc.date, func(t *testing.T) {
			c, err := Builtin(tc.cal)
			if err != nil {
				t.Fatal(err)
			}
			day, ok := c.Lookup(mustDate(t, tc.date))
			if tc.want == 0 {
				if ok {
					t.Fatalf("%s.Lookup(%s) = %+v; want an ordinary day", tc.cal, tc.date, day)
				}
				return
			}
			if !ok || day.Kind != tc.want || !strings.Contains(day.Name, tc.name) {
				t.Fatalf("%s.Lookup(%s) = %+v, %v; want %v named like %q", tc.cal, tc.date, day, ok, tc.want, tc.name)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	kr, _ := Builtin("KR")
	cn, _ := Builtin("CN")
	de, _ := Builtin("DE-BY")
	for _, tc := range []struct {
		c    Calendar
		year int
		want bool
	}{
		{kr, 2025, true}, {kr, 2028, true}, {kr, 2029, false},
		{cn, 2026, true}, {cn, 2027, true}, {cn, 2040, false},
		{de, 2040, true},
	} {
		if got := tc.c.Covers(tc.year); got != tc.want {
			t.Errorf("%s.Covers(%d) = %v; want %v", tc.c.Name(), tc.year, got, tc.want)
		}
	}
}

func TestUnknownCalendar(t *testing.T) {
	_, err := Builtin("XX")
	if err == nil || !strings.Contains(err.Error(), "DE-BY") || !strings.Contains(err.Error(), "ics") {
		t.Fatalf("Builtin(XX) error = %v; want one listing the calendars", err)
	}
}

const sampleICS = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" +
	"BEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20261224\r\nDTEND;VALUE=DATE:20261227\r\nSUMMARY:Company\r\n  shutdown\\, winter\r\nEND:VEVENT\r\n" +
	"BEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20261231\r\nSUMMARY:Eve\r\nEND:VEVENT\r\n" +
	"BEGIN:VEVENT\r\nDTSTART:20261230T090000Z\r\nDTEND:20261230T100000Z\r\nSUMMARY:Meeting\r\nEND:VEVENT\r\n" +
	"END:VCALENDAR\r\n"

func TestParseICS(t *testing.T) {
	days, err := ParseICS([]byte(sampleICS))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"2026-12-24": "Company shutdown, winter",
		"2026-12-25": "Company shutdown, winter",
		"2026-12-26": "Company shutdown, winter",
		"2026-12-31": "Eve",
	}
	if len(days) != len(want) {
		t.Fatalf("ParseICS = %v; want %v", days, want)
	}
	for d, name := range want {
		if got := days[mustDate(t, d)]; got.Kind != Off || got.Name != name {
			t.Errorf("day %s = %+v; want off, %q", d, got, name)
		}
	}
}

func TestParseICSErrors(t *testing.T) {
	for _, tc := range []struct{ name, ics, want string }{
		{"rrule", "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20261224\nRRULE:FREQ=YEARLY\nEND:VEVENT\n", "line 3: recurring"},
		{"unclosed", "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20261224\n", "line 1: BEGIN:VEVENT without END"},
		{"bad date", "BEGIN:VEVENT\nDTSTART;VALUE=DATE:2026-12\nEND:VEVENT\n", "line 2: DTSTART"},
		{"backwards", "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20261224\nDTEND;VALUE=DATE:20261224\nEND:VEVENT\n", "not after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseICS([]byte(tc.ics))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseICS error = %v; want one containing %q", err, tc.want)
			}
		})
	}
}

func TestFileRefresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "company.ics")
	write := func(s string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	write(sampleICS, t0)
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Lookup(mustDate(t, "2026-12-31")); !ok {
		t.Fatal("2026-12-31 not off after the first read")
	}
	if changed, err := f.Refresh(); changed || err != nil {
		t.Fatalf("Refresh of an unchanged file = %v, %v; want false, nil", changed, err)
	}
	write("BEGIN:VEVENT\nDTSTART;VALUE=DATE:20270104\nEND:VEVENT\n", t0.Add(time.Hour))
	if changed, err := f.Refresh(); !changed || err != nil {
		t.Fatalf("Refresh of a changed file = %v, %v; want true, nil", changed, err)
	}
	if _, ok := f.Lookup(mustDate(t, "2026-12-31")); ok {
		t.Fatal("2026-12-31 still off after the file dropped it")
	}
	if !f.Covers(2027) || f.Covers(2026) {
		t.Fatal("Covers does not follow the new file")
	}
	write("BEGIN:VEVENT\n", t0.Add(2*time.Hour))
	if _, err := f.Refresh(); err == nil {
		t.Fatal("Refresh of a broken file: no error")
	}
	if _, ok := f.Lookup(mustDate(t, "2027-01-04")); !ok {
		t.Fatal("a broken file lost the last good days")
	}
}
