package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// The Redis the fleet tests run on: a real redis-server (and
// redis-sentinel) of the machine's, each on a free 127.0.0.1 port with a
// temporary directory, started and stopped by the test that uses it.

// redisBinary returns the path of a Redis program. The test is skipped
// if it is not installed, except in CI (CI=true), which installs it
// (.ci/run): there a missing program is a failure, not a skip that would
// pass unseen.
func redisBinary(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	missing(t, name+" is not installed", "apt-get install redis-server redis-sentinel", err)
	return ""
}

// missing ends a test that needs what is missing (what): a skip on a
// developer's machine, a failure in CI (CI=true), which installs all the
// tests need (.ci/run), so that a test cannot pass there unseen.
func missing(t *testing.T, what, install string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s, and CI must run this test (.ci/run installs it): %v", what, err)
	}
	t.Skipf("%s (%s, as .ci/run does)", what, install)
}

// redisServer is a redis-server the test started. Nothing is saved to
// disk, so a restart starts empty unless it is a replica.
type redisServer struct {
	bin  string
	port string
	dir  string
	args []string // more arguments, e.g. --replicaof
	proc *process
	log  *lineLog // output of every run, for a failure report
}

// startRedis starts a redis-server with args added to its command line;
// it is stopped when the test ends.
func startRedis(t *testing.T, args ...string) *redisServer {
	t.Helper()
	s := &redisServer{bin: redisBinary(t, "redis-server"), port: freePort(t), dir: t.TempDir(), args: args, log: newLineLog()}
	// Registered before the process starts, so that it runs after the
	// process has stopped and its output is complete.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("redis-server %s output:\n%s", s.addr(), s.log)
		}
	})
	s.start(t)
	return s
}

func (s *redisServer) addr() string { return net.JoinHostPort("127.0.0.1", s.port) }

// url is the server's URL for the oauth app's state option.
func (s *redisServer) url() string { return "redis://" + s.addr() + "/0" }

// start runs the server on its port and waits until it answers PING.
func (s *redisServer) start(t *testing.T) {
	t.Helper()
	args := append([]string{"--port", s.port, "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no"}, s.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	s.proc = startProcess(t, "redis-server "+s.addr(), cmd)
	waitPong(t, s.addr(), s.proc, s.log)
}

// stop stops the server (SIGINT: it closes every connection), and waits
// for it to exit.
func (s *redisServer) stop(t *testing.T) {
	t.Helper()
	if err := s.proc.stop(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(s.log, "---- stopped (%v) ----\n", s.proc.err)
}

// stopSaving stops the server after it has saved its data, so that start
// brings it back with them, as a Redis with persistence comes back from
// maintenance.
func (s *redisServer) stopSaving(t *testing.T) {
	t.Helper()
	// The server closes the connection instead of answering.
	_, _ = s.do(t, "SHUTDOWN", "SAVE")
	select {
	case <-s.proc.done:
	case <-time.After(stopTimeout):
		t.Fatalf("redis-server %s did not exit within %v of SHUTDOWN SAVE", s.addr(), stopTimeout)
	}
	fmt.Fprintf(s.log, "---- shut down, data saved (%v) ----\n", s.proc.err)
}

// restartEmpty stops the server and starts an empty one on the same
// port, as a Redis without persistence comes back after a crash.
func (s *redisServer) restartEmpty(t *testing.T) {
	t.Helper()
	s.stop(t)
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing to load: it starts empty. (Its clients may write to it as
	// soon as it answers, so DBSIZE proves nothing here.)
	s.start(t)
}

// do runs one command on the server.
func (s *redisServer) do(t *testing.T, args ...any) (any, error) {
	t.Helper()
	return redisDo(t, s.addr(), args...)
}

// redisDo runs one command on a server or Sentinel at addr, on a
// connection of its own.
func redisDo(t *testing.T, addr string, args ...any) (any, error) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, MaxRetries: -1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	return c.Do(ctx, args...).Result()
}

// waitPong waits until the Redis program at addr answers PING.
func waitPong(t *testing.T, addr string, p *process, log *lineLog) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		pong, err := redisDo(t, addr, "PING")
		if err == nil && pong == "PONG" {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before it answered (%v); output:\n%s", p.name, p.err, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer PING within %v (%v); output:\n%s", p.name, readyTimeout, err, log)
		}
	}
}

