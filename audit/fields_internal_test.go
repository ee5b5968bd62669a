package audit

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/keyset"
)

// sealedPaths are the string fields of Record that name a person (sealed
// with field keys); plainPaths those that do not. Every string field of
// Record must be in one list: TestFieldsClassified fails on a new field
// until it is classified here (and, if identifying, in identifying()).
var (
	sealedPaths = []string{
		".Subject.ID", ".Subject.LaunchPatient", ".Subject.Identifiers.Value",
		".Resource.ID", ".Resource.Patient", ".Resource.Author",
		".Context.IP", ".Context.BreakGlassReason",
		".Change.Patient", ".Change.Subject", ".Change.Reason",
	}
	plainPaths = []string{
		".Prev", ".Kind", ".Caller", ".DecisionID", ".Action", ".PurposeOfUse", ".Decision", ".BundleRevision",
		".Subject.Kind", ".Subject.Roles", ".Subject.Organization", ".Subject.ClientID", ".Subject.Identifiers.System",
		".Subject.OrganizationIdentifiers.System", ".Subject.OrganizationIdentifiers.Value", ".Subject.Scopes",
		".Resource.Type", ".Resource.Organization", ".Resource.Labels.System", ".Resource.Labels.Code",
		".Resource.Codes.System", ".Resource.Codes.Code", ".Resource.Categories.System", ".Resource.Categories.Code", ".Resource.Profiles",
		".Context.NetworkZone", ".Context.CorrelationID", ".Context.DeviceTrust", ".Context.Phase",
		".Reasons.Code", ".Reasons.PolicyID", ".Obligations.MaskPaths", ".Obligations.RedactLabels.System",
		".Obligations.RedactLabels.Code", ".Obligations.AuditTags", ".Consents.ID", ".Consents.Version",
		".Review.DecisionID", ".Review.By", ".Review.Note",
		".Checkpoint.Head", ".Checkpoint.KeyID", ".Drop", ".Opening.Instance", ".Opening.KeyID", ".Opening.Head",
		".Change.ID", ".Change.Action", ".Change.Outcome", ".Change.Error", ".Change.CorrelationID", ".Change.ConsentID",
		".Change.Version", ".Change.Status", ".Change.FHIRVersion", ".Change.GrantID", ".Change.ClientID", ".Change.Vendor",
		".Change.Tier", ".Change.Purposes", ".Change.ResourceTypes", ".Change.Revision", ".Change.BundleName",
		".Change.Digest", ".Change.Signers", ".Change.Source", ".Change.PreviousRevision",
		".Change.JTI", ".Change.TokenSHA256", ".Change.RelationshipID", ".Change.RelationshipKind", ".Change.Organization",
		".Index.Patient", ".Index.Subject", ".Prune.Archive", ".Prune.Segments", ".Prune.Head", ".Prune.KeyID",
	}
	indexRE = regexp.MustCompile(`\[\d+\]`)
)

