package schedule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"gopkg.in/yaml.v3"
)

// Alias expansion is bounded relative to the document, not its size: the
// nodes a document reaches through its aliases, counted as if every alias
// were written out, may number at most aliasFactor times the nodes it
// writes, or minAliasBudget for a small document. An honest file of any
// size loads, and an alias bomb ("billion laughs") is refused after one
// pass over the nodes it writes, before anything is expanded.
const (
	aliasFactor    = 10
	minAliasBudget = 1 << 16
)

const durationHint = "use Go syntax like 30s, 5m, 1h30m"

var (
	refType      = reflect.TypeFor[secret.Ref]()
	durationType = reflect.TypeFor[Duration]()
	yamlLineRe   = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
)

// parseDoc reads exactly one YAML document and returns its root node and
// the number of nodes it writes. A large document is parsed through the
// split (see splitParse, which takes prev's unchanged chunks as they are),
// and then sd says how.
func parseDoc(file string, data []byte, prev *splitMemo) (root *yaml.Node, nodes int, sd *splitDoc, fe *FieldError) {
	if procs := runtime.GOMAXPROCS(0); procs > 1 && len(data) >= splitMinBytes {
		if d, ok := splitParse(data, procs, splitMinItems, prev); ok {
			if d.expanded <= max(minAliasBudget, aliasFactor*d.written) {
				return d.root, d.written, d, nil
			}
			if d.reused == 0 {
				// Count again to find the alias where it passes the budget.
				nodes, fe := checkAliases(file, d.root)
				return d.root, nodes, nil, fe
			}
			// Entries taken as they are stand in the tree as empty
			// mappings: parse the whole file to name the alias.
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, nil, &FieldError{File: file, Line: 1, Col: 1, Msg: "empty schedule; a schedule starts with version: 1"}
		}
		return nil, 0, nil, syntaxError(file, err)
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, 0, nil, &FieldError{File: file, Line: max(doc.Line, 1), Col: max(doc.Column, 1), Msg: "empty schedule; a schedule starts with version: 1"}
	}
	root = doc.Content[0]
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, 0, nil, syntaxError(file, err)
	default:
		n := &next
		if len(next.Content) > 0 {
			n = next.Content[0]
		}
		return nil, 0, nil, &FieldError{File: file, Line: n.Line, Col: n.Column,
			Msg: "a second YAML document is not allowed; a schedule is one document (remove the extra ---)"}
	}
	if root.Kind != yaml.MappingNode {
		return nil, 0, nil, &FieldError{File: file, Line: root.Line, Col: root.Column,
			Msg: "expected a mapping (version, timezone, audit, state, defaults, accounts, jobs), got " + describe(root)}
	}
	nodes, fe = checkAliases(file, root)
	if fe != nil {
		return nil, 0, nil, fe
	}
	return root, nodes, nil, nil
}

// aliasCount measures what the aliases of a document expand to without
// expanding them: each written node is visited once, and an alias counts
// the size of its anchor's value, remembered per anchor.
type aliasCount struct {
	written  int                // nodes the document writes, aliases included
	expanded int                // nodes reached through aliases
	sizes    map[*yaml.Node]int // anchored node → size with aliases written out; -1 while it is being counted
	cycle    *yaml.Node         // an alias inside the value of its own anchor
	stopAt   int                // when > 0, stop at the alias where expanded passes it
	stopped  *yaml.Node         // that alias
}

// sizeCap keeps sizes from overflowing (the sum of two fits in an int); any
// size near it is far beyond a budget.
const sizeCap = math.MaxInt / 2

// visit counts n and the nodes under it and returns the size of n with its
// aliases written out, at most sizeCap.
func (a *aliasCount) visit(n *yaml.Node) int {
	if a.cycle != nil || a.stopped != nil {
		return 0
	}
	a.written++
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return 1
		}
		s, ok := a.sizes[n.Alias]
		if !ok {
			// The parser only aliases an anchor it has read, so this is
			// a tree built otherwise: count the value where it is used.
			s = a.visit(n.Alias)
		}
		if s < 0 {
			a.cycle = n
			return 0
		}
		a.expanded = min(a.expanded+s, sizeCap)
		if a.stopAt > 0 && a.expanded > a.stopAt {
			a.stopped = n
		}
		return s
	}
	if n.Anchor != "" {
		a.sizes[n] = -1
	}
	s := 1
	for _, c := range n.Content {
		s = min(s+a.visit(c), sizeCap)
	}
	if n.Anchor != "" {
		a.sizes[n] = s
	}
	return s
}

