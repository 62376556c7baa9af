package schedule

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"gopkg.in/yaml.v3"
)

// A large schedule is almost all jobs: list entries that are independent
// of each other. parseSplit parses them on every processor at once, in
// chunks of whole entries, and splices the chunks into the tree of the
// rest of the file. It gives up (and parseDoc parses the file whole)
// whenever the file is not plainly of that shape or a part does not parse
// exactly as expected, so that it only ever returns the tree a whole parse
// gives: the same nodes, values, styles, lines and columns.
const (
	// splitMinBytes is the smallest file parseDoc splits: below it, one
	// parse is quick enough and the split costs more than it saves.
	splitMinBytes = 256 << 10
	// splitMinItems is the fewest list entries per chunk.
	splitMinItems = 256
)

// jobsRegion is where the block list under a top-level "jobs:" key lies.
type jobsRegion struct {
	keyLine int      // 1-based line of "jobs:"
	indent  int      // column of each entry's "-", 0-based
	items   []int    // 0-based indexes into lines of each entry's first line
	first   int      // index of the region's first line (after keyLine)
	end     int      // index of the first line after the region
	lines   [][]byte // the file's lines, without their line breaks
}

// parseSplit returns the root of data parsed in at most ways chunks of at
// least minItems entries each, in parallel, or ok false when it does not
// apply or the split does not parse exactly as a whole parse would; then
// the caller parses data whole.
func parseSplit(data []byte, ways, minItems int) (root *yaml.Node, ok bool) {
	r, ok := findJobs(data)
	if !ok {
		return nil, false
	}
	n := min(ways, len(r.items)/max(minItems, 1))
	if n < 2 {
		return nil, false
	}
	// Chunk c starts at an entry's first line. Nothing before that line
	// moves to it (not even comment lines, which may be the content of
	// a block scalar above), and every line keeps its line break, so
	// that each entry's text is exactly what a whole parse reads.
	starts := make([]int, n)
	starts[0] = r.first
	for c := 1; c < n; c++ {
		starts[c] = r.items[c*len(r.items)/n]
	}
	// The rest of the file, with the region's lines left empty so that
	// every line keeps its number.
	var rest bytes.Buffer
	rest.Grow(len(data) - regionBytes(r))
	for i, l := range r.lines {
		if i < r.first || i >= r.end {
			rest.Write(l)
		}
		if i < len(r.lines)-1 {
			rest.WriteByte('\n')
		}
	}

	type result struct {
		root    *yaml.Node
		err     error
		anchors bool // an entry defines an anchor
	}
	results := make([]result, n+1)
	var wg sync.WaitGroup
	wg.Go(func() {
		root, err := parseOne(rest.Bytes())
		results[n] = result{root: root, err: err}
	})
	for c := range n {
		lo, hi := starts[c], r.end
		if c+1 < n {
			hi = starts[c+1]
		}
		wg.Go(func() {
			root, err := parseOne(chunkText(r, lo, hi))
			results[c] = result{root: root, err: err, anchors: root != nil && hasAnchor(root)}
		})
	}
	wg.Wait()
	for _, res := range results {
		if res.err != nil || res.root == nil || res.root.Kind != yaml.MappingNode {
			return nil, false
		}
	}

	// The rest must be a block mapping in the first column holding "jobs:"
	// where it was found, with no value.
	root = results[n].root
	if root.Style != 0 || root.Column != 1 || root.Tag != "!!map" || root.Anchor != "" {
		return nil, false
	}
	var slot **yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if k.Kind == yaml.ScalarNode && k.Value == "jobs" {
			if slot != nil || k.Line != r.keyLine || k.Column != 1 || k.Style != 0 || k.Anchor != "" || k.Tag != "!!str" ||
				!isNull(root.Content[i+1]) || root.Content[i+1].Tag != "!!null" || root.Content[i+1].Anchor != "" {
				return nil, false
			}
			slot = &root.Content[i+1]
		}
	}
	if slot == nil {
		return nil, false
	}
	// Each chunk must be "jobs:" and a list with one entry for each "-"
	// line found, in order.
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: make([]*yaml.Node, 0, len(r.items))}
	anchors := false
	next := 0 // index into r.items of the next expected entry
	for c := range n {
		m := results[c].root
		if len(m.Content) != 2 || m.Content[0].Value != "jobs" || m.Content[1].Kind != yaml.SequenceNode {
			return nil, false
		}
		s := m.Content[1]
		if s.Anchor != "" || s.Tag != "!!seq" || s.Style != 0 {
			return nil, false
		}
		if c == 0 {
			seq.Line, seq.Column = s.Line, s.Column
		}
		for _, it := range s.Content {
			// Entry k's node starts on its "-" line or after it (the
			// value of "-" alone on a line), before entry k+1's.
			if next >= len(r.items) || it.Line < r.items[next]+1 || (next+1 < len(r.items) && it.Line > r.items[next+1]) {
				return nil, false
			}
			next++
		}
		seq.Content = append(seq.Content, s.Content...)
		anchors = anchors || results[c].anchors
	}
	if next != len(r.items) {
		return nil, false
	}
	// An alias in the rest resolves to the newest anchor of its name
	// before it, which a whole parse might find among the entries.
	if anchors && hasAlias(root) {
		return nil, false
	}
	*slot = seq
	return root, true
}

