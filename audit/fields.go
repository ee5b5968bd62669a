package audit

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"unsafe"

	"github.com/chaperone-pdp/chaperone/keyset"
)

// Identifying fields. With [WithFieldKeys] the writer seals, before a
// record is chained, every field that names a person or a place a person
// was: the subject's id, identifiers and launch patient, the resource's
// id, patient and author, the request's IP and break-glass reason (free
// text), a change's patient, subject and reason. Each is replaced by
//
//	"enc:" KEY-ID ":" base64url(nonce | AES-256-GCM(value, additional data: the field's name))
//
// and the record gets an [Index]: for the patient and the subject, a keyed
// blind index (HMAC-SHA-256 under a key derived from the same key,
// truncated to 128 bits), so a report finds a patient's or subject's
// records by computing the index of the value asked for under every key
// of the set, without opening the others. The hash chain covers the
// sealed values: verification needs no key, and a copy of the log without
// the key names nobody.
const sealedFieldPrefix = "enc:"

// Index is the blind index of a record's patient and subject ("KEY-ID:"
// and 22 characters of base64url), set when its identifying fields are
// sealed.
type Index struct {
	Patient string `json:"patient,omitempty"`
	Subject string `json:"subject,omitempty"`
}

// FieldKeys seals and opens the identifying fields of records under a key
// set ([keyset.Set]): new records under the primary key, old ones under
// the key whose id they carry.
type FieldKeys struct {
	primary string
	keys    map[string]*fieldKey
	ids     []string
}

type fieldKey struct {
	aead cipher.AEAD
	mu   sync.Mutex // guards mac
	mac  hash.Hash  // HMAC-SHA-256 under the blind index key, reset per use
}

// ErrFieldKey means a sealed field cannot be opened: its key id is not in
// the set, or the value does not open under it.
var ErrFieldKey = errors.New("audit field cannot be opened")

// NewFieldKeys derives from each key of ks an AES-256-GCM key for the
// fields and an HMAC key for the blind index (HMAC-SHA-256 of the key
// with two labels), so neither is the key itself.
func NewFieldKeys(ks *keyset.Set) (*FieldKeys, error) {
	fk := &FieldKeys{keys: map[string]*fieldKey{}}
	fk.primary, _ = ks.Primary()
	for _, id := range ks.IDs() {
		k, err := ks.Key(id)
		if err != nil {
			return nil, err
		}
		enc, err := keyset.New(id, map[string][]byte{id: derive(k, "chaperone-audit-field-encryption-v1")})
		if err != nil {
			return nil, err
		}
		aead, err := enc.AEAD(id)
		if err != nil {
			return nil, err
		}
		fk.keys[id] = &fieldKey{aead: aead, mac: hmac.New(sha256.New, derive(k, "chaperone-audit-blind-index-v1"))}
		fk.ids = append(fk.ids, id)
	}
	return fk, nil
}