func testFieldKeys(t *testing.T, ids ...string) (*FieldKeys, *keyset.Set) {
	t.Helper()
	ks, err := keyset.Generate(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[1:] {
		if ks, err = ks.Rotate(id); err != nil {
			t.Fatal(err)
		}
	}
	fk, err := NewFieldKeys(ks)
	if err != nil {
		t.Fatal(err)
	}
	return fk, ks
}

// TestFieldsClassified fills every field of a Record by reflection, gives
// each string a marker, seals it, and checks that exactly the identifying
// fields no longer show their marker, that Open brings every one back, and
// that every string field is classified.
func TestFieldsClassified(t *testing.T) {
	t.Parallel()
	var r Record
	fill(t, reflect.ValueOf(&r).Elem(), "")
	r.Kind = KindDecision
	r.Index = nil
	var paths []string
	leaves(reflect.ValueOf(&r).Elem(), "", &paths)
	markers := map[string]string{} // marker → classified path
	for i, p := range paths {
		v := at(reflect.ValueOf(&r).Elem(), p)
		if v.Kind() != reflect.String {
			continue
		}
		class := indexRE.ReplaceAllString(p, "")
		if !slices.Contains(sealedPaths, class) && !slices.Contains(plainPaths, class) && class != ".Kind" {
			t.Errorf("string field %s is not classified: add it to sealedPaths (and identifying()) or plainPaths", class)
		}
		m := "MARK" + strconv.Itoa(i) + "X"
		if class != ".Kind" {
			v.SetString(m)
			markers[m] = class
		}
	}
	fk, _ := testFieldKeys(t, "k1")
	orig := deepCopyInternal(t, &r)
	shared := r // shares Subject, Resource, Context, Change
	fk.Seal(&r)
	if !reflect.DeepEqual(deepCopyInternal(t, &shared), orig) {
		t.Error("Seal modified the structures of the record it was given (the caller's)")
	}
	b, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	for m, class := range markers {
		shown := strings.Contains(string(b), `"`+m+`"`)
		if slices.Contains(sealedPaths, class) && shown {
			t.Errorf("%s is identifying and shows in clear after Seal", class)
		}
		if slices.Contains(plainPaths, class) && !shown && !strings.HasPrefix(class, ".Index") {
			t.Errorf("%s is not identifying but was sealed", class)
		}
	}
	if r.Index == nil || r.Index.Patient == "" || r.Index.Subject == "" {
		t.Errorf("no blind index: %+v", r.Index)
	}
	if err := fk.Open(&r); err != nil {
		t.Fatal(err)
	}
	r.Index = nil
	if !reflect.DeepEqual(&r, orig) {
		t.Errorf("Open(Seal(r)) != r:\n%+v\n%+v", r, *orig)
	}
}

func deepCopyInternal(t *testing.T, r *Record) *Record {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var out Record
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// TestSealOpenProperty: for random decision and change records (every
// escape, invalid UTF-8, empty fields), Open(Seal(r)) is r, the sealed
// record's JSON shows no identifying value of length 8 or more, and a set
// without the sealing key refuses to open it.
func TestSealOpenProperty(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	fk, _ := testFieldKeys(t, "k1")
	other, _ := testFieldKeys(t, "k2")
	for i := range 3000 {
		r := randDecision(rng)
		if i%5 == 1 && r.Subject != nil {
			r.Subject.ID = "enc:k1:" + r.Subject.ID // looks sealed: still sealed, opened back as sent
		}
		if i%3 == 0 {
			r.Kind = KindChange
			r.Change = &Change{ID: randString(rng), Action: ChangeGrant, Patient: randString(rng), Subject: randString(rng), Reason: randString(rng)}
		}
		want := deepCopyInternal(t, &r)
		// The identifying values, unless a field that is not identifying
		// holds them too (the generator reuses strings).
		blank := deepCopyInternal(t, &r)
		var secrets []string
		for _, f := range identifying(blank) {
			if len(*f.p) >= 8 && !strings.HasPrefix(*f.p, sealedFieldPrefix) { // a sealed value starts so too
				secrets = append(secrets, *f.p)
			}
			*f.p = ""
		}
		rest, _ := json.Marshal(blank)
		secrets = slices.DeleteFunc(secrets, func(s string) bool {
			enc, _ := json.Marshal(s)
			return strings.Contains(string(rest), string(enc[1:len(enc)-1]))
		})
		fk.Seal(&r)
		for _, f := range identifying(deepCopyInternal(t, &r)) {
			if *f.p != "" && !strings.HasPrefix(*f.p, sealedFieldPrefix) {
				t.Fatalf("record %d: %s not sealed: %q", i, f.name, *f.p)
			}
		}
		b, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			enc, _ := json.Marshal(s)
			if strings.Contains(string(b), string(enc[1:len(enc)-1])) {
				t.Fatalf("record %d: %q shows after Seal: %s", i, s, b)
			}
		}
		sealed := deepCopyInternal(t, &r)
		if HasSealedFields(sealed) {
			if err := other.Open(sealed); !errors.Is(err, ErrFieldKey) {
				t.Fatalf("record %d opened without its key: %v", i, err)
			}
		}
		if err := fk.Open(&r); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		r.Index = nil
		if got := deepCopyInternal(t, &r); !reflect.DeepEqual(got, want) {
			t.Fatalf("record %d: Open(Seal(r)) != r\n got %+v\nwant %+v", i, got, want)
		}
	}
}
