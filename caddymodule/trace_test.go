package caddymodule

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/guard"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
)

// recordedSpan runs f with the context of a sampled span and returns the
// attributes the span ended with.
func recordedSpan(t *testing.T, f func(ctx context.Context)) map[attribute.Key]attribute.Value {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "handler")
	f(ctx)
	span.End()
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans ended, want 1", len(ended))
	}
	got := make(map[attribute.Key]attribute.Value)
	for _, kv := range ended[0].Attributes() {
		got[kv.Key] = kv.Value
	}
	return got
}

func wantAttributes(t *testing.T, got map[attribute.Key]attribute.Value, want ...attribute.KeyValue) {
	t.Helper()
	for _, kv := range want {
		if v, ok := got[kv.Key]; !ok || v != kv.Value {
			t.Errorf("%s = %v, want %v", kv.Key, v.Emit(), kv.Value.Emit())
		}
	}
	if len(got) != len(want) {
		t.Errorf("span attributes %v, want only %v", got, want)
	}
}

func TestGuardCount_TellsTheSpanWhatTheMetricCounts(t *testing.T) {
	rule := &policy.Rule{Line: 12}
	shadowRule := &policy.Rule{Line: 14, ReportOnly: true}
	public := &policy.Rule{Line: 20, Public: true}
	scope := oautherr.InsufficientScope("the token's subject lacks a role this path requires", []string{"Orders.send"})
	cases := []struct {
		name       string
		reportOnly bool
		d          guard.Decision
		want       []attribute.KeyValue
	}{
		{"an allowed request names its rule and client", false,
			guard.Decision{Rule: rule, ClientID: "3f9a", Subject: "oauth_client_3f9a"},
			[]attribute.KeyValue{attrDecision.String("allow"), attrReason.String("ok"), attrRuleLine.Int(12),
				attrRuleFile.String("/etc/oauthgate/policy.yaml"), attrClientID.String("3f9a")}},
		{"a request without a token has no client", false,
			guard.Decision{Rule: rule, Err: oautherr.MissingToken()},
			[]attribute.KeyValue{attrDecision.String("deny"), attrReason.String("missing_token"), attrRuleLine.Int(12),
				attrRuleFile.String("/etc/oauthgate/policy.yaml")}},
		{"a caller without the role is named with the code", false,
			guard.Decision{Rule: rule, ClientID: "77c1", Err: scope},
			[]attribute.KeyValue{attrDecision.String("deny"), attrReason.String("insufficient_scope"), attrRuleLine.Int(12),
				attrRuleFile.String("/etc/oauthgate/policy.yaml"), attrClientID.String("77c1")}},
		{"no rule matched: no rule line", false,
			guard.Decision{ClientID: "77c1", Err: oautherr.InsufficientScope("no policy rule allows GET /x", nil)},
			[]attribute.KeyValue{attrDecision.String("deny"), attrReason.String("insufficient_scope"), attrClientID.String("77c1")}},
		{"a report_only rule's refusal would deny", false,
			guard.Decision{Rule: shadowRule, ClientID: "77c1", Err: scope},
			[]attribute.KeyValue{attrDecision.String("would_deny"), attrReason.String("insufficient_scope"), attrRuleLine.Int(14),
				attrRuleFile.String("/etc/oauthgate/policy.yaml"), attrClientID.String("77c1")}},
		{"a report_only guard's refusal would deny", true,
			guard.Decision{Err: oautherr.InvalidToken("token is expired")},
			[]attribute.KeyValue{attrDecision.String("would_deny"), attrReason.String("invalid_token")}},
		{"a public rule", false,
			guard.Decision{Rule: public},
			[]attribute.KeyValue{attrDecision.String("public"), attrReason.String("ok"), attrRuleLine.Int(20),
				attrRuleFile.String("/etc/oauthgate/policy.yaml")}},
		{"a preflight", false,
			guard.Decision{Preflight: true},
			[]attribute.KeyValue{attrDecision.String("preflight"), attrReason.String("ok")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := &OAuthGuard{ReportOnly: tc.reportOnly, app: &App{PolicyFile: "/etc/oauthgate/policy.yaml"}}
			got := recordedSpan(t, func(ctx context.Context) {
				// The span says what the counter it adds to says.
				var line int
				if l, ok := valueOf(tc.want, attrRuleLine); ok {
					line = int(l.AsInt64())
				}
				decision, _ := valueOf(tc.want, attrDecision)
				reason, _ := valueOf(tc.want, attrReason)
				counter := decisionCounter(decisionLabels{decision.AsString(), reason.AsString(), line})
				before := testutil.ToFloat64(counter)
				g.count(ctx, &tc.d)
				if n := testutil.ToFloat64(counter) - before; n != 1 {
					t.Errorf("the counter of the span's labels went up by %v, want 1", n)
				}
			})
			wantAttributes(t, got, tc.want...)
		})
	}
}