// checkAliases returns the number of nodes the document writes. It refuses
// a document whose aliases expand too much (see aliasFactor), at the alias
// where the expansion passes the budget, and a document with an alias
// inside the value of its own anchor, which never ends.
func checkAliases(file string, root *yaml.Node) (int, *FieldError) {
	a := &aliasCount{sizes: map[*yaml.Node]int{}}
	a.visit(root)
	if n := a.cycle; n != nil {
		return 0, &FieldError{File: file, Line: n.Line, Col: n.Column,
			Msg: fmt.Sprintf("alias *%s is inside the value of its own anchor &%s and would expand forever; an alias may only repeat a value that ends before it", n.Value, n.Value)}
	}
	budget := max(minAliasBudget, aliasFactor*a.written)
	if a.expanded <= budget {
		return a.written, nil
	}
	// Count again to find the alias where the expansion passes the budget.
	written := a.written
	a = &aliasCount{sizes: map[*yaml.Node]int{}, stopAt: budget}
	a.visit(root)
	n := a.stopped
	if n == nil { // cannot happen: the count is the same
		n = root
	}
	return 0, &FieldError{File: file, Line: n.Line, Col: n.Column,
		Msg: fmt.Sprintf("document expands aliases too much: they reach more than %d nodes for %d written (the limit is %d per node written, or %d for a small file); "+
			"write the repeated values out instead of aliasing them, and set what jobs share once under defaults:",
			budget, written, aliasFactor, minAliasBudget)}
}

// syntaxError turns a yaml.v3 parse error, which has a line but no column,
// into a FieldError.
func syntaxError(file string, err error) *FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	fe := &FieldError{File: file, Msg: "invalid YAML: " + msg}
	if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = "invalid YAML: " + m[2]
	}
	return fe
}

// walker checks a node tree against the Go types of the schedule: unknown
// and duplicate fields, wrong kinds, values that do not parse, secret
// references. It reports every problem with its position and field path
// and records the nodes of every path for the semantic checks.
//
// It decodes as it checks: walk fills a Go value with what Node.Decode
// would give for the walker's clean copy of the tree (the parsed file with
// its aliases written out and without the nodes it reported), so that
// decoding goes on past a problem and later checks still run. That clean
// copy is still built, and decoded with Node.Decode, in clean mode: the
// reference the fast mode is tested against (see TestFillMatchesDecode),
// and the way Load goes when the fast mode meets what it does not mirror
// (see slow).
type walker struct {
	file  string
	probs Problems
	nodes map[string]pathNodes // path → its nodes; see find for the paths under jobs[i]
	typos map[string]bool      // paths of fields an unknown field was probably meant to be
	lines map[int][]string     // line → paths of the values on it, leftmost first; see pathAt

	path []byte // the path being walked

	// clean: build the clean copy and record every path in nodes; the
	// caller decodes the copy. Otherwise walk fills its value.
	clean bool
	// jobs are the nodes of each element of the top-level jobs list. In
	// fast mode the paths under them are not recorded in nodes (most of
	// a large file, and almost never asked for): find navigates to them.
	jobs    []pathNodes
	inJobs  bool // walking an element of jobs: record nothing in nodes
	hasJobs bool // jobs holds the elements of the jobs list
	// slow is set in fast mode when the file has something whose decoding
	// the fill does not mirror (an explicit tag such as !!binary, a
	// holidays value its UnmarshalYAML refuses): Load starts again in
	// clean mode.
	slow bool
	// reuse holds the Jobs of the jobs list's entries taken from the
	// previous load (see splitDoc); walk sets them as they are.
	reuse []*Job
}

// pathNodes are the nodes of one path.
type pathNodes struct {
	key *yaml.Node // the key of a mapping entry; nil for a list element
	val *yaml.Node // the value (the alias, not its target); nil for a key without a value
}

// newWalker returns a walker for a document that writes about nodes nodes.
func newWalker(file string, nodes int, clean bool) *walker {
	size := 64
	if clean {
		// A path per mapping entry or list element: about half the nodes.
		size = nodes / 2
	}
	return &walker{file: file, nodes: make(map[string]pathNodes, size), typos: map[string]bool{}, clean: clean, path: make([]byte, 0, 64)}
}

