package h2c

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame types (RFC 9113 §6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
)

// Frame flags.
const (
	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// Error codes (RFC 9113 §7).
type errCode uint32

const (
	codeNo               errCode = 0x0
	codeProtocol         errCode = 0x1
	codeInternal         errCode = 0x2
	codeFlowControl      errCode = 0x3
	codeStreamClosed     errCode = 0x5
	codeFrameSize        errCode = 0x6
	codeRefusedStream    errCode = 0x7
	codeCancel           errCode = 0x8
	codeCompression      errCode = 0x9
	codeEnhanceYourCalm  errCode = 0xb
	codeHTTP11Required   errCode = 0xd
	maxCodeForErrorNames errCode = 0xd
)

// Settings (RFC 9113 §6.5.2).
const (
	settingHeaderTableSize      = 0x1
	settingEnablePush           = 0x2
	settingMaxConcurrentStreams = 0x3
	settingInitialWindowSize    = 0x4
	settingMaxFrameSize         = 0x5
	settingMaxHeaderListSize    = 0x6
)

const (
	// clientPreface opens every HTTP/2 connection from the client.
	clientPreface  = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	frameHeaderLen = 9
	// defaultMaxFrameSize is the largest frame either side may send until
	// the peer's SETTINGS say otherwise; it is also the largest this
	// server accepts (it never raises SETTINGS_MAX_FRAME_SIZE).
	defaultMaxFrameSize = 16384
	maxFrameSizeLimit   = 1<<24 - 1
	defaultWindow       = 65535
	maxWindow           = 1<<31 - 1
)

// ConnError is a connection error (RFC 9113 §5.4.1): the server sends
// GOAWAY with Code and closes the connection.
type ConnError struct {
	Code   uint32
	Reason string
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("http2 connection error %s: %s", codeName(errCode(e.Code)), e.Reason)
}

func connErr(code errCode, format string, args ...any) error {
	return &ConnError{Code: uint32(code), Reason: fmt.Sprintf(format, args...)}
}

func codeName(c errCode) string {
	names := [...]string{"NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
		"SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL",
		"COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"}
	if c <= maxCodeForErrorNames {
		return names[c]
	}
	return fmt.Sprintf("0x%x", uint32(c))
}

// frameHeader is a frame's 9-byte header.
type frameHeader struct {
	length   uint32
	typ      uint8
	flags    uint8
	streamID uint32
}

func (h frameHeader) has(f uint8) bool { return h.flags&f != 0 }

// errPrefaceMismatch: the connection did not open with the client preface.
var errPrefaceMismatch = errors.New("http2: connection does not open with the client preface")

// frameReader reads frames from a buffered connection into one payload
// buffer that each read reuses.
type frameReader struct {
	r       *bufio.Reader
	hdr     [frameHeaderLen]byte
	payload []byte
	max     uint32 // largest payload accepted
}

// readPreface consumes the client preface.
func (fr *frameReader) readPreface() error {
	var b [len(clientPreface)]byte
	if _, err := io.ReadFull(fr.r, b[:]); err != nil {
		return err
	}
	if string(b[:]) != clientPreface {
		return errPrefaceMismatch
	}
	return nil
}

// next reads one frame. The payload is valid until the next call. A frame
// larger than fr.max is a FRAME_SIZE_ERROR connection error.
func (fr *frameReader) next() (frameHeader, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return frameHeader{}, nil, err
	}
	h := frameHeader{
		length:   uint32(fr.hdr[0])<<16 | uint32(fr.hdr[1])<<8 | uint32(fr.hdr[2]),
		typ:      fr.hdr[3],
		flags:    fr.hdr[4],
		streamID: binary.BigEndian.Uint32(fr.hdr[5:]) & (1<<31 - 1),
	}
	if h.length > fr.max {
		return h, nil, connErr(codeFrameSize, "frame of %d bytes, more than %d", h.length, fr.max)
	}
	if cap(fr.payload) < int(h.length) {
		fr.payload = make([]byte, h.length, max(int(h.length), 4096))
	}
	p := fr.payload[:h.length]
	if _, err := io.ReadFull(fr.r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, err
	}
	return h, p, nil
}

// frameReady reports whether a whole frame is already buffered, so the
// next read will not wait for the network.
func (fr *frameReader) frameReady() bool {
	n := fr.r.Buffered()
	if n < frameHeaderLen {
		return false
	}
	b, _ := fr.r.Peek(frameHeaderLen)
	l := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
	return n >= frameHeaderLen+l
}

// unpad strips a PADDED frame's padding (and the pad length octet).
func unpad(h frameHeader, p []byte) ([]byte, error) {
	if !h.has(flagPadded) {
		return p, nil
	}
	if len(p) < 1 {
		return nil, connErr(codeProtocol, "padded frame without a pad length")
	}
	pad := int(p[0])
	if pad >= len(p) {
		return nil, connErr(codeProtocol, "padding of %d bytes in a frame of %d", pad, len(p))
	}
	return p[1 : len(p)-pad], nil
}

// appendFrameHeader appends a frame header for a payload of n bytes.
func appendFrameHeader(b []byte, n int, typ, flags uint8, streamID uint32) []byte {
	return append(b, byte(n>>16), byte(n>>8), byte(n), typ, flags,
		byte(streamID>>24), byte(streamID>>16), byte(streamID>>8), byte(streamID))
}
