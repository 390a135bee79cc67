package policy

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/checker"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// Limits of a condition. No expression within them can make a request
// slow: the length and nesting bound what is parsed, the estimated cost
// refuses at load what could be expensive for some request, and for an
// expression that iterates (all, exists, map, filter), the only kind
// whose work can grow faster than the request, the runtime cost limit
// stops an evaluation that gets there anyway (it is then false). A cost
// unit is about one CEL operation, or ten characters of a string
// compared; a simple comparison costs under 10.
const (
	MaxConditionLength = 2048
	maxConditionDepth  = 32
	// MaxConditionCost bounds both the cost estimated when the policy is
	// loaded, with every string, list and map from the token or the
	// request taken as conditionSizeBound long, and the cost actually
	// spent on one request.
	MaxConditionCost = 10_000
	// conditionSizeBound is the longest string from the token or the
	// request that a condition sees: a longer claim, header or query
	// value, path or host is absent to it (so a condition reading it is
	// false), which makes the estimate, taken with every string this
	// long, a bound and not a hope. A tenant, a client or a path is far
	// shorter. conditionItemsBound is the estimate's number of items of
	// a list or map (roles, a header's values): real requests have few,
	// and a request with more meets the runtime limit instead.
	conditionSizeBound  = 1 << 10
	conditionItemsBound = 100
	// matchCostPerByte is what the estimate charges a regular expression
	// (matches) per byte it may scan: RE2 scans in linear time, but at
	// up to about 40 ns a byte, 40 times CEL's own charge, so that at
	// most two matches over request values fit MaxConditionCost, about
	// 90 µs at worst (BenchmarkConditionWorstCase).
	matchCostPerByte = 4
)

// Condition is a rule's "when": a CEL expression over the token's claims,
// the caller's roles and the request, compiled and type-checked when the
// policy is parsed. It is safe for concurrent use.
type Condition struct {
	// Text is the expression as written.
	Text string
	// Line is where the expression starts in the policy file.
	Line int
	// Claims are the claim names the expression reads by a fixed name
	// (claims.x or claims["x"]), sorted, for "policy check".
	Claims []string

	prog     cel.Program
	iterates bool // has a comprehension (all, exists, map, filter, ...)
}

// ClaimSet is a verified token's claims as a condition reads them.
type ClaimSet interface {
	// Claim returns the claim's value as JSON decodes it (string,
	// float64 or int64, bool, []any or []string, map[string]any).
	Claim(name string) (any, bool)
	// ClaimNames lists every claim, for the rare expression that
	// iterates over or sizes the claims.
	ClaimNames() []string
}

// MapClaims is a ClaimSet of a plain map.
type MapClaims map[string]any

func (m MapClaims) Claim(name string) (any, bool) { v, ok := m[name]; return v, ok }

func (m MapClaims) ClaimNames() []string { return slices.Sorted(mapKeys(m)) }

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Input is what a condition is evaluated over.
type Input struct {
	Claims ClaimSet // nil: no token (a condition reading claims is then false)
	Roles  []string
	// ClientID and Subject are the caller as the backend is told: for a
	// trusted issuer's token "<iss>#<client_id>" and "<iss>#<sub>", so
	// that a condition naming one of our clients cannot be met by
	// another issuer's client of the same name (claims.client_id can).
	ClientID, Subject string
	Request           Request
}

// Request is the part of an HTTP request a condition can read.
type Request struct {
	Method string
	// Host is the Host header; conditions see it as rules match it:
	// lower case, without port or trailing dot.
	Host string
	Path string
	// Header has its names in canonical form, as net/http gives them. A
	// condition looks them up by any case: headers["x-tenant"] and
	// headers["X-Tenant"] are the same list.
	Header map[string][]string
	// RawQuery is parsed only if the condition reads the query.
	RawQuery string
	// RemoteAddr is the client's IP address, without port.
	RemoteAddr string
	// Time is the time of the request; zero means now.
	Time time.Time
}

// requestFields are what request.x may name; a typo is refused at load.
var requestFields = []string{"method", "host", "path", "headers", "query", "remote_addr", "time"}

var conditionEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("roles", cel.ListType(cel.StringType)),
		cel.Variable("client_id", cel.StringType),
		cel.Variable("subject", cel.StringType),
		cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
		cel.ParserExpressionSizeLimit(MaxConditionLength),
		cel.ParserRecursionLimit(maxConditionDepth),
	)
})

