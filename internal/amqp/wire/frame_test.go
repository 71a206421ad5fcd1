package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

// rawFrame is a frame with its payload copied out of the reader's buffer.
type rawFrame struct {
	Type    uint8
	Channel uint16
	Payload string
}

func readAll(t testing.TB, r *Reader) ([]rawFrame, error) {
	var out []rawFrame
	for {
		f, err := r.ReadFrame()
		if err != nil {
			return out, err
		}
		out = append(out, rawFrame{f.Type, f.Channel, string(f.Payload)})
	}
}

func writeSampleStream(t testing.TB, frameMax int) []byte {
	var buf bytes.Buffer
	w := NewWriter(&buf, frameMax)
	require.NoError(t, w.WriteMethod(0, &ConnectionTuneOk{ChannelMax: 2047, FrameMax: uint32(frameMax), Heartbeat: 60}))
	require.NoError(t, w.WriteMethod(1, &ChannelOpen{}))
	body := bytes.Repeat([]byte("0123456789"), 1000) // spans several frames
	props := Properties{ContentType: "text/plain", DeliveryMode: 2, Headers: Table{"x-delay": int32(5)}}
	require.NoError(t, w.WriteContent(1, &BasicPublish{Exchange: "amq.topic", RoutingKey: "a.b.c", Mandatory: true}, &props, body))
	require.NoError(t, w.WriteContent(2, &BasicPublish{RoutingKey: "q"}, &Properties{}, nil))
	require.NoError(t, w.WriteHeartbeat())
	require.NoError(t, w.Flush())
	return buf.Bytes()
}

func TestReaderWriterRoundTrip(t *testing.T) {
	t.Parallel()
	stream := writeSampleStream(t, FrameMinSize)
	whole, err := readAll(t, NewReader(bytes.NewReader(stream), FrameMinSize))
	require.ErrorIs(t, err, io.EOF)
	// tune-ok, open, publish + header + 3 bodies, publish + header, heartbeat
	require.Len(t, whole, 10)
	require.Equal(t, uint8(FrameHeartbeat), whole[9].Type)
	var bodyLen int
	for _, f := range whole[4:7] {
		require.Equal(t, uint8(FrameBody), f.Type)
		require.LessOrEqual(t, len(f.Payload)+8, FrameMinSize)
		bodyLen += len(f.Payload)
	}
	require.Equal(t, 10000, bodyLen)

	m, err := ReadMethod([]byte(whole[2].Payload))
	require.NoError(t, err)
	require.Equal(t, &BasicPublish{Exchange: "amq.topic", RoutingKey: "a.b.c", Mandatory: true}, m)
	var h ContentHeader
	require.NoError(t, h.Read([]byte(whole[3].Payload)))
	require.Equal(t, uint64(10000), h.BodySize)
	require.Equal(t, Table{"x-delay": int32(5)}, h.Properties.Headers)

	for name, src := range map[string]io.Reader{
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
		"data+EOF": iotest.DataErrReader(bytes.NewReader(stream)),
	} {
		got, err := readAll(t, NewReader(src, FrameMinSize))
		require.ErrorIs(t, err, io.EOF, name)
		require.Equal(t, whole, got, name)
	}
}

func TestReaderProtocolHeader(t *testing.T) {
	t.Parallel()
	src := append([]byte(ProtocolHeader), writeSampleStream(t, FrameMinSize)...)
	r := NewReader(iotest.OneByteReader(bytes.NewReader(src)), FrameMinSize)
	h, err := r.ReadProtocolHeader()
	require.NoError(t, err)
	require.Equal(t, ProtocolHeader, string(h[:]))
	f, err := r.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, uint8(FrameMethod), f.Type)
}

func protoErr(t testing.TB, err error) uint16 {
	t.Helper()
	var pe *Error
	require.ErrorAs(t, err, &pe)
	return pe.Code
}

