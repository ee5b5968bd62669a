package client

import chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"

// Key is req's cache key, for the black-box tests.
func Key(req *chaperonev1.CheckRequest) ([]byte, error) {
	k, _, err := appendKey(nil, nil, req)
	return k, err
}

// CacheLen is the number of entries in c's cache.
func CacheLen(c *Client) int {
	if c.cache == nil {
		return 0
	}
	return c.cache.len()
}