// compileCondition compiles text, found at line of the policy file. An
// error is a *lineError on the line of the mistake.
func compileCondition(text string, line int) (*Condition, error) {
	bad := func(at int, format string, args ...any) error {
		return &lineError{line: at, msg: "when: " + fmt.Sprintf(format, args...)}
	}
	if strings.TrimSpace(text) == "" {
		return nil, bad(line, "want a CEL expression, e.g. claims.client_id == \"sender\"")
	}
	if len(text) > MaxConditionLength {
		return nil, bad(line, "the expression is longer than %d characters", MaxConditionLength)
	}
	env, err := conditionEnv()
	if err != nil {
		return nil, err
	}
	// Without trailing blank lines a block scalar's unfinished
	// expression is reported on its last line, not the one after.
	ast, iss := env.Compile(strings.TrimRight(text, " \t\r\n"))
	if iss.Err() != nil {
		e := iss.Errors()[0]
		at := line
		if l := e.Location.Line(); l > 1 {
			at += l - 1
		}
		return nil, bad(at, "%s (column %d)", oneLine(e.Message), e.Location.Column()+1)
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, bad(line, "the expression is of type %s, want bool", ast.OutputType())
	}
	c := &Condition{Text: text, Line: line}
	if err := c.inspect(ast.NativeRep()); err != nil {
		return nil, bad(line, "%v", err)
	}
	est, err := env.EstimateCost(ast, sizeBound{})
	if err != nil {
		return nil, bad(line, "%v", err)
	}
	if est.Max > MaxConditionCost {
		return nil, bad(line, "the expression could cost up to %d, more than %d: compare fewer or shorter values, or iterate over less", est.Max, MaxConditionCost)
	}
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if c.iterates {
		// Only iteration makes the work grow faster than the request:
		// without it, each of at most MaxConditionLength steps looks at a
		// value once, and tracking the cost would double the time of a
		// simple comparison.
		opts = append(opts, cel.CostLimit(MaxConditionCost))
	}
	c.prog, err = env.Program(ast, opts...)
	if err != nil {
		return nil, bad(line, "%v", err)
	}
	return c, nil
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// inspect collects the claims the expression names and refuses a
// request field that does not exist: request is a map to CEL, so its
// type check lets any name through, and a misspelt field would make the
// condition false on every request.
func (c *Condition) inspect(a *celast.AST) error {
	var err error
	named := func(operand celast.Expr, name string) {
		if operand.Kind() != celast.IdentKind {
			return
		}
		switch operand.AsIdent() {
		case "claims":
			if !slices.Contains(c.Claims, name) {
				c.Claims = append(c.Claims, name)
			}
		case "request":
			if !slices.Contains(requestFields, name) && err == nil {
				err = fmt.Errorf("request has no field %q (want one of %s)", name, strings.Join(requestFields, ", "))
			}
		}
	}
	celast.PreOrderVisit(a.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.ComprehensionKind:
			c.iterates = true
		case celast.SelectKind:
			named(e.AsSelect().Operand(), e.AsSelect().FieldName())
		case celast.CallKind:
			call := e.AsCall()
			if call.FunctionName() != operators.Index || len(call.Args()) != 2 {
				return
			}
			if k := call.Args()[1]; k.Kind() == celast.LiteralKind {
				if s, ok := k.AsLiteral().(types.String); ok {
					named(call.Args()[0], string(s))
				}
			}
		}
	}))
	slices.Sort(c.Claims)
	return err
}

// sizeBound gives every value of unknown size the bound a token or a
// request puts on it (a string conditionSizeBound, anything
// else conditionItemsBound); an underestimate meets the runtime limit; the library's estimate of a call is kept.
type sizeBound struct{}

func (sizeBound) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if n.Type().Kind() == types.StringKind {
		return &checker.SizeEstimate{Min: 0, Max: conditionSizeBound}
	}
	// A list, a map, or a dyn value (a claim, a header's values), which
	// is most often a list of a few.
	return &checker.SizeEstimate{Min: 0, Max: conditionItemsBound}
}

func (b sizeBound) EstimateCallCost(function, _ string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if function != overloads.Matches {
		return nil // the library's estimate
	}
	cost := uint64(conditionSizeBound * matchCostPerByte)
	return &checker.CallEstimate{CostEstimate: checker.CostEstimate{Min: 1, Max: cost}}
}

