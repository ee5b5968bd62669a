package consentstore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

// Optimistic concurrency: a write that read version 1 replaces the record
// only while it still has that version; an id never moves to another
// patient.
func ExampleIfVersion() {
	ctx := context.Background()
	store := consentstore.NewMemory()
	c, err := fhirconsent.Parse([]byte(`{"resourceType":"Consent","id":"optout-53","status":"active",
		"patient":{"reference":"Patient/53"},"policyRule":{"coding":[{"code":"OPTOUT"}]}}`))
	if err != nil {
		panic(err)
	}
	first, _ := store.Put(ctx, c)
	second, err := store.Put(ctx, c, consentstore.IfVersion(first.Version))
	fmt.Println("replaced:", err == nil, first.Version, "→", second.Version)

	_, err = store.Put(ctx, c, consentstore.IfVersion(first.Version))
	fmt.Println("stale:", errors.Is(err, consentstore.ErrVersionMismatch))

	other, _ := fhirconsent.Parse([]byte(`{"resourceType":"Consent","id":"optout-53","status":"active",
		"patient":{"reference":"Patient/999"},"policyRule":{"coding":[{"code":"OPTIN"}]}}`))
	_, err = store.Put(ctx, other)
	fmt.Println("other patient:", errors.Is(err, consentstore.ErrOtherPatient))
	// Output:
	// replaced: true 1 → 2
	// stale: true
	// other patient: true
}
