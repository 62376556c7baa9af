package holiday

import (
	"sync"

	"github.com/6tail/lunar-go/HolidayUtil"
)

// cnNames translates lunar-go's holiday names.
var cnNames = map[string]string{
	"元旦节":   "New Year's Day (元旦)",
	"春节":    "Spring Festival (春节)",
	"清明节":   "Qingming Festival (清明节)",
	"劳动节":   "Labour Day (劳动节)",
	"端午节":   "Dragon Boat Festival (端午节)",
	"中秋节":   "Mid-Autumn Festival (中秋节)",
	"国庆节":   "National Day (国庆节)",
	"国庆中秋":  "National Day and Mid-Autumn Festival (国庆中秋)",
	"抗战胜利日": "Victory Day (抗战胜利日)",
}

// cn is the Chinese calendar of the State Council's notices, as carried by
// github.com/6tail/lunar-go: days off and make-up working days.
type cn struct {
	mu    sync.Mutex
	years map[int]map[Date]Day
}

func (c *cn) Name() string { return "CN" }

func (c *cn) year(y int) map[Date]Day {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.years == nil {
		c.years = make(map[int]map[Date]Day)
	}
	days, ok := c.years[y]
	if !ok {
		days = make(map[Date]Day)
		l := HolidayUtil.GetHolidaysByYear(y)
		for e := l.Front(); e != nil; e = e.Next() {
			h := e.Value.(*HolidayUtil.Holiday)
			d, err := ParseDate(h.GetDay())
			if err != nil {
				continue
			}
			name := cnNames[h.GetName()]
			if name == "" {
				name = h.GetName()
			}
			kind := Off
			if h.IsWork() {
				kind = Workday
				name += " make-up working day"
			}
			days[d] = Day{Kind: kind, Name: name}
		}
		c.years[y] = days
	}
	return days
}

func (c *cn) Lookup(d Date) (Day, bool) {
	day, ok := c.year(d.Year)[d]
	return day, ok
}

// Covers reports whether the library carries the State Council's notice
// for the year (the notice comes out each autumn for the next year).
func (c *cn) Covers(year int) bool {
	for _, day := range c.year(year) {
		if day.Kind == Off {
			return true
		}
	}
	return false
}

func init() { register("CN", func() Calendar { return &cn{} }) }
