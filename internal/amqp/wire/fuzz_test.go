package wire

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// checkFrame decodes a frame the way a server would and, if it decodes,
// checks that encoding and decoding again gives the same values.
func checkFrame(t *testing.T, f Frame) {
	switch f.Type {
	case FrameMethod:
		m, err := ReadMethod(f.Payload)
		if err != nil {
			requireProtocolError(t, err)
			return
		}
		b, err := AppendMethod(nil, m)
		require.NoError(t, err, "re-encoding %s", m.Name())
		m2, err := ReadMethod(b)
		require.NoError(t, err, "decoding re-encoded %s", m.Name())
		require.True(t, sameMethod(m, m2), "%s: %#v != %#v", m.Name(), m, m2)
	case FrameHeader:
		var h ContentHeader
		if err := h.Read(f.Payload); err != nil {
			requireProtocolError(t, err)
			return
		}
		b, err := AppendContentHeader(nil, h.ClassID, h.BodySize, &h.Properties)
		require.NoError(t, err)
		var h2 ContentHeader
		require.NoError(t, h2.Read(b))
		require.True(t, sameValue(h.Properties.Headers, h2.Properties.Headers))
		h.Properties.Headers, h2.Properties.Headers = nil, nil
		h.Weight = 0 // not kept
		require.Equal(t, h, h2)
	}
	// Re-framing reproduces the payload.
	var buf bytes.Buffer
	w := NewWriter(&buf, 1<<20)
	require.NoError(t, w.WriteFrame(f))
	require.NoError(t, w.Flush())
	g, err := NewReader(&buf, 1<<20).ReadFrame()
	require.NoError(t, err)
	require.Equal(t, f.Type, g.Type)
	require.Equal(t, f.Channel, g.Channel)
	require.Equal(t, f.Payload, g.Payload)
}

func requireProtocolError(t testing.TB, err error) {
	t.Helper()
	var pe *Error
	require.ErrorAs(t, err, &pe)
	require.True(t, IsHardError(pe.Code), "code %d", pe.Code)
}

// FuzzFrames feeds arbitrary bytes to the reader and decoders: they must
// never panic, must fail only with protocol errors or end of input, and what
// they decode must round-trip.
func FuzzFrames(f *testing.F) {
	f.Add(writeSampleStream(f, FrameMinSize))
	f.Add([]byte{1, 0, 1, 0, 0, 0, 4, 0, 60, 0, 40, FrameEnd})
	f.Add([]byte{2, 0, 1, 0, 0, 0, 14, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0x20, 0, FrameEnd})
	f.Add([]byte{8, 0, 0, 0, 0, 0, 0, FrameEnd})
	for _, m := range allMethods() {
		fillMethod(rand.New(rand.NewPCG(3, 4)), m)
		var buf bytes.Buffer
		w := NewWriter(&buf, 1<<20)
		require.NoError(f, w.WriteMethod(1, m))
		require.NoError(f, w.Flush())
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), FrameMinSize*4)
		for {
			fr, err := r.ReadFrame()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					requireProtocolError(t, err)
				}
				return
			}
			checkFrame(t, fr)
		}
	})
}

// chunkReader returns its data in reads of the sizes in cuts (cycled; a 0
// returns (0, nil) once).
type chunkReader struct {
	data []byte
	cuts []byte
	i    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.cuts) > 0 {
		n = int(c.cuts[c.i%len(c.cuts)])
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// randomStream writes a valid frame stream chosen by seed.
func randomStream(t testing.TB, seed uint64, frameMax int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	var buf bytes.Buffer
	w := NewWriter(&buf, frameMax)
	ms := allMethods()
	for range 1 + r.IntN(20) {
		ch := uint16(r.IntN(4))
		switch r.IntN(4) {
		case 0:
			require.NoError(t, w.WriteHeartbeat())
		case 1:
			body := make([]byte, r.IntN(3*frameMax))
			for i := range body {
				body[i] = byte(i)
			}
			p := Properties{MessageID: "id", Timestamp: time.Unix(int64(r.Uint32()), 0).UTC(), Headers: Table{"n": int64(r.Int())}}
			require.NoError(t, w.WriteContent(ch, &BasicDeliver{ConsumerTag: "ctag", DeliveryTag: r.Uint64()}, &p, body))
		default:
			m := ms[r.IntN(len(ms))]
			fillMethod(r, m)
			if err := w.WriteMethod(ch, m); err != nil {
				requireProtocolError(t, err) // too large for frameMax: skipped
			}
		}
	}
	require.NoError(t, w.Flush())
	return buf.Bytes()
}

// FuzzSplitStream reads valid frame streams delivered in arbitrary pieces:
// the frames must be exactly those read from the whole stream.
func FuzzSplitStream(f *testing.F) {
	f.Add(uint64(1), []byte{1})
	f.Add(uint64(2), []byte{7, 0, 3, 200})
	f.Add(uint64(3), []byte{255, 1, 0, 0, 13})
	f.Fuzz(func(t *testing.T, seed uint64, cuts []byte) {
		if len(cuts) > 0 && bytes.Count(cuts, []byte{0}) == len(cuts) {
			cuts = append(cuts, 1) // all zero reads would never progress
		}
		stream := randomStream(t, seed, FrameMinSize)
		want, err := readAll(t, NewReader(bytes.NewReader(stream), FrameMinSize))
		require.ErrorIs(t, err, io.EOF)
		got, err := readAll(t, NewReader(&chunkReader{data: stream, cuts: cuts}, FrameMinSize))
		require.ErrorIs(t, err, io.EOF)
		require.Equal(t, want, got)
		for _, fr := range got {
			checkFrame(t, Frame{Type: fr.Type, Channel: fr.Channel, Payload: []byte(fr.Payload)})
		}
	})
}