var errNoSuchKey = errors.New("no such key: the token or the request lacks a claim, header or query parameter the condition reads")

// Eval reports whether the condition holds for in. An error (a claim or
// header the request lacks, a value of the wrong type, the cost limit)
// counts as false: the guard denies. Its text may quote the expression,
// never a value of the request or the token.
func (c *Condition) Eval(in *Input) (bool, error) {
	act := activations.Get().(*activation)
	act.in = *in // a copy: a pointer kept in the pooled activation would move every caller's Input to the heap
	out, _, err := c.prog.Eval(act)
	*act = activation{}
	activations.Put(act)
	if err != nil {
		if strings.HasPrefix(err.Error(), "no such key") {
			// CEL's text quotes the key, which may be a header's value.
			return false, errNoSuchKey
		}
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("the condition gave %s, not a bool", out.Type().TypeName())
	}
	return bool(b), nil
}

// activations are reused: a condition evaluated per request should not
// cost a few allocations for its variables each time.
var activations = sync.Pool{New: func() any { return new(activation) }}

// activation resolves the three variables of a condition; what the
// expression does not name is never built. Its maps are its own fields,
// so that resolving them allocates nothing.
type activation struct {
	in                               Input
	claims, request, headers, params lazyMap
	query                            url.Values // parsed on first use
	lists                            [4]celStrings
	nlists                           int
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "claims":
		return a.lazy(&a.claims, claimsKind), true
	case "roles":
		return a.list(a.in.Roles), true
	case "client_id":
		return types.String(a.in.ClientID), true
	case "subject":
		return types.String(a.in.Subject), true
	case "request":
		return a.lazy(&a.request, requestKind), true
	}
	return nil, false
}

func (a *activation) lazy(m *lazyMap, kind mapKind) *lazyMap {
	if m.act == nil {
		*m = lazyMap{act: a, kind: kind}
	}
	return m
}

func (a *activation) Parent() cel.Activation { return nil }

// mapKind says which of an activation's maps a lazyMap is.
type mapKind uint8

const (
	claimsKind mapKind = iota
	requestKind
	headersKind
	queryKind
)

func (a *activation) find(kind mapKind, key string) (ref.Val, bool) {
	switch kind {
	case claimsKind:
		if a.in.Claims == nil {
			return nil, false
		}
		v, ok := a.in.Claims.Claim(key)
		if !ok {
			return nil, false
		}
		switch v := v.(type) {
		case string:
			return types.String(v), len(v) <= conditionSizeBound
		case []string:
			return a.list(v), bounded(v)
		}
		return types.DefaultTypeAdapter.NativeToValue(v), true
	case requestKind:
		return a.requestField(key)
	case headersKind:
		if v, ok := a.header(key); ok && bounded(v) {
			return a.list(v), true
		}
		return nil, false
	}
	if v, ok := a.parsedQuery()[key]; ok && bounded(v) {
		return a.list(v), true
	}
	return nil, false
}

// bounded reports whether a condition may see every one of vs: none is
// longer than conditionSizeBound.
func bounded(vs []string) bool {
	for _, v := range vs {
		if len(v) > conditionSizeBound {
			return false
		}
	}
	return true
}

// list is l as a CEL list, in one of the activation's own slots while
// they last.
func (a *activation) list(l []string) ref.Val {
	if a.nlists == len(a.lists) {
		return types.NewStringList(types.DefaultTypeAdapter, l)
	}
	sl := &a.lists[a.nlists]
	a.nlists++
	*sl = celStrings{l: l}
	return sl
}

func (a *activation) names(kind mapKind) []string {
	switch kind {
	case claimsKind:
		if a.in.Claims == nil {
			return nil
		}
		return a.in.Claims.ClaimNames()
	case requestKind:
		return requestFields
	case headersKind:
		return slices.Sorted(mapKeys(a.in.Request.Header))
	}
	return slices.Sorted(mapKeys(a.parsedQuery()))
}

func (a *activation) requestField(name string) (ref.Val, bool) {
	r := &a.in.Request
	switch name {
	case "method":
		return types.String(r.Method), len(r.Method) <= conditionSizeBound
	case "host":
		return types.String(hostname(r.Host)), len(r.Host) <= conditionSizeBound
	case "path":
		return types.String(r.Path), len(r.Path) <= conditionSizeBound
	case "remote_addr":
		return types.String(r.RemoteAddr), true
	case "time":
		if r.Time.IsZero() {
			return types.Timestamp{Time: time.Now()}, true
		}
		return types.Timestamp{Time: r.Time}, true
	case "headers":
		return a.lazy(&a.headers, headersKind), true
	case "query":
		return a.lazy(&a.params, queryKind), true
	}
	return nil, false
}

