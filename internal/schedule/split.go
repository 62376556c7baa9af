package schedule

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"gopkg.in/yaml.v3"
)

// A large schedule is almost all jobs: list entries that are independent
// of each other. parseSplit parses them on every processor at once, in
// chunks of whole entries, and splices the chunks into the tree of the
// rest of the file. It gives up (and parseDoc parses the file whole)
// whenever the file is not plainly of that shape or a part does not parse
// exactly as expected, so that it only ever returns the tree a whole parse
// gives: the same nodes, values, styles, lines and columns.
//
// They are variables for the tests only (FuzzLoadPrev makes small files
// split in small chunks).
var (
	// splitMinBytes is the smallest file parseDoc splits: below it, one
	// parse is quick enough and the split costs more than it saves.
	splitMinBytes = 256 << 10
	// splitMinItems is the fewest list entries per chunk.
	splitMinItems = 256
)

// splitChunkItems is how many entries a chunk holds in a long list: small
// enough that a reload parses and checks again little more than the
// entries it changed (see splitMemo), large enough that a chunk's own cost
// (a decoder, a few allocations) stays small beside its entries'.
var splitChunkItems = 512

// jobsRegion is where the block list under a top-level "jobs:" key lies.
type jobsRegion struct {
	keyLine int      // 1-based line of "jobs:"
	indent  int      // column of each entry's "-", 0-based
	items   []int    // 0-based indexes into lines of each entry's first line
	first   int      // index of the region's first line (after keyLine)
	end     int      // index of the first line after the region
	lines   [][]byte // the file's lines, without their line breaks
}

// splitMemo is what a load through the split keeps of the jobs list, so
// that the next load of the file (a reload) takes the entries of a chunk
// whose text and first line are unchanged, in a file whose rest is
// unchanged, as the Jobs they became, instead of parsing and checking
// them again. A chunk is parsed on its own, so its entries mean the same
// wherever the rest of the list changed: an alias in it can only name an
// anchor in it, and the rest of the file cannot see its anchors (or the
// split does not apply).
type splitMemo struct {
	rest   [sha256.Size]byte // the file without the jobs list's lines (kept empty: later lines keep their numbers)
	chunks []chunkMemo
}

// chunkMemo is one chunk of the jobs list.
type chunkMemo struct {
	sum      [sha256.Size]byte // of its lines
	first    int               // index of its first line in the file
	start    int               // index of its first entry in the list
	items    int               // its entries
	written  int               // nodes its entries write, aliases included (see aliasCount)
	expanded int               // nodes its aliases reach
	anchors  bool              // an entry defines an anchor
	jobs     []*Job            // its entries' Jobs, set by load once the file loaded
}

// splitDoc is a document parsed through the split.
type splitDoc struct {
	root *yaml.Node
	// written and expanded are what checkAliases counts for the whole
	// document, summed from its parts (they share no anchor).
	written, expanded int
	memo              *splitMemo
	// reuse holds, for each entry of the jobs list taken from the
	// previous load, its Job; nil for an entry parsed now. Such an entry
	// stands in root as an empty mapping at the entry's position.
	reuse  []*Job
	reused int // entries taken from the previous load
}

// parseSplit returns the root of data parsed in chunks of at least
// minItems entries each, at least ways of them, on ways goroutines, or ok
// false when it does not apply or the split does not parse exactly as a
// whole parse would; then the caller parses data whole.
func parseSplit(data []byte, ways, minItems int) (root *yaml.Node, ok bool) {
	d, ok := splitParse(data, ways, minItems, nil)
	if !ok {
		return nil, false
	}
	return d.root, true
}

