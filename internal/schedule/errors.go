package schedule

import (
	"fmt"
	"sort"
	"strings"
)

// FieldError is one schedule problem. Error prints
// "file:line:col: path: msg"; the column is left out when unknown (YAML
// syntax errors only carry a line), and the path when the problem concerns
// the whole file.
type FieldError struct {
	File, Path, Msg string // Path such as jobs[2].schedule
	Line, Col       int
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Col)
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Problems is every problem found in one schedule file, sorted by
// position. Load returns it as its error; errors.As to *FieldError finds
// the first problem.
type Problems []*FieldError

// Error prints one problem per line.
func (p Problems) Error() string {
	lines := make([]string, len(p))
	for i, e := range p {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems as errors, for errors.As and errors.Is.
func (p Problems) Unwrap() []error {
	errs := make([]error, len(p))
	for i, e := range p {
		errs[i] = e
	}
	return errs
}

// sortProblems orders p by line, then column, keeping the order in which
// problems at one position were found; exact duplicates are dropped.
func sortProblems(p Problems) Problems {
	sort.SliceStable(p, func(i, j int) bool {
		if p[i].Line != p[j].Line {
			return p[i].Line < p[j].Line
		}
		return p[i].Col < p[j].Col
	})
	out := p[:0]
	for i, e := range p {
		if i > 0 && *e == *p[i-1] {
			continue
		}
		out = append(out, e)
	}
	return out
}