// header looks name up in any case: as given, then by comparing without
// case, which costs no allocation for the few headers a request has.
func (a *activation) header(name string) ([]string, bool) {
	h := a.in.Request.Header
	if v, ok := h[name]; ok {
		return v, true
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

func (a *activation) parsedQuery() url.Values {
	if a.query == nil {
		a.query, _ = url.ParseQuery(a.in.Request.RawQuery) // what parses, as the backend's frameworks read it
		if a.query == nil {
			a.query = url.Values{}
		}
	}
	return a.query
}

// lazyMap is a CEL map that looks up a key when the expression asks for
// it: a condition on one header costs one header, not a map of all of
// them. Anything else (size, iteration, equality) builds the whole map.
type lazyMap struct {
	act  *activation
	kind mapKind
	full traits.Mapper
}

var _ traits.Mapper = (*lazyMap)(nil)

func (m *lazyMap) materialize() traits.Mapper {
	if m.full == nil {
		all := map[ref.Val]ref.Val{}
		for _, k := range m.act.names(m.kind) {
			if v, ok := m.act.find(m.kind, k); ok {
				all[types.String(k)] = v
			}
		}
		m.full = types.NewRefValMap(types.DefaultTypeAdapter, all)
	}
	return m.full
}

func (m *lazyMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return nil, false
	}
	return m.act.find(m.kind, string(k))
}

func (m *lazyMap) Get(key ref.Val) ref.Val {
	if v, ok := m.Find(key); ok {
		return v
	}
	return types.NewErr("no such key")
}

func (m *lazyMap) Contains(key ref.Val) ref.Val {
	_, ok := m.Find(key)
	return types.Bool(ok)
}

func (m *lazyMap) ConvertToNative(t reflect.Type) (any, error) {
	return m.materialize().ConvertToNative(t)
}
func (m *lazyMap) ConvertToType(t ref.Type) ref.Val { return m.materialize().ConvertToType(t) }
func (m *lazyMap) Equal(other ref.Val) ref.Val      { return m.materialize().Equal(other) }
func (m *lazyMap) Type() ref.Type                   { return types.MapType }
func (m *lazyMap) Value() any                       { return m.materialize().Value() }
func (m *lazyMap) Iterator() traits.Iterator        { return m.materialize().Iterator() }
func (m *lazyMap) Size() ref.Val                    { return m.materialize().Size() }

// celStrings is a list of strings (a header's values, a scope) as CEL
// sees it: indexing and "in" cost no allocation beyond the element;
// anything else is left to the library's list.
type celStrings struct {
	l []string
}

var _ traits.Lister = (*celStrings)(nil)

func (s *celStrings) list() traits.Lister { return types.NewStringList(types.DefaultTypeAdapter, s.l) }

func (s *celStrings) Get(index ref.Val) ref.Val {
	i, ok := index.(types.Int)
	if !ok || i < 0 || int64(i) >= int64(len(s.l)) {
		return s.list().Get(index) // the library's error
	}
	return types.String(s.l[i])
}

func (s *celStrings) Contains(v ref.Val) ref.Val {
	if str, ok := v.(types.String); ok {
		return types.Bool(slices.Contains(s.l, string(str)))
	}
	return s.list().Contains(v)
}

func (s *celStrings) Size() ref.Val                               { return types.Int(len(s.l)) }
func (s *celStrings) Add(other ref.Val) ref.Val                   { return s.list().Add(other) }
func (s *celStrings) Iterator() traits.Iterator                   { return s.list().Iterator() }
func (s *celStrings) ConvertToNative(t reflect.Type) (any, error) { return s.list().ConvertToNative(t) }
func (s *celStrings) ConvertToType(t ref.Type) ref.Val            { return s.list().ConvertToType(t) }
func (s *celStrings) Equal(other ref.Val) ref.Val                 { return s.list().Equal(other) }
func (s *celStrings) Type() ref.Type                              { return types.ListType }
func (s *celStrings) Value() any                                  { return s.l }
