package consent_test

import (
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/engine/consent"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

func atInstant(s string) reqOpt {
	return func(r *chaperonev1.CheckRequest) {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		r.Context.Time = timestamppb.New(t)
	}
}

type fileCase struct {
	name   string
	files  []string
	req    *chaperonev1.CheckRequest
	rule   consent.Rule
	want   consent.Decision
	redact string
}

func runFileCases(t *testing.T, dir string, cases []fileCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var cs []*fhirconsent.Consent
			for _, f := range tc.files {
				cs = append(cs, readConsent(t, filepath.Join(dir, f)))
			}
			got := eval(tc.req, tc.rule, cs...)
			if got.Decision != tc.want {
				t.Errorf("decision = %v, want %v (provisions %v)", got.Decision, tc.want, got.Provisions)
			}
			if l := labelCodes(got.RedactLabels); l != tc.redact {
				t.Errorf("redact labels = %q, want %q", l, tc.redact)
			}
		})
	}
}

// f001 is a request about a resource of Patient/f001 held by Good Health
// (Organization/f001).
func f001(opts ...reqOpt) *chaperonev1.CheckRequest {
	base := []reqOpt{patient("Patient/f001"), custodian("Organization/f001"), at("2016-01-01")}
	return rq(append(base, opts...)...)
}

