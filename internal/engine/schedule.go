// Package engine computes fire times and drives them with robfig/cron/v3.
package engine

import (
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is a parsed job schedule in its zone. It satisfies cron.Schedule.
type Schedule interface {
	// Next returns the first fire strictly after t, or the zero time if
	// there is none.
	Next(t time.Time) time.Time
}

// Parse parses a job's schedule spec in loc. anchor is the instant @every
// schedules count from (the daemon's start; `next --from`).
//
// TEMPORARY STUB: the real implementation (DST rules of design.md) replaces it.
func Parse(spec string, loc *time.Location, anchor time.Time) (Schedule, error) {
	p := cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	s, err := p.Parse(spec)
	if err != nil {
		return nil, err
	}
	if ss, ok := s.(*cron.SpecSchedule); ok {
		ss.Location = loc
	}
	return s, nil
}
