package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is everything `herald serve` needs. Each field says its unit, its
// default and what 0 or "" means.
type Config struct {
	// DataDir holds the engine's files. Default "./herald-data".
	DataDir string `yaml:"data_dir"`
	// HTTPListen is the management API, Pusher and SSE listener. Default ":15672".
	// "" disables HTTP.
	HTTPListen string `yaml:"http_listen"`
	// AMQPListen is the AMQP 0-9-1 listener. Default ":5672". "" disables AMQP.
	AMQPListen string `yaml:"amqp_listen"`
	// Fsync is "always" (default: an acknowledged message is on stable
	// storage first, many messages sharing each fsync; survives an OS crash
	// or power loss) or "interval" (sync every SyncInterval; an acknowledged
	// message survives a process crash, not an OS crash; faster).
	Fsync string `yaml:"fsync"`
	// SyncInterval applies to Fsync "interval". Default 2m.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text (default) or json.
	LogFormat string `yaml:"log_format"`
	// ShutdownTimeout bounds the graceful drain on SIGTERM/SIGINT before
	// connections are cut. Default 15s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// PprofListen serves net/http/pprof on "host:port" for profiling.
	// Default "" (off). Bind it to loopback: it is unauthenticated.
	PprofListen string `yaml:"pprof_listen"`

	Cluster ClusterConfig `yaml:"cluster"`
	Limits  LimitsConfig  `yaml:"limits"`

	// PusherApps are Pusher Channels apps as "ID:KEY:SECRET".
	PusherApps []string `yaml:"pusher_apps"`

	// WebhookAllowPrivateTargets are CIDRs (or single IPs) webhook and WebSub
	// deliveries may reach although they are loopback, private, link-local or
	// metadata addresses. Default none.
	WebhookAllowPrivateTargets []string `yaml:"webhook_allow_private_targets"`

	WebSub WebSubConfig `yaml:"websub"`
}

// WebSubConfig configures the WebSub hub (POST /websub/hub).
type WebSubConfig struct {
	// HubURL is the hub's public URL, sent as Link rel="hub" on content
	// distribution. Default "": derived from each subscription request
	// (scheme://Host/websub/hub); set it behind a reverse proxy.
	HubURL string `yaml:"hub_url"`
	// LeaseDefault is the lease granted when a subscriber asks for none.
	// Default 240h (10 days).
	LeaseDefault time.Duration `yaml:"lease_default"`
	// LeaseMin and LeaseMax bound the lease a subscriber asks for (clamped).
	// Default 5m and 720h (30 days).
	LeaseMin time.Duration `yaml:"lease_min"`
	LeaseMax time.Duration `yaml:"lease_max"`
}

// ClusterConfig makes several Herald processes one cluster.
type ClusterConfig struct {
	// NodeName names this node. Default "herald-" + hostname.
	NodeName string `yaml:"node_name"`
	// Name is the cluster name. Default "herald".
	Name string `yaml:"name"`
	// Listen is "host:port" for cluster routes. "" means standalone.
	Listen string `yaml:"listen"`
	// Routes are the other nodes' Listen addresses.
	Routes []string `yaml:"routes"`
	// NATSURL uses an existing NATS cluster instead of the embedded engine.
	NATSURL string `yaml:"nats_url"`
	// NodeTimeout is how long a node may write no heartbeat (it writes one
	// every NodeTimeout/5) before the other nodes take over its queues and
	// delayed messages. A node that stops hands over at once. Default 15s;
	// at least 1s.
	NodeTimeout time.Duration `yaml:"node_timeout"`
}