// splitParse is parseSplit, and takes the unchanged chunks of prev, the
// memo of an earlier load of the file, as they are; see splitDoc.
func splitParse(data []byte, ways, minItems int, prev *splitMemo) (*splitDoc, bool) {
	r, ok := findJobs(data)
	if !ok {
		return nil, false
	}
	starts := chunkStarts(r, ways, minItems)
	n := len(starts) - 1
	if n < 2 {
		return nil, false
	}
	offs := lineOffsets(r.lines)
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
	// The rest's meaning for the entries does not depend on its line
	// numbers: the memo's sum leaves out the list's lines altogether, so
	// that a job added or removed keeps the other chunks.
	h := sha256.New()
	h.Write(data[:offs[r.first]])
	fmt.Fprintf(h, "\x00%d\x00", offs[r.first])
	h.Write(data[min(offs[r.end], len(data)):])
	memo := &splitMemo{chunks: make([]chunkMemo, n)}
	h.Sum(memo.rest[:0])
	var old map[[sha256.Size]byte]*chunkMemo // by sum: in a file that loaded, no two chunks have the same text (nor two jobs the same name)
	if prev != nil && prev.rest == memo.rest {
		old = make(map[[sha256.Size]byte]*chunkMemo, len(prev.chunks))
		for i := range prev.chunks {
			if prev.chunks[i].jobs != nil {
				old[prev.chunks[i].sum] = &prev.chunks[i]
			}
		}
	}

	type result struct {
		seq *yaml.Node // the chunk's list
		err error
		bad bool       // it does not have the expected shape
		was *chunkMemo // the previous load's chunk, taken as it is
	}
	results := make([]result, n)
	var restRoot *yaml.Node
	var restErr error
	var restCount aliasCount
	var wg sync.WaitGroup
	wg.Go(func() {
		restRoot, restErr = parseOne(rest.Bytes())
		if restErr == nil {
			restCount.sizes = map[*yaml.Node]int{}
			restCount.visit(restRoot)
		}
	})
	var next atomic.Int64
	for range min(ways, n) {
		wg.Go(func() {
			for {
				c := int(next.Add(1) - 1)
				if c >= n {
					return
				}
				lo, hi := starts[c], starts[c+1]
				text := data[offs[lo]:min(offs[hi], len(data))]
				m := &memo.chunks[c]
				m.sum, m.first = sha256.Sum256(text), lo
				if was := old[m.sum]; was != nil {
					results[c].was = was
					continue
				}
				root, err := parseOne(chunkText(text))
				if err != nil {
					results[c].err = err
					continue
				}
				if len(root.Content) != 2 || root.Content[0].Value != "jobs" || root.Content[1].Kind != yaml.SequenceNode {
					results[c].bad = true
					continue
				}
				seq := root.Content[1]
				shiftLines(seq, lo-1)
				a := aliasCount{sizes: map[*yaml.Node]int{}}
				for _, e := range seq.Content {
					a.visit(e)
				}
				if a.cycle != nil {
					results[c].bad = true
					continue
				}
				m.written, m.expanded, m.anchors = a.written, a.expanded, len(a.sizes) > 0
				results[c].seq = seq
			}
		})
	}
	wg.Wait()
	if restErr != nil || restRoot == nil || restRoot.Kind != yaml.MappingNode || restCount.cycle != nil {
		return nil, false
	}
	for _, res := range results {
		if res.err != nil || res.bad {
			return nil, false
		}
	}

	// The rest must be a block mapping in the first column holding "jobs:"
	// where it was found, with no value.
	root := restRoot
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
	// Each chunk must be a list with one entry for each "-" line found,
	// in order, each in the column of the "-" lines.
	d := &splitDoc{root: root, written: restCount.written, expanded: restCount.expanded, memo: memo}
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: make([]*yaml.Node, 0, len(r.items))}
	anchors := false
	next0 := 0 // index into r.items of the next expected entry
	for c := range n {
		m := &memo.chunks[c]
		m.start = next0
		if was := results[c].was; was != nil {
			// Its entries as the previous load found them: each stands
			// in the tree as an empty mapping at its position.
			if d.reuse == nil {
				d.reuse = make([]*Job, len(r.items))
			}
			if next0+was.items > len(r.items) || len(was.jobs) != was.items {
				return nil, false
			}
			jobs := was.jobs
			if moved := m.first - was.first; moved != 0 {
				// Lines added or removed above it: the same jobs, each
				// with its new line.
				copies := make([]Job, len(jobs))
				jobs = make([]*Job, len(jobs))
				for k, j := range was.jobs {
					copies[k] = *j
					copies[k].Line += moved
					jobs[k] = &copies[k]
				}
			}
			for k, j := range jobs {
				d.reuse[next0+k] = j
				seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: j.Line, Column: j.Column})
			}
			if c == 0 && was.items > 0 {
				seq.Line, seq.Column = jobs[0].Line, jobs[0].Column
			}
			m.items, m.written, m.expanded, m.anchors = was.items, was.written, was.expanded, was.anchors
			next0 += was.items
			d.reused += was.items
		} else {
			s := results[c].seq
			if s.Anchor != "" || s.Tag != "!!seq" || s.Style != 0 {
				return nil, false
			}
			if c == 0 {
				seq.Line, seq.Column = s.Line, s.Column
			}
			for _, it := range s.Content {
				// Entry k's node starts on its "-" line or after it (the
				// value of "-" alone on a line), before entry k+1's.
				if next0 >= len(r.items) || it.Line < r.items[next0]+1 || (next0+1 < len(r.items) && it.Line > r.items[next0+1]) {
					return nil, false
				}
				next0++
			}
			m.items = len(s.Content)
			seq.Content = append(seq.Content, s.Content...)
		}
		d.written += m.written
		d.expanded = min(d.expanded+m.expanded, sizeCap)
		anchors = anchors || m.anchors
	}
	if next0 != len(r.items) {
		return nil, false
	}
	// An alias in the rest resolves to the newest anchor of its name
	// before it, which a whole parse might find among the entries.
	if anchors && hasAlias(root) {
		return nil, false
	}
	*slot = seq
	return d, true
}