// info returns one field of INFO section, "" if absent.
func (s *redisServer) info(t *testing.T, section, field string) string {
	t.Helper()
	out, err := s.do(t, "INFO", section)
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(fmt.Sprint(out), "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}

// startReplica starts a replica of s and waits until it holds s's data.
func startReplica(t *testing.T, s *redisServer) *redisServer {
	t.Helper()
	r := startRedis(t, "--replicaof", "127.0.0.1", s.port)
	deadline := time.Now().Add(readyTimeout)
	for r.info(t, "replication", "master_link_status") != "up" {
		if time.Now().After(deadline) {
			t.Fatalf("replica %s did not sync with %s within %v", r.addr(), s.addr(), readyTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// sentinel is a redis-sentinel the test started, watching one primary.
type sentinel struct {
	addr   string
	master string // the name the primary goes by
	proc   *process
	log    *lineLog
}

// startSentinel starts a Sentinel that watches primary as master, with a
// quorum of 1, so that it alone may fail over, and waits until it knows
// the primary's replicas. It is stopped when the test ends.
func startSentinel(t *testing.T, primary *redisServer, master string, replicas int) *sentinel {
	t.Helper()
	bin := redisBinary(t, "redis-sentinel")
	port, dir := freePort(t), t.TempDir()
	s := &sentinel{addr: net.JoinHostPort("127.0.0.1", port), master: master, log: newLineLog()}
	// Sentinel rewrites its config file, so it gets one of its own. A
	// primary is down after a second of silence (default 30 s), and a
	// failover that stalls is given up after 10 s (default 3 min).
	conf := filepath.Join(dir, "sentinel.conf")
	writeFile(t, conf, fmt.Sprintf(`port %[1]s
bind 127.0.0.1
dir %[2]s
sentinel monitor %[3]s 127.0.0.1 %[4]s 1
sentinel down-after-milliseconds %[3]s 1000
sentinel failover-timeout %[3]s 10000
`, port, dir, master, primary.port))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("redis-sentinel %s output:\n%s", s.addr, s.log)
		}
	})
	cmd := exec.Command(bin, conf)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	s.proc = startProcess(t, "redis-sentinel "+s.addr, cmd)
	waitPong(t, s.addr, s.proc, s.log)
	deadline := time.Now().Add(readyTimeout)
	for {
		out, err := redisDo(t, s.addr, "SENTINEL", "REPLICAS", master)
		if list, ok := out.([]any); err == nil && ok && len(list) >= replicas {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("Sentinel %s does not know %d replicas of %s within %v (%v, %v)", s.addr, replicas, master, readyTimeout, out, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// primary is the address the Sentinel names as the primary.
func (s *sentinel) primary(t *testing.T) string {
	t.Helper()
	out, err := redisDo(t, s.addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.master)
	if err != nil {
		t.Fatalf("Sentinel %s: %v", s.addr, err)
	}
	hp, ok := out.([]any)
	if !ok || len(hp) != 2 {
		t.Fatalf("Sentinel %s names the primary %v", s.addr, out)
	}
	return net.JoinHostPort(fmt.Sprint(hp[0]), fmt.Sprint(hp[1]))
}

// failover has the Sentinel promote a replica (SENTINEL FAILOVER, as an
// operator moving the primary does), and waits until the failover has
// ended: the Sentinel has announced the new primary (+switch-master),
// and the replica acts as one. (The Sentinel names the replica a little
// earlier, from the moment it is promoted; the old primary is made a
// replica only later, when the Sentinel next looks at it.)
func (s *sentinel) failover(t *testing.T, to *redisServer) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		// NOGOODSLAVE until the Sentinel has checked the replica.
		_, err := redisDo(t, s.addr, "SENTINEL", "FAILOVER", s.master)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SENTINEL FAILOVER %s: %v", s.master, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for s.primary(t) != to.addr() || s.failingOver(t) || to.info(t, "replication", "role") != "master" {
		if time.Now().After(deadline) {
			t.Fatalf("after SENTINEL FAILOVER the Sentinel names %s, want %s (still failing over: %v; role %s)",
				s.primary(t), to.addr(), s.failingOver(t), to.info(t, "replication", "role"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// failingOver reports whether the Sentinel's failover of its primary is
// still in progress.
func (s *sentinel) failingOver(t *testing.T) bool {
	t.Helper()
	out, err := redisDo(t, s.addr, "SENTINEL", "MASTER", s.master)
	if err != nil {
		t.Fatalf("Sentinel %s: %v", s.addr, err)
	}
	var flags string
	switch m := out.(type) {
	case map[any]any: // RESP3
		flags = fmt.Sprint(m["flags"])
	case []any: // RESP2: name, value, …
		for i := 0; i+1 < len(m); i += 2 {
			if m[i] == "flags" {
				flags = fmt.Sprint(m[i+1])
			}
		}
	}
	if flags == "" {
		t.Fatalf("Sentinel %s: SENTINEL MASTER %s has no flags: %v", s.addr, s.master, out)
	}
	return strings.Contains(flags, "failover")
}

// ---- a fleet on Redis ----

// sealingKeys writes a sealing key ring of one key, made by
// `caddy oauth state key`, as an operator does, and returns its path.
func sealingKeys(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, "oauth", "state", "key", "--id", "fleet-test")
	cmd.Env = caddyEnviron(t, dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("caddy oauth state key: %v\n%s", err, &stderr)
	}
	line := strings.TrimSpace(stdout.String())
	if !strings.HasPrefix(line, "fleet-test:") {
		t.Fatalf("caddy oauth state key printed %q, want fleet-test:<key>", line)
	}
	sensitive.add(kindSecret, line)
	path := filepath.Join(dir, "sealing.keys")
	writeFile(t, path, line+"\n")
	return path
}

// redisState is the oauth option that keeps the state on the server at
// url, sealed with the key ring in keysFile; more are lines for its
// block (sentinels, master_name).
func redisState(url, keysFile string, more ...string) string {
	return fmt.Sprintf("state redis %s {\n\t\t\tsealing_keys_file %s\n\t\t\t%s\n\t\t}", url, keysFile, strings.Join(more, "\n\t\t\t"))
}

// newRedisFleet starts n gateways of one environment whose state is in
// Redis (state is a redisState option); each keeps its own Caddy storage,
// so that what they agree on can only have come through Redis. They
// share clients, policy, issuer and backend; the first has extra clients
// and serves the admin API, as every one does.
func newRedisFleet(t *testing.T, state string, n int, extra ...clientSpec) []*env {
	t.Helper()
	a := newEnvConfig(t, envConfig{admin: true, ownStorage: true, oauthOptions: state}, extra...)
	fleet := []*env{a}
	for len(fleet) < n {
		fleet = append(fleet, a.peer(t))
	}
	return fleet
}
