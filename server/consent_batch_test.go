package server_test

import (
	"context"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// TestConsentServicePutBatch: every item of a batch is answered, in order,
// as Put answers the same consent on its own (stored, or refused with the
// same code and message), and a refused item does not stop the others.
func TestConsentServicePutBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	items := []string{
		`{"resourceType":"Consent","id":"ok-1","status":"active","patient":{"reference":"Patient/1"},"provision":{"type":"deny"}}`,
		`{"resourceType":"Patient","id":"p"}`,
		`{"resourceType":"Consent","patient":{"reference":"Patient/1"}}`,
		`{"resourceType":"Consent","id":"ok-2","status":"active","patient":{"reference":"Patient/2"}}`,
		`{"resourceType":"Consent","id":"pre","status":"active","patient":{"reference":"Patient/9"}}`, // pre is Patient/1's
		`{"resourceType":"Consent","status":"active","subject":{"reference":"Patient/3"},"decision":"deny"}`,
	}
	for i := range 40 {
		items = append(items, fmt.Sprintf(`{"resourceType":"Consent","id":"bulk-%d","status":"active","patient":{"reference":"Patient/b%d"}}`, i, i))
	}
	batchClient, batchStore := consentClient(t)
	oneClient, _ := consentClient(t)
	pre := `{"resourceType":"Consent","id":"pre","status":"active","patient":{"reference":"Patient/1"}}`
	for _, c := range []chaperonev1connect.ConsentServiceClient{batchClient, oneClient} {
		if _, err := c.Put(ctx, putReq(t, pre)); err != nil {
			t.Fatal(err)
		}
	}
	req := &chaperonev1.ConsentServicePutBatchRequest{}
	for _, js := range items {
		req.Items = append(req.Items, &chaperonev1.ConsentServicePutRequest{Consent: structOf(t, js)})
	}
	resp, err := batchClient.PutBatch(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Msg.GetResults()) != len(items) {
		t.Fatalf("%d results for %d items", len(resp.Msg.GetResults()), len(items))
	}
	for i, js := range items {
		got := resp.Msg.GetResults()[i]
		want, err := oneClient.Put(ctx, putReq(t, js))
		switch {
		case err != nil:
			if got.GetCode() != connect.CodeOf(err).String() || got.GetMessage() != err.(*connect.Error).Message() || got.GetId() != "" {
				t.Errorf("item %d: %+v, Put answers %v", i, got, err)
			}
		case got.GetCode() != "" || got.GetVersion() == "":
			t.Errorf("item %d: %+v, Put stored it", i, got)
		case want.Msg.GetId() != got.GetId() && i != 5: // 5 gets a fresh id each time
			t.Errorf("item %d: id %q, Put gives %q", i, got.GetId(), want.Msg.GetId())
		}
	}
	if r := resp.Msg.GetResults()[4]; r.GetCode() != connect.CodeFailedPrecondition.String() {
		t.Errorf("an id of another patient: %+v", r)
	}
	for i := range 40 {
		if _, err := batchStore.Get(ctx, fmt.Sprint("bulk-", i)); err != nil {
			t.Errorf("bulk-%d not stored: %v", i, err)
		}
	}
}