// TestHL7R4Examples checks the HL7 R4 Consent examples against what their
// narratives (text.div) say. Where an example's provision tree does not
// encode its narrative, the test states what the resource as written means
// and the "--nested-deny" copy carries the narrative's meaning.
func TestHL7R4Examples(t *testing.T) {
	t.Parallel()
	const (
		basic     = "Consent-consent-example-basic.json"
		out       = "Consent-consent-example-Out.json"
		emergency = "Consent-consent-example-Emergency.json"
		grantor   = "Consent-consent-example-grantor.json"
		notAuthor = "Consent-consent-example-notAuthor.json"
		notOrg    = "Consent-consent-example-notOrg.json"
		notThem   = "Consent-consent-example-notThem.json"
		notThemN  = "Consent-consent-example-notThem--nested-deny.json"
		notThis   = "Consent-consent-example-notThis.json"
		notThisN  = "Consent-consent-example-notThis--nested-deny.json"
		notTime   = "Consent-consent-example-notTime.json"
		notTimeN  = "Consent-consent-example-notTime--nested-deny-dataperiod.json"
		pkb       = "Consent-consent-example-pkb.json"
		signature = "Consent-consent-example-signature.json"
		smart     = "Consent-consent-example-smartonfhir.json"
	)
	runFileCases(t, "../../fhirconsent/testdata/hl7-r4", []fileCase{
		// basic: "Authorize normal access for treatment: all of the PHI
		// collected at Good Health available for normal treatment use"
		// (opt-in, valid 1964-01-01 .. 2016-01-01).
		{name: "basic/treatment read permitted", files: []string{basic}, req: f001(at("2015-06-01")), want: consent.Permit},
		{name: "basic/any subject", files: []string{basic}, req: f001(at("2015-06-01"), subject("Practitioner/x"), subjOrg("")), want: consent.Permit},
		{name: "basic/last day", files: []string{basic}, req: f001(at("2016-01-01")), want: consent.Permit},
		{name: "basic/expired", files: []string{basic}, req: f001(at("2016-01-02")), want: consent.NoConsent},
		{name: "basic/before", files: []string{basic}, req: f001(at("1963-12-31")), want: consent.NoConsent},
		{name: "basic/other patient", files: []string{basic}, req: f001(at("2015-06-01"), patient("Patient/f002")), want: consent.NoConsent},

		// Out: "no data at the Good Health Psychiatric Hospital available for
		// normal treatment use" (opt-out, custodian Good Health).
		{name: "Out/Good Health data withheld", files: []string{out}, req: f001(), want: consent.Deny},
		{name: "Out/withheld from Good Health itself", files: []string{out}, req: f001(subjOrg("Organization/f001")), want: consent.Deny},
		{name: "Out/other custodian not covered", files: []string{out}, req: f001(custodian("Organization/other")), want: consent.NoConsent},

		// Emergency: the narrative wants an overall deny with a permit for
		// ETREAT at Good Health. As written, the root (opt-out) restricts the
		// consent to ETREAT of Good Health's data and its nested provision
		// denies Good Health's data again, so nothing is permitted.
		{name: "Emergency/as written ETREAT denied", files: []string{emergency}, req: f001(purpose("ETREAT")), want: consent.Deny},
		{name: "Emergency/other purpose outside the consent", files: []string{emergency}, req: f001(), want: consent.NoConsent},

		// grantor: the narrative gives XXX read-only access to Good Health's
		// data; as written it is an opt-out whose root matches access by
		// Patient/example (PRCP) or to Good Health's data, so it denies that.
		{name: "grantor/as written access denied", files: []string{grantor}, req: f001(subject("Patient/example"), kind("patient")), want: consent.Deny},
		{name: "grantor/writes outside the consent", files: []string{grantor}, req: f001(subject("Patient/example"), action("update"), custodian("")), want: consent.NoConsent},

		// notAuthor: the narrative withholds Good Health's records from every
		// provider; as written it is an opt-in restricted to Good Health's data.
		{name: "notAuthor/as written Good Health data permitted", files: []string{notAuthor}, req: f001(), want: consent.Permit},
		{name: "notAuthor/other custodian", files: []string{notAuthor}, req: f001(custodian("Organization/x")), want: consent.NoConsent},

		// notOrg: "withdraw consent to disclose any instance of his health
		// information to Good Health Clinic" (deny to Organization/f001).
		{name: "notOrg/read by Good Health denied", files: []string{notOrg}, req: f001(subjOrg("Organization/f001")), want: consent.Deny},
		{name: "notOrg/update by Good Health denied", files: []string{notOrg}, req: f001(subjOrg("Organization/f001"), action("update")), want: consent.Deny},
		{name: "notOrg/Good Health practitioner denied", files: []string{notOrg}, req: f001(subject("Practitioner/any"), subjOrg("Organization/f001")), want: consent.Deny},
		{name: "notOrg/other organization", files: []string{notOrg}, req: f001(subjOrg("Organization/other")), want: consent.NoConsent},

		// notThem: "does not want her ex-spouse (Practitioner/f204) to have any
		// access". The nested-deny copy says so; the original's root restricts
		// an opt-in to f204.
		{name: "notThem nested/ex-spouse read denied", files: []string{notThemN}, req: f001(subject("Practitioner/f204")), want: consent.Deny},
		{name: "notThem nested/ex-spouse update denied", files: []string{notThemN}, req: f001(subject("Practitioner/f204"), action("update")), want: consent.Deny},
		{name: "notThem nested/others permitted", files: []string{notThemN}, req: f001(subject("Practitioner/f201")), want: consent.Permit},
		{name: "notThem/as written", files: []string{notThem}, req: f001(subject("Practitioner/f204")), want: consent.Permit},
		{name: "notThem/as written others", files: []string{notThem}, req: f001(subject("Practitioner/f201")), want: consent.NoConsent},

		// notThis: "withhold consent to disclose the order (Task/example3)".
		{name: "notThis nested/the order denied", files: []string{notThisN}, req: f001(rtype("Task"), rid("example3")), want: consent.Deny},
		{name: "notThis nested/other records permitted", files: []string{notThisN}, req: f001(), want: consent.Permit},
		{name: "notThis/as written", files: []string{notThis}, req: f001(rtype("Task"), rid("example3")), want: consent.Permit},
		{name: "notThis/as written other", files: []string{notThis}, req: f001(), want: consent.NoConsent},

		// notTime: "withhold disclosure of all data from a timeframe"
		// (2015-01-01 .. 2015-02-01).
		{name: "notTime nested/data of the timeframe denied", files: []string{notTimeN}, req: f001(dated("2015-01-20")), want: consent.Deny},
		{name: "notTime nested/later data permitted", files: []string{notTimeN}, req: f001(dated("2015-03-01")), want: consent.Permit},
		{name: "notTime nested/undated data permitted", files: []string{notTimeN}, req: f001(), want: consent.Permit},
		{name: "notTime/as written valid in the timeframe", files: []string{notTime}, req: f001(at("2015-01-20")), want: consent.Permit},
		{name: "notTime/as written expired", files: []string{notTime}, req: f001(), want: consent.NoConsent},

		// pkb (Patients Know Best screen): opt-out for access by
		// Organization/f001 to data labelled N or above, except psychiatry,
		// sexuality, special-interest and normal data.
		{name: "pkb/normal data shared", files: []string{pkb}, req: f001(patient("Patient/example"), subjOrg("Organization/f001"), label("N")), want: consent.Permit},
		{name: "pkb/restricted data withheld", files: []string{pkb}, req: f001(patient("Patient/example"), subjOrg("Organization/f001"), label("R")), want: consent.Deny},
		{name: "pkb/restricted psychiatry shared", files: []string{pkb}, req: f001(patient("Patient/example"), subjOrg("Organization/f001"), label("R"), label(fhirconsent.SystemActCode+"|PSY")), want: consent.Permit},
		{name: "pkb/other organization", files: []string{pkb}, req: f001(patient("Patient/example"), subjOrg("Organization/x"), label("R")), want: consent.NoConsent},

		// signature: opt-in for Practitioner/13 (PRCP), 2015-10-10 .. 2016-10-10.
		{name: "signature/recipient permitted", files: []string{signature}, req: f001(patient("Patient/72"), subject("Practitioner/13")), want: consent.Permit},
		{name: "signature/other recipient", files: []string{signature}, req: f001(patient("Patient/72"), subject("Practitioner/14")), want: consent.NoConsent},
		{name: "signature/expired", files: []string{signature}, req: f001(patient("Patient/72"), subject("Practitioner/13"), at("2016-10-11")), want: consent.NoConsent},

		// smartonfhir: opt-in for 30 minutes with a permit to read MedicationRequest.
		{name: "smartonfhir/medication requests in the window", files: []string{smart}, req: f001(patient("Patient/xcda"), rtype("MedicationRequest"), atInstant("2016-06-23T17:10:00+10:00")), want: consent.Permit},
		{name: "smartonfhir/after the window", files: []string{smart}, req: f001(patient("Patient/xcda"), rtype("MedicationRequest"), atInstant("2016-06-23T17:33:00+10:00")), want: consent.NoConsent},
		{name: "smartonfhir/before the window", files: []string{smart}, req: f001(patient("Patient/xcda"), rtype("MedicationRequest"), atInstant("2016-06-23T17:02:00+10:00")), want: consent.NoConsent},
	})
}

