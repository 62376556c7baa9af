package holiday

// Korean public holidays, 2025–2028. Sources: the Regulations on Holidays
// of Government Offices (관공서의 공휴일에 관한 규정: fixed dates, Article 2;
// substitute holidays, Article 3: for Seollal and Chuseok when one of their
// days falls on a Sunday or another holiday; for Children's Day, Buddha's
// Birthday, Christmas and the national days when they fall on a Saturday,
// a Sunday or another holiday); the lunar dates from the Korea Astronomy and
// Space Science Institute's almanac (월력요항), reckoned in KST, which puts
// Seollal on 2027-02-07 and 2028-01-27 where the Chinese calendar (UTC+8)
// has the day before; election days from the Public Official Election Act;
// the temporary holiday of 2025-01-27 from the cabinet's designation.
// Extend krDays when KASI publishes a new year's almanac.
var krDays = map[int][]krDay{
	2025: {
		{"01-01", "New Year's Day (신정)"},
		{"01-27", "Temporary holiday (임시공휴일)"},
		{"01-28", "Seollal (설날)"}, {"01-29", "Seollal (설날)"}, {"01-30", "Seollal (설날)"},
		{"03-01", "Independence Movement Day (삼일절)"},
		{"03-03", "Substitute holiday (대체공휴일)"},
		{"05-05", "Children's Day; Buddha's Birthday (어린이날; 부처님오신날)"},
		{"05-06", "Substitute holiday (대체공휴일)"},
		{"06-03", "Presidential election day (대통령선거)"},
		{"06-06", "Memorial Day (현충일)"},
		{"08-15", "Liberation Day (광복절)"},
		{"10-03", "National Foundation Day (개천절)"},
		{"10-05", "Chuseok (추석)"}, {"10-06", "Chuseok (추석)"}, {"10-07", "Chuseok (추석)"},
		{"10-08", "Substitute holiday (대체공휴일)"},
		{"10-09", "Hangul Day (한글날)"},
		{"12-25", "Christmas (성탄절)"},
	},
	2026: {
		{"01-01", "New Year's Day (신정)"},
		{"02-16", "Seollal (설날)"}, {"02-17", "Seollal (설날)"}, {"02-18", "Seollal (설날)"},
		{"03-01", "Independence Movement Day (삼일절)"},
		{"03-02", "Substitute holiday (대체공휴일)"},
		{"05-05", "Children's Day (어린이날)"},
		{"05-24", "Buddha's Birthday (부처님오신날)"},
		{"05-25", "Substitute holiday (대체공휴일)"},
		{"06-03", "Local elections day (전국동시지방선거)"},
		{"06-06", "Memorial Day (현충일)"},
		{"08-15", "Liberation Day (광복절)"},
		{"08-17", "Substitute holiday (대체공휴일)"},
		{"09-24", "Chuseok (추석)"}, {"09-25", "Chuseok (추석)"}, {"09-26", "Chuseok (추석)"},
		{"10-03", "National Foundation Day (개천절)"},
		{"10-05", "Substitute holiday (대체공휴일)"},
		{"10-09", "Hangul Day (한글날)"},
		{"12-25", "Christmas (성탄절)"},
	},
	2027: {
		{"01-01", "New Year's Day (신정)"},
		{"02-06", "Seollal (설날)"}, {"02-07", "Seollal (설날)"}, {"02-08", "Seollal (설날)"},
		{"02-09", "Substitute holiday (대체공휴일)"},
		{"03-01", "Independence Movement Day (삼일절)"},
		{"05-05", "Children's Day (어린이날)"},
		{"05-13", "Buddha's Birthday (부처님오신날)"},
		{"06-06", "Memorial Day (현충일)"},
		{"08-15", "Liberation Day (광복절)"},
		{"08-16", "Substitute holiday (대체공휴일)"},
		{"09-14", "Chuseok (추석)"}, {"09-15", "Chuseok (추석)"}, {"09-16", "Chuseok (추석)"},
		{"10-03", "National Foundation Day (개천절)"},
		{"10-04", "Substitute holiday (대체공휴일)"},
		{"10-09", "Hangul Day (한글날)"},
		{"10-11", "Substitute holiday (대체공휴일)"},
		{"12-25", "Christmas (성탄절)"},
		{"12-27", "Substitute holiday (대체공휴일)"},
	},
	2028: {
		{"01-01", "New Year's Day (신정)"},
		{"01-26", "Seollal (설날)"}, {"01-27", "Seollal (설날)"}, {"01-28", "Seollal (설날)"},
		{"03-01", "Independence Movement Day (삼일절)"},
		{"04-12", "National Assembly election day (국회의원선거)"},
		{"05-02", "Buddha's Birthday (부처님오신날)"},
		{"05-05", "Children's Day (어린이날)"},
		{"06-06", "Memorial Day (현충일)"},
		{"08-15", "Liberation Day (광복절)"},
		{"10-02", "Chuseok (추석)"}, {"10-03", "Chuseok; National Foundation Day (추석; 개천절)"}, {"10-04", "Chuseok (추석)"},
		{"10-05", "Substitute holiday (대체공휴일)"},
		{"10-09", "Hangul Day (한글날)"},
		{"12-25", "Christmas (성탄절)"},
	},
}

type krDay struct{ monthDay, name string }

func init() {
	register("KR", func() Calendar {
		t := &table{name: "KR", days: make(map[Date]Day)}
		for y, days := range krDays {
			t.years = append(t.years, y)
			for _, d := range days {
				date, err := ParseDate(fmtYear(y) + "-" + d.monthDay)
				if err != nil {
					panic("holiday: bad KR date " + d.monthDay)
				}
				t.days[date] = Day{Kind: Off, Name: d.name}
			}
		}
		return t
	})
}
