package integration

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/prototext"
)

// spanTimeout bounds the wait for a request's span: the gateway exports
// every 100 ms in these tests.
const spanTimeout = 15 * time.Second

// otlpReceiver is an OTLP/gRPC trace receiver on 127.0.0.1, what an
// OpenTelemetry collector is to the gateway: it keeps every export.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	addr string

	mu      sync.Mutex
	exports []string                 // every request as received, in text form
	spans   map[string]*tracepb.Span // by trace ID (hex); one span a trace
	changed chan struct{}            // closed and replaced on each export
}

// startOTLPReceiver listens on a free port and stops when the test ends,
// after the gateway, which was started later, has flushed its spans.
func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{addr: ln.Addr().String(), spans: map[string]*tracepb.Span{}, changed: make(chan struct{})}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, r)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return r
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exports = append(r.exports, prototext.Format(req))
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans[hex.EncodeToString(s.GetTraceId())] = s
			}
		}
	}
	close(r.changed)
	r.changed = make(chan struct{})
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// span waits for the span of traceID and returns its attributes, as
// text (integers in decimal).
func (r *otlpReceiver) span(t *testing.T, traceID string) map[string]string {
	t.Helper()
	timer := time.NewTimer(spanTimeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		s, changed := r.spans[traceID], r.changed
		r.mu.Unlock()
		if s != nil {
			attrs := make(map[string]string)
			for _, kv := range s.GetAttributes() {
				switch v := kv.GetValue().GetValue().(type) {
				case *commonpb.AnyValue_StringValue:
					attrs[kv.GetKey()] = v.StringValue
				case *commonpb.AnyValue_IntValue:
					attrs[kv.GetKey()] = strconv.FormatInt(v.IntValue, 10)
				default:
					attrs[kv.GetKey()] = fmt.Sprint(v)
				}
			}
			return attrs
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("no span of trace %s within %v; %d exports received", traceID, spanTimeout, len(r.allExports()))
		}
	}
}

func (r *otlpReceiver) allExports() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.exports...)
}

// traced sends req as part of a new trace, as a caller that traces its
// own requests would (W3C traceparent, sampled), and returns the trace's
// ID with the response.
func traced(t *testing.T, e *env, req *http.Request) (string, response) {
	t.Helper()
	var ids [24]byte
	rand.Read(ids[:])
	traceID := hex.EncodeToString(ids[:16])
	req.Header.Set("Traceparent", "00-"+traceID+"-"+hex.EncodeToString(ids[16:])+"-01")
	return traceID, send(t, e.http, req)
}