// val returns the value node of path, or nil.
func (w *walker) val(path string) *yaml.Node { return w.find(path).val }

// keyAt returns the key node of path, or nil.
func (w *walker) keyAt(path string) *yaml.Node { return w.find(path).key }

// find returns the nodes the walker recorded for path: from nodes, or for
// a path under jobs[i] in fast mode, by going down from the element the
// way walk went. A Job has no map (TestJobPathsUnambiguous), so its paths
// read back unambiguously.
func (w *walker) find(path string) pathNodes {
	if pn, ok := w.nodes[path]; ok || !w.hasJobs {
		return pn
	}
	rest, ok := strings.CutPrefix(path, "jobs")
	if !ok {
		return pathNodes{}
	}
	i, rest, ok := cutIndex(rest)
	if !ok || i >= len(w.jobs) {
		return pathNodes{}
	}
	return descend(w.jobs[i], jobType, rest)
}

var jobType = reflect.TypeFor[*Job]()

// cutIndex reads "[i]" from the start of path, i written as index writes
// it, and returns i and the rest of path.
func cutIndex(path string) (int, string, bool) {
	end := strings.IndexByte(path, ']')
	if len(path) < 3 || path[0] != '[' || end < 0 {
		return 0, "", false
	}
	digits := path[1:end]
	if len(digits) > 1 && digits[0] == '0' || len(digits) > 9 {
		return 0, "", false
	}
	i := 0
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return 0, "", false
		}
		i = i*10 + int(c-'0')
	}
	return i, path[end+1:], true
}

// descend returns the nodes walk records at path rest below pn, whose
// value walk checked against t: it follows the same aliases, keys and
// indices, and stops where walk stops. It knows structs and lists; a map
// (whose keys may contain . or [) or a holidays value below pn is never
// found.
func descend(pn pathNodes, t reflect.Type, rest string) pathNodes {
	for rest != "" {
		n := pn.val
		if n == nil {
			return pathNodes{}
		}
		if n.Kind == yaml.AliasNode {
			if n.Alias == nil || n.Alias.Kind == yaml.AliasNode {
				return pathNodes{}
			}
			n = n.Alias
		}
		if t.Kind() == reflect.Pointer {
			if isNull(n) {
				return pathNodes{}
			}
			t = t.Elem()
		}
		if t == holidayType || t == refType || t == durationType {
			return pathNodes{}
		}
		switch t.Kind() {
		case reflect.Struct:
			if n.Kind != yaml.MappingNode || rest[0] != '.' {
				return pathNodes{}
			}
			end := strings.IndexAny(rest[1:], ".[")
			if end < 0 {
				end = len(rest)
			} else {
				end++
			}
			name := rest[1:end]
			types, _, _ := fieldsOf(t)
			ft, known := types[name]
			if !known {
				return pathNodes{}
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if kn, ok := keyName(n.Content[i]); ok && kn == name {
					pn, found = pathNodes{n.Content[i], n.Content[i+1]}, true
					break
				}
			}
			if !found {
				return pathNodes{}
			}
			t, rest = ft, rest[end:]
		case reflect.Slice:
			if n.Kind != yaml.SequenceNode {
				return pathNodes{}
			}
			i, tail, ok := cutIndex(rest)
			if !ok || i >= len(n.Content) {
				return pathNodes{}
			}
			e := n.Content[i]
			if isNull(e) && tail != "" {
				return pathNodes{}
			}
			pn, t, rest = pathNodes{nil, e}, t.Elem(), tail
		default:
			return pathNodes{}
		}
	}
	return pn
}

// here returns the path being walked.
func (w *walker) here() string { return string(w.path) }

// push appends the field key to the path being walked and returns what
// pop needs to take it off again.
func (w *walker) push(key string) int {
	l := len(w.path)
	if l > 0 {
		w.path = append(w.path, '.')
	}
	w.path = append(w.path, key...)
	return l
}

// pushIndex appends the list index i to the path being walked.
func (w *walker) pushIndex(i int) int {
	l := len(w.path)
	w.path = append(w.path, '[')
	w.path = strconv.AppendInt(w.path, int64(i), 10)
	w.path = append(w.path, ']')
	return l
}

func (w *walker) pop(l int) { w.path = w.path[:l] }

// record records the nodes of the path being walked.
func (w *walker) record(k, n *yaml.Node) {
	if !w.inJobs {
		w.nodes[w.here()] = pathNodes{k, n}
	}
}