// LimitsConfig bounds resources. 0 means the documented default.
type LimitsConfig struct {
	// MaxMessageBytes bounds a message body in bytes. Default 16 MiB; at most
	// 63 MiB (the engine's record limit is 64 MiB, and a record carries the
	// message's properties and headers too).
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MemoryBudget bounds message bodies kept in memory; beyond it they are
	// read back from disk on delivery. Default 256 MiB.
	MemoryBudget int64 `yaml:"memory_budget"`
	// MaxConnections bounds client connections per face. Default 10,000 AMQP.
	MaxConnections int `yaml:"max_connections"`
	// MaxQueues bounds queues. Default 100,000.
	MaxQueues int `yaml:"max_queues"`
	// MemoryHighWatermark blocks publishers (connection.blocked) when the
	// process heap exceeds it. Default 0 = 40% of physical memory.
	MemoryHighWatermark int64 `yaml:"memory_high_watermark"`
	// DiskFreeLimit blocks publishers when free disk space under DataDir
	// falls below it. Default 50 MB (RabbitMQ's default).
	DiskFreeLimit int64 `yaml:"disk_free_limit"`
}

// Default returns the defaults.
func Default() Config {
	return Config{
		DataDir:         "./herald-data",
		HTTPListen:      ":15672",
		AMQPListen:      ":5672",
		Fsync:           "always",
		SyncInterval:    2 * time.Minute,
		LogLevel:        "info",
		LogFormat:       "text",
		ShutdownTimeout: 15 * time.Second,
		Cluster:         ClusterConfig{Name: "herald"},
		Limits:          LimitsConfig{DiskFreeLimit: 50_000_000},
		WebSub:          WebSubConfig{LeaseDefault: 240 * time.Hour, LeaseMin: 5 * time.Minute, LeaseMax: 720 * time.Hour},
	}
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// Load builds the configuration for `herald serve` from args (without the
// subcommand) and the environment lookup (os.LookupEnv in production).
func Load(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("herald serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := Default()
	var (
		file               string
		flagCfg            Config
		pusherApps, routes stringList
		webhookAllow       string
	)
	fs.StringVar(&file, "config", "", "YAML config file (env HERALD_CONFIG)")
	fs.StringVar(&flagCfg.DataDir, "data-dir", d.DataDir, "data directory")
	fs.StringVar(&flagCfg.HTTPListen, "http-listen", d.HTTPListen, "HTTP listen address (management API, Pusher, SSE); empty disables")
	fs.StringVar(&flagCfg.AMQPListen, "amqp-listen", d.AMQPListen, "AMQP 0-9-1 listen address; empty disables")
	fs.StringVar(&flagCfg.Fsync, "fsync", d.Fsync, "fsync policy: always (synced before the confirm, group commit: survives an OS crash or power loss) or interval (synced every --sync-interval: survives a process crash only)")
	fs.DurationVar(&flagCfg.SyncInterval, "sync-interval", d.SyncInterval, "sync interval for --fsync=interval")
	fs.StringVar(&flagCfg.LogLevel, "log-level", d.LogLevel, "debug, info, warn or error")
	fs.StringVar(&flagCfg.LogFormat, "log-format", d.LogFormat, "text or json")
	fs.DurationVar(&flagCfg.ShutdownTimeout, "shutdown-timeout", d.ShutdownTimeout, "graceful shutdown bound")
	fs.StringVar(&flagCfg.PprofListen, "pprof-listen", "", "serve net/http/pprof on host:port (off when empty; unauthenticated, bind to loopback)")
	fs.StringVar(&flagCfg.Cluster.NodeName, "node-name", "", "node name (default herald-<hostname>)")
	fs.StringVar(&flagCfg.Cluster.Name, "cluster-name", d.Cluster.Name, "cluster name")
	fs.StringVar(&flagCfg.Cluster.Listen, "cluster-listen", "", "host:port for cluster routes; empty = standalone")
	fs.Var(&routes, "cluster-route", "another node's cluster address (repeatable)")
	fs.StringVar(&flagCfg.Cluster.NATSURL, "nats-url", "", "use an external NATS cluster instead of the embedded engine")
	fs.DurationVar(&flagCfg.Cluster.NodeTimeout, "node-timeout", 0, "cluster: silence after which a node's queues move to the others (0 = 15s)")
	fs.IntVar(&flagCfg.Limits.MaxMessageBytes, "max-message-bytes", 0, "max message body bytes (0 = 16 MiB)")
	fs.Int64Var(&flagCfg.Limits.MemoryBudget, "memory-budget", 0, "bytes of message bodies kept in memory (0 = 256 MiB)")
	fs.IntVar(&flagCfg.Limits.MaxConnections, "max-connections", 0, "max client connections per face (0 = 10000)")
	fs.Var(&pusherApps, "pusher-app", "Pusher app as ID:KEY:SECRET (repeatable)")
	fs.StringVar(&webhookAllow, "webhook-allow-private-targets", "", "CIDR,... that webhook deliveries may reach although private, loopback or link-local")
	fs.StringVar(&flagCfg.WebSub.HubURL, "websub-hub-url", "", "public URL of the WebSub hub for Link rel=hub (default: from each request)")
	fs.DurationVar(&flagCfg.WebSub.LeaseDefault, "websub-lease-default", d.WebSub.LeaseDefault, "WebSub lease when a subscriber asks none")
	fs.DurationVar(&flagCfg.WebSub.LeaseMin, "websub-lease-min", d.WebSub.LeaseMin, "shortest WebSub lease granted")
	fs.DurationVar(&flagCfg.WebSub.LeaseMax, "websub-lease-max", d.WebSub.LeaseMax, "longest WebSub lease granted")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	flagCfg.PusherApps = pusherApps
	flagCfg.WebhookAllowPrivateTargets = splitList(webhookAllow)
	flagCfg.Cluster.Routes = routes

	cfg := Default()
	if file == "" {
		file, _ = lookupEnv("HERALD_CONFIG")
	}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return Config{}, fmt.Errorf("reading config file: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	if err := applyEnv(&cfg, lookupEnv); err != nil {
		return Config{}, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	overlay := map[string]func(){
		"data-dir":             func() { cfg.DataDir = flagCfg.DataDir },
		"http-listen":          func() { cfg.HTTPListen = flagCfg.HTTPListen },
		"amqp-listen":          func() { cfg.AMQPListen = flagCfg.AMQPListen },
		"fsync":                func() { cfg.Fsync = flagCfg.Fsync },
		"sync-interval":        func() { cfg.SyncInterval = flagCfg.SyncInterval },
		"log-level":            func() { cfg.LogLevel = flagCfg.LogLevel },
		"log-format":           func() { cfg.LogFormat = flagCfg.LogFormat },
		"shutdown-timeout":     func() { cfg.ShutdownTimeout = flagCfg.ShutdownTimeout },
		"pprof-listen":         func() { cfg.PprofListen = flagCfg.PprofListen },
		"node-name":            func() { cfg.Cluster.NodeName = flagCfg.Cluster.NodeName },
		"cluster-name":         func() { cfg.Cluster.Name = flagCfg.Cluster.Name },
		"cluster-listen":       func() { cfg.Cluster.Listen = flagCfg.Cluster.Listen },
		"cluster-route":        func() { cfg.Cluster.Routes = flagCfg.Cluster.Routes },
		"nats-url":             func() { cfg.Cluster.NATSURL = flagCfg.Cluster.NATSURL },
		"node-timeout":         func() { cfg.Cluster.NodeTimeout = flagCfg.Cluster.NodeTimeout },
		"max-message-bytes":    func() { cfg.Limits.MaxMessageBytes = flagCfg.Limits.MaxMessageBytes },
		"memory-budget":        func() { cfg.Limits.MemoryBudget = flagCfg.Limits.MemoryBudget },
		"max-connections":      func() { cfg.Limits.MaxConnections = flagCfg.Limits.MaxConnections },
		"pusher-app":           func() { cfg.PusherApps = flagCfg.PusherApps },
		"websub-hub-url":       func() { cfg.WebSub.HubURL = flagCfg.WebSub.HubURL },
		"websub-lease-default": func() { cfg.WebSub.LeaseDefault = flagCfg.WebSub.LeaseDefault },
		"websub-lease-min":     func() { cfg.WebSub.LeaseMin = flagCfg.WebSub.LeaseMin },
		"websub-lease-max":     func() { cfg.WebSub.LeaseMax = flagCfg.WebSub.LeaseMax },
		"webhook-allow-private-targets": func() {
			cfg.WebhookAllowPrivateTargets = flagCfg.WebhookAllowPrivateTargets
		},
	}
	for name, apply := range overlay {
		if set[name] {
			apply()
		}
	}
	return cfg, cfg.Validate()
}

// applyEnv overlays HERALD_* variables (HERALD_DATA_DIR, HERALD_HTTP_LISTEN,
// HERALD_AMQP_LISTEN, HERALD_FSYNC, HERALD_LOG_LEVEL, HERALD_LOG_FORMAT,
// HERALD_NODE_NAME, HERALD_CLUSTER_LISTEN, HERALD_CLUSTER_ROUTES (comma
// separated), HERALD_NATS_URL, HERALD_PUSHER_APPS (comma separated),
// HERALD_MAX_MESSAGE_BYTES, HERALD_MEMORY_BUDGET, HERALD_SHUTDOWN_TIMEOUT,
// HERALD_WEBHOOK_ALLOW_PRIVATE_TARGETS (comma separated), HERALD_WEBSUB_HUB_URL,
// HERALD_WEBSUB_LEASE_DEFAULT, HERALD_WEBSUB_LEASE_MIN, HERALD_WEBSUB_LEASE_MAX).
func applyEnv(cfg *Config, lookup func(string) (string, bool)) error {
	str := map[string]*string{
		"HERALD_DATA_DIR":       &cfg.DataDir,
		"HERALD_HTTP_LISTEN":    &cfg.HTTPListen,
		"HERALD_AMQP_LISTEN":    &cfg.AMQPListen,
		"HERALD_FSYNC":          &cfg.Fsync,
		"HERALD_LOG_LEVEL":      &cfg.LogLevel,
		"HERALD_LOG_FORMAT":     &cfg.LogFormat,
		"HERALD_NODE_NAME":      &cfg.Cluster.NodeName,
		"HERALD_CLUSTER_LISTEN": &cfg.Cluster.Listen,
		"HERALD_NATS_URL":       &cfg.Cluster.NATSURL,
		"HERALD_WEBSUB_HUB_URL": &cfg.WebSub.HubURL,
	}
	for k, p := range str {
		if v, ok := lookup(k); ok {
			*p = v
		}
	}
	for k, p := range map[string]*[]string{"HERALD_CLUSTER_ROUTES": &cfg.Cluster.Routes, "HERALD_PUSHER_APPS": &cfg.PusherApps,
		"HERALD_WEBHOOK_ALLOW_PRIVATE_TARGETS": &cfg.WebhookAllowPrivateTargets} {
		if v, ok := lookup(k); ok && v != "" {
			*p = strings.Split(v, ",")
		}
	}
	if v, ok := lookup("HERALD_MAX_MESSAGE_BYTES"); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("HERALD_MAX_MESSAGE_BYTES: %w", err)
		}
		cfg.Limits.MaxMessageBytes = n
	}
	if v, ok := lookup("HERALD_MEMORY_BUDGET"); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("HERALD_MEMORY_BUDGET: %w", err)
		}
		cfg.Limits.MemoryBudget = n
	}
	for k, p := range map[string]*time.Duration{"HERALD_WEBSUB_LEASE_DEFAULT": &cfg.WebSub.LeaseDefault,
		"HERALD_WEBSUB_LEASE_MIN": &cfg.WebSub.LeaseMin, "HERALD_WEBSUB_LEASE_MAX": &cfg.WebSub.LeaseMax,
		"HERALD_NODE_TIMEOUT": &cfg.Cluster.NodeTimeout} {
		if v, ok := lookup(k); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			*p = d
		}
	}
	if v, ok := lookup("HERALD_SHUTDOWN_TIMEOUT"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("HERALD_SHUTDOWN_TIMEOUT: %w", err)
		}
		cfg.ShutdownTimeout = d
	}
	return nil
}

