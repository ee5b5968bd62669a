package consentstore_test

import (
	"testing"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/consentstore/storetest"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

func TestMemoryRelationships(t *testing.T) {
	t.Parallel()
	storetest.RunRelationships(t, func(t *testing.T) consentstore.Relationships {
		return consentstore.NewMemoryRelationships(nil)
	})
}

func TestRedisRelationships(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	client, _ := newClient(t, addr)
	storetest.RunRelationships(t, func(t *testing.T) consentstore.Relationships {
		return newRedis(t, client, "")
	})
}
