package client

import (
	"errors"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Field numbers the cache key leaves out (a test holds them to the
// descriptor): CheckRequest.context, and in Context, time and
// correlation_id.
const (
	fieldContext       protowire.Number = 5
	fieldContextTime   protowire.Number = 1
	fieldCorrelationID protowire.Number = 6
)

var errMalformed = errors.New("malformed request encoding")

// appendKey appends req's cache key to dst: its deterministic protobuf
// encoding without context.time and context.correlation_id. Working on
// the encoding rather than on named fields means that every field but
// those two, including fields added later and unknown fields, is in the
// key. scratch is reused for the encoding and returned, grown.
func appendKey(dst, scratch []byte, req *chaperonev1.CheckRequest) (key, scratchOut []byte, err error) {
	raw, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(scratch[:0], req)
	if err != nil {
		return dst, scratch, err
	}
	scratch = raw
	dst, err = stripVolatile(dst, raw)
	return dst, scratch, err
}

// stripVolatile appends raw, the encoding of a CheckRequest, to dst
// without the volatile context fields.
func stripVolatile(dst, raw []byte) ([]byte, error) {
	var err error
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return dst, errMalformed
		}
		m := protowire.ConsumeFieldValue(num, typ, raw[n:])
		if m < 0 {
			return dst, errMalformed
		}
		if num == fieldContext && typ == protowire.BytesType {
			body, _ := protowire.ConsumeBytes(raw[n:])
			dst, err = appendContext(dst, body)
			if err != nil {
				return dst, err
			}
		} else {
			dst = append(dst, raw[:n+m]...)
		}
		raw = raw[n+m:]
	}
	return dst, nil
}

// appendContext appends the context field with body less its volatile
// fields, or nothing when nothing else is left.
func appendContext(dst, body []byte) ([]byte, error) {
	kept := 0
	for b := body; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return dst, errMalformed
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return dst, errMalformed
		}
		if num != fieldContextTime && num != fieldCorrelationID {
			kept += n + m
		}
		b = b[n+m:]
	}
	if kept == 0 {
		return dst, nil
	}
	dst = protowire.AppendTag(dst, fieldContext, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(kept))
	for b := body; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if num != fieldContextTime && num != fieldCorrelationID {
			dst = append(dst, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return dst, nil
}

// buf holds the scratch buffers of one key computation.
type buf struct{ key, scratch []byte }

// bufPool recycles scratch buffers for encoding keys.
type bufPool struct{ p sync.Pool }

func (p *bufPool) get() *buf {
	if b, ok := p.p.Get().(*buf); ok {
		return b
	}
	return &buf{key: make([]byte, 0, 512), scratch: make([]byte, 0, 512)}
}

func (p *bufPool) put(b *buf) {
	if cap(b.key) <= 64<<10 && cap(b.scratch) <= 64<<10 {
		p.p.Put(b)
	}
}
