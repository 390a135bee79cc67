package policy

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Grant returns the policy with role added to subject's roles, adding the
// subject when it is new; granting a role the subject holds changes
// nothing. Revoke removes the role and fails when the subject does not
// hold it. Both edit the text in place rather than re-encode the YAML, so
// comments, order and every other line stay as the person wrote them;
// and both refuse to return a policy that does not parse or that differs
// in anything but that one role.
func Grant(data []byte, subject, role string) ([]byte, error) {
	return edit(data, subject, role, true)
}

// Revoke: see Grant.
func Revoke(data []byte, subject, role string) ([]byte, error) {
	return edit(data, subject, role, false)
}

var errByHand = errors.New("this file's layout is beyond automatic edits; edit it by hand")

func edit(data []byte, subject, role string, grant bool) ([]byte, error) {
	if !isRoleName(role) {
		return nil, fmt.Errorf("role %q: a role may not contain spaces, commas, quotes or backslashes", role)
	}
	if subject == "" || !utf8.ValidString(subject) || bytes.ContainsFunc([]byte(subject), func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("subject %q: want printable text", subject)
	}
	before, err := Parse(data, "policy")
	if err != nil {
		return nil, fmt.Errorf("the policy must be valid before it is edited: %w", err)
	}
	s := before.subjects[subject]
	holds := s != nil && slices.Contains(s.roles, role)
	switch {
	case grant && holds:
		return data, nil
	case !grant && s == nil:
		return nil, fmt.Errorf("subject %s is not in the policy", subject)
	case !grant && !holds:
		return nil, fmt.Errorf("subject %s does not hold role %s", subject, role)
	}
	passes := 1 // revoke removes every copy of the role, one per pass
	if !grant {
		passes = len(slices.DeleteFunc(slices.Clone(s.roles), func(r string) bool { return r != role }))
	}
	out := data
	for range passes {
		var doc yaml.Node
		if err := yaml.Unmarshal(out, &doc); err != nil {
			return nil, errByHand
		}
		t := newText(out)
		if grant {
			out, err = t.grant(&doc, subject, role)
		} else {
			out, err = t.revoke(&doc, subject, role)
		}
		if err != nil {
			return nil, err
		}
	}
	after, err := Parse(out, "policy")
	if err != nil {
		return nil, fmt.Errorf("%w (the result would not parse: %v)", errByHand, err)
	}
	if !onlyRoleChanged(before, after, subject, role, grant) {
		return nil, fmt.Errorf("%w (the result would change more than one role)", errByHand)
	}
	return out, nil
}

