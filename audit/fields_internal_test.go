package audit

import (
	"encoding/json"
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
