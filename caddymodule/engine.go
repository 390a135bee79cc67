package caddymodule

// StateConfig says where the instances of a fleet keep what they must
// agree on: the signing keys, the opaque-token MAC key, revocations,
// opaque tokens, lifetime-0 records and the failure counters.
//
// Without it, Caddy's storage (the "storage" global option) keeps them:
// right for one node, or a few sharing a disk. Instances then learn of
// each other's revocations and lifetime-0 tokens within 10 seconds, and
// each counts failed client authentications on its own.
type StateConfig struct {
	// Redis keeps the state in Redis or Valkey, shared by every instance
	// that names the same server and prefix: a change made at one
	// instance holds at all of them within a second (about a
	// millisecond on a local network), and the failure limits count
	// across the fleet.
	Redis *RedisState `json:"redis,omitempty"`
}

// RedisState is a Redis or Valkey server (or a Sentinel-managed primary)
// holding the fleet's state. Every value may use Caddy's {env.*}
// placeholders, which keeps passwords out of the config file.
type RedisState struct {
	// URL is redis://[user:password@]host:port[/db], or rediss:// for
	// TLS. With Sentinels, its host is not used; its user, password, db
	// and scheme are. Required.
	URL string `json:"url,omitempty"`

	// Username and Password, if set, replace those of the URL: an ACL
	// user (Redis 6 and later) or, with Username empty, the server's
	// requirepass.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`

	// Sentinels are host:port addresses of Redis Sentinels that know
	// MasterName; the state follows the primary through a failover.
	Sentinels        []string `json:"sentinels,omitempty"`
	MasterName       string   `json:"master_name,omitempty"`
	SentinelPassword string   `json:"sentinel_password,omitempty"`

	// TLSCAFile is a PEM file of the CAs that may sign the server's
	// certificate, instead of the system's; it implies TLS.
	TLSCAFile string `json:"tls_ca_file,omitempty"`

	// Prefix starts every key oauthgate writes, so that several fleets
	// (or other applications) can share a server. Default: "oauthgate:".
	Prefix string `json:"prefix,omitempty"`

	// SealingKeysFile or SealingKeysEnv gives the key ring that encrypts
	// the signing keys and the MAC key in Redis (AES-256-GCM), so that
	// read access to Redis is not the power to mint tokens: one key per
	// line (or comma-separated), "<id>:<base64 of 32 bytes>", the first
	// sealing, every one opening. "caddy oauth state key" makes one.
	// Exactly one is required.
	SealingKeysFile string `json:"sealing_keys_file,omitempty"`
	SealingKeysEnv  string `json:"sealing_keys_env,omitempty"`
}