func (w *walker) add(n *yaml.Node, path, format string, args ...any) {
	w.probs = append(w.probs, &FieldError{File: w.file, Path: path, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)})
}

// addHere reports a problem at the path being walked.
func (w *walker) addHere(n *yaml.Node, format string, args ...any) {
	w.add(n, w.here(), format, args...)
}

func child(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// tagged reports whether n carries an explicit tag (or none at all, which
// the parser never leaves): the fill mirrors Node.Decode only for the
// tags the parser resolves from the value.
func tagged(n *yaml.Node) bool {
	return n.Style&yaml.TaggedStyle != 0 || n.Tag == "" || n.Tag == "!"
}

// describe names what a node is, never its value (it may be a secret).
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		if n.Alias != nil {
			return describe(n.Alias)
		}
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "nothing"
		case "!!timestamp":
			return "a timestamp"
		}
		return "a value tagged " + n.ShortTag()
	}
	return "something else"
}

// walk checks n, the value of key k (nil for a list element or the root),
// against type t at the path being walked. In clean mode it returns the
// clean copy of n, or nil when n cannot be decoded into t. Otherwise v, a
// settable value of type t, gets what decoding the clean copy would have
// set, and walk returns n, or nil where the clean copy would have been
// nil (v is then left as it was).
func (w *walker) walk(k, n *yaml.Node, t reflect.Type, v reflect.Value) *yaml.Node {
	w.record(k, n)
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			w.addHere(n, "alias to nothing")
			return nil
		}
		target := n.Alias
		if target.Kind == yaml.AliasNode {
			w.addHere(n, "alias to an alias is not supported")
			return nil
		}
		c := w.walk(k, target, t, v)
		w.record(k, n)
		return c
	}
	if !w.clean && tagged(n) {
		w.slow = true
	}
	if t.Kind() == reflect.Pointer {
		if isNull(n) {
			return n // v stays nil, as decoding null sets it
		}
		if w.clean {
			return w.walk1(n, t.Elem(), v)
		}
		p := reflect.New(t.Elem())
		c := w.walk1(n, t.Elem(), p.Elem())
		if c != nil {
			v.Set(p)
		}
		return c
	}
	return w.walk1(n, t, v)
}

// walk1 is walk for a node that is no alias and a type that is no pointer.
func (w *walker) walk1(n *yaml.Node, t reflect.Type, v reflect.Value) *yaml.Node {
	switch {
	case t == holidayType:
		return w.walkHoliday(n, v)
	case t == refType:
		var r secret.Ref
		if err := r.UnmarshalYAML(n); err != nil {
			var re *secret.RefError
			if errors.As(err, &re) {
				w.probs = append(w.probs, &FieldError{File: w.file, Path: w.here(), Line: re.Line, Col: re.Column, Msg: re.Msg})
			} else {
				w.addHere(n, "invalid secret reference; %s", secret.InlineHint)
			}
			return nil
		}
		if !w.clean {
			v.Set(reflect.ValueOf(r))
		}
		return n
	case t == durationType:
		if n.Kind != yaml.ScalarNode || isNull(n) {
			w.addHere(n, "expected a duration, got %s; %s", describe(n), durationHint)
			return nil
		}
		d, err := time.ParseDuration(n.Value)
		if err != nil {
			if _, nerr := strconv.ParseFloat(n.Value, 64); nerr == nil {
				w.addHere(n, "invalid duration %q: a number needs a unit; %s", n.Value, durationHint)
			} else {
				w.addHere(n, "invalid duration %q; %s", n.Value, durationHint)
			}
			return nil
		}
		if !w.clean {
			v.SetInt(int64(d))
		}
		return n
	}
	switch t.Kind() {
	case reflect.Struct:
		return w.walkStruct(n, t, v)
	case reflect.Map:
		return w.walkMap(n, t, v)
	case reflect.Slice:
		return w.walkSlice(n, t, v)
	case reflect.String:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
			// What Decode would say, without a decoder per value.
			if !w.clean {
				v.SetString(n.Value)
			}
			return n
		}
		var s string
		if !w.scalar(n, &s, "a string") {
			return nil
		}
		if !w.clean {
			v.SetString(s)
		}
		return n
	case reflect.Int:
		var i int
		if !w.scalar(n, &i, "an integer") {
			return nil
		}
		if !w.clean {
			v.SetInt(int64(i))
		}
		return n
	case reflect.Float64:
		var f float64
		if !w.scalar(n, &f, "a number") {
			return nil
		}
		if !w.clean {
			v.SetFloat(f)
		}
		return n
	case reflect.Bool:
		var b bool
		if !w.scalar(n, &b, "true or false") {
			return nil
		}
		if !w.clean {
			v.SetBool(b)
		}
		return n
	}
	panic("schedule: walker does not handle " + t.String()) // a field type was added to types.go without a walker case
}