// TestLEAPExamples checks the LEAP CDS fixtures for patient Boris
// (Patient/52), read from shared/ beside the repository (GPL-3.0 data,
// not copied here).
func TestLEAPExamples(t *testing.T) {
	t.Parallel()
	dir := sharedDir(t, "fhir-consent-examples/leap-cds")
	org54 := func(opts ...reqOpt) *chaperonev1.CheckRequest {
		return rq(append([]reqOpt{subject("Practitioner/p9")}, opts...)...)
	}
	org99 := func(opts ...reqOpt) *chaperonev1.CheckRequest {
		return rq(append([]reqOpt{subject("Practitioner/p9"), subjOrg("Organization/99")}, opts...)...)
	}
	both := func(name, r4, r5 string, req *chaperonev1.CheckRequest, want consent.Decision, redact string) []fileCase {
		var out []fileCase
		if r4 != "" {
			out = append(out, fileCase{name: "r4/" + name, files: []string{"r4/" + r4}, req: req, want: want, redact: redact})
		}
		if r5 != "" {
			out = append(out, fileCase{name: "r5/" + name, files: []string{"r5/" + r5}, req: req, want: want, redact: redact})
		}
		return out
	}
	var cases []fileCase
	add := func(cs ...[]fileCase) {
		for _, c := range cs {
			cases = append(cases, c...)
		}
	}
	const (
		optin  = "consent-boris-optin.json"
		optout = "consent-boris-optout.json"
	)
	add(
		// opt-in, except access and correction by Organization/54
		both("optin/org 54 read denied", optin, optin, org54(), consent.Deny, ""),
		both("optin/org 54 update denied", optin, optin, org54(action("update")), consent.Deny, ""),
		both("optin/other org permitted", optin, optin, org99(), consent.Permit, ""),
		both("optin/other patient", optin, optin, org99(patient("Patient/1")), consent.NoConsent, ""),
		both("optin normalized/org 54", "", "consent-boris-optin--normalized.json", org54(), consent.Deny, ""),
		both("optin scope in category/org 54", "consent-boris-optin-with-scope-in-category.json", "consent-boris-optin-with-scope-in-category.json", org54(), consent.Deny, ""),
		both("optin loinc category only/org 54", "consent-boris-optin--category-loinc-only.json", "", org54(), consent.Deny, ""),
		both("optin actor identifier/org identifier denied", "consent-boris-optin--actor-identifier.json", "consent-boris-optin--normalized-actor-identifier.json",
			org99(orgIdent("urn:ietf:rfc:3986", "2.16.840.1.113883.20.5")), consent.Deny, ""),
		both("optin actor identifier/no identifier permitted", "consent-boris-optin--actor-identifier.json", "consent-boris-optin--normalized-actor-identifier.json",
			org54(), consent.Permit, ""),
		both("optin deny marketing/marketing denied", "consent-boris-optin--deny-hmarkt.json", "consent-boris-optin--deny-hmarkt.json", org99(purpose("HMARKT")), consent.Deny, ""),
		both("optin deny marketing/treatment permitted", "consent-boris-optin--deny-hmarkt.json", "consent-boris-optin--deny-hmarkt.json", org99(), consent.Permit, ""),
		both("optin not yet valid/before", "consent-boris-optin--not-yet-valid.json", "consent-boris-optin--not-yet-valid.json", org54(), consent.NoConsent, ""),
		both("optin not yet valid/after start", "consent-boris-optin--not-yet-valid.json", "consent-boris-optin--not-yet-valid.json", org54(at("2024-07-01")), consent.Deny, ""),
		both("optin treatment scope/not about access", "consent-boris-optin--treatment-scope.json", "", org54(), consent.NoConsent, ""),
		// purpose in the root (R4: restricts the consent) or as an R5 exception to a deny
		both("optin with purpose/treatment", "consent-boris-optin-with-pou-in-root-provision.json", "consent-boris-optin-with-pou.json", org99(), consent.Permit, ""),
		both("optin with purpose/emergency", "consent-boris-optin-with-pou-in-root-provision.json", "consent-boris-optin-with-pou--normalized.json", org99(purpose("ETREAT")), consent.Permit, ""),
		both("optin with purpose/marketing outside R4 root", "consent-boris-optin-with-pou-in-root-provision.json", "", org99(purpose("HMARKT")), consent.NoConsent, ""),
		both("optin with purpose/marketing denied by R5 decision", "", "consent-boris-optin-with-pou.json", org99(purpose("HMARKT")), consent.Deny, ""),
		// opt-out
		both("optout/org 54 denied", optout, "", org54(), consent.Deny, ""),
		// R5 has no provision.type: the provision under a deny decision is a
		// permit, so the R5 copy of the opt-out lets Organization/54 in.
		both("optout/org 54 is the R5 exception", "", optout, org54(), consent.Permit, ""),
		both("optout/org 54 correction is the R5 exception too", "", optout, org54(action("update")), consent.Permit, ""),
		both("optout/org 54 operation outside the exception", "", optout, org54(action("operation")), consent.Deny, ""),
		both("optout/other org denied", optout, optout, org99(), consent.Deny, ""),
		both("optout normalized/other org denied", "", "consent-boris-optout--normalized.json", org99(), consent.Deny, ""),
		// practitioner
		both("deny practitioner/denied", "consent-boris-deny-practitioner.json", "consent-boris-deny-practitioner.json", org99(subject("Practitioner/001")), consent.Deny, ""),
		both("deny practitioner/other permitted", "consent-boris-deny-practitioner.json", "consent-boris-deny-practitioner--normalized.json", org99(subject("Practitioner/002")), consent.Permit, ""),
		both("deny practitioner identifier/denied", "consent-boris-deny-practitioner--actor-identifier.json", "", org99(ident("http://www.acme.org/practitioners", "5555")), consent.Deny, ""),
		both("deny practitioner identifier/other", "consent-boris-deny-practitioner--actor-identifier.json", "", org99(ident("http://www.acme.org/practitioners", "5556")), consent.Permit, ""),
		// clinical code
		both("restricted code/denied", "consent-boris-deny-restricted-clinical-code.json", "consent-boris-deny-restricted-clinical-code.json", org54(code("http://loinc.org|42828-4")), consent.Deny, ""),
		both("restricted code array/denied", "consent-boris-deny-restricted-clinical-code--code-array.json", "consent-boris-deny-restricted-clinical-code--normalized.json", org54(code("http://loinc.org|42828-4")), consent.Deny, ""),
		both("restricted code/other code", "consent-boris-deny-restricted-clinical-code.json", "consent-boris-deny-restricted-clinical-code.json", org54(code("http://loinc.org|1234-5")), consent.Permit, ""),
		both("restricted code/other org", "consent-boris-deny-restricted-clinical-code.json", "consent-boris-deny-restricted-clinical-code.json", org99(code("http://loinc.org|42828-4")), consent.Permit, ""),
		// content class
		both("class only/medication statements denied", "consent-boris-deny-restricted-content-class-only.json", "consent-boris-deny-restricted-content-class-only.json", org54(rtype("MedicationStatement")), consent.Deny, ""),
		both("class only/observations permitted", "consent-boris-deny-restricted-content-class-only.json", "consent-boris-deny-restricted-content-class-only--normalized.json", org54(), consent.Permit, ""),
		both("class and label/restricted med denied", "consent-boris-deny-restricted-content-class.json", "consent-boris-deny-restricted-content-class.json", org54(rtype("MedicationStatement"), label("R")), consent.Deny, ""),
		both("class and label/normal med permitted", "consent-boris-deny-restricted-content-class.json", "consent-boris-deny-restricted-content-class.json", org54(rtype("MedicationStatement"), label("N")), consent.Permit, ""),
		both("class and label/restricted observation permitted", "consent-boris-deny-restricted-content-class.json", "consent-boris-deny-restricted-content-class.json", org54(label("R")), consent.Permit, ""),
		both("class and label/search meds redacts", "consent-boris-deny-restricted-content-class.json", "consent-boris-deny-restricted-content-class.json", org54(search(), rtype("MedicationStatement")), consent.Permit, "R,V"),
		both("class or label/any med denied", "consent-boris-deny-restricted-content-class-and-sec-label.json", "consent-boris-deny-restricted-content-class-and-sec-label.json", org54(rtype("MedicationStatement"), label("N")), consent.Deny, ""),
		both("class or label/restricted observation denied", "consent-boris-deny-restricted-content-class-and-sec-label.json", "consent-boris-deny-restricted-content-class-and-sec-label.json", org54(label("R")), consent.Deny, ""),
		both("class or label/normal observation permitted", "consent-boris-deny-restricted-content-class-and-sec-label.json", "consent-boris-deny-restricted-content-class-and-sec-label.json", org54(label("N")), consent.Permit, ""),
		// label
		both("label/restricted denied", "consent-boris-deny-restricted-label.json", "consent-boris-deny-restricted-label.json", org54(label("R")), consent.Deny, ""),
		both("label/very restricted denied", "consent-boris-deny-restricted-label.json", "consent-boris-deny-restricted-label--normalized.json", org54(label("V")), consent.Deny, ""),
		both("label/normal permitted", "consent-boris-deny-restricted-label.json", "consent-boris-deny-restricted-label.json", org54(label("N")), consent.Permit, ""),
		both("label/search redacts", "consent-boris-deny-restricted-label.json", "consent-boris-deny-restricted-label.json", org54(search()), consent.Permit, "R,V"),
		both("label/other org search", "consent-boris-deny-restricted-label.json", "consent-boris-deny-restricted-label.json", org99(search()), consent.Permit, ""),
		both("multiple labels/HIV denied", "consent-boris-multiple-deny-labels.json", "consent-boris-multiple-deny-labels.json", org99(label(fhirconsent.SystemActCode+"|HIV")), consent.Deny, ""),
		both("multiple labels/ETHUD denied", "consent-boris-multiple-deny-labels.json", "consent-boris-multiple-deny-labels.json", org99(label(fhirconsent.SystemActCode+"|ETHUD")), consent.Deny, ""),
		both("multiple labels/unlabelled permitted", "consent-boris-multiple-deny-labels.json", "consent-boris-multiple-deny-labels.json", org99(), consent.Permit, ""),
		both("multiple labels/search redacts", "consent-boris-multiple-deny-labels.json", "consent-boris-multiple-deny-labels.json", org99(search()), consent.Permit, "ETHUD,HIV"),
		both("multiple labels/expired", "consent-boris-multiple-deny-labels.json", "consent-boris-multiple-deny-labels.json", org99(at("2025-06-02")), consent.NoConsent, ""),
		// provision array
		both("provisions/restricted denied", "consent-boris-provision-array.json", "consent-boris-provision-array.json", org54(label("R")), consent.Deny, ""),
		both("provisions/very restricted update denied", "consent-boris-provision-array.json", "consent-boris-provision-array.json", org54(label("V"), action("update")), consent.Deny, ""),
		both("provisions/marketing denied", "consent-boris-provision-array.json", "consent-boris-provision-array.json", org99(purpose("HMARKT")), consent.Deny, ""),
		both("provisions/treatment permitted", "consent-boris-provision-array.json", "consent-boris-provision-array.json", org99(label("R")), consent.Permit, ""),
		both("provisions/search redacts", "consent-boris-provision-array.json", "consent-boris-provision-array.json", org54(search()), consent.Permit, "R,V"),
		// status and validity
		both("expired", "consent-boris-expired.json", "consent-boris-expired.json", org54(), consent.NoConsent, ""),
		both("inactive", "consent-boris-inactive.json", "consent-boris-inactive.json", org54(), consent.NoConsent, ""),
		// research
		both("research inactive", "consent-boris-research.json", "consent-boris-research.json", org99(purpose("HRESCH")), consent.NoConsent, ""),
		both("research/treatment not governed", "consent-boris-research--active.json", "consent-boris-research--normalized-active.json", org54(), consent.NoConsent, ""),
		both("research/research permitted", "consent-boris-research--active.json", "consent-boris-research--normalized-active.json", org99(purpose("HRESCH")), consent.Permit, ""),
		both("research/org 54 denied", "consent-boris-research--active.json", "consent-boris-research--normalized-active.json", org54(purpose("HRESCH")), consent.Deny, ""),
	)
	// several consents
	cases = append(cases,
		fileCase{name: "r4/newer optout wins", files: []string{"r4/" + optin, "r4/consent-boris-optout--newer.json"}, req: org99(), want: consent.Deny},
		fileCase{name: "r4/newer optin wins", files: []string{"r4/" + optin, "r4/consent-boris-optout--older.json"}, req: org99(), want: consent.Permit},
		fileCase{name: "r4/older optout overrides", files: []string{"r4/" + optin, "r4/consent-boris-optout--older.json"}, req: org99(), rule: consent.DenyOverrides, want: consent.Deny},
		fileCase{name: "r4/newer inactive ignored", files: []string{"r4/" + optin, "r4/consent-boris-optout--newer-inactive.json"}, req: org99(), want: consent.Permit},
		fileCase{name: "r4/newer of other patient ignored", files: []string{"r4/" + optin, "r4/consent-boris-optout--newer-other-patient.json"}, req: org99(), want: consent.Permit},
		fileCase{name: "r5/newer optout wins", files: []string{"r5/" + optin, "r5/consent-boris-optout--normalized-newer.json"}, req: org99(), want: consent.Deny},
		fileCase{name: "r5/newer optin wins", files: []string{"r5/" + optin, "r5/consent-boris-optout--normalized-older.json"}, req: org99(), want: consent.Permit},
		fileCase{name: "r5/older optout overrides", files: []string{"r5/" + optin, "r5/consent-boris-optout--normalized-older.json"}, req: org99(), rule: consent.DenyOverrides, want: consent.Deny},
		fileCase{name: "r5/newer expired ignored", files: []string{"r5/" + optin, "r5/consent-boris-optout--normalized-newer-expired.json"}, req: org99(), want: consent.Permit},
		fileCase{name: "r5/newer while valid", files: []string{"r5/" + optin, "r5/consent-boris-optout--normalized-newer-expired.json"}, req: org99(at("2021-06-01")), want: consent.Deny},
		fileCase{name: "r4 and r5/newer wins across versions", files: []string{"r4/" + optin, "r5/consent-boris-optout--normalized-newer.json"}, req: org99(), want: consent.Deny},
	)
	runFileCases(t, dir, cases)
}
