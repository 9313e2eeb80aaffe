package mongostore

import (
	"container/list"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// writtenCacheSize bounds the employee documents this process remembers having written
// (a few KiB each).
const writtenCacheSize = 2048

// writtenCache remembers the exact bytes of the employee documents this process wrote last,
// so that the next compare-and-swap of the same employee (a request's local effects right
// after its own write, the runner's lease and then its record) starts from them instead of
// reading the document back. It is only a guess: the write is still conditional on the
// remembered rev, and a miss (another process or goroutine wrote meanwhile) falls back to a
// read, exactly as a lost race does.
type writtenCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[string]*list.Element
}

type writtenEntry struct {
	id  string
	raw bson.Raw
}

func newWrittenCache(max int) *writtenCache {
	return &writtenCache{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *writtenCache) get(id string) bson.Raw {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[id]; ok {
		c.ll.MoveToFront(el)
		return el.Value.(*writtenEntry).raw
	}
	return nil
}

func (c *writtenCache) put(id string, raw bson.Raw) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[id]; ok {
		el.Value.(*writtenEntry).raw = raw
		c.ll.MoveToFront(el)
		return
	}
	c.items[id] = c.ll.PushFront(&writtenEntry{id: id, raw: raw})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*writtenEntry).id)
	}
}

func (c *writtenCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[id]; ok {
		c.ll.Remove(el)
		delete(c.items, id)
	}
}
