// Command iflow is a stand-in for an SAP Cloud Integration "integration
// flow": a plain HTTP backend that knows nothing about OAuth. It sits behind
// the gateway in the demo and in the integration tests.
//
// Every request is logged to stdout as one JSON line, so a test can assert
// exactly which requests got past the gateway and which identity headers
// came with them. The log records only whether an Authorization header was
// present, never its value: the gateway must strip it, and a leaked token
// must not end up in a log either.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// maxBody bounds what a POST may send; a sender that needs more is
// misbehaving, and the backend must not buffer without end.
const maxBody = 1 << 20

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to listen on")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("iflow: ")

	// Listen before announcing, so "listening" on stderr is a readiness
	// signal a supervisor can wait for without polling.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "iflow listening on %s\n", ln.Addr())

	srv := &http.Server{
		Handler:           logRequests(os.Stdout, http.HandlerFunc(serve)),
		ReadHeaderTimeout: 10 * time.Second,
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		log.Fatal(err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Fatal(err)
	}
}

// serve answers like a trivial integration flow: GET is a health probe of
// the flow, POST accepts a message and hands back an ID for it.
func serve(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, struct {
			Status string `json:"status"`
			Flow   string `json:"flow"`
			Time   string `json:"time"`
		}{"ok", r.URL.Path, time.Now().UTC().Format(time.RFC3339)})

	case http.MethodPost:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				http.Error(w, "message too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "reading message: "+err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			MessageID string `json:"message_id"`
			Flow      string `json:"flow"`
			Received  string `json:"received"`
		}{newMessageID(), r.URL.Path, string(body)})

	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// newMessageID returns a random ID like SAP's message IDs: 16 bytes, hex.
func newMessageID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails; it crashes the program instead
	return hex.EncodeToString(b[:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Printf("writing response: %v", err)
	}
}

// accessLine is what the backend learned about a request. Authorization is
// a bool on purpose: the value is a credential and is never printed.
type accessLine struct {
	Method        string `json:"method"`
	Path          string `json:"path"`
	Authorization bool   `json:"authorization"`
	ClientID      string `json:"client_id"`
	Subject       string `json:"subject"`
	Roles         string `json:"roles"`
	// CSRFToken says an X-CSRF-Token header arrived, which a gateway
	// with SAP's CSRF protection must keep for itself.
	CSRFToken bool `json:"csrf_token,omitempty"`
}

// logRequests writes one JSON line per request to out before calling next.
// Logging first means the line is out before the caller sees the response,
// so a test that has its response can rely on the line being written.
func logRequests(out io.Writer, next http.Handler) http.Handler {
	var mu sync.Mutex // keeps concurrent lines from interleaving
	enc := json.NewEncoder(out)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, hasAuth := r.Header["Authorization"] // present, even if empty
		line := accessLine{
			Method:        r.Method,
			Path:          r.URL.Path,
			Authorization: hasAuth,
			ClientID:      r.Header.Get("X-OAuth-Client-ID"),
			Subject:       r.Header.Get("X-OAuth-Subject"),
			Roles:         r.Header.Get("X-OAuth-Roles"),
			CSRFToken:     len(r.Header.Values("X-CSRF-Token")) > 0,
		}
		mu.Lock()
		err := enc.Encode(line)
		mu.Unlock()
		if err != nil {
			log.Printf("writing access log: %v", err)
		}
		next.ServeHTTP(w, r)
	})
}
