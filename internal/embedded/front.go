package embedded

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// front is a MongoDB wire protocol front for FerretDB. It forwards every message unchanged,
// except that it
//
//   - serializes the read-modify-write commands (update, findAndModify, delete) and DDL per
//     database: FerretDB 1.24's SQLite handler reads the matching documents and writes them back
//     in separate steps, so two concurrent updates of one document could both apply to the same
//     old version. Under the lock each command is atomic against other writers, as on MongoDB;
//   - evaluates conditions beside a string `_id` itself: FerretDB pushes a filter down to SQLite
//     only when it is exactly {_id: ...}; {_id: x, rev: 5} would decode every document of the
//     collection. The front reads the one document by `_id`, checks the other conditions, and
//     sends the write with {_id: x} alone (or answers "nothing matched" itself);
//   - after DDL, runs onDDL (the `_id` expression index repair).
type front struct {
	dial  func(ctx context.Context) (net.Conn, error)
	onDDL func(ctx context.Context, db string)
	log   *slog.Logger

	mu    sync.Mutex
	locks map[string]*sync.Mutex

	nextID atomic.Int32

	// fastPath counts writes answered through the `_id` fast path (for tests and metrics).
	fastPath atomic.Int64
	// preReads counts the documents the fast path had to read from FerretDB (cache misses).
	preReads atomic.Int64
	docs     *docCache

	connsMu sync.Mutex
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func newFront(dial func(ctx context.Context) (net.Conn, error), onDDL func(context.Context, string), log *slog.Logger) *front {
	f := &front{dial: dial, onDDL: onDDL, log: log, locks: map[string]*sync.Mutex{}, conns: map[net.Conn]struct{}{},
		docs: newDocCache(32 << 20)}
	f.nextID.Store(1 << 30)
	return f
}

// serve accepts connections until l is closed.
func (f *front) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.serveConn(c)
		}()
	}
}

// closeConns closes every open client connection and waits for their goroutines.
func (f *front) closeConns() {
	f.connsMu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.connsMu.Unlock()
	f.wg.Wait()
}

func (f *front) track(c net.Conn, add bool) {
	f.connsMu.Lock()
	defer f.connsMu.Unlock()
	if add {
		f.conns[c] = struct{}{}
	} else {
		delete(f.conns, c)
	}
}

func (f *front) serveConn(client net.Conn) {
	f.track(client, true)
	defer f.track(client, false)
	defer client.Close()

	backend, err := f.dial(context.Background())
	if err != nil {
		f.log.Warn("embedded store backend unreachable", "error", err)
		return
	}
	f.track(backend, true)
	defer f.track(backend, false)
	defer backend.Close()

	c := &session{front: f, backend: backend, br: bufio.NewReaderSize(backend, 64<<10)}
	cr := bufio.NewReaderSize(client, 64<<10)
	for {
		m, err := readMessage(cr)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				f.log.Debug("embedded store client read failed", "error", err)
			}
			return
		}
		resp, err := c.handle(m)
		if err != nil {
			f.log.Debug("embedded store backend failed", "error", err)
			return
		}
		if resp != nil {
			if _, err := client.Write(resp); err != nil {
				return
			}
		}
	}
}

