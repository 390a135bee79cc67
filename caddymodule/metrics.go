package caddymodule

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
)

// The gateway's metrics, on Caddy's metrics endpoint (the "metrics"
// handler, or the admin API's /metrics). They belong to the process, not
// to one config: Caddy gives every config load a fresh registry, and a
// reload must not reset a counter to zero. Every label value is bounded:
// outcomes, RFC 6749/6750 error codes, policy rule lines, registered
// client IDs, configured issuers.
var metrics = struct {
	decisions   *prometheus.CounterVec
	issued      *prometheus.CounterVec
	refused     *prometheus.CounterVec
	jwksFetches *prometheus.CounterVec
	fileReloads *prometheus.CounterVec
}{
	decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "oauthgate", Subsystem: "guard", Name: "decisions_total",
		Help: `Guard decisions by outcome (allow, deny, would_deny in report-only mode, public, preflight, csrf_fetch), reason (the RFC 6750 error code, "rate_limited" or "quota_exceeded" for a caller over a policy limit, "csrf_required" or "csrf_invalid" for a missing or bad CSRF token, "missing_token" or "ok") and deciding policy rule (its line, or "none").`,
	}, []string{"outcome", "reason", "rule"}),
	issued: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "oauthgate", Subsystem: "token", Name: "issued_total",
		Help: "Access tokens issued, by client ID and format (jwt, opaque).",
	}, []string{"client_id", "format"}),
	refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "oauthgate", Subsystem: "token", Name: "refused_total",
		Help: "Token requests refused, by RFC 6749 error code.",
	}, []string{"error"}),
	jwksFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "oauthgate", Subsystem: "issuer", Name: "jwks_fetches_total",
		Help: "Fetches of an external issuer's keys, by issuer and result (ok, error).",
	}, []string{"issuer", "result"}),
	fileReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "oauthgate", Name: "file_reloads_total",
		Help: "Reloads of the policy and clients files after a change, by file (policy, clients) and result (ok, error: the last good one stays in force).",
	}, []string{"file", "result"}),
}

// decisionLabels are the labels of one oauthgate_guard_decisions_total
// counter: rule is the policy rule's line, 0 for none.
type decisionLabels struct {
	outcome, reason string
	rule            int
}

// decisionCounters maps decisionLabels to their counter, so that a
// request finds its counter in a map read without a lock: the CounterVec
// hashes the label values and takes a lock on every call. A sync.Map,
// not a map copied on every addition: the rules of a large policy, each a
// label value, would make each first hit of a rule copy all the others.
var decisionCounters sync.Map

// decisionCounter is the decisions counter of l.
func decisionCounter(l decisionLabels) prometheus.Counter {
	if c, ok := decisionCounters.Load(l); ok {
		return c.(prometheus.Counter)
	}
	c, _ := decisionCounters.LoadOrStore(l, metrics.decisions.WithLabelValues(l.outcome, l.reason, ruleLabel(l.rule)))
	return c.(prometheus.Counter)
}

// cacheCollector exports the lookups of the secret cache and of every
// guard's and trusted issuer's token cache (pool.go).
type cacheCollector struct{ desc *prometheus.Desc }

var caches = cacheCollector{prometheus.NewDesc(
	"oauthgate_cache_lookups_total",
	"Cache lookups by cache (secret: verified argon2id secrets; token: verified access tokens) and result (hit, miss).",
	[]string{"cache", "result"}, nil)}

func (c cacheCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c cacheCollector) Collect(ch chan<- prometheus.Metric) {
	stats := cacheStats()
	for _, label := range [...]string{"secret", "token"} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(stats[label][0]), label, "hit")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(stats[label][1]), label, "miss")
	}
}

// registerMetrics adds the gateway's collectors to a config's registry.
// The app calls it once per config; a collector already there is fine.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metrics.decisions, metrics.issued, metrics.refused,
		metrics.jwksFetches, metrics.fileReloads, caches} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// tokenMetrics is the token endpoint's authserver.Recorder: the metrics,
// and with tracing on the request's span, from the one outcome.
type tokenMetrics struct{}

func (tokenMetrics) Token(ctx context.Context, o authserver.TokenOutcome) {
	if o.Error == "" {
		metrics.issued.WithLabelValues(o.ClientID, o.Format).Inc()
	} else {
		metrics.refused.WithLabelValues(o.Error).Inc()
	}
	traceToken(ctx, &o)
}

// ruleLabel names a policy rule by its line in the file.
func ruleLabel(line int) string {
	if line == 0 {
		return "none"
	}
	return strconv.Itoa(line)
}
