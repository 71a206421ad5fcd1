package httpapi

import (
	"encoding/base64"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

// hashingAlgorithm is the only password hashing Herald stores.
const hashingAlgorithm = "rabbit_password_hashing_sha256"

// sha256HashLen is the decoded length of a rabbit_password_hashing_sha256
// hash: a 4-byte salt and a SHA-256 digest.
const sha256HashLen = 4 + 32

func errAccessRefused(reason string) error { return errs.New(errs.AccessRefused, "%s", reason) }

type userJSON struct {
	Name             string         `json:"name"`
	PasswordHash     string         `json:"password_hash"`
	HashingAlgorithm string         `json:"hashing_algorithm"`
	Tags             []string       `json:"tags"`
	Limits           map[string]any `json:"limits"`
}

func userView(u broker.User) userJSON {
	return userJSON{
		Name: u.Name, PasswordHash: u.PasswordHash, HashingAlgorithm: hashingAlgorithm,
		Tags: nonNil(u.Tags), Limits: map[string]any{},
	}
}

func (a *API) findUser(name string) (broker.User, bool) {
	users := a.b.Users()
	i := slices.IndexFunc(users, func(u broker.User) bool { return u.Name == name })
	if i < 0 {
		return broker.User{}, false
	}
	return users[i], true
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request, p *principal) error {
	out := []userJSON{}
	for _, u := range a.b.Users() {
		out = append(out, userView(u))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, ok := a.findUser(r.PathValue("user"))
	if !ok {
		return errNotFound
	}
	writeJSON(w, http.StatusOK, userView(u))
	return nil
}

// userBody is PUT /api/users/{user}. tags is a comma-separated string or an
// array of strings.
type userBody struct {
	Password         *string `json:"password"`
	PasswordHash     *string `json:"password_hash"`
	HashingAlgorithm string  `json:"hashing_algorithm"`
	Tags             any     `json:"tags"`
}

func parseTags(v any) ([]string, error) {
	var raw []string
	switch v := v.(type) {
	case nil:
	case string:
		raw = strings.Split(v, ",")
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, errs.New(errs.BadArgument, "tags must be strings")
			}
			raw = append(raw, s)
		}
	default:
		return nil, errs.New(errs.BadArgument, "tags must be a comma-separated string or an array of strings")
	}
	tags := []string{}
	for _, t := range raw {
		if t = strings.TrimSpace(t); t != "" && !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	return tags, nil
}

func (a *API) putUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("user")
	if err := checkName("user", name); err != nil {
		return err
	}
	var body userBody
	if err := a.decodeBody(w, r, &body); err != nil {
		return err
	}
	tags, err := parseTags(body.Tags)
	if err != nil {
		return err
	}
	if body.HashingAlgorithm != "" && body.HashingAlgorithm != hashingAlgorithm {
		return errs.New(errs.BadArgument, "hashing_algorithm must be %s", hashingAlgorithm)
	}
	existing, exists := a.findUser(name)
	u := broker.User{Name: name, Tags: tags}
	switch {
	case body.Password != nil && body.PasswordHash != nil:
		return errs.New(errs.BadArgument, "give password or password_hash, not both")
	case body.Password != nil:
		if *body.Password == "" {
			return errs.New(errs.BadArgument, "password must not be empty")
		}
		u.Password = *body.Password
	case body.PasswordHash != nil:
		raw, err := base64.StdEncoding.DecodeString(*body.PasswordHash)
		if err != nil || len(raw) != sha256HashLen {
			return errs.New(errs.BadArgument, "password_hash must be base64 of a 4-byte salt and a SHA-256 digest (%s)", hashingAlgorithm)
		}
		u.PasswordHash = *body.PasswordHash
	case exists:
		u.PasswordHash = existing.PasswordHash // update tags only
	default:
		return errs.New(errs.BadArgument, "password or password_hash is required to create a user")
	}
	if err := a.b.PutUser(r.Context(), u); err != nil {
		return err
	}
	writeCreated(w, !exists)
	return nil
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("user")
	if _, ok := a.findUser(name); !ok {
		return errNotFound
	}
	if err := a.b.DeleteUser(r.Context(), name); err != nil {
		return notFoundAsRabbit(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- permissions

type permissionJSON struct {
	User      string `json:"user"`
	VHost     string `json:"vhost"`
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

func permissionView(p broker.Permission) permissionJSON {
	return permissionJSON{User: p.User, VHost: p.VHost, Configure: p.Configure, Write: p.Write, Read: p.Read}
}

func (a *API) writePermissions(w http.ResponseWriter, keep func(broker.Permission) bool) {
	out := []permissionJSON{}
	for _, p := range a.b.Permissions() {
		if keep(p) {
			out = append(out, permissionView(p))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) listPermissions(w http.ResponseWriter, r *http.Request, p *principal) error {
	a.writePermissions(w, func(broker.Permission) bool { return true })
	return nil
}

func (a *API) listUserPermissions(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("user")
	if _, ok := a.findUser(name); !ok {
		return errNotFound
	}
	a.writePermissions(w, func(perm broker.Permission) bool { return perm.User == name })
	return nil
}

func (a *API) listVHostPermissions(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, err := a.pathVHost(r)
	if err != nil {
		return err
	}
	a.writePermissions(w, func(perm broker.Permission) bool { return perm.VHost == vhost })
	return nil
}

func (a *API) findPermission(vhost, user string) (broker.Permission, bool) {
	for _, p := range a.b.Permissions() {
		if p.VHost == vhost && p.User == user {
			return p, true
		}
	}
	return broker.Permission{}, false
}

func (a *API) getPermission(w http.ResponseWriter, r *http.Request, p *principal) error {
	perm, ok := a.findPermission(r.PathValue("vhost"), r.PathValue("user"))
	if !ok {
		return errNotFound
	}
	writeJSON(w, http.StatusOK, permissionView(perm))
	return nil
}

// permissionBody is PUT /api/permissions/{vhost}/{user}; all three
// regular expressions are required, as in RabbitMQ.
type permissionBody struct {
	Configure *string `json:"configure"`
	Write     *string `json:"write"`
	Read      *string `json:"read"`
}

func (a *API) putPermission(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, err := a.pathVHost(r)
	if err != nil {
		return err
	}
	user := r.PathValue("user")
	var body permissionBody
	if err := a.decodeBody(w, r, &body); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		re   *string
	}{{"configure", body.Configure}, {"write", body.Write}, {"read", body.Read}} {
		if f.re == nil {
			return errs.New(errs.BadArgument, "%s is required", f.name)
		}
		if _, err := regexp.Compile(*f.re); err != nil {
			return errs.New(errs.BadArgument, "%s is not a valid regular expression: %s", f.name, truncateForError(*f.re))
		}
	}
	if _, ok := a.findUser(user); !ok {
		return errs.New(errs.BadArgument, "no such user %q", user)
	}
	_, existed := a.findPermission(vhost, user)
	if err := a.b.SetPermission(r.Context(), broker.Permission{
		User: user, VHost: vhost, Configure: *body.Configure, Write: *body.Write, Read: *body.Read,
	}); err != nil {
		return err
	}
	writeCreated(w, !existed)
	return nil
}

func (a *API) deletePermission(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, user := r.PathValue("vhost"), r.PathValue("user")
	if _, ok := a.findPermission(vhost, user); !ok {
		return errNotFound
	}
	if err := a.b.DeletePermission(r.Context(), user, vhost); err != nil {
		return notFoundAsRabbit(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
