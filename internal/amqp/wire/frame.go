package wire

import (
	"encoding/binary"
	"errors"
	"io"
)

// ProtocolHeader opens every AMQP 0-9-1 connection.
const ProtocolHeader = "AMQP\x00\x00\x09\x01"

// frameOverhead is the frame header (type, channel, size) plus frame-end.
const frameOverhead = 8

// Frame is one frame. A Payload returned by Reader.ReadFrame is only valid
// until the next call on that Reader.
type Frame struct {
	Type    uint8 // FrameMethod, FrameHeader, FrameBody or FrameHeartbeat
	Channel uint16
	Payload []byte
}

// Reader reads frames from an io.Reader through its own buffer, taking as
// many bytes per Read as the source has ready. Not safe for concurrent use.
type Reader struct {
	src      io.Reader
	buf      []byte
	r, w     int // unread bytes are buf[r:w]
	frameMax int
	err      error // sticky error of src
}

const (
	readBufSize   = 16 << 10
	maxEmptyReads = 100 // Reads returning (0, nil) in a row before giving up, as bufio
)

// NewReader returns a Reader that rejects frames larger than frameMax bytes
// (the whole frame, header and frame-end included, as AMQP's frame-max
// counts); frameMax < FrameMinSize means FrameMinSize.
func NewReader(src io.Reader, frameMax int) *Reader {
	r := &Reader{src: src, buf: make([]byte, readBufSize)}
	r.SetFrameMax(frameMax)
	return r
}

// SetFrameMax changes the frame size limit (after connection.tune-ok).
func (r *Reader) SetFrameMax(n int) { r.frameMax = max(n, FrameMinSize) }

// Buffered returns how many read bytes have not been returned as frames.
func (r *Reader) Buffered() int { return r.w - r.r }

// fill makes n bytes available in buf[r:w]; n is bounded by the caller.
// At a clean end of input (no bytes buffered) it returns io.EOF, inside a
// frame io.ErrUnexpectedEOF.
func (r *Reader) fill(n int) error {
	if r.w-r.r >= n {
		return nil
	}
	if len(r.buf)-r.r < n {
		if len(r.buf) < n {
			nb := make([]byte, max(n, 2*len(r.buf)))
			r.w = copy(nb, r.buf[r.r:r.w])
			r.buf = nb
		} else {
			r.w = copy(r.buf, r.buf[r.r:r.w])
		}
		r.r = 0
	}
	for empty := 0; r.w-r.r < n; {
		if r.err != nil {
			if r.err == io.EOF && r.w > r.r {
				return io.ErrUnexpectedEOF
			}
			return r.err
		}
		m, err := r.src.Read(r.buf[r.w:])
		if m < 0 || m > len(r.buf)-r.w {
			return errors.New("amqp: invalid Read count")
		}
		r.w += m
		if err != nil {
			r.err = err
		} else if m > 0 {
			empty = 0
		} else if empty++; empty >= maxEmptyReads {
			r.err = io.ErrNoProgress
		}
	}
	return nil
}

// ReadProtocolHeader reads the 8 bytes a client sends before any frame.
func (r *Reader) ReadProtocolHeader() ([8]byte, error) {
	var h [8]byte
	if err := r.fill(8); err != nil {
		return h, err
	}
	copy(h[:], r.buf[r.r:])
	r.r += 8
	return h, nil
}

// ReadFrame reads the next frame. Frames over the frame-max, with a bad
// frame-end octet or of an unknown type are an *Error with code FrameError;
// read failures of the source are returned as they are (io.EOF at a clean end).
func (r *Reader) ReadFrame() (Frame, error) {
	if err := r.fill(7); err != nil {
		return Frame{}, err
	}
	h := r.buf[r.r : r.r+7]
	typ := h[0]
	ch := binary.BigEndian.Uint16(h[1:])
	size := binary.BigEndian.Uint32(h[3:])
	if uint64(size)+frameOverhead > uint64(r.frameMax) {
		return Frame{}, errorf(FrameError, "frame of %d bytes exceeds frame-max %d", uint64(size)+frameOverhead, r.frameMax)
	}
	switch typ {
	case FrameMethod, FrameHeader, FrameBody, FrameHeartbeat:
	default:
		return Frame{}, errorf(FrameError, "unknown frame type %d", typ)
	}
	n := int(size) + frameOverhead
	if err := r.fill(n); err != nil {
		return Frame{}, err
	}
	f := r.buf[r.r : r.r+n]
	if f[n-1] != FrameEnd {
		return Frame{}, errorf(FrameError, "bad frame-end octet %#x", f[n-1])
	}
	r.r += n
	return Frame{Type: typ, Channel: ch, Payload: f[7 : n-1 : n-1]}, nil
}

// Writer encodes frames into a buffer and writes it to its destination when
// Flush is called or the buffer passes its flush threshold, so many frames
// go out in one system call. Not safe for concurrent use. After a write to the
// destination fails, every call returns that error.
type Writer struct {
	dst      io.Writer
	buf      []byte
	frameMax int
	limit    int
	err      error
}

const writeFlushAt = 64 << 10

// NewWriter returns a Writer that splits bodies into frames of at most
// frameMax bytes (< FrameMinSize means FrameMinSize).
func NewWriter(dst io.Writer, frameMax int) *Writer {
	w := &Writer{dst: dst, buf: make([]byte, 0, 4096), limit: writeFlushAt}
	w.SetFrameMax(frameMax)
	return w
}