// onlyRoleChanged is the last line of defence against an edit in the
// wrong place: everything but subject's roles must be as it was.
func onlyRoleChanged(before, after *Policy, who, role string, grant bool) bool {
	if len(after.subjects) != len(before.subjects)+btoi(before.subjects[who] == nil) || len(after.rules) != len(before.rules) {
		return false
	}
	for name, a := range after.subjects {
		b := before.subjects[name]
		if name == who {
			want := &subject{line: a.line}
			if b != nil {
				want.roles, want.disabled = slices.Clone(b.roles), b.disabled
			}
			if grant {
				want.roles = append(want.roles, role)
			} else {
				want.roles = slices.DeleteFunc(want.roles, func(r string) bool { return r == role })
			}
			b = want
		}
		if b == nil || b.disabled != a.disabled || !slices.Equal(b.roles, a.roles) {
			return false
		}
	}
	for i, a := range after.rules {
		ra, rb := *a, *before.rules[i]
		ra.Line, rb.Line = 0, 0
		if !reflect.DeepEqual(ra, rb) {
			return false
		}
	}
	return true
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// text is the policy's source with yaml.v3's positions (1-based lines,
// columns in runes) turned into byte offsets.
type text struct {
	data  []byte
	lines []int // offset of each line's start
}

func newText(data []byte) *text {
	t := &text{data: data, lines: []int{0}}
	for i, c := range data {
		if c == '\n' {
			t.lines = append(t.lines, i+1)
		}
	}
	return t
}

func (t *text) offset(n *yaml.Node) int {
	if n.Line < 1 || n.Line > len(t.lines) {
		return -1
	}
	off := t.lines[n.Line-1]
	for col := 1; col < n.Column; col++ {
		if off >= len(t.data) || t.data[off] == '\n' {
			return -1
		}
		_, size := utf8.DecodeRune(t.data[off:])
		off += size
	}
	return off
}

// nextLine returns the offset of the line after the one holding off.
func (t *text) nextLine(off int) int {
	if i := bytes.IndexByte(t.data[off:], '\n'); i >= 0 {
		return off + i + 1
	}
	return len(t.data)
}

func (t *text) lineStart(off int) int {
	return bytes.LastIndexByte(t.data[:off], '\n') + 1
}

// end returns the offset just past n's source text.
func (t *text) end(n *yaml.Node) (int, error) {
	start := t.offset(n)
	if start < 0 {
		return 0, errByHand
	}
	switch {
	case n.Kind == yaml.ScalarNode:
		return t.scalarEnd(n, start)
	case n.Style&yaml.FlowStyle != 0:
		return t.flowEnd(start)
	case len(n.Content) > 0: // a block collection ends with its last child
		return t.end(n.Content[len(n.Content)-1])
	}
	return 0, errByHand
}

func (t *text) scalarEnd(n *yaml.Node, start int) (int, error) {
	switch n.Style {
	case 0:
		if bytes.HasPrefix(t.data[start:], []byte(n.Value)) {
			return start + len(n.Value), nil
		}
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		return t.quotedEnd(start)
	}
	return 0, errByHand
}

// quotedEnd finds the quote that closes the one at start: "..." with
// backslash escapes, or '...' where a doubled quote is a quote.
func (t *text) quotedEnd(start int) (int, error) {
	d := t.data
	q := d[start]
	if q != '"' && q != '\'' {
		return 0, errByHand
	}
	for i := start + 1; i < len(d); i++ {
		switch {
		case q == '"' && d[i] == '\\':
			i++
		case q == '\'' && d[i] == q && i+1 < len(d) && d[i+1] == q:
			i++
		case d[i] == q:
			return i + 1, nil
		}
	}
	return 0, errByHand
}

// flowEnd finds the bracket that closes the one at start. Plain scalars
// in a flow collection cannot contain brackets or commas, so only quotes
// and comments need care.
func (t *text) flowEnd(start int) (int, error) {
	d, depth := t.data, 0
	for i := start; i < len(d); i++ {
		switch c := d[i]; c {
		case '[', '{':
			depth++
		case ']', '}':
			if depth--; depth == 0 {
				return i + 1, nil
			}
		case '"', '\'':
			end, err := t.quotedEnd(i)
			if err != nil {
				return 0, err
			}
			i = end - 1
		case '#':
			if i > 0 && (d[i-1] == ' ' || d[i-1] == '\t') {
				i = t.nextLine(i) - 1
			}
		}
	}
	return 0, errByHand
}

// splice replaces data[from:to] with s. Every edit goes through here, so
// a position yaml.v3 and this file disagree on is an error, not a panic.
func (t *text) splice(from, to int, s string) ([]byte, error) {
	if from < 0 || to < from || to > len(t.data) {
		return nil, errByHand
	}
	out := make([]byte, 0, len(t.data)+len(s))
	out = append(out, t.data[:from]...)
	out = append(out, s...)
	return append(out, t.data[to:]...), nil
}

// insertLine inserts line (with its newline) after the line holding off.
func (t *text) insertLine(off int, line string) ([]byte, error) {
	at := t.nextLine(off)
	if at == len(t.data) && at > 0 && t.data[at-1] != '\n' {
		line = "\n" + line
	}
	return t.splice(at, at, line)
}

func lookup(m *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

func (t *text) grant(doc *yaml.Node, subject, role string) ([]byte, error) {
	entry := scalar(subject) + ": [" + scalar(role) + "]"
	if len(doc.Content) == 0 { // empty, or comments only
		return t.insertLine(max(len(t.data)-1, 0), "subjects:\n  "+entry+"\n")
	}
	top := doc.Content[0]
	_, subjects := lookup(top, "subjects")
	if subjects == nil {
		if top.Style&yaml.FlowStyle != 0 {
			return t.insertInMapping(top, "subjects: {"+entry+"}")
		}
		at := t.offset(top)
		if at >= 0 {
			at = t.lineStart(at)
		}
		return t.splice(at, at, "subjects:\n  "+entry+"\n")
	}
	_, v := lookup(subjects, subject)
	if v == nil {
		return t.insertInMapping(subjects, entry)
	}
	if v.Kind == yaml.MappingNode {
		_, roles := lookup(v, "roles")
		if roles == nil {
			return t.insertInMapping(v, "roles: ["+scalar(role)+"]")
		}
		v = roles
	}
	return t.appendItem(v, scalar(role))
}

// insertInMapping adds "key: value" to m: first in a flow mapping, last
// in a block mapping, indented like its other keys.
func (t *text) insertInMapping(m *yaml.Node, entry string) ([]byte, error) {
	start := t.offset(m)
	if m.Style&yaml.FlowStyle != 0 {
		if start < 0 || t.data[start] != '{' {
			return nil, errByHand
		}
		if len(m.Content) > 0 {
			entry += ", "
		}
		return t.splice(start+1, start+1, entry)
	}
	if len(m.Content) == 0 {
		return nil, errByHand
	}
	first := t.offset(m.Content[0])
	end, err := t.end(m.Content[len(m.Content)-1])
	if err != nil || first < 0 {
		return nil, errByHand
	}
	indent := t.data[t.lineStart(first):first]
	if len(bytes.Trim(indent, " ")) > 0 {
		return nil, errByHand
	}
	return t.insertLine(end, string(indent)+entry+"\n")
}

// appendItem adds item to the end of a sequence.
func (t *text) appendItem(seq *yaml.Node, item string) ([]byte, error) {
	if seq.Kind != yaml.SequenceNode {
		return nil, errByHand
	}
	if seq.Style&yaml.FlowStyle != 0 {
		if len(seq.Content) == 0 {
			start := t.offset(seq)
			if start < 0 || t.data[start] != '[' {
				return nil, errByHand
			}
			return t.splice(start+1, start+1, item)
		}
		end, err := t.end(seq.Content[len(seq.Content)-1])
		if err != nil {
			return nil, err
		}
		return t.splice(end, end, ", "+item)
	}
	last := seq.Content[len(seq.Content)-1]
	prefix, ok := t.itemPrefix(last)
	end, err := t.end(last)
	if !ok || err != nil {
		return nil, errByHand
	}
	return t.insertLine(end, prefix+item+"\n")
}

// itemPrefix returns the "  - " before a block sequence item, if the item
// starts its line.
func (t *text) itemPrefix(item *yaml.Node) (string, bool) {
	off := t.offset(item)
	if off < 0 {
		return "", false
	}
	prefix := t.data[t.lineStart(off):off]
	dash := bytes.TrimLeft(prefix, " ")
	return string(prefix), len(dash) >= 2 && dash[0] == '-' && len(bytes.Trim(dash[1:], " ")) == 0
}

func (t *text) revoke(doc *yaml.Node, subject, role string) ([]byte, error) {
	var v *yaml.Node
	if len(doc.Content) > 0 {
		_, v = lookup(doc.Content[0], "subjects")
	}
	if v != nil {
		_, v = lookup(v, subject)
	}
	if v != nil && v.Kind == yaml.MappingNode {
		_, v = lookup(v, "roles")
	}
	if v == nil {
		return nil, errByHand
	}
	i := slices.IndexFunc(v.Content, func(n *yaml.Node) bool { return n.Value == role })
	if i < 0 {
		return nil, errByHand
	}
	item := v.Content[i]
	start := t.offset(item)
	end, err := t.end(item)
	if err != nil {
		return nil, err
	}
	switch {
	case len(v.Content) == 1: // the list becomes empty, which only a flow list can be
		seqStart := t.offset(v)
		if v.Style&yaml.FlowStyle != 0 {
			return t.splice(start, end, "")
		}
		return t.splice(seqStart, end, "[]")
	case v.Style&yaml.FlowStyle != 0 && i+1 < len(v.Content):
		return t.splice(start, t.offset(v.Content[i+1]), "")
	case v.Style&yaml.FlowStyle != 0:
		prevEnd, err := t.end(v.Content[i-1])
		if err != nil {
			return nil, err
		}
		return t.splice(prevEnd, end, "")
	}
	if _, ok := t.itemPrefix(item); !ok {
		return nil, errByHand
	}
	return t.splice(t.lineStart(start), t.nextLine(end), "")
}

// scalar writes s as a YAML scalar: plain when that reads back as the
// same string, double-quoted otherwise.
func scalar(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
		if !alnum && (i == 0 || !bytes.ContainsRune([]byte(".-!/@+=~$"), rune(c))) {
			return strconv.Quote(s)
		}
	}
	return s
}
