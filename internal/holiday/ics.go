package holiday

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// ParseICS reads the all-day VEVENTs of an iCalendar (RFC 5545) file as
// days off: DTSTART;VALUE=DATE to DTEND (exclusive; one day when DTEND is
// absent), named by SUMMARY. Events with a time of day are not whole days
// off and are skipped. A recurring event (RRULE) is an error: expand it in
// the file. Errors name the line.
func ParseICS(data []byte) (map[Date]Day, error) {
	lines := unfold(data)
	days := make(map[Date]Day)
	var (
		in             bool
		start, end     Date
		hasStart, hasE bool
		timed          bool
		summary        string
		startLine      int
	)
	for _, l := range lines {
		name, params, value := splitProp(l.text)
		switch {
		case name == "BEGIN" && value == "VEVENT":
			in, hasStart, hasE, timed, summary, startLine = true, false, false, false, "", l.n
		case name == "END" && value == "VEVENT":
			if !in {
				return nil, fmt.Errorf("line %d: END:VEVENT without BEGIN:VEVENT", l.n)
			}
			in = false
			if timed {
				continue
			}
			if !hasStart {
				return nil, fmt.Errorf("line %d: VEVENT without DTSTART", startLine)
			}
			if !hasE {
				end = start.AddDays(1)
			}
			if !start.Before(end) {
				return nil, fmt.Errorf("line %d: DTEND %s is not after DTSTART %s", startLine, end, start)
			}
			if n := daysBetween(start, end); n > 366 {
				return nil, fmt.Errorf("line %d: event spans %d days; at most 366", startLine, n)
			}
			if summary == "" {
				summary = "holiday"
			}
			for d := start; d.Before(end); d = d.AddDays(1) {
				days[d] = Day{Kind: Off, Name: summary}
			}
		case !in:
		case name == "DTSTART" || name == "DTEND":
			d, isDate, err := icsDate(params, value)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s: %w", l.n, name, err)
			}
			if !isDate {
				timed = true
			}
			if name == "DTSTART" {
				start, hasStart = d, true
			} else {
				end, hasE = d, true
			}
		case name == "SUMMARY":
			summary = unescape(value)
		case name == "RRULE" || name == "RDATE":
			return nil, fmt.Errorf("line %d: recurring events (%s) are not supported; list each date as its own VEVENT", l.n, name)
		}
	}
	if in {
		return nil, fmt.Errorf("line %d: BEGIN:VEVENT without END:VEVENT", startLine)
	}
	return days, nil
}

type icsLine struct {
	n    int // line number of the first physical line
	text string
}

// unfold joins RFC 5545 folded lines (a line starting with a space or a tab
// continues the previous one).
func unfold(data []byte) []icsLine {
	var out []icsLine
	for i, raw := range bytes.Split(data, []byte("\n")) {
		s := strings.TrimSuffix(string(raw), "\r")
		if (strings.HasPrefix(s, " ") || strings.HasPrefix(s, "\t")) && len(out) > 0 {
			out[len(out)-1].text += s[1:]
			continue
		}
		out = append(out, icsLine{n: i + 1, text: s})
	}
	return out
}

// splitProp splits "NAME;PARAM=X:VALUE".
func splitProp(s string) (name string, params []string, value string) {
	head, value, _ := strings.Cut(s, ":")
	parts := strings.Split(head, ";")
	return strings.ToUpper(parts[0]), parts[1:], value
}

// icsDate parses a DATE (20261224) or DATE-TIME (20261224T090000Z) value.
func icsDate(params []string, v string) (Date, bool, error) {
	isDate := len(v) == 8
	for _, p := range params {
		if strings.EqualFold(p, "VALUE=DATE") {
			isDate = true
		}
	}
	if len(v) < 8 {
		return Date{}, false, fmt.Errorf("%q is not a date", v)
	}
	t, err := time.Parse("20060102", v[:8])
	if err != nil {
		return Date{}, false, fmt.Errorf("%q is not a date", v)
	}
	return DateOf(t), isDate && len(v) == 8, nil
}

func unescape(s string) string {
	return strings.NewReplacer(`\,`, ",", `\;`, ";", `\n`, " ", `\N`, " ", `\\`, `\`).Replace(s)
}

func daysBetween(a, b Date) int {
	ta := time.Date(a.Year, a.Month, a.Day, 0, 0, 0, 0, time.UTC)
	tb := time.Date(b.Year, b.Month, b.Day, 0, 0, 0, 0, time.UTC)
	return int(tb.Sub(ta).Hours() / 24)
}

// File is a calendar read from an ICS file. Refresh re-reads the file
// when its size or modification time changed; until a good read, and
// after a bad one, Lookup answers from the last good read.
type File struct {
	path string

	mu      sync.RWMutex
	days    map[Date]Day
	years   map[int]bool
	modTime time.Time
	size    int64
}

// OpenFile reads the ICS file at path.
func OpenFile(path string) (*File, error) {
	f := &File{path: path}
	if _, err := f.Refresh(); err != nil {
		return nil, err
	}
	return f, nil
}

// Name returns "ics:PATH".
func (f *File) Name() string { return "ics:" + f.path }

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Lookup returns what the file said of d at the last good read.
func (f *File) Lookup(d Date) (Day, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	day, ok := f.days[d]
	return day, ok
}

// Covers reports whether the file has at least one day in the year.
func (f *File) Covers(year int) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.years[year]
}

// Refresh re-reads the file if it changed since the last read and reports
// whether it did. On an error the previous days are kept.
func (f *File) Refresh() (bool, error) {
	st, err := os.Stat(f.path)
	if err != nil {
		return false, fmt.Errorf("holiday calendar: %w", err)
	}
	f.mu.RLock()
	same := f.days != nil && st.ModTime().Equal(f.modTime) && st.Size() == f.size
	f.mu.RUnlock()
	if same {
		return false, nil
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return false, fmt.Errorf("holiday calendar: %w", err)
	}
	days, err := ParseICS(data)
	if err != nil {
		return false, fmt.Errorf("holiday calendar %s: %w", f.path, err)
	}
	years := make(map[int]bool)
	for d := range days {
		years[d.Year] = true
	}
	f.mu.Lock()
	f.days, f.years, f.modTime, f.size = days, years, st.ModTime(), st.Size()
	f.mu.Unlock()
	return true, nil
}
