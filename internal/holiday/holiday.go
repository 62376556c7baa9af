// Package holiday answers, for a civil date, whether a public-holiday
// calendar makes it a day off or a make-up working day.
//
// Built-in calendars (Builtin) come from a maintained library where one
// exists and from data bundled here where none does:
//
//   - JP, DE and its sixteen states (DE-BW … DE-TH): github.com/rickar/cal/v2,
//     which computes them by rule for any year.
//   - CN: github.com/6tail/lunar-go (HolidayUtil), which carries the State
//     Council's yearly notices: the days off and the make-up working days
//     (调休, a Saturday or Sunday that is worked). A year the notice for
//     which the library does not carry has no data: Covers reports it.
//   - KR: bundled here (kr.go) for 2025–2028: fixed dates by rule, the lunar
//     holidays (Seollal, Buddha's Birthday, Chuseok) from KASI's almanac
//     (월력요항) in Korean Standard Time, substitute holidays by the
//     Regulations on Holidays of Government Offices, and election days. No
//     Go library computes the Korean lunar calendar in KST; the Chinese one
//     (UTC+8) gives other dates in 2027 and 2028.
//
// An ICS file (ParseICS, File) gives all-day VEVENTs as days off.
//
// The package does no I/O except File, which reads its file when asked to
// refresh it.
package holiday

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Kind says what a calendar makes of a date.
type Kind int

const (
	// Off is a public holiday: the whole day is off.
	Off Kind = iota + 1
	// Workday is a make-up working day: a day normally off (a Saturday or
	// Sunday) that is worked in exchange for a bridge day.
	Workday
)

// String returns "holiday" or "workday".
func (k Kind) String() string {
	switch k {
	case Off:
		return "holiday"
	case Workday:
		return "workday"
	}
	return "unknown"
}

// Day is what a calendar says of one date.
type Day struct {
	Kind Kind
	Name string
}

// Calendar is a public-holiday calendar.
type Calendar interface {
	// Name is the calendar's code (KR, DE-BY) or "ics:PATH".
	Name() string
	// Lookup returns what the calendar says of d; false when d is an
	// ordinary day.
	Lookup(d Date) (Day, bool)
	// Covers reports whether the calendar has data for the year; a
	// calendar computed by rule covers every year.
	Covers(year int) bool
}

// builtins maps each calendar code to its constructor.
var builtins = map[string]func() Calendar{}

func register(code string, f func() Calendar) { builtins[code] = f }

// Builtin returns the built-in calendar with the code, case-insensitive
// (KR, JP, CN, DE, DE-BY, …).
func Builtin(code string) (Calendar, error) {
	f, ok := builtins[strings.ToUpper(code)]
	if !ok {
		return nil, fmt.Errorf("unknown holiday calendar %q; built in: %s, or {ics: PATH}", code, strings.Join(Codes(), ", "))
	}
	return f(), nil
}

// Codes returns the codes of the built-in calendars, sorted.
func Codes() []string {
	codes := make([]string, 0, len(builtins))
	for c := range builtins {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	return codes
}

// table is a calendar given as a list of dates, for the years it covers.
type table struct {
	name  string
	days  map[Date]Day
	years []int
}

func (t *table) Name() string { return t.name }

func (t *table) Lookup(d Date) (Day, bool) {
	day, ok := t.days[d]
	return day, ok
}

func (t *table) Covers(year int) bool { return slices.Contains(t.years, year) }