// Validate checks the configuration and names the first bad field.
func (c Config) Validate() error {
	if c.DataDir == "" && c.Cluster.NATSURL == "" {
		return errors.New("data_dir: required")
	}
	for name, addr := range map[string]string{"http_listen": c.HTTPListen, "amqp_listen": c.AMQPListen, "cluster.listen": c.Cluster.Listen, "pprof_listen": c.PprofListen} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s: %q is not host:port: %v", name, addr, err)
		}
	}
	if c.Fsync != "interval" && c.Fsync != "always" {
		return fmt.Errorf("fsync: must be interval or always, got %q", c.Fsync)
	}
	if c.SyncInterval < 0 {
		return fmt.Errorf("sync_interval: must not be negative")
	}
	if c.Cluster.NodeTimeout != 0 && c.Cluster.NodeTimeout < time.Second {
		return fmt.Errorf("cluster.node_timeout: must be at least 1s (or 0 for the default 15s), got %s", c.Cluster.NodeTimeout)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level: must be debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("log_format: must be text or json, got %q", c.LogFormat)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("shutdown_timeout: must be positive")
	}
	if c.Limits.MaxMessageBytes < 0 || c.Limits.MemoryBudget < 0 || c.Limits.MaxConnections < 0 || c.Limits.MaxQueues < 0 {
		return fmt.Errorf("limits: values must not be negative")
	}
	if c.Limits.MaxMessageBytes > MaxMessageBytesLimit {
		return fmt.Errorf("limits.max_message_bytes: %d is over the %d byte limit", c.Limits.MaxMessageBytes, MaxMessageBytesLimit)
	}
	for i, a := range c.PusherApps {
		if strings.Count(a, ":") != 2 {
			return fmt.Errorf("pusher_apps[%d]: must be ID:KEY:SECRET", i)
		}
	}
	if _, err := c.WebhookAllowPrefixes(); err != nil {
		return err
	}
	return c.WebSub.validate()
}

