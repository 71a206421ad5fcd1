package wire

import "time"

// Properties are the basic class's content properties. The zero value of a
// field means absent: it is not written and its flag is clear (RabbitMQ also
// treats an empty string as absent). A present but empty Headers table is
// read as nil.
type Properties struct {
	ContentType     string
	ContentEncoding string
	Headers         Table
	DeliveryMode    uint8 // 1 transient, 2 persistent
	Priority        uint8
	CorrelationID   string
	ReplyTo         string
	Expiration      string
	MessageID       string
	Timestamp       time.Time // whole seconds; zero is absent
	Type            string
	UserID          string
	AppID           string
	ClusterID       string // deprecated, kept for round trips
}

// ContentHeader is the payload of a header frame.
type ContentHeader struct {
	ClassID    uint16
	Weight     uint16 // always 0 in 0-9-1
	BodySize   uint64
	Properties Properties
}

// knownFlags are the property flags of the basic class.
const knownFlags = FlagContentType | FlagContentEncoding | FlagHeaders | FlagDeliveryMode |
	FlagPriority | FlagCorrelationID | FlagReplyTo | FlagExpiration | FlagMessageID |
	FlagTimestamp | FlagType | FlagUserID | FlagAppID | FlagClusterID

// Read decodes a header frame's payload into h, overwriting every field.
func (h *ContentHeader) Read(payload []byte) error {
	d := decoder{b: payload}
	h.ClassID = d.short()
	h.Weight = d.short()
	h.BodySize = d.longlong()
	flags := d.short()
	if d.err != nil {
		return errorf(FrameError, "content header of %d bytes", len(payload))
	}
	if flags&^knownFlags != 0 {
		return errorf(SyntaxError, "content header: unknown property flags %#04x", flags&^knownFlags)
	}
	p := &h.Properties
	*p = Properties{}
	if flags&FlagContentType != 0 {
		p.ContentType = d.shortstr()
	}
	if flags&FlagContentEncoding != 0 {
		p.ContentEncoding = d.shortstr()
	}
	if flags&FlagHeaders != 0 {
		p.Headers = d.table()
	}
	if flags&FlagDeliveryMode != 0 {
		p.DeliveryMode = d.octet()
	}
	if flags&FlagPriority != 0 {
		p.Priority = d.octet()
	}
	if flags&FlagCorrelationID != 0 {
		p.CorrelationID = d.shortstr()
	}
	if flags&FlagReplyTo != 0 {
		p.ReplyTo = d.shortstr()
	}
	if flags&FlagExpiration != 0 {
		p.Expiration = d.shortstr()
	}
	if flags&FlagMessageID != 0 {
		p.MessageID = d.shortstr()
	}
	if flags&FlagTimestamp != 0 {
		p.Timestamp = d.timestamp()
	}
	if flags&FlagType != 0 {
		p.Type = d.shortstr()
	}
	if flags&FlagUserID != 0 {
		p.UserID = d.shortstr()
	}
	if flags&FlagAppID != 0 {
		p.AppID = d.shortstr()
	}
	if flags&FlagClusterID != 0 {
		p.ClusterID = d.shortstr()
	}
	if d.err != nil {
		if e, ok := d.err.(*Error); ok {
			e.Text = "content header: " + e.Text
		}
		return d.err
	}
	return nil
}

// Flags returns the property flags of the present properties.
func (p *Properties) Flags() uint16 {
	var f uint16
	set := func(present bool, flag uint16) {
		if present {
			f |= flag
		}
	}
	set(p.ContentType != "", FlagContentType)
	set(p.ContentEncoding != "", FlagContentEncoding)
	set(p.Headers != nil, FlagHeaders)
	set(p.DeliveryMode != 0, FlagDeliveryMode)
	set(p.Priority != 0, FlagPriority)
	set(p.CorrelationID != "", FlagCorrelationID)
	set(p.ReplyTo != "", FlagReplyTo)
	set(p.Expiration != "", FlagExpiration)
	set(p.MessageID != "", FlagMessageID)
	set(!p.Timestamp.IsZero(), FlagTimestamp)
	set(p.Type != "", FlagType)
	set(p.UserID != "", FlagUserID)
	set(p.AppID != "", FlagAppID)
	set(p.ClusterID != "", FlagClusterID)
	return f
}

// AppendContentHeader appends a header frame's payload to b.
func AppendContentHeader(b []byte, classID uint16, bodySize uint64, p *Properties) ([]byte, error) {
	e := encoder{b: b}
	e.short(classID)
	e.short(0)
	e.longlong(bodySize)
	flags := p.Flags()
	e.short(flags)
	if flags == 0 {
		return e.b, nil
	}
	if flags&FlagContentType != 0 {
		e.shortstr(p.ContentType)
	}
	if flags&FlagContentEncoding != 0 {
		e.shortstr(p.ContentEncoding)
	}
	if flags&FlagHeaders != 0 {
		e.table(p.Headers)
	}
	if flags&FlagDeliveryMode != 0 {
		e.octet(p.DeliveryMode)
	}
	if flags&FlagPriority != 0 {
		e.octet(p.Priority)
	}
	if flags&FlagCorrelationID != 0 {
		e.shortstr(p.CorrelationID)
	}
	if flags&FlagReplyTo != 0 {
		e.shortstr(p.ReplyTo)
	}
	if flags&FlagExpiration != 0 {
		e.shortstr(p.Expiration)
	}
	if flags&FlagMessageID != 0 {
		e.shortstr(p.MessageID)
	}
	if flags&FlagTimestamp != 0 {
		e.timestamp(p.Timestamp)
	}
	if flags&FlagType != 0 {
		e.shortstr(p.Type)
	}
	if flags&FlagUserID != 0 {
		e.shortstr(p.UserID)
	}
	if flags&FlagAppID != 0 {
		e.shortstr(p.AppID)
	}
	if flags&FlagClusterID != 0 {
		e.shortstr(p.ClusterID)
	}
	return e.b, e.err
}
