package bruteforce

import (
	"crypto/sha256"
	"net"
	"net/netip"
	"strings"
)

// maxKeyLen is the longest client ID (or unparsable address) tracked as
// itself; longer ones are tracked by their SHA-256 digest.
const maxKeyLen = 128

// key identifies one bucket: an IP (masked to its /64 for IPv6), or a
// string (a client ID or an unparsable address), or the digest of a long
// string. hashed keeps a digest from colliding with a 32-byte literal.
type key struct {
	ip     netip.Addr
	s      string
	hashed bool
}

func stringKey(s string) key {
	if len(s) <= maxKeyLen {
		return key{s: s}
	}
	sum := sha256.Sum256([]byte(s))
	return key{s: string(sum[:]), hashed: true}
}

func clientKey(id string) key { return stringKey(id) }

// addrKey accepts "ip:port", "[ipv6]:port", a bare IP or "[ipv6]".
// Zones are dropped and IPv4-mapped IPv6 addresses count as IPv4.
func addrKey(addr string) key {
	ip, ok := parseIP(addr)
	if !ok {
		return stringKey(addr)
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64) // cannot fail for a 128-bit address
		ip = p.Addr()
	}
	return key{ip: ip}
}

// AddressBucket names the budget addr's failures count against: the IP
// (an IPv6 address masked to its /64, an IPv4-mapped one unmapped) in
// text, or addr itself when it holds no IP. A limiter shared by a fleet
// (package redisstate) keys on it, so that it counts an address exactly
// as Limiter does. An address that is no IP cannot collide with one: text
// that parses as an IP is taken as that IP.
func AddressBucket(addr string) string {
	if k := addrKey(addr); k.ip.IsValid() {
		return k.ip.String()
	}
	return addr
}

func parseIP(addr string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap.Addr(), true
	}
	if ip, err := netip.ParseAddr(addr); err == nil {
		return ip, true
	}
	if s, ok := strings.CutPrefix(addr, "["); ok {
		if s, ok := strings.CutSuffix(s, "]"); ok {
			if ip, err := netip.ParseAddr(s); err == nil {
				return ip, true
			}
		}
	}
	// ParseAddrPort is strict (no "01" ports, no named ports); the
	// net package is what produced RemoteAddr, so fall back to it.
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil {
			return ip, true
		}
	}
	return netip.Addr{}, false
}
