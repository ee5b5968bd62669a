package proxy

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
)

// Bounds of a JSON Patch the proxy applies.
const (
	maxPatchOps     = 1000
	maxPatchedBytes = 16 << 20
)

// errPatch is any JSON Patch that cannot be applied.
var errPatch = errors.New("json patch cannot be applied")

type patchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	From  string          `json:"from"`
	Value json.RawMessage `json:"value"`
}

// applyPatch applies a JSON Patch (RFC 6902) to a copy of doc, so the
// proxy decides the resource the server would store.
func applyPatch(doc map[string]any, patch []byte) (map[string]any, error) {
	var ops []patchOp
	if err := json.Unmarshal(patch, &ops); err != nil || len(ops) == 0 || len(ops) > maxPatchOps {
		return nil, errPatch
	}
	orig := marshal(doc)
	cp, err := decodeObject(orig)
	if err != nil {
		return nil, errPatch
	}
	// Each copy can double the document: the bytes copied are bounded.
	size := len(orig) + len(patch)
	var root any = cp
	for _, op := range ops {
		var val any
		if op.Op == "add" || op.Op == "replace" || op.Op == "test" {
			if len(op.Value) == 0 {
				return nil, errPatch
			}
			v, err := decodeValue(op.Value)
			if err != nil {
				return nil, errPatch
			}
			val = v
		}
		switch op.Op {
		case "add":
			root, err = set(root, op.Path, val, true)
		case "replace":
			if _, err = get(root, op.Path); err == nil {
				root, err = set(root, op.Path, val, false)
			}
		case "remove":
			root, err = remove(root, op.Path)
		case "move", "copy":
			var v any
			v, err = get(root, op.From)
			if err == nil && op.Op == "copy" {
				if size += len(marshal(v)); size > maxPatchedBytes {
					return nil, errPatch
				}
			}
			if err == nil && op.Op == "move" {
				if strings.HasPrefix(op.Path, op.From+"/") {
					return nil, errPatch
				}
				root, err = remove(root, op.From)
			}
			if err == nil {
				root, err = set(root, op.Path, deepCopy(v), true)
			}
		case "test":
			var v any
			v, err = get(root, op.Path)
			if err == nil && !reflect.DeepEqual(normalize(v), normalize(val)) {
				err = errPatch
			}
		default:
			err = errPatch
		}
		if err != nil {
			return nil, errPatch
		}
	}
	m, ok := root.(map[string]any)
	if !ok {
		return nil, errPatch
	}
	return m, nil
}

func decodeValue(b []byte) (any, error) {
	wrapped, err := decodeObject(append(append([]byte(`{"v":`), b...), '}'))
	if err != nil {
		return nil, err
	}
	return wrapped["v"], nil
}

func deepCopy(v any) any {
	c, err := decodeValue(marshal(v))
	if err != nil {
		return nil
	}
	return c
}

func normalize(v any) any {
	var out any
	_ = json.Unmarshal(marshal(v), &out)
	return out
}

func pointer(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	if !strings.HasPrefix(path, "/") {
		return nil, errPatch
	}
	parts := strings.Split(path[1:], "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

func index(tok string, n int, end bool) (int, error) {
	if end && tok == "-" {
		return n, nil
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i < 0 || i > n || (!end && i == n) || (len(tok) > 1 && tok[0] == '0') {
		return 0, errPatch
	}
	return i, nil
}

func get(root any, path string) (any, error) {
	parts, err := pointer(path)
	if err != nil {
		return nil, err
	}
	cur := root
	for _, p := range parts {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[p]
			if !ok {
				return nil, errPatch
			}
			cur = v
		case []any:
			i, err := index(p, len(c), false)
			if err != nil {
				return nil, err
			}
			cur = c[i]
		default:
			return nil, errPatch
		}
	}
	return cur, nil
}

// set puts val at path (insert into arrays when add) and returns the new
// root.
func set(root any, path string, val any, add bool) (any, error) {
	parts, err := pointer(path)
	if err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return val, nil
	}
	parent, err := get(root, "/"+strings.Join(escape(parts[:len(parts)-1]), "/"))
	if len(parts) == 1 {
		parent, err = root, nil
	}
	if err != nil {
		return nil, err
	}
	last := parts[len(parts)-1]
	switch c := parent.(type) {
	case map[string]any:
		c[last] = val
	case []any:
		i, err := index(last, len(c), add)
		if err != nil {
			return nil, err
		}
		var next []any
		if add {
			next = append(append(append([]any{}, c[:i]...), val), c[i:]...)
		} else {
			next = append([]any{}, c...)
			next[i] = val
		}
		return replaceAt(root, parts[:len(parts)-1], next)
	default:
		return nil, errPatch
	}
	return root, nil
}

func remove(root any, path string) (any, error) {
	parts, err := pointer(path)
	if err != nil || len(parts) == 0 {
		return nil, errPatch
	}
	var parent any = root
	if len(parts) > 1 {
		parent, err = get(root, "/"+strings.Join(escape(parts[:len(parts)-1]), "/"))
		if err != nil {
			return nil, err
		}
	}
	last := parts[len(parts)-1]
	switch c := parent.(type) {
	case map[string]any:
		if _, ok := c[last]; !ok {
			return nil, errPatch
		}
		delete(c, last)
	case []any:
		i, err := index(last, len(c), false)
		if err != nil {
			return nil, err
		}
		next := append(append([]any{}, c[:i]...), c[i+1:]...)
		return replaceAt(root, parts[:len(parts)-1], next)
	default:
		return nil, errPatch
	}
	return root, nil
}

// replaceAt puts v at the container path parts (an array that was
// rebuilt).
func replaceAt(root any, parts []string, v any) (any, error) {
	if len(parts) == 0 {
		return v, nil
	}
	return set(root, "/"+strings.Join(escape(parts), "/"), v, false)
}

func escape(parts []string) []string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~", "~0"), "/", "~1")
	}
	return out
}