func TestReaderErrors(t *testing.T) {
	t.Parallel()
	frame := func(typ uint8, size uint32, payload []byte, end byte) []byte {
		b := []byte{typ, 0, 1, byte(size >> 24), byte(size >> 16), byte(size >> 8), byte(size)}
		return append(append(b, payload...), end)
	}
	read := func(b []byte, frameMax int) error {
		_, err := NewReader(bytes.NewReader(b), frameMax).ReadFrame()
		return err
	}
	require.NoError(t, read(frame(FrameBody, 3, []byte("abc"), FrameEnd), FrameMinSize))
	require.Equal(t, uint16(FrameError), protoErr(t, read(frame(FrameBody, 3, []byte("abc"), 0), FrameMinSize)), "bad frame end")
	require.Equal(t, uint16(FrameError), protoErr(t, read(frame(7, 3, []byte("abc"), FrameEnd), FrameMinSize)), "unknown type")
	require.Equal(t, uint16(FrameError), protoErr(t, read(frame(FrameBody, 1<<31, nil, FrameEnd), FrameMinSize)), "huge size")
	big := make([]byte, 10_000)
	require.Equal(t, uint16(FrameError), protoErr(t, read(frame(FrameBody, 10_000, big, FrameEnd), 8192)), "over frame-max")
	require.NoError(t, read(frame(FrameBody, 10_000, big, FrameEnd), 10_008), "exactly frame-max")
	require.ErrorIs(t, read(nil, FrameMinSize), io.EOF)
	require.ErrorIs(t, read([]byte{1, 0}, FrameMinSize), io.ErrUnexpectedEOF)
	require.ErrorIs(t, read(frame(FrameBody, 3, []byte("ab"), FrameEnd)[:9], FrameMinSize), io.ErrUnexpectedEOF)

	boom := errors.New("boom")
	_, err := NewReader(iotest.ErrReader(boom), FrameMinSize).ReadFrame()
	require.ErrorIs(t, err, boom)
}

// countingWriter counts Write calls.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.Buffer.Write(p)
}

func TestWriterBatchesFrames(t *testing.T) {
	t.Parallel()
	var cw countingWriter
	w := NewWriter(&cw, 128<<10)
	props := Properties{DeliveryMode: 2}
	for i := range 100 {
		require.NoError(t, w.WriteContent(1, &BasicDeliver{ConsumerTag: "c", DeliveryTag: uint64(i + 1), RoutingKey: "k"}, &props, []byte("hello")))
	}
	require.Zero(t, cw.writes)
	require.NoError(t, w.Flush())
	require.Equal(t, 1, cw.writes, "300 frames in one write")
	got, err := readAll(t, NewReader(&cw.Buffer, 128<<10))
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, got, 300)

	// Past the flush threshold the writer flushes by itself.
	body := make([]byte, 100<<10)
	require.NoError(t, w.WriteContent(1, &BasicDeliver{}, &props, body))
	require.Equal(t, 2, cw.writes)
}

func TestWriterErrors(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewWriter(&buf, FrameMinSize)
	big := Table{"k": string(make([]byte, FrameMinSize))}
	err := w.WriteMethod(1, &QueueDeclare{Queue: "q", Arguments: big})
	require.Equal(t, uint16(FrameError), protoErr(t, err))
	require.Zero(t, w.Buffered(), "a failed frame leaves nothing behind")
	require.Error(t, w.WriteMethod(1, &QueueDeclare{Queue: string(make([]byte, 300))}))
	require.Zero(t, w.Buffered())
	require.NoError(t, w.WriteMethod(1, &QueueDeclare{Queue: "q"}))
	require.NoError(t, w.Flush())

	boom := errors.New("boom")
	w = NewWriter(failWriter{boom}, FrameMinSize)
	require.NoError(t, w.WriteHeartbeat())
	require.ErrorIs(t, w.Flush(), boom)
	require.ErrorIs(t, w.WriteHeartbeat(), boom, "errors stick")
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func TestWriteContentIsAllOrNothing(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewWriter(&buf, FrameMinSize)
	bad := &Properties{Headers: Table{"k": struct{}{}}}
	require.Error(t, w.WriteContent(1, &BasicDeliver{ConsumerTag: "c"}, bad, []byte("x")))
	require.Zero(t, w.Buffered(), "no method frame without its header")
}