// chunkStarts returns the index of the first line of each chunk, and
// r.end. A list of at least 4·splitChunkItems entries is cut where its
// entries' text says (content-defined, as in rsync or restic): after at
// least splitChunkItems/2 entries, before an entry whose first line's hash
// is 0 modulo splitChunkItems/2, and after 4·splitChunkItems entries at
// most. An entry added or removed then moves the cuts of its own chunk
// only, and a reload finds the other chunks as they were. A shorter list
// is cut in ways chunks of equal size, none under minItems entries.
func chunkStarts(r *jobsRegion, ways, minItems int) []int {
	items := len(r.items)
	starts := []int{r.first}
	if items >= 4*splitChunkItems && minItems <= splitChunkItems/2 {
		last := 0 // index into r.items of the current chunk's first entry
		for i := last + 1; i < items; i++ {
			k := i - last
			if k >= 4*splitChunkItems || k >= splitChunkItems/2 && fnv32(r.lines[r.items[i]])%uint32(splitChunkItems/2) == 0 {
				starts = append(starts, r.items[i])
				last = i
			}
		}
	} else {
		n := min(ways, items/max(minItems, 1))
		for c := 1; c < n; c++ {
			starts = append(starts, r.items[c*items/n])
		}
	}
	return append(starts, r.end)
}

// fnv32 is the 32-bit FNV-1a hash of b.
func fnv32(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// lineOffsets returns the offset of each line in the data lines was split
// from, and one more: the length of the data plus one.
func lineOffsets(lines [][]byte) []int {
	offs := make([]int, len(lines)+1)
	for i, l := range lines {
		offs[i+1] = offs[i] + len(l) + 1
	}
	return offs
}

// shiftLines moves every node under n down by d lines.
func shiftLines(n *yaml.Node, d int) {
	n.Line += d
	for _, c := range n.Content {
		shiftLines(c, d)
	}
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

// chunkText is "jobs:" on line 1 and the chunk's lines after it, each
// with the line break it has in the file: its nodes have the columns they
// have in the file, and their lines once moved down (shiftLines) by the
// index of the chunk's first line less one.
func chunkText(text []byte) []byte {
	b := make([]byte, 0, len("jobs:\n")+len(text))
	b = append(b, "jobs:\n"...)
	return append(b, text...)
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
