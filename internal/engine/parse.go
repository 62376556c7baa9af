package engine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// fieldNames lists the six fields of a spec with leading seconds, in order.
var fieldNames = [6]string{"second", "minute", "hour", "day-of-month", "month", "day-of-week"}

// fieldBounds are the accepted values of each field, as in robfig/cron.
var fieldBounds = [6]struct {
	min, max int
	names    map[string]int
	hint     string // how to write a valid value, for errors
}{
	{0, 59, nil, "0-59"},
	{0, 59, nil, "0-59"},
	{0, 23, nil, "0-23"},
	{1, 31, nil, "1-31"},
	{1, 12, map[string]int{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
	}, "1-12 or JAN-DEC"},
	{0, 6, map[string]int{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6,
	}, "0-6 or SUN-SAT (0 is sunday)"},
}

// fieldsParser builds robfig's bit fields once our own checks have passed;
// it always sees six fields.
var fieldsParser = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// descriptorParser parses the fixed descriptors (@daily and friends).
var descriptorParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

const descriptorsHint = "use @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every DURATION"

// parseSpec parses spec into a Spec without zone or anchor.
func parseSpec(spec string) (*Spec, error) {
	trimmed := strings.TrimSpace(spec)
	if trimmed == "" {
		return nil, errors.New("empty schedule; use 5 fields (minute hour day-of-month month day-of-week), 6 with leading seconds, or a descriptor such as @daily")
	}
	if up := strings.ToUpper(trimmed); strings.HasPrefix(up, "TZ=") || strings.HasPrefix(up, "CRON_TZ=") {
		return nil, errors.New("TZ= and CRON_TZ= prefixes are not supported; remove it and set the job's timezone field instead")
	}
	fields := strings.Fields(trimmed)
	if strings.HasPrefix(fields[0], "@") {
		return parseDescriptor(spec, fields)
	}
	if n := len(fields); n != 5 && n != 6 {
		return nil, fmt.Errorf("expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, got %d", n)
	}
	if len(fields) == 5 {
		fields = append([]string{"0"}, fields...)
	}
	for i, f := range fields {
		if err := checkField(f, i); err != nil {
			return nil, fmt.Errorf("%s %q: %w", fieldNames[i], f, err)
		}
	}
	sched, err := fieldsParser.Parse(strings.Join(fields, " "))
	if err != nil { // our checks should have caught it; keep robfig's word
		return nil, fmt.Errorf("parse %q: %w", spec, err)
	}
	ss := sched.(*cron.SpecSchedule)
	kind := KindFixed
	for _, f := range fields[:3] {
		if f[0] == '*' || f[0] == '?' {
			kind = KindInterval
		}
	}
	return newCronSpec(spec, kind, ss), nil
}

// parseDescriptor parses @yearly … @hourly and @every D.
func parseDescriptor(spec string, fields []string) (*Spec, error) {
	name := strings.ToLower(fields[0])
	if name == "@every" {
		if len(fields) != 2 {
			return nil, errors.New("@every needs one duration, such as @every 10m or @every 1h30m")
		}
		d, err := time.ParseDuration(fields[1])
		if err != nil {
			return nil, fmt.Errorf("@every %q: not a duration; write a Go duration such as 90s, 10m or 1h30m", fields[1])
		}
		if d < time.Second {
			return nil, fmt.Errorf("@every %s: interval must be at least 1s", fields[1])
		}
		return &Spec{spec: spec, kind: KindEvery, every: d}, nil
	}
	var kind Kind
	switch name {
	case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight":
		kind = KindFixed
	case "@hourly":
		kind = KindInterval
	default:
		return nil, fmt.Errorf("unknown descriptor %q; %s", fields[0], descriptorsHint)
	}
	if len(fields) != 1 {
		return nil, fmt.Errorf("%s takes no arguments; %s", name, descriptorsHint)
	}
	sched, err := descriptorParser.Parse(name)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", spec, err)
	}
	return newCronSpec(spec, kind, sched.(*cron.SpecSchedule)), nil
}

// checkField validates one field (index i of the six) with messages that say
// how to fix it. It accepts what robfig/cron accepts, except that it rejects
// empty list items and text after a star ("*-5"), which robfig ignores.
func checkField(field string, i int) error {
	for _, item := range strings.Split(field, ",") {
		if item == "" {
			return errors.New("empty list item; separate values with single commas, e.g. 1,15")
		}
		rng, stepText, hasStep := strings.Cut(item, "/")
		if hasStep {
			if strings.Contains(stepText, "/") {
				return fmt.Errorf("%q has more than one /; write start-end/step, e.g. */15", item)
			}
			step, ok := atoi(stepText)
			if !ok || step == 0 {
				return fmt.Errorf("step %q must be a positive number, e.g. */15", stepText)
			}
		}
		if rng == "*" || rng == "?" {
			continue
		}
		if rng == "" {
			return fmt.Errorf("%q lacks a value before /; write */n or start-end/n", item)
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		if strings.Contains(hi, "-") {
			return fmt.Errorf("%q has more than one -; write start-end", item)
		}
		start, err := fieldValue(lo, i)
		if err != nil {
			return err
		}
		if !isRange {
			continue
		}
		end, err := fieldValue(hi, i)
		if err != nil {
			return err
		}
		if start > end {
			return fmt.Errorf("range %s starts after it ends; ranges do not wrap, split it, e.g. 22-23,0-2", rng)
		}
	}
	return nil
}

// fieldValue parses one number or name of field i and checks its bounds.
func fieldValue(s string, i int) (int, error) {
	b := fieldBounds[i]
	if v, ok := b.names[strings.ToLower(s)]; ok {
		return v, nil
	}
	v, ok := atoi(s)
	if !ok {
		if s == "*" || s == "?" {
			return 0, fmt.Errorf("%s cannot be part of a range; use * alone or start-end", s)
		}
		if b.names != nil {
			return 0, fmt.Errorf("unknown value %q; use %s", s, b.hint)
		}
		return 0, fmt.Errorf("%q is not a number; use %s", s, b.hint)
	}
	if v < b.min || v > b.max {
		return 0, fmt.Errorf("%d is out of range; use %s", v, b.hint)
	}
	return v, nil
}

// atoi parses a non-empty string of ASCII digits.
func atoi(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	v, err := strconv.Atoi(s)
	return v, err == nil
}