func (w WebSubConfig) validate() error {
	if w.HubURL != "" {
		u, err := url.Parse(w.HubURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("websub.hub_url: must be an absolute http or https URL, got %q", w.HubURL)
		}
	}
	switch {
	case w.LeaseMin < time.Second:
		return fmt.Errorf("websub.lease_min: must be at least 1s, got %s", w.LeaseMin)
	case w.LeaseMax < w.LeaseMin:
		return fmt.Errorf("websub.lease_max: must not be below lease_min (%s), got %s", w.LeaseMin, w.LeaseMax)
	case w.LeaseDefault < w.LeaseMin || w.LeaseDefault > w.LeaseMax:
		return fmt.Errorf("websub.lease_default: must be within [lease_min %s, lease_max %s], got %s", w.LeaseMin, w.LeaseMax, w.LeaseDefault)
	}
	return nil
}

// WebhookAllowPrefixes parses WebhookAllowPrivateTargets; a bare IP is a
// single-address prefix.
func (c Config) WebhookAllowPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, v := range c.WebhookAllowPrivateTargets {
		v = strings.TrimSpace(v)
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return nil, fmt.Errorf("webhook_allow_private_targets[%d]: %q is not a CIDR or an IP", i, v)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// splitList splits a comma-separated flag value; "" is no values.
func splitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// MaxMessageBytesLimit is the largest Limits.MaxMessageBytes accepted.
const MaxMessageBytesLimit = 63 << 20