func (f *front) lock(db string) func() {
	f.mu.Lock()
	l, ok := f.locks[db]
	if !ok {
		l = &sync.Mutex{}
		f.locks[db] = l
	}
	f.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// session is one client connection paired with its own backend connection; it handles one
// message at a time, so backend replies always belong to the message just sent.
type session struct {
	front   *front
	backend net.Conn
	br      *bufio.Reader
}

func (s *session) handle(m message) ([]byte, error) {
	p, err := parseOpMsg(m)
	if err != nil {
		return s.forward(m.raw, expectsReply(m, nil))
	}
	name := strings.ToLower(commandName(p.body))
	db, _ := p.body.Lookup("$db").StringValueOK()

	switch name {
	case "update", "findandmodify", "delete":
		unlock := s.front.lock(db)
		defer unlock()
		if resp, handled, err := s.fastPath(m, p, name, db); handled || err != nil {
			return resp, err
		}
		s.front.forgetWritten(p, name, db)
		return s.forward(m.raw, expectsReply(m, p))
	case "insert":
		// Inserts take the lock too, so the documents they add are known to the cache before
		// any conditional write can look at them.
		unlock := s.front.lock(db)
		defer unlock()
		resp, err := s.forward(m.raw, expectsReply(m, p))
		s.front.rememberInserted(p, db, resp, err)
		return resp, err
	case "create", "createindexes", "drop", "dropdatabase", "dropindexes":
		unlock := s.front.lock(db)
		defer unlock()
		s.front.docs.dropDB(db)
		resp, err := s.forward(m.raw, expectsReply(m, p))
		if err == nil && s.front.onDDL != nil {
			s.front.onDDL(context.Background(), db)
		}
		return resp, err
	}
	if !readOnly[name] || name == "aggregate" && (bytes.Contains(p.body, []byte("$out")) || bytes.Contains(p.body, []byte("$merge"))) {
		unlock := s.front.lock(db)
		defer unlock()
		s.front.docs.dropDB(db)
		return s.forward(m.raw, expectsReply(m, p))
	}
	return s.forward(m.raw, expectsReply(m, p))
}

// forgetWritten drops what the cache knows about the documents a write (not through the fast
// path) may change: its `_id` if it names one, else the whole database.
func (f *front) forgetWritten(p *parsedMsg, name, db string) {
	coll, _ := p.body.Lookup(commandName(p.body)).StringValueOK()
	var filters []bson.Raw
	switch name {
	case "findandmodify":
		if q, ok := p.body.Lookup("query").DocumentOK(); ok {
			filters = append(filters, q)
		}
	default:
		seq := "updates"
		if name == "delete" {
			seq = "deletes"
		}
		stmts, _ := statements(p, seq)
		for _, st := range stmts {
			q, ok := st.Lookup("q").DocumentOK()
			if !ok || name == "update" && truthy(st.Lookup("multi")) {
				f.docs.dropDB(db)
				return
			}
			filters = append(filters, q)
		}
	}
	if len(filters) == 0 {
		f.docs.dropDB(db)
		return
	}
	for _, q := range filters {
		id, _, ok := splitIDFilter(q)
		key, keyed := cacheKey(db, coll, id)
		if !ok || !keyed {
			f.docs.dropDB(db)
			return
		}
		f.docs.drop(key)
	}
}

// rememberInserted records inserted documents, or forgets their ids if the insert failed.
func (f *front) rememberInserted(p *parsedMsg, db string, resp []byte, err error) {
	coll, _ := p.body.Lookup(commandName(p.body)).StringValueOK()
	docs, _ := statements(p, "documents")
	ok := err == nil && resp != nil && wrote(resp, int32(len(docs)))
	for _, d := range docs {
		key, keyed := cacheKey(db, coll, d.Lookup("_id"))
		if !keyed {
			continue
		}
		if ok {
			f.docs.put(key, d)
		} else {
			f.docs.drop(key)
		}
	}
}

// expectsReply: OP_MSG answers unless the client set moreToCome; legacy OP_QUERY (2004) always
// answers; other legacy opcodes never do.
func expectsReply(m message, p *parsedMsg) bool {
	if p != nil {
		return p.flags&flagMoreToCome == 0
	}
	return m.opCode() == 2004
}

func (s *session) forward(raw []byte, reply bool) ([]byte, error) {
	if _, err := s.backend.Write(raw); err != nil {
		return nil, err
	}
	if !reply {
		return nil, nil
	}
	r, err := readMessage(s.br)
	if err != nil {
		return nil, err
	}
	return r.raw, nil
}

// fastPath handles a single-statement write whose filter is a string `_id` plus conditions.
// handled is false when the message must go to FerretDB unchanged.
func (s *session) fastPath(m message, p *parsedMsg, name, db string) (resp []byte, handled bool, err error) {
	if p.flags&flagMoreToCome != 0 {
		return nil, false, nil
	}
	coll, ok := p.body.Lookup(commandName(p.body)).StringValueOK()
	if !ok {
		return nil, false, nil
	}

	var (
		filterKey string
		stmt      bson.Raw // the statement holding the filter (update/delete) or the body
		seqName   string   // "updates"/"deletes"
		inSeq     bool
	)
	switch name {
	case "findandmodify":
		if truthy(p.body.Lookup("upsert")) || hasNonEmptyDoc(p.body.Lookup("sort")) {
			return nil, false, nil
		}
		stmt, filterKey = p.body, "query"
	case "update", "delete":
		seqName, filterKey = "updates", "q"
		if name == "delete" {
			seqName = "deletes"
		}
		stmts, seq := statements(p, seqName)
		if len(stmts) != 1 {
			return nil, false, nil
		}
		stmt, inSeq = stmts[0], seq
		if name == "update" && (truthy(stmt.Lookup("multi")) || truthy(stmt.Lookup("upsert"))) {
			return nil, false, nil
		}
		if name == "delete" {
			if lim, ok := stmt.Lookup("limit").AsInt64OK(); !ok || lim != 1 {
				return nil, false, nil
			}
		}
	}
	filter, ok := stmt.Lookup(filterKey).DocumentOK()
	if !ok {
		return nil, false, nil
	}
	id, rest, ok := splitIDFilter(filter)
	if !ok || len(rest) == 0 {
		return nil, false, nil
	}

	key, keyed := cacheKey(db, coll, id)
	doc, found := s.front.docs.get(key)
	if !found {
		s.front.preReads.Add(1)
		doc, found, err = s.findByID(db, coll, id)
		if err != nil || found && doc == nil {
			return nil, false, err
		}
		if found && keyed {
			s.front.docs.put(key, doc)
		}
	}
	match := false
	if found {
		var decided bool
		match, decided = matches(doc, rest)
		if !decided {
			return nil, false, nil
		}
	}
	s.front.fastPath.Add(1)

	if !match {
		var reply bson.D
		switch name {
		case "findandmodify":
			reply = bson.D{
				{Key: "lastErrorObject", Value: bson.D{{Key: "n", Value: int32(0)}, {Key: "updatedExisting", Value: false}}},
				{Key: "value", Value: nil},
				{Key: "ok", Value: 1.0},
			}
		case "update":
			reply = bson.D{{Key: "n", Value: int32(0)}, {Key: "nModified", Value: int32(0)}, {Key: "ok", Value: 1.0}}
		default:
			reply = bson.D{{Key: "n", Value: int32(0)}, {Key: "ok", Value: 1.0}}
		}
		body, err := bson.Marshal(reply)
		if err != nil {
			return nil, false, err
		}
		out := &parsedMsg{body: body}
		return out.encode(s.front.nextID.Add(1), m.requestID()), true, nil
	}

	idOnly, err := bson.Marshal(bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return nil, false, err
	}
	newStmt := replaceField(stmt, filterKey, idOnly)
	switch {
	case name == "findandmodify":
		p.body = newStmt
	case inSeq:
		p.sequences[seqName] = []bson.Raw{newStmt}
	default:
		arr := bson.Raw(buildArray([]bson.Raw{newStmt}))
		p.body = replaceFieldRaw(p.body, seqName, bson.TypeArray, arr)
	}
	raw := p.encode(m.requestID(), 0)
	resp, err = s.forward(raw, true)
	// Record the document's new version when the write replaced it whole; otherwise forget it.
	var post bson.Raw
	replaced := false
	switch name {
	case "update":
		post, replaced = replacementOf(stmt.Lookup("u"), id)
	case "findandmodify":
		if !truthy(stmt.Lookup("remove")) {
			post, replaced = replacementOf(stmt.Lookup("update"), id)
		}
	}
	if keyed && replaced && err == nil && wrote(resp, 1) {
		s.front.docs.put(key, post)
	} else {
		s.front.docs.drop(key)
	}
	return resp, true, err
}

// findByID reads one document by `_id` over the backend connection. found with a nil doc
// means the backend answered with an error; the caller then forwards the original command.
func (s *session) findByID(db, coll string, id bson.RawValue) (bson.Raw, bool, error) {
	body, err := bson.Marshal(bson.D{
		{Key: "find", Value: coll},
		{Key: "filter", Value: bson.D{{Key: "_id", Value: id}}},
		{Key: "limit", Value: int64(1)},
		{Key: "singleBatch", Value: true},
		{Key: "$db", Value: db},
	})
	if err != nil {
		return nil, false, err
	}
	req := &parsedMsg{body: body}
	raw, err := s.forward(req.encode(s.front.nextID.Add(1), 0), true)
	if err != nil {
		return nil, false, err
	}
	reply, err := parseOpMsg(message{raw: raw})
	if err != nil {
		return nil, true, nil
	}
	if okv, _ := reply.body.Lookup("ok").AsFloat64OK(); okv != 1 {
		return nil, true, nil
	}
	batch, ok := reply.body.Lookup("cursor", "firstBatch").ArrayOK()
	if !ok {
		return nil, true, nil
	}
	vals, err := batch.Values()
	if err != nil {
		return nil, true, nil
	}
	if len(vals) == 0 {
		return nil, false, nil
	}
	doc, ok := vals[0].DocumentOK()
	if !ok {
		return nil, true, nil
	}
	return doc, true, nil
}

// statements returns the write statements of an update/delete command and whether they came
// in a document sequence (OP_MSG kind 1) rather than the body.
func statements(p *parsedMsg, name string) ([]bson.Raw, bool) {
	if docs, ok := p.sequences[name]; ok {
		return docs, true
	}
	arr, ok := p.body.Lookup(name).ArrayOK()
	if !ok {
		return nil, false
	}
	vals, err := arr.Values()
	if err != nil {
		return nil, false
	}
	out := make([]bson.Raw, 0, len(vals))
	for _, v := range vals {
		d, ok := v.DocumentOK()
		if !ok {
			return nil, false
		}
		out = append(out, d)
	}
	return out, false
}

func truthy(v bson.RawValue) bool {
	switch v.Type {
	case bson.TypeBoolean:
		return v.Boolean()
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
		f, _ := v.AsFloat64OK()
		return f != 0
	}
	return false
}

func hasNonEmptyDoc(v bson.RawValue) bool {
	d, ok := v.DocumentOK()
	if !ok {
		return false
	}
	elems, _ := d.Elements()
	return len(elems) > 0
}

// replaceField returns a copy of doc with the embedded-document field key replaced by value.
func replaceField(doc bson.Raw, key string, value bson.Raw) bson.Raw {
	return replaceFieldRaw(doc, key, bson.TypeEmbeddedDocument, value)
}

func replaceFieldRaw(doc bson.Raw, key string, t bson.Type, value []byte) bson.Raw {
	elems, _ := doc.Elements()
	out := make([]byte, 4, len(doc)+len(value))
	for _, e := range elems {
		if e.Key() == key {
			out = append(out, byte(t))
			out = append(out, key...)
			out = append(out, 0)
			out = append(out, value...)
			continue
		}
		out = append(out, e...)
	}
	out = append(out, 0)
	binary.LittleEndian.PutUint32(out[:4], uint32(len(out)))
	return out
}

// buildArray encodes documents as a BSON array ("0", "1", ... keys).
func buildArray(docs []bson.Raw) []byte {
	out := make([]byte, 4)
	for i, d := range docs {
		out = append(out, byte(bson.TypeEmbeddedDocument))
		out = append(out, []byte(itoa(i))...)
		out = append(out, 0)
		out = append(out, d...)
	}
	out = append(out, 0)
	binary.LittleEndian.PutUint32(out[:4], uint32(len(out)))
	return out
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}
