// Package checkjson reads and writes the proto3 JSON form of the
// DecisionService messages (CheckRequest and BatchCheckRequest in,
// CheckResponse and BatchCheckResponse out) without protobuf reflection,
// for the server's JSON codec, where protojson was the largest single
// cost of a Connect JSON Check.
//
// It is a fast path, not a second implementation of proto3 JSON: it
// reads and writes only the plain shape those messages take in practice
// (members named in either spelling, strings without escapes, valid
// UTF-8, RFC 3339 timestamps) and gives up on anything else, leaving the
// message to protojson. [Unmarshal] reports false for a body it does not
// read, including every body protojson refuses (unknown or duplicate
// members, null, numbers or booleans where strings belong, escapes,
// control characters, invalid UTF-8, trailing bytes), so the caller asks
// protojson, whose answer (the same message, or its error) is then the
// answer:
//
//	if !checkjson.Unmarshal(data, msg) {
//		err = protojson.Unmarshal(data, msg)
//	}
//
// [Append] likewise writes what protojson writes (compact, without
// protojson's random spaces) or reports false. Differential tests
// generate every field of every message by reflection, mutate the
// encodings and fuzz both directions against protojson; a field added to
// one of these messages fails them until the fast path reads it.
package checkjson