// scalar decodes the scalar n into v, which decoding the clean copy would
// set to the same (a null leaves v as it was), and reports whether it can.
func (w *walker) scalar(n *yaml.Node, v any, want string) bool {
	if n.Kind != yaml.ScalarNode || n.Decode(v) != nil {
		w.addHere(n, "expected %s, got %s", want, describe(n))
		return false
	}
	return true
}

// structFields is what fieldsOf returns for one type.
type structFields struct {
	types map[string]reflect.Type
	names []string
	index map[string][]int
}

// fieldsCache holds fieldsOf of each struct type seen: reflect.Type → structFields.
var fieldsCache sync.Map

// fieldsOf maps the yaml names of t's fields, inline structs flattened, to
// their types and to their index for reflect.Value.FieldByIndex, and lists
// them in declaration order. The result is shared: callers must not change
// it.
func fieldsOf(t reflect.Type) (map[string]reflect.Type, []string, map[string][]int) {
	if f, ok := fieldsCache.Load(t); ok {
		f := f.(structFields)
		return f.types, f.names, f.index
	}
	f := structFields{types: map[string]reflect.Type{}, index: map[string][]int{}}
	fieldsOfType(t, nil, &f)
	fieldsCache.Store(t, f)
	return f.types, f.names, f.index
}

func fieldsOfType(t reflect.Type, at []int, f *structFields) {
	for sf := range t.Fields() {
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if tag == "-" || !sf.IsExported() {
			continue
		}
		idx := append(slices.Clip(at), sf.Index...)
		if opts == "inline" {
			fieldsOfType(sf.Type, idx, f)
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		f.types[name] = sf.Type
		f.index[name] = idx
		f.names = append(f.names, name)
	}
}

// keyName returns the name of a mapping key node (the value of an aliased
// key), or false when the walker refuses the key; see key.
func keyName(k *yaml.Node) (string, bool) {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" || k.Value == "" || isNull(k) {
		return "", false
	}
	return k.Value, true
}

// key checks a mapping key node and returns its name and the node to keep
// in the clean copy (the key itself, or the value of an aliased key).
func (w *walker) key(k *yaml.Node) (string, *yaml.Node, bool) {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	if k.Kind != yaml.ScalarNode {
		w.addHere(k, "expected a name as key, got %s", describe(k))
		return "", nil, false
	}
	if k.ShortTag() == "!!merge" {
		w.addHere(k, "merge keys (<<) are not supported; write the fields out")
		return "", nil, false
	}
	if k.Value == "" || isNull(k) {
		w.addHere(k, "empty key")
		return "", nil, false
	}
	if !w.clean && tagged(k) {
		// Decode reads a key's name through its tag (!!binary).
		w.slow = true
	}
	return k.Value, k, true
}

// seenKeys remembers the first key node of each name in one mapping.
type seenKeys struct {
	n     int
	names [16]string
	keys  [16]*yaml.Node
	big   map[string]*yaml.Node // past 16 names
}

// first returns the key node first seen with name, or records k as it.
func (s *seenKeys) first(name string, k *yaml.Node) (*yaml.Node, bool) {
	for i := range s.n {
		if s.names[i] == name {
			return s.keys[i], true
		}
	}
	if f, ok := s.big[name]; ok {
		return f, true
	}
	if s.n < len(s.names) {
		s.names[s.n], s.keys[s.n] = name, k
		s.n++
		return nil, false
	}
	if s.big == nil {
		s.big = map[string]*yaml.Node{}
	}
	s.big[name] = k
	return nil, false
}

