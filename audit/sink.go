package audit

import "context"

// Sink stores chained records durably.
type Sink interface {
	// Append seals b onto the sink's current head and stores the lines in
	// order; when it returns nil they are durable. It is safe against
	// other processes appending to the same sink. On error nothing may be
	// assumed stored; the caller appends the batch again.
	Append(ctx context.Context, b *Batch) error
	// Close releases the sink.
	Close() error
}