// With Caddy's tracing directive on, every request's span says what the
// gateway decided and why, and holds no token, secret, Authorization
// value or query string: checked on what a real OTLP receiver gets from
// the real binary.
func TestTraces_SpansCarryTheDecisionAndNoSecret(t *testing.T) {
	t.Parallel()
	rec := startOTLPReceiver(t)
	e := newEnvConfig(t, envConfig{site: "tracing", environ: []string{
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL=grpc", // autoexport's default is http/protobuf
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + rec.addr,
		"OTEL_EXPORTER_OTLP_INSECURE=true",
		"OTEL_BSP_SCHEDULE_DELAY=100",
		"OTEL_TRACES_SAMPLER=always_on",
	}})
	policyFile := filepath.Join(e.dir, "policy.yaml")

	// The SAP form: grant_type in the query string, which must not reach
	// a span either.
	tokenRequest := func(secret string) *http.Request {
		req := newRequest(t, http.MethodPost, e.base+tokenPath+"?grant_type=client_credentials", "")
		req.SetBasicAuth(e.A.ID, secret)
		return req
	}
	issuedTrace, r := traced(t, e, tokenRequest(e.A.Secret))
	r.wantStatus(t, http.StatusOK)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	r.decode(t, &tok)
	wrongSecretTrace, r := traced(t, e, tokenRequest(e.A.Secret+"x"))
	r.wantStatus(t, http.StatusUnauthorized)

	guarded := func(method, path, token string) *http.Request {
		req := newRequest(t, method, e.base+path, "")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return req
	}
	allowedTrace, r := traced(t, e, guarded(http.MethodGet, "/http/flow", tok.AccessToken))
	r.wantStatus(t, http.StatusOK)
	refusedTrace, r := traced(t, e, guarded(http.MethodPost, "/http/orders/1", tok.AccessToken))
	r.wantBearerChallenge(t, http.StatusForbidden, "insufficient_scope")
	noTokenTrace, r := traced(t, e, guarded(http.MethodGet, "/http/flow", ""))
	r.wantBearerChallenge(t, http.StatusUnauthorized, "")
	publicTrace, r := traced(t, e, guarded(http.MethodGet, "/http/ping", ""))
	r.wantStatus(t, http.StatusOK)

	absent := "" // an attribute the span must not have
	for _, c := range []struct {
		name, trace string
		want        map[string]string
	}{
		{"token issued", issuedTrace, map[string]string{
			"oauthgate.token.outcome": "issued", "oauthgate.token.grant_type": "client_credentials",
			"oauthgate.token.format": "jwt", "oauthgate.client_id": e.A.ID, "oauthgate.token.error": absent,
		}},
		{"wrong secret", wrongSecretTrace, map[string]string{
			"oauthgate.token.outcome": "refused", "oauthgate.token.error": "invalid_client",
			"oauthgate.token.grant_type": "client_credentials", "oauthgate.client_id": absent,
		}},
		{"allowed", allowedTrace, map[string]string{
			"oauthgate.decision": "allow", "oauthgate.reason": "ok", "oauthgate.client_id": e.A.ID,
			"oauthgate.rule.line": e.policyLine(t, "/http/*"), "oauthgate.rule.file": policyFile,
		}},
		{"refused for the role", refusedTrace, map[string]string{
			"oauthgate.decision": "deny", "oauthgate.reason": "insufficient_scope", "oauthgate.client_id": e.A.ID,
			"oauthgate.rule.line": e.policyLine(t, "/http/orders*"), "oauthgate.rule.file": policyFile,
		}},
		{"no token", noTokenTrace, map[string]string{
			"oauthgate.decision": "deny", "oauthgate.reason": "missing_token", "oauthgate.client_id": absent,
			"oauthgate.rule.line": e.policyLine(t, "/http/*"),
		}},
		{"public", publicTrace, map[string]string{
			"oauthgate.decision": "public", "oauthgate.reason": "ok", "oauthgate.client_id": absent,
			"oauthgate.rule.line": e.policyLine(t, "/http/ping"),
		}},
	} {
		got := rec.span(t, c.trace)
		for key, want := range c.want {
			if v, ok := got[key]; want == absent && ok || want != absent && v != want {
				t.Errorf("%s: span attribute %s = %q (set: %v), want %q", c.name, key, v, ok, want)
			}
		}
	}

	// Everything the receiver got, resource and span names, attributes
	// and events, in text form; the values in the clear and as sent.
	basic := base64.StdEncoding.EncodeToString([]byte(e.A.ID + ":" + e.A.Secret))
	never := map[string]string{
		"the access token":         tok.AccessToken,
		"the client secret":        e.A.Secret,
		"the Authorization header": basic,
		"the query string":         "grant_type=client_credentials",
	}
	idx := sensitive.index()
	for i, export := range rec.allExports() {
		for what, v := range never {
			if strings.Contains(export, v) {
				t.Errorf("export %d holds %s", i+1, what)
			}
		}
		for _, line := range strings.Split(export, "\n") {
			for _, v := range find(idx, line) {
				t.Errorf("export %d holds %s (%d characters)", i+1, sensitive.kindOf(v), len(v))
			}
		}
	}
}
