package server

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// gRPC-Web text is gRPC-Web with its body in base64, the encoding browsers
// that cannot read binary streams use (grpc-web's "text" mode). connect-go
// serves gRPC-Web (binary); [GRPCWebText] translates: it decodes a
// request of Content-Type application/grpc-web-text[+proto|+json] into
// gRPC-Web, and base64-encodes the answer, streaming, under the text
// Content-Type. Every other request passes untouched.

const (
	grpcWebTextPrefix = "application/grpc-web-text"
	grpcWebPrefix     = "application/grpc-web"
)

// errGRPCWebText is a gRPC-Web text body that is not base64.
var errGRPCWebText = errors.New("grpc-web-text: the body is not base64")

// GRPCWebText returns the middleware translating gRPC-Web text to the
// gRPC-Web connect-go serves. maxBytes bounds the base64 body it reads
// (the decoded body is three quarters of it); 0 means 4/3 of 4 MiB.
func GRPCWebText(maxBytes int64) func(http.Handler) http.Handler {
	if maxBytes <= 0 {
		maxBytes = (4 << 20) * 4 / 3
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ct := r.Header.Get("Content-Type")
			if !strings.HasPrefix(ct, grpcWebTextPrefix) {
				next.ServeHTTP(w, r)
				return
			}
			raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
			var body []byte
			if err == nil {
				body, err = decodeChunks(raw)
			}
			if err != nil {
				// A gRPC-Web answer: HTTP 200 with the status in headers.
				w.Header().Set("Content-Type", grpcWebTextPrefix+"+proto")
				w.Header().Set("Grpc-Status", strconv.Itoa(3)) // invalid_argument
				w.Header().Set("Grpc-Message", "request body is not base64 gRPC-Web text")
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					w.Header().Set("Grpc-Status", strconv.Itoa(8)) // resource_exhausted
					w.Header().Set("Grpc-Message", "request too large")
				}
				w.WriteHeader(http.StatusOK)
				return
			}
			r2 := r.Clone(r.Context())
			r2.Header.Set("Content-Type", grpcWebPrefix+strings.TrimPrefix(ct, grpcWebTextPrefix))
			r2.Header.Del("Content-Length")
			if acc := r.Header.Get("Accept"); strings.HasPrefix(acc, grpcWebTextPrefix) {
				r2.Header.Set("Accept", grpcWebPrefix+strings.TrimPrefix(acc, grpcWebTextPrefix))
			}
			r2.Body = io.NopCloser(bytes.NewReader(body))
			r2.ContentLength = int64(len(body))
			tw := &textWriter{ResponseWriter: w}
			tw.enc = base64.NewEncoder(base64.StdEncoding, &passWriter{tw})
			next.ServeHTTP(tw, r2)
			tw.finish()
		})
	}
}

// decodeChunks decodes a body of one or more base64 chunks, each padded on
// its own (a client may send several).
func decodeChunks(raw []byte) ([]byte, error) {
	raw = bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, raw)
	out := make([]byte, 0, base64.StdEncoding.DecodedLen(len(raw)))
	for len(raw) > 0 {
		// A chunk ends after its padding, or at the end.
		end := len(raw)
		if i := bytes.IndexByte(raw, '='); i >= 0 {
			end = i
			for end < len(raw) && raw[end] == '=' {
				end++
			}
		}
		chunk := raw[:end]
		if len(chunk)%4 != 0 {
			return nil, errGRPCWebText
		}
		buf := make([]byte, base64.StdEncoding.DecodedLen(len(chunk)))
		n, err := base64.StdEncoding.Decode(buf, chunk)
		if err != nil {
			return nil, errGRPCWebText
		}
		out = append(out, buf[:n]...)
		raw = raw[end:]
	}
	return out, nil
}

// textWriter base64-encodes what the handler writes. A Flush sends what
// was written so far, padded (the client decodes padded chunks); the
// encoder then starts a new chunk.
type textWriter struct {
	http.ResponseWriter
	enc         io.WriteCloser
	wroteHeader bool
}

// passWriter lets the encoder write through the wrapped writer.
type passWriter struct{ tw *textWriter }

func (p *passWriter) Write(b []byte) (int, error) { return p.tw.ResponseWriter.Write(b) }

func (t *textWriter) WriteHeader(code int) {
	if t.wroteHeader {
		return
	}
	t.wroteHeader = true
	h := t.ResponseWriter.Header()
	if ct := h.Get("Content-Type"); strings.HasPrefix(ct, grpcWebPrefix) {
		h.Set("Content-Type", grpcWebTextPrefix+strings.TrimPrefix(ct, grpcWebPrefix))
	}
	h.Del("Content-Length")
	t.ResponseWriter.WriteHeader(code)
}

func (t *textWriter) Write(b []byte) (int, error) {
	if !t.wroteHeader {
		t.WriteHeader(http.StatusOK)
	}
	return t.enc.Write(b)
}

func (t *textWriter) Flush() {
	if !t.wroteHeader {
		t.WriteHeader(http.StatusOK)
	}
	_ = t.enc.Close()
	t.enc = base64.NewEncoder(base64.StdEncoding, &passWriter{t})
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (t *textWriter) finish() {
	if !t.wroteHeader {
		t.WriteHeader(http.StatusOK)
	}
	_ = t.enc.Close()
}

func (t *textWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
