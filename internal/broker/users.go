package broker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"sort"

	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/errs"
)

// HashPassword returns RabbitMQ's rabbit_password_hashing_sha256 form:
// base64(salt(4) + sha256(salt + password)).
func HashPassword(pass string) string {
	var salt [4]byte
	_, _ = rand.Read(salt[:])
	return hashWithSalt(salt[:], pass)
}

func hashWithSalt(salt []byte, pass string) string {
	h := sha256.Sum256(append(append([]byte{}, salt...), pass...))
	return base64.StdEncoding.EncodeToString(append(append([]byte{}, salt...), h[:]...))
}

func checkPassword(hash, pass string) bool {
	raw, err := base64.StdEncoding.DecodeString(hash)
	if err != nil || len(raw) != 4+sha256.Size {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(hashWithSalt(raw[:4], pass)), []byte(hash)) == 1
}

type compiledPerm struct {
	Permission
	conf, write, read *regexp.Regexp
}

func compilePerm(p Permission) (*compiledPerm, error) {
	cp := &compiledPerm{Permission: p}
	for _, f := range []struct {
		src string
		dst **regexp.Regexp
		nm  string
	}{{p.Configure, &cp.conf, "configure"}, {p.Write, &cp.write, "write"}, {p.Read, &cp.read, "read"}} {
		if f.src == "" {
			continue // "" grants nothing
		}
		re, err := regexp.Compile(f.src)
		if err != nil {
			return nil, errs.New(errs.BadArgument, "invalid %s regular expression: %v", f.nm, err)
		}
		*f.dst = re
	}
	return cp, nil
}

func (b *core) users() []User {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]User, 0, len(b.usersM))
	for _, u := range b.usersM {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (b *core) putUser(ctx context.Context, u User) error {
	if u.Name == "" || len(u.Name) > 255 {
		return errs.New(errs.BadArgument, "user name must be 1 to 255 bytes")
	}
	switch {
	case u.Password != "":
		u.PasswordHash = HashPassword(u.Password)
	case u.PasswordHash != "":
		if raw, err := base64.StdEncoding.DecodeString(u.PasswordHash); err != nil || len(raw) != 4+sha256.Size {
			return errs.New(errs.BadArgument, "password_hash must be base64 of a 4-byte salt and a SHA-256 digest")
		}
	}
	u.Password = ""
	if u.Tags == nil {
		u.Tags = []string{}
	}
	return b.putMeta(ctx, "u."+keyName(u.Name), u)
}

func (b *core) deleteUser(ctx context.Context, name string) error {
	b.mu.RLock()
	_, ok := b.usersM[name]
	var keys []string
	for vhName, m := range b.perms {
		if _, has := m[name]; has {
			if vh := b.vhostsM[vhName]; vh != nil {
				keys = append(keys, "p."+vh.id+"."+keyName(name))
			}
		}
	}
	b.mu.RUnlock()
	if !ok {
		return errs.New(errs.NotFound, "no user '%s'", name)
	}
	for _, k := range keys {
		if err := b.deleteMeta(ctx, k); err != nil {
			return err
		}
	}
	return b.deleteMeta(ctx, "u."+keyName(name))
}

func (b *core) authenticate(user, pass string) (User, error) {
	b.mu.RLock()
	u, ok := b.usersM[user]
	b.mu.RUnlock()
	if !ok || u.PasswordHash == "" || !checkPassword(u.PasswordHash, pass) {
		return User{}, errs.New(errs.Unauthorized, "login refused for user '%s': invalid credentials", user)
	}
	return u, nil
}

func (b *core) applyUserLocked(e engine.Entry) {
	_, _, kn, _ := splitKey(e.Key)
	raw, _ := base64.RawURLEncoding.DecodeString(kn)
	if e.Deleted {
		delete(b.usersM, string(raw))
		return
	}
	var u User
	if json.Unmarshal(e.Value, &u) == nil {
		b.usersM[u.Name] = u
	}
}

func (b *core) permissions() []Permission {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []Permission
	for _, m := range b.perms {
		for _, p := range m {
			out = append(out, p.Permission)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].VHost != out[j].VHost {
			return out[i].VHost < out[j].VHost
		}
		return out[i].User < out[j].User
	})
	return out
}

func (b *core) setPermission(ctx context.Context, p Permission) error {
	if _, err := compilePerm(p); err != nil {
		return err
	}
	b.mu.RLock()
	vh := b.vhostsM[p.VHost]
	_, uok := b.usersM[p.User]
	b.mu.RUnlock()
	if vh == nil {
		return errs.New(errs.NotFound, "no vhost '%s'", p.VHost)
	}
	if !uok {
		return errs.New(errs.NotFound, "no user '%s'", p.User)
	}
	return b.putMeta(ctx, "p."+vh.id+"."+keyName(p.User), p)
}

func (b *core) deletePermission(ctx context.Context, user, vhostName string) error {
	b.mu.RLock()
	vh := b.vhostsM[vhostName]
	_, ok := b.perms[vhostName][user]
	b.mu.RUnlock()
	if vh == nil || !ok {
		return errs.New(errs.NotFound, "no permission for user '%s' on vhost '%s'", user, vhostName)
	}
	return b.deleteMeta(ctx, "p."+vh.id+"."+keyName(user))
}

func (b *core) applyPermLocked(e engine.Entry) {
	_, vid, kn, _ := splitKey(e.Key)
	vh := b.vhostByID(vid)
	if vh == nil {
		return
	}
	raw, _ := base64.RawURLEncoding.DecodeString(kn)
	if e.Deleted {
		delete(b.perms[vh.name], string(raw))
		return
	}
	var p Permission
	if json.Unmarshal(e.Value, &p) != nil {
		return
	}
	cp, err := compilePerm(p)
	if err != nil {
		return
	}
	if b.perms[vh.name] == nil {
		b.perms[vh.name] = map[string]*compiledPerm{}
	}
	b.perms[vh.name][p.User] = cp
}

func (b *core) authorize(user, vhostName string, a Access, resource string) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if _, ok := b.vhostsM[vhostName]; !ok {
		return errs.New(errs.NotFound, "no vhost '%s'", vhostName)
	}
	p := b.perms[vhostName][user]
	if p == nil {
		return errs.New(errs.AccessRefused, "access to vhost '%s' refused for user '%s'", vhostName, user)
	}
	if resource == VHostResource {
		return nil
	}
	name := resource
	if name == "" {
		name = "amq.default"
	}
	var re *regexp.Regexp
	var what string
	switch a {
	case AccessConfigure:
		re, what = p.conf, "configure"
	case AccessWrite:
		re, what = p.write, "write"
	default:
		re, what = p.read, "read"
	}
	if re == nil || !re.MatchString(name) {
		return errs.New(errs.AccessRefused, "%s access to '%s' in vhost '%s' refused for user '%s'", what, resource, vhostName, user)
	}
	return nil
}
