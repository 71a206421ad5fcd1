package realtime

import (
	"encoding/json"
	"testing"
)

// FuzzClientMessage feeds arbitrary frames to the Pusher message handler of
// a connection whose output is discarded: nothing may panic, and the hub's
// invariants must hold afterwards.
func FuzzClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"event":"pusher:ping","data":{}}`,
		`{"event":"pusher:subscribe","data":{"channel":"news"}}`,
		`{"event":"pusher:subscribe","data":"{\"channel\":\"presence-x\",\"channel_data\":\"{\\\"user_id\\\":1}\"}"}`,
		`{"event":"pusher:unsubscribe","data":{"channel":"news"}}`,
		`{"event":"client-x","channel":"private-a","data":{"a":1}}`,
		`{"event":"pusher:signin","data":{"user_data":"{\"id\":\"1\"}","auth":"k:0"}}`,
		`{"event":"herald:resume","data":{"channel":"news","since":"x-1"}}`,
		`{"event":"pusher:subscribe","data":{"channel":"news","resume_from":"0-0"}}`,
		`[]`, `null`, `{"event":7}`,
	} {
		f.Add([]byte(s))
	}
	b := setup(f)
	h := b.srv.hubs[0]
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &wsConn{srv: b.srv, h: h, id: "1.1"}
		c.q.closed = true // discard output: there is no socket
		c.handle(data)
		c.handle(data)
		c.cleanup()
		h.mu.RLock()
		defer h.mu.RUnlock()
		for name, ch := range h.channels {
			ch.mu.Lock()
			for i, s := range ch.subs {
				if s.idx != i || s.ch != ch {
					t.Fatalf("channel %q: subscription index broken", name)
				}
				if s.t == transport(c) {
					t.Fatalf("channel %q: closed connection still subscribed", name)
				}
			}
			ch.mu.Unlock()
		}
	})
}

// FuzzTriggerBody checks the HTTP API's event validation on arbitrary JSON.
func FuzzTriggerBody(f *testing.F) {
	f.Add([]byte(`{"name":"e","channel":"c","data":"x"}`))
	f.Add([]byte(`{"name":"e","channels":["a","b"],"data":{"k":1},"socket_id":"1.2"}`))
	f.Add([]byte(`{"name":"","channels":[],"data":"\u2028"}`))
	s, err := New(Config{Apps: []App{testApp}, Logger: testLogger(f)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var tr triggerReq
		if json.Unmarshal(body, &tr) != nil {
			return
		}
		data, err := s.validTrigger(&tr)
		if err != nil {
			return
		}
		if len(data) > s.cfg.MaxMessageBytes || len(tr.Channels) == 0 || tr.Name == "" {
			t.Fatalf("accepted an invalid trigger: %s", body)
		}
		for _, c := range tr.Channels {
			if validChannel(c) != nil {
				t.Fatalf("accepted channel %q", c)
			}
		}
		// Encoded frames are valid JSON for any accepted data.
		e := &event{name: tr.Name, channel: tr.Channels[0], data: data, id: "a-1"}
		var m map[string]any
		if err := json.Unmarshal(e.wsFrame(), &m); err != nil {
			t.Fatalf("frame is not JSON: %v: %s", err, e.wsFrame())
		}
	})
}

// FuzzEventID checks that ids round-trip and that parsing never panics.
func FuzzEventID(f *testing.F) {
	f.Add("abc", uint64(7), "abc-7")
	f.Fuzz(func(t *testing.T, epoch string, seq uint64, raw string) {
		_, _, _ = parseEventID(raw)
		if epoch == "" {
			return
		}
		e, s, ok := parseEventID(eventID(epoch, seq))
		if !ok || e != epoch || s != seq {
			t.Fatalf("round trip of %q %d: %q %d %v", epoch, seq, e, s, ok)
		}
	})
}
