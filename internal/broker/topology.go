package broker

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/heraldhq/herald/internal/broker/route"
	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/errs"
)

type vhost struct {
	name, id  string
	exchanges map[string]*exchange
	queues    map[string]*queue
	bindings  map[string]bindingRec // KV key -> binding
	tails     []*engine.Tail        // cluster mode: new messages for queues this node leads
}

func (vh *vhost) log(durable bool) string {
	if durable {
		return "HQ_" + vh.id
	}
	return "HT_" + vh.id
}

func (vh *vhost) subject(durable bool, qid string) string {
	if durable {
		return "hq." + vh.id + "." + qid
	}
	return "ht." + vh.id + "." + qid
}

type exchange struct {
	vh      *vhost
	spec    ExchangeSpec
	kind    string // routing type (x-delayed-type for delayed exchanges)
	delayed bool
	topic   *route.Topic
	direct  *route.Direct
	fanout  *route.Fanout
	headers map[string]headersBinding // binding id -> binding
	refs    map[string]int            // routing key + dest -> bindings using it (args differ)
	sources int                       // bindings with this exchange as source
	dests   int                       // bindings with this exchange as destination
}

type headersBinding struct {
	args Table
	dest route.Dest
}

var builtinExchanges = []ExchangeSpec{
	{Name: "", Type: Direct, Durable: true},
	{Name: "amq.direct", Type: Direct, Durable: true},
	{Name: "amq.fanout", Type: Fanout, Durable: true},
	{Name: "amq.topic", Type: Topic, Durable: true},
	{Name: "amq.headers", Type: Headers, Durable: true},
	{Name: "amq.match", Type: Headers, Durable: true},
	{Name: "amq.rabbitmq.trace", Type: Topic, Durable: true, Internal: true},
}

func validExchangeType(t string) bool {
	switch t {
	case Direct, Fanout, Topic, Headers:
		return true
	}
	return false
}

func newExchange(vh *vhost, spec ExchangeSpec) *exchange {
	x := &exchange{vh: vh, spec: spec, kind: spec.Type, refs: map[string]int{}}
	if spec.Type == Delayed {
		x.delayed = true
		x.kind, _ = asString(spec.Arguments["x-delayed-type"])
	}
	switch x.kind {
	case Topic:
		x.topic = route.NewTopic()
	case Fanout:
		x.fanout = route.NewFanout()
	case Headers:
		x.headers = map[string]headersBinding{}
	default:
		x.direct = route.NewDirect()
	}
	return x
}

func (x *exchange) alternate() string {
	s, _ := asString(x.spec.Arguments["alternate-exchange"])
	return s
}

func (x *exchange) addBinding(id string, bd Binding) {
	d := route.Dest{Name: bd.Destination, IsExchange: bd.DestinationIsExchange}
	x.sources++
	if x.headers != nil {
		x.headers[id] = headersBinding{args: bd.Arguments, dest: d}
		return
	}
	rk := bd.RoutingKey + "\x00" + destKey(d)
	x.refs[rk]++
	if x.refs[rk] > 1 {
		return
	}
	switch {
	case x.topic != nil:
		x.topic.Add(bd.RoutingKey, d)
	case x.fanout != nil:
		x.fanout.Add(d)
	default:
		x.direct.Add(bd.RoutingKey, d)
	}
}

func (x *exchange) removeBinding(id string, bd Binding) {
	d := route.Dest{Name: bd.Destination, IsExchange: bd.DestinationIsExchange}
	x.sources--
	if x.headers != nil {
		delete(x.headers, id)
		return
	}
	rk := bd.RoutingKey + "\x00" + destKey(d)
	x.refs[rk]--
	if x.refs[rk] > 0 {
		return
	}
	delete(x.refs, rk)
	switch {
	case x.topic != nil:
		x.topic.Remove(bd.RoutingKey, d)
	case x.fanout != nil:
		x.fanout.Remove(d)
	default:
		x.direct.Remove(bd.RoutingKey, d)
	}
}

func destKey(d route.Dest) string {
	if d.IsExchange {
		return "e:" + d.Name
	}
	return "q:" + d.Name
}

