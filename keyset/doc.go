// Package keyset reads and writes sets of symmetric keys that rotate.
//
// A [Set] is a map of key ids to 32-byte keys and the id of its primary
// key: new data is sealed under the primary, and data is opened with the key
// whose id was stored with it, so a set holding the old and the new key reads
// everything while the data is rewritten under the new one.
//
// The file format is JSON:
//
//	{"primary": "k2", "keys": {"k1": "<32 bytes, standard base64>", "k2": "…"}}
//
// A file holding only one key in standard base64 (what `openssl rand -base64
// 32` prints) is read as a set of one whose key id is [DefaultID]. [Parse]
// refuses anything else rather than guess at it: a key of another length, a
// primary that is not in the set, a key id that is empty or longer than
// [MaxIDLength] bytes or holds other than letters, digits, '-', '_' and '.'.
//
// [Generate] makes a set of one fresh random key, [Set.Rotate] adds a new
// primary, [Set.Drop] removes a key that is not the primary, and
// [Set.Marshal] writes the file back.
package keyset
