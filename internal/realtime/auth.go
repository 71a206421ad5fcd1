package realtime

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/errs"
)

func hmacHex(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func equalHex(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }

// SignChannelAuth returns the "auth" value an app's auth endpoint gives a
// client subscribing socketID to a private or presence channel:
// "KEY:" + hex(HMAC-SHA256(secret, "socket_id:channel[:channel_data]")).
// channelData is "" except for presence channels.
func SignChannelAuth(a App, socketID, channel, channelData string) string {
	msg := socketID + ":" + channel
	if channelData != "" {
		msg += ":" + channelData
	}
	return a.Key + ":" + hmacHex(a.Secret, msg)
}

// SignUserAuth returns the "auth" of pusher:signin for userData (a JSON
// string): "KEY:" + hex(HMAC-SHA256(secret, "socket_id::user::user_data")).
func SignUserAuth(a App, socketID, userData string) string {
	return a.Key + ":" + hmacHex(a.Secret, socketID+"::user::"+userData)
}

// checkAuth verifies a "KEY:SIGNATURE" value against the expected message.
func checkAuth(a App, auth, msg string) error {
	key, sig, ok := strings.Cut(auth, ":")
	if !ok || auth == "" {
		return errs.New(errs.Unauthorized, "invalid auth: expected \"KEY:SIGNATURE\"")
	}
	if key != a.Key {
		return errs.New(errs.Unauthorized, "invalid auth: key %q does not belong to this app", key)
	}
	if !equalHex(sig, hmacHex(a.Secret, msg)) {
		return errs.New(errs.Unauthorized, "invalid signature: expected HMAC-SHA256 hex digest of %q", msg)
	}
	return nil
}

// SignSSEToken returns the token a private or presence channel needs over
// SSE (query parameter "auth"): "KEY:EXPIRES:SIGNATURE" where EXPIRES is a
// Unix time in seconds and SIGNATURE is
// hex(HMAC-SHA256(secret, "sse:" + channel + ":" + EXPIRES)).
func SignSSEToken(a App, channel string, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return a.Key + ":" + exp + ":" + hmacHex(a.Secret, "sse:"+channel+":"+exp)
}

func checkSSEToken(a App, channel, token string, now time.Time) error {
	parts := strings.SplitN(token, ":", 3)
	if len(parts) != 3 {
		return errs.New(errs.Unauthorized, "private channel %q needs an auth token KEY:EXPIRES:SIGNATURE", channel)
	}
	if parts[0] != a.Key {
		return errs.New(errs.Unauthorized, "auth token key does not belong to this app")
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return errs.New(errs.Unauthorized, "auth token expiry %q is not a Unix time", parts[1])
	}
	if now.Unix() > exp {
		return errs.New(errs.Unauthorized, "auth token expired at %s", time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	msg := "sse:" + channel + ":" + parts[1]
	if !equalHex(parts[2], hmacHex(a.Secret, msg)) {
		return errs.New(errs.Unauthorized, "invalid auth token signature: expected HMAC-SHA256 hex digest of %q", msg)
	}
	return nil
}

// verifyAPIRequest checks a Pusher HTTP API request signature:
// auth_signature = hex(HMAC-SHA256(secret, METHOD\nPATH\nQUERY)) where QUERY
// is every other query parameter sorted by key as key=value (unescaped)
// joined with &, auth_timestamp is within window of now, and body_md5 is the
// hex MD5 of a non-empty body.
func verifyAPIRequest(a App, r *http.Request, body []byte, now time.Time, window time.Duration) error {
	q := r.URL.Query()
	if q.Get("auth_key") != a.Key {
		return errs.New(errs.Unauthorized, "unknown auth_key")
	}
	if v := q.Get("auth_version"); v != "1.0" {
		return errs.New(errs.Unauthorized, "auth_version must be 1.0, got %q", v)
	}
	ts, err := strconv.ParseInt(q.Get("auth_timestamp"), 10, 64)
	if err != nil {
		return errs.New(errs.Unauthorized, "auth_timestamp %q is not a Unix time", q.Get("auth_timestamp"))
	}
	if d := now.Sub(time.Unix(ts, 0)); d > window || d < -window {
		return errs.New(errs.Unauthorized, "timestamp expired: auth_timestamp %d is more than %d s from the server time %d; check your clock", ts, int(window.Seconds()), now.Unix())
	}
	if len(body) > 0 {
		sum := md5.Sum(body)
		if got, want := q.Get("body_md5"), hex.EncodeToString(sum[:]); got != want {
			return errs.New(errs.Unauthorized, "body_md5 %q does not match the body's MD5 %q", got, want)
		}
	}
	sig := q.Get("auth_signature")
	toSign := apiStringToSign(r.Method, r.URL.Path, q)
	if equalHex(sig, hmacHex(a.Secret, toSign)) {
		return nil
	}
	if raw := r.URL.EscapedPath(); raw != r.URL.Path {
		if equalHex(sig, hmacHex(a.Secret, apiStringToSign(r.Method, raw, q))) {
			return nil
		}
	}
	return errs.New(errs.Unauthorized, "invalid signature: you should have sent HmacSHA256Hex(%q, your_secret_key), but you sent %q", toSign, sig)
}

func apiStringToSign(method, path string, q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		if k != "auth_signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(strings.ToUpper(method))
	b.WriteByte('\n')
	b.WriteString(path)
	b.WriteByte('\n')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(strings.ToLower(k))
		b.WriteByte('=')
		b.WriteString(q.Get(k))
	}
	return b.String()
}

// SignAPIRequest returns the query string (without "?") that signs a Pusher
// HTTP API request, as the Pusher server SDKs do. params are extra query
// parameters (may be nil). Used by tests and Go callers.
func SignAPIRequest(a App, method, path string, params url.Values, body []byte, now time.Time) string {
	q := url.Values{}
	for k, v := range params {
		q[k] = v
	}
	q.Set("auth_key", a.Key)
	q.Set("auth_timestamp", strconv.FormatInt(now.Unix(), 10))
	q.Set("auth_version", "1.0")
	if len(body) > 0 {
		sum := md5.Sum(body)
		q.Set("body_md5", hex.EncodeToString(sum[:]))
	}
	sig := hmacHex(a.Secret, apiStringToSign(method, path, q))
	q.Set("auth_signature", sig)
	return q.Encode()
}

// webhookSignature is X-Pusher-Signature: hex(HMAC-SHA256(secret, body)).
func webhookSignature(secret string, body []byte) string {
	return hmacHex(secret, string(body))
}

// VerifyWebhook checks a webhook request's X-Pusher-Key and
// X-Pusher-Signature headers against body, as a receiver would.
func VerifyWebhook(a App, h http.Header, body []byte) error {
	if h.Get("X-Pusher-Key") != a.Key {
		return fmt.Errorf("webhook: X-Pusher-Key %q is not this app's key", h.Get("X-Pusher-Key"))
	}
	if !equalHex(h.Get("X-Pusher-Signature"), webhookSignature(a.Secret, body)) {
		return fmt.Errorf("webhook: bad X-Pusher-Signature")
	}
	return nil
}
