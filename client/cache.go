package client

import (
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// cache is a least-recently-used map of decisions with an expiry each,
// bounded by a number of entries. It is safe for concurrent use.
type cache struct {
	mu      sync.Mutex
	max     int
	entries map[string]*entry
	head    entry // sentinel: head.next is the most recently used
}

// entry is one cached decision, in the recency list.
type entry struct {
	key        string
	resp       *chaperonev1.CheckResponse // never handed out: copies are
	expires    time.Time
	prev, next *entry
}

func newCache(max int) *cache {
	c := &cache{max: max, entries: make(map[string]*entry, min(max, 1024))}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

// get returns a copy of the answer cached under key, its cacheTtl the
// time it has left at now, or nil. An expired entry is dropped.
func (c *cache) get(key []byte, now time.Time) *chaperonev1.CheckResponse {
	c.mu.Lock()
	e := c.entries[string(key)]
	if e == nil {
		c.mu.Unlock()
		return nil
	}
	left := e.expires.Sub(now)
	if left <= 0 {
		c.remove(e)
		c.mu.Unlock()
		return nil
	}
	c.unlink(e)
	c.pushFront(e)
	resp := e.resp
	c.mu.Unlock()
	out := snapshot(resp)
	out.CacheTtl = durationpb.New(left)
	return out
}

// put keeps resp, which the cache now owns, under key until expires,
// evicting the least recently used entry when full.
func (c *cache) put(key string, resp *chaperonev1.CheckResponse, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil {
		e.resp, e.expires = resp, expires
		c.unlink(e)
		c.pushFront(e)
		return
	}
	if len(c.entries) >= c.max {
		c.remove(c.head.prev)
	}
	e := &entry{key: key, resp: resp, expires: expires}
	c.entries[key] = e
	c.pushFront(e)
}

// len is the number of entries, expired ones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *cache) remove(e *entry) {
	c.unlink(e)
	delete(c.entries, e.key)
}

func (c *cache) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *cache) pushFront(e *entry) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}
