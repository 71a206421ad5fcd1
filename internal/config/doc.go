// Package config is Herald's one configuration tree. Load reads, in rising
// precedence, the defaults, an optional YAML file (--config), HERALD_*
// environment variables and command-line flags; Validate checks the result
// once and names the bad field.
package config
