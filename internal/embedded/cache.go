package embedded

import (
	"container/list"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// docCache remembers the current version of documents the front has seen, so the `_id` fast
// path can evaluate a conditional write's conditions without asking FerretDB for the document
// first. It is exact, not a guess: every write of the store goes through the front, under the
// database lock, and each one either records the document's new version (an insert, a
// replacement) or drops what the cache knew (operator updates, deletes, writes without an `_id`,
// DDL and any command not known to be read-only clear the database's entries).
type docCache struct {
	mu   sync.Mutex
	max  int
	size int
	ll   *list.List
	m    map[string]*list.Element
}

type cacheEntry struct {
	key string
	doc bson.Raw
}

func newDocCache(maxBytes int) *docCache {
	return &docCache{max: maxBytes, ll: list.New(), m: map[string]*list.Element{}}
}

func cacheKey(db, coll string, id bson.RawValue) (string, bool) {
	s, ok := id.StringValueOK()
	if !ok {
		return "", false
	}
	return db + "\x00" + coll + "\x00" + s, true
}

func (c *docCache) get(key string) (bson.Raw, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*cacheEntry).doc, true
}

func (c *docCache) put(key string, doc bson.Raw) {
	if c == nil || len(doc) > c.max/16 {
		c.drop(key)
		return
	}
	doc = append(bson.Raw(nil), doc...) // the message buffer is reused
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		e := el.Value.(*cacheEntry)
		c.size += len(doc) - len(e.doc)
		e.doc = doc
		c.ll.MoveToFront(el)
	} else {
		c.m[key] = c.ll.PushFront(&cacheEntry{key: key, doc: doc})
		c.size += len(doc) + len(key)
	}
	for c.size > c.max && c.ll.Len() > 0 {
		el := c.ll.Back()
		e := el.Value.(*cacheEntry)
		c.ll.Remove(el)
		delete(c.m, e.key)
		c.size -= len(e.doc) + len(e.key)
	}
}

func (c *docCache) drop(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		e := el.Value.(*cacheEntry)
		c.ll.Remove(el)
		delete(c.m, key)
		c.size -= len(e.doc) + len(e.key)
	}
}

// dropDB forgets every document of a database.
func (c *docCache) dropDB(db string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	prefix := db + "\x00"
	for key, el := range c.m {
		if strings.HasPrefix(key, prefix) {
			e := el.Value.(*cacheEntry)
			c.ll.Remove(el)
			delete(c.m, key)
			c.size -= len(e.doc) + len(e.key)
		}
	}
}

// readOnly lists the commands that change no document; any other command clears the cache
// entries of its database.
var readOnly = map[string]bool{
	"find": true, "getmore": true, "count": true, "distinct": true, "listcollections": true,
	"listindexes": true, "listdatabases": true, "ping": true, "hello": true, "ismaster": true,
	"buildinfo": true, "endsessions": true, "killcursors": true, "dbstats": true, "collstats": true,
	"serverstatus": true, "getparameter": true, "connectionstatus": true, "explain": true,
	"whatsmyuri": true, "getlog": true, "hostinfo": true, "saslstart": true, "saslcontinue": true,
	"getcmdlineopts": true, "validate": true, "datasize": true, "currentop": true,
	"getfreemonitoringstatus": true, "listcommands": true, "usersinfo": true, "aggregate": true,
}

// replacementOf returns the document an update statement or findAndModify body writes when it
// is a whole-document replacement (no update operators), with `_id` set.
func replacementOf(u bson.RawValue, id bson.RawValue) (bson.Raw, bool) {
	doc, ok := u.DocumentOK()
	if !ok {
		return nil, false
	}
	elems, err := doc.Elements()
	if err != nil {
		return nil, false
	}
	hasID := false
	for _, e := range elems {
		if strings.HasPrefix(e.Key(), "$") {
			return nil, false
		}
		if e.Key() == "_id" {
			hasID = true
		}
	}
	if hasID {
		return doc, true
	}
	out := make([]byte, 4, len(doc)+len(id.Value)+8)
	out = append(out, byte(id.Type))
	out = append(out, "_id"...)
	out = append(out, 0)
	out = append(out, id.Value...)
	for _, e := range elems {
		out = append(out, e...)
	}
	out = append(out, 0)
	putLen(out)
	return out, true
}

func putLen(b []byte) {
	n := uint32(len(b))
	b[0], b[1], b[2], b[3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
}

// wrote reports whether a write command's answer says it succeeded on n documents.
func wrote(resp []byte, wantN int32) bool {
	reply, err := parseOpMsg(message{raw: resp})
	if err != nil {
		return false
	}
	if okv, _ := reply.body.Lookup("ok").AsFloat64OK(); okv != 1 {
		return false
	}
	if _, err := reply.body.LookupErr("writeErrors"); err == nil {
		return false
	}
	if v, err := reply.body.LookupErr("lastErrorObject", "n"); err == nil {
		n, _ := v.AsInt64OK()
		return n == int64(wantN)
	}
	n, ok := reply.body.Lookup("n").AsInt64OK()
	return ok && n == int64(wantN)
}