// match appends the destinations of one exchange for a routing key.
func (x *exchange) match(key string, headers Table, out []route.Dest) []route.Dest {
	switch {
	case x.topic != nil:
		return x.topic.Match(key, out)
	case x.fanout != nil:
		return x.fanout.Match(out)
	case x.headers != nil:
		for _, hb := range x.headers {
			if route.MatchHeaders(hb.args, headers) {
				out = append(out, hb.dest)
			}
		}
		return out
	default:
		return x.direct.Match(key, out)
	}
}

// routeLocked returns the queues a message reaches from exchange x, following
// exchange-to-exchange bindings and alternate exchanges, appended to qs (a
// caller's buffer; it may be nil). Caller holds b.mu. It allocates nothing
// beyond growing qs, except a set when more than routeSetAt queues match.
func (b *core) routeLocked(qs []*queue, vh *vhost, x *exchange, key string, headers Table) []*queue {
	if x.spec.Name == "" {
		if q := vh.queues[key]; q != nil {
			return append(qs, q)
		}
		return qs
	}
	w := routeWalk{vh: vh, key: key, headers: headers, qs: qs, from: len(qs)}
	w.walk(x)
	return w.qs
}

// routeSetAt is the number of matched queues past which routeWalk dedupes
// with a map instead of a linear scan.
const routeSetAt = 16

// routeWalk is one routing pass: the queues found so far (deduplicated) and
// the exchanges visited (exchange-to-exchange bindings may form cycles).
type routeWalk struct {
	vh      *vhost
	key     string
	headers Table
	qs      []*queue
	from    int // qs[from:] are this walk's
	seenX   [4]*exchange
	moreX   []*exchange
	nX      int
	seenQ   map[*queue]struct{} // set once more than routeSetAt queues match
}

func (w *routeWalk) visit(x *exchange) bool {
	for _, s := range w.seenX[:min(w.nX, len(w.seenX))] {
		if s == x {
			return false
		}
	}
	if slices.Contains(w.moreX, x) {
		return false
	}
	if w.nX < len(w.seenX) {
		w.seenX[w.nX] = x
	} else {
		w.moreX = append(w.moreX, x)
	}
	w.nX++
	return true
}

func (w *routeWalk) addQueue(q *queue) {
	if w.seenQ != nil {
		if _, ok := w.seenQ[q]; ok {
			return
		}
		w.seenQ[q] = struct{}{}
		w.qs = append(w.qs, q)
		return
	}
	mine := w.qs[w.from:]
	if slices.Contains(mine, q) {
		return
	}
	w.qs = append(w.qs, q)
	if len(mine)+1 > routeSetAt {
		w.seenQ = make(map[*queue]struct{}, 2*routeSetAt)
		for _, q := range w.qs[w.from:] {
			w.seenQ[q] = struct{}{}
		}
	}
}

func (w *routeWalk) walk(x *exchange) {
	if !w.visit(x) {
		return
	}
	// Direct and fanout matches fill a stack buffer; Topic.Match keeps out
	// in its walker, so a buffer passed to it lives on the heap anyway.
	var buf [16]route.Dest
	var ds []route.Dest
	switch {
	case x.fanout != nil:
		ds = x.fanout.Match(buf[:0])
	case x.direct != nil && x.topic == nil && x.headers == nil:
		ds = x.direct.Match(w.key, buf[:0])
	default:
		ds = x.match(w.key, w.headers, nil)
	}
	before := len(w.qs)
	for _, d := range ds {
		if d.IsExchange {
			if nx := w.vh.exchanges[d.Name]; nx != nil {
				w.walk(nx)
			}
			continue
		}
		if q := w.vh.queues[d.Name]; q != nil {
			w.addQueue(q)
		}
	}
	if len(w.qs) == before {
		if alt := x.alternate(); alt != "" {
			if ae := w.vh.exchanges[alt]; ae != nil {
				w.walk(ae)
			}
		}
	}
}

// ---- vhosts