// valueOf finds key among kvs.
func valueOf(kvs []attribute.KeyValue, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func TestTokenMetrics_TellTheSpanWhatTheTokenEndpointDid(t *testing.T) {
	cases := []struct {
		name string
		o    authserver.TokenOutcome
		want []attribute.KeyValue
	}{
		{"a token issued",
			authserver.TokenOutcome{ClientID: "3f9a", GrantType: "client_credentials", Format: "jwt"},
			[]attribute.KeyValue{attrTokenOutcome.String("issued"), attrTokenFormat.String("jwt"),
				attrTokenGrantType.String("client_credentials"), attrClientID.String("3f9a")}},
		{"a wrong secret: no client",
			authserver.TokenOutcome{GrantType: "client_credentials", Error: "invalid_client"},
			[]attribute.KeyValue{attrTokenOutcome.String("refused"), attrTokenError.String("invalid_client"),
				attrTokenGrantType.String("client_credentials")}},
		{"a scope refused to an authenticated client names it",
			authserver.TokenOutcome{ClientID: "3f9a", GrantType: "client_credentials", Error: "invalid_scope"},
			[]attribute.KeyValue{attrTokenOutcome.String("refused"), attrTokenError.String("invalid_scope"),
				attrTokenGrantType.String("client_credentials"), attrClientID.String("3f9a")}},
		{"a request that did not parse",
			authserver.TokenOutcome{Error: "invalid_request"},
			[]attribute.KeyValue{attrTokenOutcome.String("refused"), attrTokenError.String("invalid_request")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantAttributes(t, recordedSpan(t, func(ctx context.Context) { tokenMetrics{}.Token(ctx, tc.o) }), tc.want...)
		})
	}
}

// Without tracing, or with a span the sampler dropped, the attributes
// are not even built: tracing off costs a context lookup.
func TestTrace_BuildsNothingForASpanNotRecording(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	dropped, span := tp.Tracer("test").Start(context.Background(), "handler")
	defer span.End()
	d := guard.Decision{Rule: &policy.Rule{Line: 12}, ClientID: "3f9a", Err: oautherr.MissingToken()}
	l := decisionLabels{"deny", "missing_token", 12}
	o := authserver.TokenOutcome{ClientID: "3f9a", GrantType: "client_credentials", Format: "jwt"}
	for name, ctx := range map[string]context.Context{"no tracing": context.Background(), "a span not sampled": dropped} {
		t.Run(name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, func() { traceDecision(ctx, l, &d, "/etc/oauthgate/policy.yaml") }); n != 0 {
				t.Errorf("guard: %v allocations, want none", n)
			}
			if n := testing.AllocsPerRun(100, func() { traceToken(ctx, &o) }); n != 0 {
				t.Errorf("token endpoint: %v allocations, want none", n)
			}
		})
	}
}

// BenchmarkTraceDecision is what the guard adds to a request for its
// span. Off is without tracing: a context lookup. Recording is a sampled
// span with the attributes set; less SpanAlone (the span that Caddy's
// tracing starts and ends anyway), it is the attributes' cost.
func BenchmarkTraceDecision(b *testing.B) {
	d := guard.Decision{Rule: &policy.Rule{Line: 12}, ClientID: "3f9a"}
	l := decisionLabels{"allow", "ok", 12}
	b.Run("Off", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			traceDecision(ctx, l, &d, "/etc/oauthgate/policy.yaml")
		}
	})
	tp := sdktrace.NewTracerProvider() // sampled, exported nowhere
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("bench")
	for _, traced := range []bool{false, true} {
		name := "SpanAlone"
		if traced {
			name = "Recording"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ctx, span := tracer.Start(context.Background(), "handler")
				if traced {
					traceDecision(ctx, l, &d, "/etc/oauthgate/policy.yaml")
				}
				span.End()
			}
		})
	}
}