// parseOne parses data as exactly one YAML document and returns the
// document's root node.
func parseOne(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 {
		return nil, errors.New("no document")
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one document")
	}
	return doc.Content[0], nil
}

// chunkText is "jobs:" on line 1, empty lines up to line lo, and the
// file's lines lo to hi-1, each with the line break it has in the file:
// its nodes have the lines and columns they have in the file.
func chunkText(r *jobsRegion, lo, hi int) []byte {
	size := len("jobs:") + lo
	for _, l := range r.lines[lo:hi] {
		size += len(l) + 1
	}
	b := make([]byte, 0, size)
	b = append(b, "jobs:"...)
	for range lo {
		b = append(b, '\n')
	}
	for i := lo; i < hi; i++ {
		b = append(b, r.lines[i]...)
		if i < len(r.lines)-1 {
			b = append(b, '\n')
		}
	}
	return b
}

func regionBytes(r *jobsRegion) int {
	n := 0
	for _, l := range r.lines[r.first:r.end] {
		n += len(l) + 1
	}
	return n
}

// findJobs finds a top-level "jobs:" line (nothing after the colon but a
// comment) followed by a block list in one column, and the first line of
// each of its entries. It gives up on anything else: tabs or carriage
// returns, directives, a line of the list less indented than its
// entries, a second "jobs:" line.
func findJobs(data []byte) (*jobsRegion, bool) {
	// Line breaks other than \n (libyaml also breaks lines at \r, NEL,
	// U+2028 and U+2029), tabs, and encodings other than UTF-8 (which a
	// byte order mark or a NUL byte announces) are left to a whole parse.
	for _, b := range [][]byte{{'\t'}, {'\r'}, {0}, {0xc2, 0x85}, []byte("\u2028"), []byte("\u2029"), {0xfe, 0xff}, {0xff, 0xfe}} {
		if bytes.Contains(data, b) {
			return nil, false
		}
	}
	r := &jobsRegion{lines: bytes.Split(data, []byte("\n")), indent: -1}
	key := -1
	for i, l := range r.lines {
		if len(l) > 0 && l[0] == '%' {
			return nil, false // a directive: %TAG changes what the entries' tags mean
		}
		if bytes.HasPrefix(l, []byte("jobs:")) && restIsComment(l[len("jobs:"):]) {
			if key >= 0 {
				return nil, false
			}
			key = i
		}
	}
	if key < 0 {
		return nil, false
	}
	r.keyLine, r.first, r.end = key+1, key+1, len(r.lines)
	for i := key + 1; i < len(r.lines); i++ {
		l := r.lines[i]
		if blankOrComment(l) {
			continue
		}
		ind := indentOf(l)
		entry := ind < len(l) && l[ind] == '-' && (ind+1 == len(l) || l[ind+1] == ' ')
		if r.indent < 0 {
			if !entry {
				return nil, false
			}
			r.indent = ind
		}
		if ind == 0 && !(r.indent == 0 && entry) {
			r.end = i // the next top-level key, or a document marker
			break
		}
		switch {
		case ind < r.indent:
			return nil, false
		case ind == r.indent && !entry:
			return nil, false
		case ind == r.indent:
			r.items = append(r.items, i)
		}
	}
	return r, len(r.items) > 0
}

func indentOf(l []byte) int {
	n := 0
	for n < len(l) && l[n] == ' ' {
		n++
	}
	return n
}

func blankOrComment(l []byte) bool {
	t := bytes.TrimLeft(l, " ")
	return len(t) == 0 || t[0] == '#'
}

func restIsComment(l []byte) bool {
	t := bytes.TrimLeft(l, " ")
	return len(t) == 0 || (t[0] == '#' && len(t) < len(l))
}

func hasAnchor(n *yaml.Node) bool {
	if n.Anchor != "" {
		return true
	}
	for _, c := range n.Content {
		if hasAnchor(c) {
			return true
		}
	}
	return false
}

func hasAlias(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		return true
	}
	for _, c := range n.Content {
		if hasAlias(c) {
			return true
		}
	}
	return false
}