func (b *core) vhosts() []VHostInfo {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]VHostInfo, 0, len(b.vhostsM))
	for _, vh := range b.vhostsM {
		n := 0
		for _, q := range vh.queues {
			n += q.counts().Messages
		}
		out = append(out, VHostInfo{Name: vh.name, Messages: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (b *core) addVHost(ctx context.Context, name string) error {
	if name == "" || len(name) > 255 {
		return errs.New(errs.BadArgument, "vhost name must be 1 to 255 bytes")
	}
	b.mu.RLock()
	_, exists := b.vhostsM[name]
	b.mu.RUnlock()
	if exists {
		return nil
	}
	rec := vhostRec{Name: name, ID: newID()}
	if err := b.putMeta(ctx, "v."+keyName(name), rec); err != nil {
		return err
	}
	b.mu.RLock()
	vh := b.vhostsM[name]
	b.mu.RUnlock()
	if vh == nil {
		return errs.New(errs.Internal, "vhost %q vanished after creation", name)
	}
	if err := b.ensureLogs(ctx, vh); err != nil {
		return err
	}
	for _, spec := range builtinExchanges[1:] {
		if _, err := b.declareExchangeInternal(ctx, vh.name, spec); err != nil {
			return err
		}
	}
	return nil
}

func (b *core) ensureLogs(ctx context.Context, vh *vhost) error {
	replicas := b.logReplicas()
	for _, lc := range []engine.LogConfig{
		{Name: vh.log(true), Subjects: []string{"hq." + vh.id + ".>"}, Replicas: replicas},
		{Name: vh.log(false), Subjects: []string{"ht." + vh.id + ".>"}, Memory: true, Replicas: replicas},
		{Name: delayLog(vh), Subjects: []string{"hd." + vh.id + ".>"}, Replicas: replicas},
	} {
		if err := b.eng.EnsureLog(ctx, lc); err != nil {
			return errs.Wrap(errs.Unavailable, err, "creating log %s", lc.Name)
		}
	}
	return nil
}

func (b *core) deleteVHost(ctx context.Context, name string) error {
	b.mu.RLock()
	vh := b.vhostsM[name]
	var qs, xs []string
	var bks []string
	if vh != nil {
		for n := range vh.queues {
			qs = append(qs, n)
		}
		for n, x := range vh.exchanges {
			if x.spec.Name != "" {
				xs = append(xs, n)
			}
		}
		for k := range vh.bindings {
			bks = append(bks, k)
		}
	}
	b.mu.RUnlock()
	if vh == nil {
		return errs.New(errs.NotFound, "no vhost '%s'", name)
	}
	for _, q := range qs {
		_, _ = b.deleteQueue(ctx, name, q, false, false, "")
	}
	for _, k := range bks {
		_ = b.deleteMeta(ctx, k)
	}
	for _, x := range xs {
		_ = b.deleteMeta(ctx, "x."+vh.id+"."+keyName(x))
	}
	b.mu.RLock()
	var pks []string
	for u := range b.perms[name] {
		pks = append(pks, "p."+vh.id+"."+keyName(u))
	}
	b.mu.RUnlock()
	for _, k := range pks {
		_ = b.deleteMeta(ctx, k)
	}
	if err := b.deleteMeta(ctx, "v."+keyName(name)); err != nil {
		return err
	}
	for _, l := range []string{vh.log(true), vh.log(false), delayLog(vh)} {
		_ = b.eng.DeleteLog(ctx, l)
	}
	return nil
}

func (b *core) lookupVHost(name string) (*vhost, error) {
	vh := b.vhostsM[name]
	if vh == nil {
		return nil, errs.New(errs.NotFound, "no vhost '%s'", name)
	}
	return vh, nil
}

func (b *core) applyVHostLocked(e engine.Entry) []func() {
	_, _, kn, _ := splitKey(e.Key)
	raw, _ := base64.RawURLEncoding.DecodeString(kn)
	name := string(raw)
	if e.Deleted {
		delete(b.vhostsM, name)
		delete(b.perms, name)
		return nil
	}
	var rec vhostRec
	if json.Unmarshal(e.Value, &rec) != nil {
		return nil
	}
	if _, ok := b.vhostsM[name]; ok {
		return nil
	}
	vh := &vhost{name: rec.Name, id: rec.ID, exchanges: map[string]*exchange{}, queues: map[string]*queue{}, bindings: map[string]bindingRec{}}
	vh.exchanges[""] = newExchange(vh, builtinExchanges[0])
	b.vhostsM[name] = vh
	return nil
}

// ---- exchanges

func (b *core) declareExchange(ctx context.Context, vhostName string, spec ExchangeSpec, passive bool) (ExchangeInfo, error) {
	if err := b.running(); err != nil {
		return ExchangeInfo{}, err
	}
	b.mu.RLock()
	vh, err := b.lookupVHost(vhostName)
	var existing *exchange
	if err == nil {
		existing = vh.exchanges[spec.Name]
	}
	nx := 0
	for _, v := range b.vhostsM {
		nx += len(v.exchanges)
	}
	b.mu.RUnlock()
	if err != nil {
		return ExchangeInfo{}, err
	}
	if passive {
		if existing == nil {
			return ExchangeInfo{}, errs.New(errs.NotFound, "no exchange '%s' in vhost '%s'", spec.Name, vhostName)
		}
		return ExchangeInfo{VHost: vhostName, ExchangeSpec: existing.spec}, nil
	}
	if spec.Name == "" {
		return ExchangeInfo{}, errs.New(errs.AccessRefused, "operation not permitted on the default exchange")
	}
	if err := validName("exchange", spec.Name); err != nil {
		return ExchangeInfo{}, err
	}
	if err := validateExchangeSpec(spec); err != nil {
		return ExchangeInfo{}, err
	}
	if existing != nil {
		return ExchangeInfo{VHost: vhostName, ExchangeSpec: existing.spec}, equivalentExchange(vhostName, existing.spec, spec)
	}
	if strings.HasPrefix(spec.Name, "amq.") {
		return ExchangeInfo{}, errs.New(errs.AccessRefused, "exchange name '%s' contains reserved prefix 'amq.*'", spec.Name)
	}
	if nx >= b.cfg.MaxExchanges {
		return ExchangeInfo{}, errs.New(errs.ResourceError, "exchange limit of %d reached", b.cfg.MaxExchanges)
	}
	return b.declareExchangeInternal(ctx, vhostName, spec)
}

func validateExchangeSpec(spec ExchangeSpec) error {
	if spec.Type == Delayed {
		dt, ok := asString(spec.Arguments["x-delayed-type"])
		if !ok || !validExchangeType(dt) {
			return errs.New(errs.BadArgument, "invalid x-delayed-type for exchange '%s': must be direct, fanout, topic or headers", spec.Name)
		}
	} else if !validExchangeType(spec.Type) {
		return errs.New(errs.BadArgument, "invalid exchange type '%s'", spec.Type)
	}
	if v, ok := spec.Arguments["alternate-exchange"]; ok {
		if _, ok := asString(v); !ok {
			return errs.New(errs.BadArgument, "invalid alternate-exchange for exchange '%s': expected a string", spec.Name)
		}
	}
	return nil
}

func equivalentExchange(vhost string, cur, req ExchangeSpec) error {
	diff := func(arg string, got, have any) error {
		return errs.New(errs.PreconditionFailed, "inequivalent arg '%s' for exchange '%s' in vhost '%s': received '%v' but current is '%v'", arg, req.Name, vhost, got, have)
	}
	switch {
	case cur.Type != req.Type:
		return diff("type", req.Type, cur.Type)
	case cur.Durable != req.Durable:
		return diff("durable", req.Durable, cur.Durable)
	case cur.AutoDelete != req.AutoDelete:
		return diff("auto_delete", req.AutoDelete, cur.AutoDelete)
	case cur.Internal != req.Internal:
		return diff("internal", req.Internal, cur.Internal)
	}
	return nil
}

func (b *core) declareExchangeInternal(ctx context.Context, vhostName string, spec ExchangeSpec) (ExchangeInfo, error) {
	b.mu.RLock()
	vh, err := b.lookupVHost(vhostName)
	b.mu.RUnlock()
	if err != nil {
		return ExchangeInfo{}, err
	}
	if err := b.putMeta(ctx, "x."+vh.id+"."+keyName(spec.Name), spec); err != nil {
		return ExchangeInfo{}, err
	}
	return ExchangeInfo{VHost: vhostName, ExchangeSpec: spec}, nil
}

func (b *core) applyExchangeLocked(e engine.Entry) {
	_, vid, kn, _ := splitKey(e.Key)
	vh := b.vhostByID(vid)
	if vh == nil {
		return
	}
	raw, _ := base64.RawURLEncoding.DecodeString(kn)
	name := string(raw)
	if e.Deleted {
		delete(vh.exchanges, name)
		return
	}
	var spec ExchangeSpec
	if json.Unmarshal(e.Value, &spec) != nil {
		return
	}
	if _, ok := vh.exchanges[name]; !ok {
		vh.exchanges[name] = newExchange(vh, spec)
	}
}

func (b *core) deleteExchange(ctx context.Context, vhostName, name string, ifUnused bool) error {
	if err := b.running(); err != nil {
		return err
	}
	if name == "" || strings.HasPrefix(name, "amq.") {
		return errs.New(errs.AccessRefused, "operation not permitted on exchange '%s'", name)
	}
	b.mu.RLock()
	vh, err := b.lookupVHost(vhostName)
	var x *exchange
	var keys []string
	if err == nil {
		x = vh.exchanges[name]
		for k, br := range vh.bindings {
			if br.B.Source == name || (br.B.DestinationIsExchange && br.B.Destination == name) {
				keys = append(keys, k)
			}
		}
	}
	b.mu.RUnlock()
	if err != nil {
		return err
	}
	if x == nil {
		return errs.New(errs.NotFound, "no exchange '%s' in vhost '%s'", name, vhostName)
	}
	if ifUnused && x.sources > 0 {
		return errs.New(errs.PreconditionFailed, "exchange '%s' in vhost '%s' in use", name, vhostName)
	}
	for _, k := range keys {
		if err := b.deleteMeta(ctx, k); err != nil {
			return err
		}
	}
	return b.deleteMeta(ctx, "x."+vh.id+"."+keyName(name))
}

func (b *core) exchange(vhostName, name string) (ExchangeInfo, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	vh, err := b.lookupVHost(vhostName)
	if err != nil {
		return ExchangeInfo{}, err
	}
	x := vh.exchanges[name]
	if x == nil {
		return ExchangeInfo{}, errs.New(errs.NotFound, "no exchange '%s' in vhost '%s'", name, vhostName)
	}
	return ExchangeInfo{VHost: vhostName, ExchangeSpec: x.spec}, nil
}

func (b *core) exchanges(vhostName string) []ExchangeInfo {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []ExchangeInfo
	for _, vh := range b.vhostsM {
		if vhostName != "" && vh.name != vhostName {
			continue
		}
		for _, x := range vh.exchanges {
			out = append(out, ExchangeInfo{VHost: vh.name, ExchangeSpec: x.spec})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].VHost != out[j].VHost {
			return out[i].VHost < out[j].VHost
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// ---- bindings

func bindingID(vh *vhost, bd Binding) string {
	args, _ := json.Marshal(bd.Arguments)
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%t\x00%s\x00%s", bd.Source, bd.Destination, bd.DestinationIsExchange, bd.RoutingKey, args)))
	return "b." + vh.id + "." + hex.EncodeToString(h[:12])
}

func (b *core) checkBindingEnds(vh *vhost, vhostName string, bd Binding) error {
	if vh.exchanges[bd.Source] == nil {
		return errs.New(errs.NotFound, "no exchange '%s' in vhost '%s'", bd.Source, vhostName)
	}
	if bd.DestinationIsExchange {
		if vh.exchanges[bd.Destination] == nil {
			return errs.New(errs.NotFound, "no exchange '%s' in vhost '%s'", bd.Destination, vhostName)
		}
	} else if vh.queues[bd.Destination] == nil {
		return errs.New(errs.NotFound, "no queue '%s' in vhost '%s'", bd.Destination, vhostName)
	}
	return nil
}

func (b *core) bind(ctx context.Context, vhostName string, bd Binding) error {
	if err := b.running(); err != nil {
		return err
	}
	if bd.Source == "" || (bd.DestinationIsExchange && bd.Destination == "") {
		return errs.New(errs.AccessRefused, "operation not permitted on the default exchange")
	}
	if len(bd.RoutingKey) > 255 {
		return errs.New(errs.BadArgument, "routing key is longer than 255 bytes")
	}
	b.mu.RLock()
	vh, err := b.lookupVHost(vhostName)
	var id string
	exists := false
	total := 0
	if err == nil {
		err = b.checkBindingEnds(vh, vhostName, bd)
		id = bindingID(vh, bd)
		_, exists = vh.bindings[id]
		for _, v := range b.vhostsM {
			total += len(v.bindings)
		}
	}
	b.mu.RUnlock()
	if err != nil || exists {
		return err
	}
	if x, ok := bd.Arguments["x-match"]; ok {
		s, _ := asString(x)
		switch s {
		case "all", "any", "all-with-x", "any-with-x":
		default:
			return errs.New(errs.BadArgument, "invalid x-match value %v: must be all, any, all-with-x or any-with-x", x)
		}
	}
	if total >= b.cfg.MaxBindings {
		return errs.New(errs.ResourceError, "binding limit of %d reached", b.cfg.MaxBindings)
	}
	return b.putMeta(ctx, id, bindingRec{VHost: vhostName, B: bd})
}

func (b *core) unbind(ctx context.Context, vhostName string, bd Binding) error {
	if err := b.running(); err != nil {
		return err
	}
	b.mu.RLock()
	vh, err := b.lookupVHost(vhostName)
	var id string
	exists := false
	if err == nil {
		err = b.checkBindingEnds(vh, vhostName, bd)
		id = bindingID(vh, bd)
		_, exists = vh.bindings[id]
	}
	b.mu.RUnlock()
	if err != nil || !exists {
		return err
	}
	return b.deleteMeta(ctx, id)
}

func (b *core) applyBindingLocked(e engine.Entry) []func() {
	_, vid, _, _ := splitKey(e.Key)
	vh := b.vhostByID(vid)
	if vh == nil {
		return nil
	}
	if e.Deleted {
		rec, ok := vh.bindings[e.Key]
		if !ok {
			return nil
		}
		delete(vh.bindings, e.Key)
		if x := vh.exchanges[rec.B.Source]; x != nil {
			x.removeBinding(e.Key, rec.B)
			if x.spec.AutoDelete && x.sources == 0 {
				name := x.spec.Name
				return []func(){func() { _ = b.deleteExchange(context.Background(), vh.name, name, false) }}
			}
		}
		return nil
	}
	var rec bindingRec
	if json.Unmarshal(e.Value, &rec) != nil {
		return nil
	}
	if _, ok := vh.bindings[e.Key]; ok {
		return nil
	}
	vh.bindings[e.Key] = rec
	if x := vh.exchanges[rec.B.Source]; x != nil {
		x.addBinding(e.Key, rec.B)
	}
	return nil
}

func (b *core) bindings(vhostName string) []BindingInfo {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []BindingInfo
	for _, vh := range b.vhostsM {
		if vhostName != "" && vh.name != vhostName {
			continue
		}
		for _, q := range vh.queues {
			out = append(out, BindingInfo{VHost: vh.name, Binding: Binding{Destination: q.name, RoutingKey: q.name}})
		}
		for _, br := range vh.bindings {
			out = append(out, BindingInfo{VHost: vh.name, Binding: br.B})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, c := out[i], out[j]
		if a.VHost != c.VHost {
			return a.VHost < c.VHost
		}
		if a.Source != c.Source {
			return a.Source < c.Source
		}
		if a.Destination != c.Destination {
			return a.Destination < c.Destination
		}
		return a.RoutingKey < c.RoutingKey
	})
	return out
}
