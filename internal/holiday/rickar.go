package holiday

import (
	"strings"
	"sync"
	"time"

	"github.com/rickar/cal/v2"
	"github.com/rickar/cal/v2/de"
	"github.com/rickar/cal/v2/jp"
)

// ruled is a calendar computed by rule by github.com/rickar/cal/v2.
type ruled struct {
	name string
	list []*cal.Holiday

	mu    sync.Mutex
	years map[int]map[Date]Day // computed on first use of each year
}

func (r *ruled) Name() string { return r.name }

func (r *ruled) Covers(int) bool { return true }

func (r *ruled) Lookup(d Date) (Day, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.years == nil {
		r.years = make(map[int]map[Date]Day)
	}
	y, ok := r.years[d.Year]
	if !ok {
		y = make(map[Date]Day)
		for _, h := range r.list {
			actual, observed := h.Calc(d.Year)
			// Days off are the observed ones (JP's 振替休日 is its own entry
			// in rickar's list; DE observes none).
			for _, t := range []time.Time{actual, observed} {
				if !t.IsZero() && t.Year() == d.Year {
					y[DateOf(t)] = Day{Kind: Off, Name: h.Name}
				}
			}
		}
		r.years[d.Year] = y
	}
	day, ok := y[d]
	return day, ok
}

func init() {
	register("JP", func() Calendar { return &ruled{name: "JP", list: jp.Holidays} })
	register("DE", func() Calendar { return &ruled{name: "DE", list: de.Holidays} })
	for code, list := range map[string][]*cal.Holiday{
		"BW": de.HolidaysBW, "BY": de.HolidaysBY, "BE": de.HolidaysBE, "BB": de.HolidaysBB,
		"HB": de.HolidaysHB, "HH": de.HolidaysHH, "HE": de.HolidaysHE, "MV": de.HolidaysMV,
		"NI": de.HolidaysNI, "NW": de.HolidaysNW, "RP": de.HolidaysRP, "SL": de.HolidaysSL,
		"SN": de.HolidaysSN, "ST": de.HolidaysST, "SH": de.HolidaysSH, "TH": de.HolidaysTH,
	} {
		name := "DE-" + strings.ToUpper(code)
		register(name, func() Calendar { return &ruled{name: name, list: list} })
	}
}