func derive(key []byte, label string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// field is one identifying field of a record: its name (the additional
// data of its sealing) and where it is.
type field struct {
	name string
	p    *string
}

// identifying lists the identifying fields of r, copying the structures
// that hold them first (r may share them with its writer's caller).
func identifying(r *Record) []field {
	out := make([]field, 0, 12)
	if s := r.Subject; s != nil {
		c := *s
		r.Subject = &c
		out = append(out, field{"subject.id", &c.ID}, field{"subject.launchPatient", &c.LaunchPatient})
		for _, ids := range []*[]Identifier{&c.Identifiers, &c.OrganizationIdentifiers} {
			if len(*ids) == 0 {
				continue
			}
			*ids = append([]Identifier(nil), *ids...)
		}
		for i := range c.Identifiers {
			out = append(out, field{"subject.identifiers.value", &c.Identifiers[i].Value})
		}
	}
	if x := r.Resource; x != nil {
		c := *x
		r.Resource = &c
		out = append(out, field{"resource.id", &c.ID}, field{"resource.patient", &c.Patient}, field{"resource.author", &c.Author})
	}
	if x := r.Context; x != nil {
		c := *x
		r.Context = &c
		out = append(out, field{"context.ip", &c.IP}, field{"context.breakGlassReason", &c.BreakGlassReason})
	}
	if x := r.Change; x != nil {
		c := *x
		r.Change = &c
		out = append(out, field{"change.patient", &c.Patient}, field{"change.subject", &c.Subject}, field{"change.reason", &c.Reason})
	}
	return out
}

// patientOf and subjectOf are what the blind index covers.
func patientOf(r *Record) string {
	switch {
	case r.Resource != nil && r.Resource.Patient != "":
		return r.Resource.Patient
	case r.Change != nil:
		return r.Change.Patient
	}
	return ""
}

func subjectOf(r *Record) string {
	switch {
	case r.Subject != nil && r.Subject.ID != "":
		return r.Subject.ID
	case r.Change != nil:
		return r.Change.Subject
	}
	return ""
}

// Seal replaces the identifying fields of r by their sealing under the
// primary key and sets r.Index. Every value is sealed, one that looks
// sealed too: a caller's id spelt "enc:…" is its own value, opened back
// as it was sent.
func (fk *FieldKeys) Seal(r *Record) {
	if p, s := patientOf(r), subjectOf(r); p != "" || s != "" {
		ix := &Index{}
		if p != "" {
			ix.Patient = fk.index(fk.primary, p)
		}
		if s != "" {
			ix.Subject = fk.index(fk.primary, s)
		}
		r.Index = ix
	}
	k := fk.keys[fk.primary]
	fields := identifying(r)
	// One read of the random source for every nonce of the record.
	ns := k.aead.NonceSize()
	var stack [8 * 12]byte
	nonces := stack[:]
	if len(fields)*ns > len(nonces) {
		nonces = make([]byte, len(fields)*ns)
	}
	_, _ = rand.Read(nonces[:len(fields)*ns]) // never fails (crypto/rand)
	for i, f := range fields {
		if *f.p == "" {
			continue
		}
		*f.p = k.seal(fk.primary, f.name, *f.p, nonces[i*ns:(i+1)*ns])
	}
}

func isSealedField(v string) bool { return strings.HasPrefix(v, sealedFieldPrefix) }

// seal returns "enc:ID:base64url(nonce|ciphertext)" in one allocation.
func (k *fieldKey) seal(id, name, v string, nonce []byte) string {
	var stack [256]byte
	ns := k.aead.NonceSize()
	buf := append(stack[:0], nonce...)
	buf = k.aead.Seal(buf, buf[:ns], []byte(v), []byte(name))
	head := len(sealedFieldPrefix) + len(id) + 1
	out := make([]byte, head+base64.RawURLEncoding.EncodedLen(len(buf)))
	copy(out, sealedFieldPrefix)
	copy(out[len(sealedFieldPrefix):], id)
	out[head-1] = ':'
	base64.RawURLEncoding.Encode(out[head:], buf)
	return unsafe.String(unsafe.SliceData(out), len(out))
}

// index is the blind index of v under the key id.
func (fk *FieldKeys) index(id, v string) string {
	k := fk.keys[id]
	var sum [sha256.Size]byte
	k.mu.Lock()
	k.mac.Reset()
	k.mac.Write([]byte(v))
	k.mac.Sum(sum[:0])
	k.mu.Unlock()
	out := make([]byte, len(id)+1+base64.RawURLEncoding.EncodedLen(16))
	copy(out, id)
	out[len(id)] = ':'
	base64.RawURLEncoding.Encode(out[len(id)+1:], sum[:16])
	return unsafe.String(unsafe.SliceData(out), len(out))
}

// Indexes returns the blind index of v under every key of the set: a
// record whose index is one of them names v.
func (fk *FieldKeys) Indexes(v string) []string {
	out := make([]string, len(fk.ids))
	for i, id := range fk.ids {
		out[i] = fk.index(id, v)
	}
	return out
}

// Open replaces the sealed identifying fields of r by their values. A
// field under a key the set does not hold, or that does not open, is an
// error wrapping [ErrFieldKey] (and [keyset.ErrUnknownKey] for the
// former); fields in clear text (records written without keys) are left
// as they are.
func (fk *FieldKeys) Open(r *Record) error {
	for _, f := range identifying(r) {
		v := *f.p
		if !isSealedField(v) {
			continue
		}
		id, text, ok := strings.Cut(v[len(sealedFieldPrefix):], ":")
		if !ok {
			return fmt.Errorf("%w: %s: malformed", ErrFieldKey, f.name)
		}
		k, ok := fk.keys[id]
		if !ok {
			return fmt.Errorf("%w: %s: %w %q", ErrFieldKey, f.name, keyset.ErrUnknownKey, id)
		}
		raw, err := base64.RawURLEncoding.DecodeString(text)
		ns := k.aead.NonceSize()
		if err != nil || len(raw) < ns {
			return fmt.Errorf("%w: %s: malformed", ErrFieldKey, f.name)
		}
		plain, err := k.aead.Open(nil, raw[:ns], raw[ns:], []byte(f.name))
		if err != nil {
			return fmt.Errorf("%w: %s under key %q: %v", ErrFieldKey, f.name, id, err)
		}
		*f.p = string(plain)
	}
	return nil
}

// HasSealedFields reports whether any identifying field of r is sealed.
func HasSealedFields(r *Record) bool {
	c := *r
	for _, f := range identifying(&c) {
		if isSealedField(*f.p) {
			return true
		}
	}
	return false
}

// OpenRecords opens every record of recs in place (see [FieldKeys.Open]);
// the first record that does not open is an error naming its sequence
// number. fk nil opens nothing and fails when a record is sealed: a
// report on sealed records without the key would find nobody.
func OpenRecords(recs []Record, fk *FieldKeys) error {
	for i := range recs {
		if fk == nil {
			if HasSealedFields(&recs[i]) {
				return fmt.Errorf("record %d: %w: its identifying fields are encrypted; give the key set (--audit-encryption-key-file)", recs[i].Seq, ErrFieldKey)
			}
			continue
		}
		if err := fk.Open(&recs[i]); err != nil {
			return fmt.Errorf("record %d: %w", recs[i].Seq, err)
		}
	}
	return nil
}

// MatchPatient keeps the records that may be about patient: those whose
// blind index names it under one of the keys, and those without an index
// (written in clear text, or records of another kind, left to the
// report's own test once opened). It saves opening every record.
func (fk *FieldKeys) MatchPatient(recs []Record, patient string) []Record {
	want := fk.Indexes(patient)
	out := recs[:0:0]
	for i := range recs {
		r := &recs[i]
		if r.Index == nil || r.Index.Patient == "" {
			if r.Kind != KindDecision && r.Kind != KindChange || !HasSealedFields(r) {
				out = append(out, *r)
			}
			continue
		}
		for _, w := range want {
			if r.Index.Patient == w {
				out = append(out, *r)
				break
			}
		}
	}
	return out
}
