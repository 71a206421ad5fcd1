package httpapi

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

// FuzzBodies feeds arbitrary bytes to every body parser: none may panic, and
// every refusal must be a 400 (BadArgument).
func FuzzBodies(f *testing.F) {
	for _, s := range []string{
		`{"routing_key":"k","payload":"aGk=","payload_encoding":"base64","properties":{"headers":{"a":[1,{"b":2.5}]}}}`,
		`{"durable":true,"arguments":{"x-max-length":10,"x-overflow":"drop-head"}}`,
		`{"count":3,"ackmode":"reject_requeue_false","encoding":"base64","truncate":5}`,
		`{"password":"pw","tags":["administrator"]}`,
		`{"configure":".*","write":"","read":"^a"}`,
		`{"type":"topic","arguments":{"alternate-exchange":"ae"}}`,
		`{"a":1e400}`, `[`, `null`, ``, `{"durable":"true"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(err error) {
			if err != nil {
				require.Equal(t, errs.BadArgument, errs.KindOf(err), "%v", err)
			}
		}
		var pb publishBody
		if err := decodeJSON(data, &pb); err == nil {
			_, err = pb.message()
			check(err)
		} else {
			check(err)
		}
		var qb queueBody
		if err := decodeJSON(data, &qb); err == nil {
			_, err = tableFromJSON(qb.Arguments)
			check(err)
		} else {
			check(err)
		}
		var gb getBody
		if err := decodeJSON(data, &gb); err == nil {
			_, err = gb.validate(1000)
			check(err)
		} else {
			check(err)
		}
		var ub userBody
		if err := decodeJSON(data, &ub); err == nil {
			_, err = parseTags(ub.Tags)
			check(err)
		} else {
			check(err)
		}
		check(decodeJSON(data, &exchangeBody{}))
		check(decodeJSON(data, &permissionBody{}))
		check(decodeJSON(data, &bindingBody{}))
	})
}

// FuzzPropertiesKey checks that a binding's key has at most one literal "~",
// that its Location form decodes back to it, and that tables survive the
// JSON round trip into a stable hash.
func FuzzPropertiesKey(f *testing.F) {
	f.Add("", "")
	f.Add("a.b.#", "x")
	f.Add("~ /+%", "~")
	f.Fuzz(func(t *testing.T, routingKey, argValue string) {
		var args broker.Table
		if argValue != "" {
			args = broker.Table{"x-arg": argValue}
		}
		key := propertiesKey(routingKey, args)
		require.LessOrEqual(t, strings.Count(key, "~"), 1)
		if args != nil {
			require.Equal(t, 1, strings.Count(key, "~"))
		}
		unescaped, err := url.PathUnescape(url.PathEscape(key))
		require.NoError(t, err)
		require.True(t, matchesPropertiesKey(unescaped, key))
		require.Equal(t, key, propertiesKey(routingKey, args), "deterministic")
	})
}
