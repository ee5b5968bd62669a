package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// TestRequestClock: a server decides at its own clock, so a context.time
// more than the allowed skew away is invalid input naming the field, over
// every protocol, for Check and for each BatchCheck item; a time within the
// skew is decided.
func TestRequestClock(t *testing.T) {
	t.Parallel()
	base := startServer(t, true)
	now := time.Now()
	at := func(ts time.Time) *chaperonev1.CheckRequest {
		r := checkRequest(t)
		r.Context.Time = timestamppb.New(ts)
		return r
	}
	protocols := map[string][]connect.ClientOption{
		"connect": nil, "grpc": {connect.WithGRPC()}, "grpc-web": {connect.WithGRPCWeb()},
	}
	for name, opts := range protocols {
		client := chaperonev1connect.NewDecisionServiceClient(h2cClient(), base, opts...)
		for _, tc := range []struct {
			name string
			time time.Time
			ok   bool
		}{
			{"now", now, true},
			{"within the skew", now.Add(-4 * time.Minute), true},
			{"an hour ago", now.Add(-time.Hour), false},
			{"an hour ahead", now.Add(time.Hour), false},
			{"year 1", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), false},
			{"year 9999", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), false},
		} {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				_, err := client.Check(context.Background(), connect.NewRequest(at(tc.time)))
				checkClockErr(t, err, tc.ok, "context.time")
				batch := &chaperonev1.BatchCheckRequest{Requests: []*chaperonev1.CheckRequest{at(now), at(tc.time)}}
				_, err = client.BatchCheck(context.Background(), connect.NewRequest(batch))
				checkClockErr(t, err, tc.ok, "requests[1].context.time")
			})
		}
	}
}

func checkClockErr(t *testing.T, err error, ok bool, field string) {
	t.Helper()
	switch {
	case ok && err != nil:
		t.Fatalf("want a decision, got %v", err)
	case !ok && connect.CodeOf(err) != connect.CodeInvalidArgument:
		t.Fatalf("want invalid_argument, got %v", err)
	case !ok && !strings.Contains(err.Error(), field):
		t.Fatalf("error %q does not name %s", err, field)
	}
}
