package consent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/engine/consent"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// reqOpt changes the default request of rq.
type reqOpt func(*chaperonev1.CheckRequest)

// rq is a read of Observation/o1 of Patient/52 by Practitioner/001 of
// Organization/54 for TREAT on 2024-01-01, changed by opts.
func rq(opts ...reqOpt) *chaperonev1.CheckRequest {
	r := &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Id: "Practitioner/001", Kind: "practitioner", Organization: "Organization/54"},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/52"},
		PurposeOfUse: "TREAT",
		Context:      &chaperonev1.Context{Time: timestamppb.New(day("2024-01-01"))},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func subject(id string) reqOpt { return func(r *chaperonev1.CheckRequest) { r.Subject.Id = id } }
func subjOrg(org string) reqOpt {
	return func(r *chaperonev1.CheckRequest) { r.Subject.Organization = org }
}
func action(a string) reqOpt  { return func(r *chaperonev1.CheckRequest) { r.Action = a } }
func purpose(p string) reqOpt { return func(r *chaperonev1.CheckRequest) { r.PurposeOfUse = p } }
func patient(p string) reqOpt { return func(r *chaperonev1.CheckRequest) { r.Resource.Patient = p } }
func rtype(t string) reqOpt   { return func(r *chaperonev1.CheckRequest) { r.Resource.Type = t } }
func rid(id string) reqOpt    { return func(r *chaperonev1.CheckRequest) { r.Resource.Id = id } }
func author(a string) reqOpt  { return func(r *chaperonev1.CheckRequest) { r.Resource.Author = a } }
func custodian(o string) reqOpt {
	return func(r *chaperonev1.CheckRequest) { r.Resource.Organization = o }
}
func profile(p string) reqOpt {
	return func(r *chaperonev1.CheckRequest) { r.Resource.Profiles = append(r.Resource.Profiles, p) }
}
func roles(rs ...string) reqOpt { return func(r *chaperonev1.CheckRequest) { r.Subject.Roles = rs } }
func kind(k string) reqOpt      { return func(r *chaperonev1.CheckRequest) { r.Subject.Kind = k } }
func at(s string) reqOpt {
	return func(r *chaperonev1.CheckRequest) { r.Context.Time = timestamppb.New(day(s)) }
}
func dated(s string) reqOpt {
	return func(r *chaperonev1.CheckRequest) { r.Resource.Date = timestamppb.New(day(s)) }
}
func noTime() reqOpt { return func(r *chaperonev1.CheckRequest) { r.Context = nil } }
func search() reqOpt {
	return func(r *chaperonev1.CheckRequest) { r.Action = "search"; r.Resource.Id = "" }
}
func ident(sys, v string) reqOpt { return identOf(false, sys, v) }
func orgIdent(sys, v string) reqOpt {
	return identOf(true, sys, v)
}

func identOf(org bool, sys, v string) reqOpt {
	return func(r *chaperonev1.CheckRequest) {
		id := &chaperonev1.Identifier{System: sys, Value: v}
		if org {
			r.Subject.OrganizationIdentifiers = append(r.Subject.OrganizationIdentifiers, id)
		} else {
			r.Subject.Identifiers = append(r.Subject.Identifiers, id)
		}
	}
}

// label adds a security label "system|code" or a confidentiality code "R".
func label(l string) reqOpt {
	return func(r *chaperonev1.CheckRequest) {
		r.Resource.SecurityLabels = append(r.Resource.SecurityLabels, coding(l))
	}
}

func code(l string) reqOpt {
	return func(r *chaperonev1.CheckRequest) { r.Resource.Codes = append(r.Resource.Codes, coding(l)) }
}

func category(l string) reqOpt {
	return func(r *chaperonev1.CheckRequest) { r.Resource.Categories = append(r.Resource.Categories, coding(l)) }
}

func coding(l string) *chaperonev1.Coding {
	sys, c, ok := strings.Cut(l, "|")
	if !ok {
		return &chaperonev1.Coding{System: fhirconsent.SystemConfidentiality, Code: l}
	}
	return &chaperonev1.Coding{System: sys, Code: c}
}

func mustParse(t testing.TB, js string) *fhirconsent.Consent {
	t.Helper()
	c, err := fhirconsent.Parse([]byte(js))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, js)
	}
	return c
}

func readConsent(t testing.TB, path string) *fhirconsent.Consent {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := fhirconsent.Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if c.ID == "" {
		c = c.WithID(strings.TrimSuffix(filepath.Base(path), ".json"), "1")
	}
	return c
}

func eval(req *chaperonev1.CheckRequest, rule consent.Rule, cs ...*fhirconsent.Consent) consent.Result {
	at := day("2030-01-01")
	if t := req.GetContext().GetTime(); t != nil {
		at = t.AsTime() // the cases state their decision time in the request
	}
	q := consent.NewQuery(req, at)
	return consent.Evaluate(&q, cs, rule)
}

func labelCodes(cs []fhirconsent.Coding) string {
	var b []string
	for _, c := range cs {
		b = append(b, c.Code)
	}
	return strings.Join(b, ",")
}

// sharedDir finds shared/<rel> beside the repository by walking up from
// the test's directory. Missing: fail under CI=true, else skip.
func sharedDir(t *testing.T, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := filepath.Join(dir, "shared", rel)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("shared/%s not found beside the repository", rel)
	}
	t.Skipf("shared/%s not found beside the repository", rel)
	return ""
}
