package config

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Load(nil, env(nil), os.Stderr)
	require.NoError(t, err)
	require.Equal(t, "./herald-data", cfg.DataDir)
	require.Equal(t, ":15672", cfg.HTTPListen)
	require.Equal(t, ":5672", cfg.AMQPListen)
	require.Equal(t, "always", cfg.Fsync)
}

func TestPrecedenceFileEnvFlags(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(file, []byte("data_dir: /from-file\nhttp_listen: 127.0.0.1:1\namqp_listen: 127.0.0.1:2\nfsync: always\nshutdown_timeout: 3s\n"), 0o600))
	cfg, err := Load([]string{"--config", file, "--amqp-listen", "127.0.0.1:9"},
		env(map[string]string{"HERALD_HTTP_LISTEN": "127.0.0.1:8", "HERALD_PUSHER_APPS": "1:k:s,2:k2:s2"}), os.Stderr)
	require.NoError(t, err)
	require.Equal(t, "/from-file", cfg.DataDir)
	require.Equal(t, "127.0.0.1:8", cfg.HTTPListen) // env beats file
	require.Equal(t, "127.0.0.1:9", cfg.AMQPListen) // flag beats file
	require.Equal(t, "always", cfg.Fsync)
	require.Equal(t, 3*time.Second, cfg.ShutdownTimeout)
	require.Equal(t, []string{"1:k:s", "2:k2:s2"}, cfg.PusherApps)
}

func TestValidateNamesTheField(t *testing.T) {
	t.Parallel()
	for args, want := range map[string]string{
		"--fsync=sometimes":       "fsync:",
		"--http-listen=nonsense":  "http_listen:",
		"--log-level=loud":        "log_level:",
		"--pusher-app=only-an-id": "pusher_apps[0]:",
		"--shutdown-timeout=0s":   "shutdown_timeout:",
		"--websub-lease-max=1m":   "websub.lease_max:",
		"--websub-hub-url=/hub":   "websub.hub_url:",
		"--node-timeout=100ms":    "cluster.node_timeout:",
	} {
		_, err := Load([]string{args}, env(nil), os.Stderr)
		require.ErrorContains(t, err, want, args)
	}
	file := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(file, []byte("no_such_field: 1\n"), 0o600))
	_, err := Load([]string{"--config", file}, env(nil), os.Stderr)
	require.ErrorContains(t, err, "no_such_field")
}

func TestNodeTimeout(t *testing.T) {
	t.Parallel()
	cfg, err := Load(nil, env(nil), os.Stderr)
	require.NoError(t, err)
	require.Zero(t, cfg.Cluster.NodeTimeout) // the broker's default, 15s
	file := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(file, []byte("cluster:\n  node_timeout: 30s\n"), 0o600))
	cfg, err = Load([]string{"--config", file}, env(nil), os.Stderr)
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, cfg.Cluster.NodeTimeout)
	cfg, err = Load([]string{"--config", file}, env(map[string]string{"HERALD_NODE_TIMEOUT": "20s"}), os.Stderr)
	require.NoError(t, err)
	require.Equal(t, 20*time.Second, cfg.Cluster.NodeTimeout)
	cfg, err = Load([]string{"--config", file, "--node-timeout=5s"}, env(map[string]string{"HERALD_NODE_TIMEOUT": "20s"}), os.Stderr)
	require.NoError(t, err)
	require.Equal(t, 5*time.Second, cfg.Cluster.NodeTimeout)
}

func TestWebSubSettings(t *testing.T) {
	t.Parallel()
	cfg, err := Load(nil, env(nil), os.Stderr)
	require.NoError(t, err)
	require.Equal(t, WebSubConfig{LeaseDefault: 240 * time.Hour, LeaseMin: 5 * time.Minute, LeaseMax: 720 * time.Hour}, cfg.WebSub)
	file := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(file, []byte("websub:\n  hub_url: https://hub.example/websub/hub\n  lease_max: 48h\n"), 0o600))
	cfg, err = Load([]string{"--config", file, "--websub-lease-default=1h"},
		env(map[string]string{"HERALD_WEBSUB_LEASE_MIN": "1m"}), os.Stderr)
	require.NoError(t, err)
	require.Equal(t, WebSubConfig{HubURL: "https://hub.example/websub/hub", LeaseDefault: time.Hour, LeaseMin: time.Minute, LeaseMax: 48 * time.Hour}, cfg.WebSub)
}

func TestWebhookAllowPrivateTargets(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(file, []byte("webhook_allow_private_targets: [10.0.0.0/8, 192.168.1.5]\n"), 0o600))
	cfg, err := Load([]string{"--config", file}, env(nil), os.Stderr)
	require.NoError(t, err)
	ps, err := cfg.WebhookAllowPrefixes()
	require.NoError(t, err)
	require.Equal(t, "[10.0.0.0/8 192.168.1.5/32]", fmt.Sprint(ps))

	cfg, err = Load(nil, env(map[string]string{"HERALD_WEBHOOK_ALLOW_PRIVATE_TARGETS": "127.0.0.0/8,fd00::/8"}), os.Stderr)
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.0/8", "fd00::/8"}, cfg.WebhookAllowPrivateTargets)

	cfg, err = Load([]string{"--webhook-allow-private-targets", "172.16.0.0/12"},
		env(map[string]string{"HERALD_WEBHOOK_ALLOW_PRIVATE_TARGETS": "127.0.0.0/8"}), os.Stderr)
	require.NoError(t, err)
	require.Equal(t, []string{"172.16.0.0/12"}, cfg.WebhookAllowPrivateTargets) // flag beats env

	_, err = Load([]string{"--webhook-allow-private-targets", "not-a-cidr"}, env(nil), os.Stderr)
	require.ErrorContains(t, err, "webhook_allow_private_targets[0]")
}
