package schedule

import (
	"fmt"
	"sort"
	"strings"
)

// closest returns the candidate nearest to word by edit distance, or ""
// when none is near enough to be a plausible typo.
func closest(word string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(word), strings.ToLower(c))
		if bestD < 0 || d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	if bestD < 0 || bestD > max(2, len(word)/3) || bestD >= len(word) {
		return ""
	}
	return best
}

// hint is "did you mean 'x'?" for a near candidate, otherwise the list of
// allowed values.
func hint(word string, candidates []string) string {
	if c := closest(word, candidates); c != "" {
		return fmt.Sprintf("did you mean %q?", c)
	}
	if len(word) >= 3 {
		var near []string
		for _, c := range candidates {
			if strings.Contains(strings.ToLower(c), strings.ToLower(word)) {
				near = append(near, c)
			}
		}
		if len(near) > 0 && len(near) < len(candidates) {
			return "did you mean one of: " + list(near) + "?"
		}
	}
	return "use one of: " + list(candidates)
}

// list joins sorted candidates with commas.
func list(candidates []string) string {
	s := append([]string(nil), candidates...)
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// editDistance is the Levenshtein distance of a and b, in bytes. Words longer
// than 64 bytes are compared by their prefix: a typo hint needs no more.
func editDistance(a, b string) int {
	if len(a) > 64 {
		a = a[:64]
	}
	if len(b) > 64 {
		b = b[:64]
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