func (w *walker) walkStruct(n *yaml.Node, t reflect.Type, v reflect.Value) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		w.addHere(n, "expected a mapping, got %s", describe(n))
		return nil
	}
	types, names, index := fieldsOf(t)
	var c *yaml.Node
	if w.clean {
		cc := *n
		cc.Content = make([]*yaml.Node, 0, len(n.Content))
		c = &cc
	}
	var seen seenKeys
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		name, ck, ok := w.key(k)
		if !ok {
			continue
		}
		l := w.push(name)
		if first, dup := seen.first(name, k); dup {
			w.addHere(k, "duplicate field %q; first set at line %d", name, first.Line)
			w.pop(l)
			continue
		}
		ft, known := types[name]
		if !known {
			w.addHere(k, "unknown field %q; %s", name, hint(name, names))
			if cl := closest(name, names); cl != "" {
				w.pop(l)
				w.typos[child(w.here(), cl)] = true
			}
			w.pop(l)
			continue
		}
		var fv reflect.Value
		if !w.clean {
			fv = v.FieldByIndex(index[name])
		}
		cv := w.walk(k, val, ft, fv)
		w.pop(l)
		if cv != nil && c != nil {
			c.Content = append(c.Content, ck, cv)
		}
	}
	if c != nil {
		return c
	}
	return n
}

func (w *walker) walkMap(n *yaml.Node, t reflect.Type, v reflect.Value) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		w.addHere(n, "expected a mapping of names, got %s", describe(n))
		return nil
	}
	var c *yaml.Node
	if w.clean {
		cc := *n
		cc.Content = make([]*yaml.Node, 0, len(n.Content))
		c = &cc
	} else {
		// Decode makes the map before it looks at the entries.
		v.Set(reflect.MakeMapWithSize(t, len(n.Content)/2))
	}
	var seen seenKeys
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		name, ck, ok := w.key(k)
		if !ok {
			continue
		}
		l := w.push(name)
		if first, dup := seen.first(name, k); dup {
			w.addHere(k, "duplicate name %q; first defined at line %d", name, first.Line)
			w.pop(l)
			continue
		}
		if isNull(val) {
			w.record(k, nil)
			w.addHere(val, "expected %s, got nothing", withArticle(elemNoun(t.Elem())))
			w.pop(l)
			continue
		}
		var ev reflect.Value
		if !w.clean {
			ev = reflect.New(t.Elem()).Elem()
		}
		cv := w.walk(k, val, t.Elem(), ev)
		w.pop(l)
		switch {
		case cv == nil:
		case c != nil:
			c.Content = append(c.Content, ck, cv)
		default:
			// An untagged scalar key (tagged() sent the others to the
			// clean mode) decodes into a string as its value.
			v.SetMapIndex(reflect.ValueOf(name).Convert(t.Key()), ev)
		}
	}
	if c != nil {
		return c
	}
	return n
}

func (w *walker) walkSlice(n *yaml.Node, t reflect.Type, v reflect.Value) *yaml.Node {
	if n.Kind != yaml.SequenceNode {
		if isNull(n) {
			return n // v stays nil
		}
		w.addHere(n, "expected a list of %ss, got %s", elemNoun(t.Elem()), describe(n))
		return nil
	}
	// In fast mode the paths under the elements of the top-level jobs
	// list are found through w.jobs.
	lazy := !w.clean && !w.inJobs && !w.hasJobs && string(w.path) == "jobs" && t == reflect.TypeFor[[]*Job]()
	if lazy {
		w.jobs = make([]pathNodes, len(n.Content))
		w.hasJobs = true
		w.inJobs = true
		defer func() { w.inJobs = false }()
	}
	var c *yaml.Node
	if w.clean {
		cc := *n
		cc.Content = make([]*yaml.Node, 0, len(n.Content))
		c = &cc
	} else if len(n.Content) == 0 {
		v.Set(reflect.MakeSlice(t, 0, 0)) // Decode makes [] an empty list, not nil
	} else {
		v.Grow(len(n.Content))
		v.SetLen(len(n.Content))
	}
	et := t.Elem()
	// Decoding the null that stands for a dropped element (below) keeps
	// it as a zero element for these kinds, and drops it for the others.
	keepNull := slices.Contains([]reflect.Kind{reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface}, et.Kind())
	j := 0
	for i, e := range n.Content {
		if lazy {
			w.jobs[i] = pathNodes{val: e}
			if i < len(w.reuse) && w.reuse[i] != nil {
				v.Index(j).Set(reflect.ValueOf(w.reuse[i]))
				j++
				continue
			}
		}
		l := w.pushIndex(i)
		if isNull(e) {
			w.record(nil, e)
			w.addHere(e, "expected %s, got nothing", withArticle(elemNoun(et)))
			w.pop(l)
			continue
		}
		var ev reflect.Value
		if !w.clean {
			ev = v.Index(j)
		}
		ce := w.walk(nil, e, et, ev)
		w.pop(l)
		switch {
		case c != nil && ce != nil:
			c.Content = append(c.Content, ce)
		case c != nil:
			// Keep the index of later elements stable for the semantic
			// checks: a dropped element decodes as its zero value.
			c.Content = append(c.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: e.Line, Column: e.Column})
		case keepNull || ce != nil && !isNull(ce):
			// Decoding null (an alias to null is accepted) into a
			// string or a number fails and drops the element.
			j++
		}
	}
	if c != nil {
		return c
	}
	v.SetLen(j)
	return n
}