// SetFrameMax changes the negotiated frame size.
func (w *Writer) SetFrameMax(n int) { w.frameMax = max(n, FrameMinSize) }

// Err returns the error of a failed write to the destination, which every
// later call also returns; nil while the destination works.
func (w *Writer) Err() error { return w.err }

// Buffered returns the number of bytes waiting for Flush.
func (w *Writer) Buffered() int { return len(w.buf) }

// Flush writes the buffered frames.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.dst.Write(w.buf)
	w.buf = w.buf[:0]
	if err != nil {
		w.err = err
	}
	return err
}

func (w *Writer) maybeFlush() error {
	if len(w.buf) >= w.limit {
		return w.Flush()
	}
	return nil
}

// begin appends a frame header with a zero size and returns its offset.
func (w *Writer) begin(typ uint8, ch uint16) int {
	start := len(w.buf)
	w.buf = append(w.buf, typ, byte(ch>>8), byte(ch), 0, 0, 0, 0)
	return start
}

// finish patches the size of the frame begun at start and appends
// frame-end; an oversized frame is removed from the buffer.
func (w *Writer) finish(start int) error {
	size := len(w.buf) - start - 7
	if size+frameOverhead > w.frameMax {
		w.buf = w.buf[:start]
		return errorf(FrameError, "frame of %d bytes exceeds frame-max %d", size+frameOverhead, w.frameMax)
	}
	binary.BigEndian.PutUint32(w.buf[start+3:], uint32(size))
	w.buf = append(w.buf, FrameEnd)
	return nil
}

// end finishes a frame and flushes if the buffer passed its threshold.
func (w *Writer) end(start int) error {
	if err := w.finish(start); err != nil {
		return err
	}
	return w.maybeFlush()
}

// appendMethod appends a whole method frame without flushing.
func (w *Writer) appendMethod(ch uint16, m Method) error {
	start := w.begin(FrameMethod, ch)
	b, err := AppendMethod(w.buf, m)
	if err != nil {
		w.buf = b[:start]
		return err
	}
	w.buf = b
	return w.finish(start)
}

// appendHeader appends a whole header frame without flushing.
func (w *Writer) appendHeader(ch uint16, classID uint16, bodySize uint64, p *Properties) error {
	start := w.begin(FrameHeader, ch)
	b, err := AppendContentHeader(w.buf, classID, bodySize, p)
	if err != nil {
		w.buf = b[:start]
		return err
	}
	w.buf = b
	return w.finish(start)
}

// WriteProtocolHeader writes the 0-9-1 protocol header (client side, and the
// server's answer to a header it does not support).
func (w *Writer) WriteProtocolHeader() error {
	if w.err != nil {
		return w.err
	}
	w.buf = append(w.buf, ProtocolHeader...)
	return nil
}

// WriteMethod writes a method frame.
func (w *Writer) WriteMethod(ch uint16, m Method) error {
	if w.err != nil {
		return w.err
	}
	if err := w.appendMethod(ch, m); err != nil {
		return err
	}
	return w.maybeFlush()
}

// WriteHeader writes a content header frame.
func (w *Writer) WriteHeader(ch uint16, classID uint16, bodySize uint64, p *Properties) error {
	if w.err != nil {
		return w.err
	}
	if err := w.appendHeader(ch, classID, bodySize, p); err != nil {
		return err
	}
	return w.maybeFlush()
}

// WriteBody writes body as body frames of at most frame-max bytes each; an
// empty body writes no frame.
func (w *Writer) WriteBody(ch uint16, body []byte) error {
	chunk := w.frameMax - frameOverhead
	for len(body) > 0 {
		if w.err != nil {
			return w.err
		}
		n := min(len(body), chunk)
		start := w.begin(FrameBody, ch)
		w.buf = append(w.buf, body[:n]...)
		if err := w.end(start); err != nil {
			return err
		}
		body = body[n:]
	}
	return w.err
}

// WriteContent writes a content-carrying method (basic.publish, deliver,
// get-ok, return) with its header and body frames. If the method or header
// cannot be encoded, nothing of the message is written.
func (w *Writer) WriteContent(ch uint16, m Method, p *Properties, body []byte) error {
	if w.err != nil {
		return w.err
	}
	start := len(w.buf)
	if err := w.appendMethod(ch, m); err != nil {
		return err
	}
	cls, _ := m.ID()
	if err := w.appendHeader(ch, cls, uint64(len(body)), p); err != nil {
		w.buf = w.buf[:start]
		return err
	}
	if len(body) == 0 {
		return w.maybeFlush()
	}
	return w.WriteBody(ch, body)
}

// WriteHeartbeat writes a heartbeat frame.
func (w *Writer) WriteHeartbeat() error {
	if w.err != nil {
		return w.err
	}
	w.buf = append(w.buf, FrameHeartbeat, 0, 0, 0, 0, 0, 0, FrameEnd)
	return w.maybeFlush()
}

// WriteFrame writes a raw frame.
func (w *Writer) WriteFrame(f Frame) error {
	if w.err != nil {
		return w.err
	}
	start := w.begin(f.Type, f.Channel)
	w.buf = append(w.buf, f.Payload...)
	return w.end(start)
}
