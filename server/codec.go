package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/chaperone-pdp/chaperone/checkjson"
	"github.com/chaperone-pdp/chaperone/validation"
)

// jsonCodec is the proto3 JSON codec of every service, for Connect JSON
// ("application/json", with or without "; charset=utf-8"), gRPC-JSON
// ("application/grpc+json") and Connect GET with encoding=json. Unlike
// connect-go's own, which drops a member the message does not have, it
// refuses one: a misspelt "securityLabel" or "subject.scope" must not turn
// into a request without labels or scopes. Connect answers the refusal
// with invalid_argument; the message names the field's path. The
// DecisionService's messages go through [checkjson] first, which reads
// and writes them as protojson does without its reflection, and hands
// protojson whatever it does not read (every body protojson refuses among
// them), so the answer, message or error, is protojson's. The path of an
// unknown member is looked for only when protojson has refused the
// message.
type jsonCodec struct{ name string }

var _ connect.Codec = jsonCodec{}

// jsonCodecs are the codecs registered under the names connect-go uses
// for JSON, replacing its own.
func jsonCodecs() []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithCodec(jsonCodec{name: "json"}),
		connect.WithCodec(jsonCodec{name: "json; charset=utf-8"}),
	}
}

func (c jsonCodec) Name() string { return c.name }

func (c jsonCodec) IsBinary() bool { return false }

func (c jsonCodec) Marshal(msg any) ([]byte, error) {
	return c.MarshalAppend(nil, msg)
}

func (c jsonCodec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("marshal %T: not a protobuf message", msg)
	}
	if out, ok := checkjson.Append(dst, m); ok {
		return out, nil
	}
	return protojson.MarshalOptions{}.MarshalAppend(dst, m)
}

// MarshalStable is Marshal without protojson's random whitespace.
func (c jsonCodec) MarshalStable(msg any) ([]byte, error) {
	data, err := c.Marshal(msg)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Compact(&out, data); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func (c jsonCodec) Unmarshal(data []byte, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("unmarshal %T: not a protobuf message", msg)
	}
	if len(data) == 0 {
		return errors.New("an empty body is not a JSON object")
	}
	if checkjson.Unmarshal(data, m) {
		return nil
	}
	return validation.UnmarshalJSON(data, m)
}