func withArticle(noun string) string {
	if strings.ContainsAny(noun[:1], "aeiou") {
		return "an " + noun
	}
	return "a " + noun
}

// elemNoun names an element of a list or map for messages.
func elemNoun(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[string]():
		return "id"
	case reflect.TypeFor[*Job]():
		return "job"
	case reflect.TypeFor[Fault]():
		return "fault"
	case reflect.TypeFor[*Account]():
		return "account"
	}
	return "value"
}

// translate turns an error of the strict yaml.v3 decoder into problems.
// The walker catches everything the decoder does first, so this only runs
// if the two disagree; yaml.v3 messages have a line but no column, name Go
// types and may quote values, so they are rewritten here and positioned
// with the node tree.
func (w *walker) translate(err error) Problems {
	var te *yaml.TypeError
	var re *secret.RefError
	switch {
	case errors.As(err, &re):
		return Problems{{File: w.file, Line: re.Line, Col: re.Column, Path: w.pathAt(re.Line, ""), Msg: re.Msg}}
	case errors.As(err, &te):
	default:
		fe := syntaxError(w.file, err)
		return Problems{fe}
	}
	var out Problems
	for _, s := range te.Errors {
		fe := &FieldError{File: w.file, Msg: "invalid value"}
		m := yamlLineRe.FindStringSubmatch(s)
		if m != nil {
			fe.Line, _ = strconv.Atoi(m[1])
			s = m[2]
		}
		name := ""
		switch {
		case strings.HasPrefix(s, "field ") && strings.Contains(s, " not found in type "):
			name = strings.TrimPrefix(s[:strings.Index(s, " not found in type ")], "field ")
			fe.Msg = fmt.Sprintf("unknown field %q", name)
		case strings.HasPrefix(s, "cannot unmarshal "):
			fe.Msg = "wrong type: expected " + goTypeNoun(s[strings.LastIndex(s, " into ")+len(" into "):])
		case strings.HasPrefix(s, "invalid duration "):
			fe.Msg = s + "; " + durationHint
		}
		fe.Path = w.pathAt(fe.Line, name)
		if pn := w.nodes[fe.Path]; pn.val != nil {
			fe.Col = pn.val.Column
			if k := pn.key; k != nil && name != "" {
				fe.Col = k.Column
			}
		}
		out = append(out, fe)
	}
	return out
}

// pathAt finds the path of a node on line, preferring a key named name,
// and otherwise the leftmost node on the line.
func (w *walker) pathAt(line int, name string) string {
	if w.lines == nil {
		// Index the paths by line once: a decoder error can come per job.
		w.lines = map[int][]string{}
		for p, pn := range w.nodes {
			if pn.val != nil {
				w.lines[pn.val.Line] = append(w.lines[pn.val.Line], p)
			}
		}
		for _, paths := range w.lines {
			sort.Slice(paths, func(i, j int) bool {
				a, b := w.val(paths[i]), w.val(paths[j])
				if a.Column != b.Column {
					return a.Column < b.Column
				}
				return paths[i] < paths[j]
			})
		}
	}
	paths := w.lines[line]
	for _, p := range paths {
		if name != "" && strings.HasSuffix(p, "."+name) {
			return p
		}
	}
	if len(paths) > 0 {
		return paths[0]
	}
	return ""
}

// goTypeNoun names a Go type of the schedule in the user's words.
func goTypeNoun(t string) string {
	switch {
	case t == "int" || strings.HasPrefix(t, "int"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case t == "schedule.Duration":
		return "a duration like 30s"
	case t == "[]string":
		return "a list of ids"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	}
	return "a mapping"
}
