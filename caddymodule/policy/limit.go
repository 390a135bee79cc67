package policy

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Limit is a rule's or a subject's "limit": how many requests a caller
// may make, as a rate with a burst and as a quota per fixed window. Zero
// Rate or Quota means none of that kind.
type Limit struct {
	// Rate requests per RatePer (a second, minute or hour), at most Burst
	// at once; a GCRA token bucket, so a caller that paused gets its
	// burst back at the rate.
	Rate    int64
	RatePer time.Duration
	Burst   int64
	// Quota requests per Window (an hour or a day), counted in fixed
	// windows of UTC time: a day's quota starts afresh at 00:00 UTC, an
	// hour's on the hour, as API products count them.
	Quota  int64
	Window time.Duration
	// Per is what is counted: "client" (the default), "subject", or
	// "claim" with Claim naming the claim whose value is counted.
	Per   string
	Claim string
	// Line is where the limit mapping starts.
	Line int
	// Scope names whose limit it is, the same in every policy that says
	// the same: "rule <methods> <hosts> <paths>" or "subject <name>". A
	// rule's counts survive a policy change that moves it to another
	// line, and start afresh when it covers other requests.
	Scope string
}

// maxClaimName bounds the name in per: claim:<name>.
const maxClaimName = 64

// maxLimitCount bounds a rate, burst or quota: far above any real one,
// and low enough that no product of two overflows an int64 of ns.
const maxLimitCount = 1_000_000_000

// parseLimit reads
//
//	limit: {rate: 100/s, burst: 200, quota: 100000/day, per: client}
//
// rate is <n>/s, /m or /h; burst defaults to the rate's n; quota is
// <n>/h or /day; per is client, subject or claim:<name>. At least one of
// rate and quota.
func parseLimit(n *yaml.Node) (*Limit, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errAt(n, "limit: want a mapping, e.g. {rate: 100/s, burst: 200, quota: 100000/day, per: client}")
	}
	if err := noDuplicateKeys(n); err != nil {
		return nil, err
	}
	l := &Limit{Per: "client", Line: n.Line}
	var burstNode *yaml.Node
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "rate":
			l.Rate, l.RatePer, err = countPer(v, "rate", map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour})
		case "quota":
			l.Quota, l.Window, err = countPer(v, "quota", map[string]time.Duration{"h": time.Hour, "day": 24 * time.Hour})
		case "burst":
			burstNode = v
			l.Burst, err = count(v, "burst")
		case "per":
			err = l.parsePer(v)
		default:
			err = errAt(k, "unknown limit key %q (want rate, burst, quota, per)", k.Value)
		}
		if err != nil {
			return nil, err
		}
	}
	switch {
	case l.Rate == 0 && l.Quota == 0:
		return nil, errAt(n, "limit needs a rate (e.g. 100/s) or a quota (e.g. 100000/day)")
	case burstNode != nil && l.Rate == 0:
		return nil, errAt(burstNode, "burst: only a rate has a burst")
	case l.Burst == 0:
		l.Burst = l.Rate
	}
	return l, nil
}

func (l *Limit) parsePer(v *yaml.Node) error {
	if v.Kind == yaml.ScalarNode {
		switch v.Value {
		case "client", "subject":
			l.Per = v.Value
			return nil
		}
		if name, ok := strings.CutPrefix(v.Value, "claim:"); ok {
			if name == "" || len(name) > maxClaimName || strings.ContainsFunc(name, notClaimRune) {
				return errAt(v, "per: claim:<name>: want a claim name of at most %d letters, digits, '_', '-', '.' or ':'", maxClaimName)
			}
			l.Per, l.Claim = "claim", name
			return nil
		}
	}
	return errAt(v, "per: want client, subject or claim:<name>")
}

// countPer reads "<n>/<unit>".
func countPer(v *yaml.Node, what string, units map[string]time.Duration) (int64, time.Duration, error) {
	var names []string
	for u := range units {
		names = append(names, "/"+u)
	}
	slices.Sort(names)
	bad := errAt(v, "%s: want <number> and one of %s, e.g. 100%s", what, strings.Join(names, " "), names[0])
	if v.Kind != yaml.ScalarNode {
		return 0, 0, bad
	}
	num, unit, ok := strings.Cut(strings.TrimSpace(v.Value), "/")
	per, known := units[strings.TrimSpace(unit)]
	if !ok || !known {
		return 0, 0, bad
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 1 || n > maxLimitCount {
		return 0, 0, errAt(v, "%s: %q: the count must be a whole number from 1 to %d", what, num, maxLimitCount)
	}
	return n, per, nil
}

func count(v *yaml.Node, what string) (int64, error) {
	n, err := strconv.ParseInt(v.Value, 10, 64)
	if v.Kind != yaml.ScalarNode || err != nil || n < 1 || n > maxLimitCount {
		return 0, errAt(v, "%s: want a whole number from 1 to %d", what, maxLimitCount)
	}
	return n, nil
}

// Interval is the time one request of the rate stands for.
func (l *Limit) Interval() time.Duration {
	return max(l.RatePer/time.Duration(l.Rate), 1)
}

// String is the limit as the policy file writes it.
func (l *Limit) String() string {
	var parts []string
	if l.Rate > 0 {
		parts = append(parts, fmt.Sprintf("rate %d/%s, burst %d", l.Rate, unitName(l.RatePer), l.Burst))
	}
	if l.Quota > 0 {
		parts = append(parts, fmt.Sprintf("quota %d/%s", l.Quota, unitName(l.Window)))
	}
	per := "per " + l.Per
	if l.Per == "claim" {
		per = "per value of claim " + l.Claim
	}
	return strings.Join(parts, ", ") + ", " + per
}

func unitName(d time.Duration) string {
	switch d {
	case time.Second:
		return "s"
	case time.Minute:
		return "m"
	case time.Hour:
		return "h"
	}
	return "day"
}

// limitFindings are what Check says of a limit: a quota smaller than its
// rate allows in the window, with when a caller at full rate uses it up
// (and is refused for the rest of the window: fine if meant, worth
// knowing either way), and a quota the rate can never reach (the quota
// then limits nothing).
func limitFindings(l *Limit, what string) []string {
	var out []string
	if l.Per == "claim" && !slices.Contains(OwnClaims, l.Claim) {
		out = append(out, fmt.Sprintf("%s counts per claim %s, which tokens of this gateway never carry: they all share one budget (fine if an external issuer's tokens carry it)", what, l.Claim))
	}
	if l.Rate == 0 || l.Quota == 0 {
		return out
	}
	// What the rate admits in one window: the burst, then the rate.
	perWindow := float64(l.Burst) + float64(l.Rate)*float64(l.Window)/float64(l.RatePer)
	if float64(l.Quota) >= perWindow {
		return append(out, fmt.Sprintf("%s: its quota %d/%s is never reached: its rate admits at most %.0f a %s; drop the quota or lower it",
			what, l.Quota, unitName(l.Window), perWindow, windowName(l.Window)))
	}
	// Used up after the burst and (quota-burst) more at the rate.
	after := time.Duration(math.Ceil(float64(max(l.Quota-l.Burst, 0)) * float64(l.Interval())))
	return append(out, fmt.Sprintf("%s: at its rate the quota %d/%s is used up after %v each %s, and the caller is refused for the rest of it",
		what, l.Quota, unitName(l.Window), after.Round(time.Second), windowName(l.Window)))
}

func windowName(w time.Duration) string {
	if w == time.Hour {
		return "hour"
	}
	return "day"
}

func notClaimRune(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.:", r))
}
