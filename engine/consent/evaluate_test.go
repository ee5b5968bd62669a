package consent_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/engine/consent"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

const privacyScope = `"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]}`

// r4 is an active R4 privacy consent of Patient/52 with the given root provision.
func r4(id, date, provision string) string {
	return fmt.Sprintf(`{"resourceType":"Consent","id":%q,"status":"active",%s,"patient":{"reference":"Patient/52"},"dateTime":%q,"provision":%s}`,
		id, privacyScope, date, provision)
}

// r5 is an active R5 privacy consent of Patient/52.
func r5(id, date, decision, provisions string) string {
	return fmt.Sprintf(`{"resourceType":"Consent","id":%q,"status":"active","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]}],"subject":{"reference":"Patient/52"},"date":%q,"decision":%q,"provision":%s}`,
		id, date, decision, provisions)
}

// permitExcept is an R4 root permit with one nested deny having criteria crit.
func permitExcept(crit string) string {
	return r4("c1", "2020-01-01", `{"type":"permit","provision":[{"type":"deny",`+crit+`}]}`)
}

const (
	actorPract   = `"actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Practitioner/001"}}]`
	actionAccess = `"action":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"access"}]}]`
	labelR       = `"securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]`
)

type evalCase struct {
	name     string
	consents []string
	req      *chaperonev1.CheckRequest
	rule     consent.Rule
	want     consent.Decision
	provs    []string // when set, the provisions that decided
	redact   string   // comma-separated codes of RedactLabels
}

func runCases(t *testing.T, cases []evalCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var cs []*fhirconsent.Consent
			for _, js := range tc.consents {
				cs = append(cs, mustParse(t, js))
			}
			got := eval(tc.req, tc.rule, cs...)
			if got.Decision != tc.want {
				t.Errorf("decision = %v, want %v (provisions %v)", got.Decision, tc.want, got.Provisions)
			}
			if tc.provs != nil && !slices.Equal(got.Provisions, tc.provs) {
				t.Errorf("provisions = %q, want %q", got.Provisions, tc.provs)
			}
			if l := labelCodes(got.RedactLabels); l != tc.redact {
				t.Errorf("redact labels = %q, want %q", l, tc.redact)
			}
		})
	}
}

func TestEvaluateCriteria(t *testing.T) {
	t.Parallel()
	runCases(t, []evalCase{
		// actor
		{name: "actor reference is subject", consents: []string{permitExcept(actorPract)}, req: rq(), want: consent.Deny,
			provs: []string{"Consent/c1#provision.provision[0]"}},
		{name: "actor reference is another subject", consents: []string{permitExcept(actorPract)}, req: rq(subject("Practitioner/002")), want: consent.Permit,
			provs: []string{"Consent/c1#provision"}},
		{name: "actor reference is subject organization", consents: []string{permitExcept(`"actor":[{"reference":{"reference":"Organization/54"}}]`)}, req: rq(), want: consent.Deny},
		{name: "actor absolute reference", consents: []string{permitExcept(`"actor":[{"reference":{"reference":"https://fhir.example.org/r4/Organization/54/_history/3"}}]`)}, req: rq(), want: consent.Deny},
		{name: "actor organization differs", consents: []string{permitExcept(`"actor":[{"reference":{"reference":"Organization/54"}}]`)}, req: rq(subjOrg("Organization/99")), want: consent.Permit},
		{name: "actor identifier in subject identifiers", consents: []string{permitExcept(`"actor":[{"reference":{"identifier":{"system":"http://www.acme.org/practitioners","value":"5555"}}}]`)},
			req: rq(ident("http://www.acme.org/practitioners", "5555")), want: consent.Deny},
		{name: "actor identifier in organization identifiers", consents: []string{permitExcept(`"actor":[{"reference":{"identifier":{"system":"urn:ietf:rfc:3986","value":"2.16.840.1.113883.20.5"}}}]`)},
			req: rq(orgIdent("urn:ietf:rfc:3986", "2.16.840.1.113883.20.5")), want: consent.Deny},
		{name: "actor identifier other system", consents: []string{permitExcept(`"actor":[{"reference":{"identifier":{"system":"http://www.acme.org/practitioners","value":"5555"}}}]`)},
			req: rq(ident("http://other.org/ids", "5555")), want: consent.Permit},
		{name: "actor identifier without system, subject's with one", consents: []string{permitExcept(`"actor":[{"reference":{"identifier":{"value":"5555"}}}]`)},
			req: rq(ident("http://www.acme.org/practitioners", "5555")), want: consent.Permit},
		{name: "actor identifier with system, subject's without", consents: []string{permitExcept(`"actor":[{"reference":{"identifier":{"system":"http://www.acme.org/practitioners","value":"5555"}}}]`)},
			req: rq(ident("", "5555")), want: consent.Permit},
		{name: "actor identifier and subject's both without system", consents: []string{permitExcept(`"actor":[{"reference":{"identifier":{"value":"5555"}}}]`)},
			req: rq(ident("", "5555")), want: consent.Deny},
		{name: "actor identifier system with trailing slash", consents: []string{permitExcept(`"actor":[{"reference":{"identifier":{"system":"http://www.acme.org/practitioners/","value":"5555"}}}]`)},
			req: rq(ident("http://www.acme.org/practitioners", "5555")), want: consent.Deny},
		{name: "actor organization identifier without system", consents: []string{permitExcept(`"actor":[{"reference":{"identifier":{"value":"2.16.840.1.113883.20.5"}}}]`)},
			req: rq(orgIdent("urn:ietf:rfc:3986", "2.16.840.1.113883.20.5")), want: consent.Permit},
		{name: "actor identifier other value", consents: []string{permitExcept(`"actor":[{"reference":{"identifier":{"system":"http://www.acme.org/practitioners","value":"5555"}}}]`)},
			req: rq(ident("http://www.acme.org/practitioners", "5556")), want: consent.Permit},
		{name: "actor custodian is resource organization", consents: []string{permitExcept(`"actor":[{"role":{"coding":[{"code":"CST"}]},"reference":{"reference":"Organization/f001"}}]`)},
			req: rq(custodian("Organization/f001")), want: consent.Deny},
		{name: "actor custodian is not the subject", consents: []string{permitExcept(`"actor":[{"role":{"coding":[{"code":"CST"}]},"reference":{"reference":"Organization/f001"}}]`)},
			req: rq(subjOrg("Organization/f001"), custodian("Organization/f002")), want: consent.Permit},
		{name: "actor author is resource author", consents: []string{permitExcept(`"actor":[{"role":{"coding":[{"code":"AUT"}]},"reference":{"reference":"Practitioner/a1"}}]`)},
			req: rq(author("Practitioner/a1")), want: consent.Deny},
		{name: "actor author other", consents: []string{permitExcept(`"actor":[{"role":{"coding":[{"code":"AUT"}]},"reference":{"reference":"Practitioner/a1"}}]`)},
			req: rq(author("Practitioner/a2")), want: consent.Permit},
		{name: "actor by role of subject", consents: []string{permitExcept(`"actor":[{"role":{"coding":[{"system":"http://example.org/roles","code":"billing"}]}}]`)},
			req: rq(roles("billing")), want: consent.Deny},
		{name: "actor by role subject lacks", consents: []string{permitExcept(`"actor":[{"role":{"coding":[{"system":"http://example.org/roles","code":"billing"}]}}]`)},
			req: rq(roles("nurse")), want: consent.Permit},
		{name: "actor recipient role without reference is anyone", consents: []string{permitExcept(`"actor":[{"role":{"coding":[{"code":"IRCP"}]}}]`)},
			req: rq(subject("Practitioner/zzz")), want: consent.Deny},
		{name: "actor role class PAT is a patient subject", consents: []string{permitExcept(`"actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleClass","code":"PAT"}]}}]`)},
			req: rq(subject("Patient/52"), kind("patient")), want: consent.Deny},
		{name: "actor any of several", consents: []string{permitExcept(`"actor":[{"reference":{"reference":"Practitioner/x"}},{"reference":{"reference":"Practitioner/001"}}]`)},
			req: rq(), want: consent.Deny},

		// action
		{name: "access covers read", consents: []string{permitExcept(actionAccess)}, req: rq(), want: consent.Deny},
		{name: "access covers vread", consents: []string{permitExcept(actionAccess)}, req: rq(action("vread")), want: consent.Deny},
		{name: "access covers search", consents: []string{permitExcept(actionAccess)}, req: rq(action("search")), want: consent.Deny},
		{name: "access covers history", consents: []string{permitExcept(actionAccess)}, req: rq(action("history")), want: consent.Deny},
		{name: "access covers export", consents: []string{permitExcept(actionAccess)}, req: rq(action("export")), want: consent.Deny},
		{name: "access does not cover create", consents: []string{permitExcept(actionAccess)}, req: rq(action("create")), want: consent.Permit},
		{name: "access does not cover delete", consents: []string{permitExcept(actionAccess)}, req: rq(action("delete")), want: consent.Permit},
		{name: "correct covers update", consents: []string{permitExcept(`"action":[{"coding":[{"code":"correct"}]}]`)}, req: rq(action("update")), want: consent.Deny},
		{name: "correct covers patch", consents: []string{permitExcept(`"action":[{"coding":[{"code":"correct"}]}]`)}, req: rq(action("patch")), want: consent.Deny},
		{name: "correct covers create", consents: []string{permitExcept(`"action":[{"coding":[{"code":"correct"}]}]`)}, req: rq(action("create")), want: consent.Deny},
		{name: "correct covers delete", consents: []string{permitExcept(`"action":[{"coding":[{"code":"correct"}]}]`)}, req: rq(action("delete")), want: consent.Deny},
		{name: "correct does not cover read", consents: []string{permitExcept(`"action":[{"coding":[{"code":"correct"}]}]`)}, req: rq(), want: consent.Permit},
		{name: "collect covers create only", consents: []string{permitExcept(`"action":[{"coding":[{"code":"collect"}]}]`)}, req: rq(action("update")), want: consent.Permit},
		{name: "collect covers create", consents: []string{permitExcept(`"action":[{"coding":[{"code":"collect"}]}]`)}, req: rq(action("create")), want: consent.Deny},
		{name: "use covers operation", consents: []string{permitExcept(`"action":[{"coding":[{"code":"use"}]}]`)}, req: rq(action("operation")), want: consent.Deny},
		{name: "disclose covers read", consents: []string{permitExcept(`"action":[{"coding":[{"code":"disclose"}]}]`)}, req: rq(), want: consent.Deny},
		{name: "action of another system never matches", consents: []string{permitExcept(`"action":[{"coding":[{"system":"http://example.org","code":"access"}]}]`)}, req: rq(), want: consent.Permit},
		{name: "access or correct", consents: []string{permitExcept(`"action":[{"coding":[{"code":"access"}]},{"coding":[{"code":"correct"}]}]`)}, req: rq(action("update")), want: consent.Deny},

		// purpose
		{name: "purpose matches", consents: []string{permitExcept(`"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"HMARKT"}]`)}, req: rq(purpose("HMARKT")), want: consent.Deny},
		{name: "purpose differs", consents: []string{permitExcept(`"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"HMARKT"}]`)}, req: rq(), want: consent.Permit},
		{name: "purpose specialisation", consents: []string{permitExcept(`"purpose":[{"code":"TREAT"}]`)}, req: rq(purpose("ETREAT")), want: consent.Deny},
		{name: "purpose generalisation does not match", consents: []string{permitExcept(`"purpose":[{"code":"ETREAT"}]`)}, req: rq(purpose("TREAT")), want: consent.Permit},

		// security labels
		{name: "sensitivity label matches", consents: []string{permitExcept(`"securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]`)},
			req: rq(label(fhirconsent.SystemActCode + "|HIV")), want: consent.Deny},
		{name: "sensitivity label via value set url", consents: []string{permitExcept(`"securityLabel":[{"system":"http://terminology.hl7.org/ValueSet/v3-InformationSensitivityPolicy","code":"HIV"}]`)},
			req: rq(label(fhirconsent.SystemActCode + "|HIV")), want: consent.Deny},
		{name: "sensitivity label absent", consents: []string{permitExcept(`"securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]`)},
			req: rq(label(fhirconsent.SystemActCode + "|PSY")), want: consent.Permit},
		{name: "deny R covers R", consents: []string{permitExcept(labelR)}, req: rq(label("R")), want: consent.Deny},
		{name: "deny R covers V", consents: []string{permitExcept(labelR)}, req: rq(label("V")), want: consent.Deny},
		{name: "deny R does not cover N", consents: []string{permitExcept(labelR)}, req: rq(label("N")), want: consent.Permit},
		{name: "deny R highest label counts", consents: []string{permitExcept(labelR)}, req: rq(label("N"), label("V")), want: consent.Deny},
		{name: "deny R legacy system", consents: []string{permitExcept(`"securityLabel":[{"system":"http://hl7.org/fhir/v3/Confidentiality","code":"R"}]`)}, req: rq(label("V")), want: consent.Deny},
		{name: "permit R covers N", consents: []string{r4("c1", "2020-01-01", `{"type":"deny","provision":[{"type":"permit",`+labelR+`}]}`)}, req: rq(label("N")), want: consent.Permit},
		{name: "permit R covers R", consents: []string{r4("c1", "2020-01-01", `{"type":"deny","provision":[{"type":"permit",`+labelR+`}]}`)}, req: rq(label("R")), want: consent.Permit},
		{name: "permit R does not cover V", consents: []string{r4("c1", "2020-01-01", `{"type":"deny","provision":[{"type":"permit",`+labelR+`}]}`)}, req: rq(label("V")), want: consent.Deny},
		{name: "permit R needs a label", consents: []string{r4("c1", "2020-01-01", `{"type":"deny","provision":[{"type":"permit",`+labelR+`}]}`)}, req: rq(), want: consent.Deny},
		{name: "permit N covers L", consents: []string{r4("c1", "2020-01-01", `{"type":"deny","provision":[{"type":"permit","securityLabel":[{"code":"N"}]}]}`)}, req: rq(label("L")), want: consent.Permit},

		// class, resourceType, profile
		{name: "class resource type", consents: []string{permitExcept(`"class":[{"system":"http://hl7.org/fhir/resource-types","code":"MedicationStatement"}]`)}, req: rq(rtype("MedicationStatement")), want: consent.Deny},
		{name: "class other resource type", consents: []string{permitExcept(`"class":[{"system":"http://hl7.org/fhir/resource-types","code":"MedicationStatement"}]`)}, req: rq(), want: consent.Permit},
		{name: "class profile", consents: []string{permitExcept(`"class":[{"system":"http://hl7.org/fhir/StructureDefinition","code":"http://hl7.org/fhir/StructureDefinition/vitalsigns"}]`)},
			req: rq(profile("http://hl7.org/fhir/StructureDefinition/vitalsigns")), want: consent.Deny},
		{name: "class mime type never matches", consents: []string{permitExcept(`"class":[{"system":"urn:ietf:bcp:13","code":"application/hl7-cda+xml"}]`)}, req: rq(rtype("DocumentReference")), want: consent.Permit},
		{name: "R5 resourceType", consents: []string{r5("c1", "2020-01-01", "permit", `[{"resourceType":[{"system":"http://hl7.org/fhir/resource-types","code":"Observation"}]}]`)}, req: rq(), want: consent.Deny},
		{name: "R5 documentType in codes", consents: []string{r5("c1", "2020-01-01", "permit", `[{"documentType":[{"system":"http://loinc.org","code":"34133-9"}]}]`)},
			req: rq(rtype("DocumentReference"), code("http://loinc.org|34133-9")), want: consent.Deny},

		// code
		{name: "code matches", consents: []string{permitExcept(`"code":[{"coding":[{"system":"http://loinc.org/","code":"42828-4"}]}]`)}, req: rq(code("http://loinc.org|42828-4")), want: consent.Deny},
		{name: "code matches a category", consents: []string{permitExcept(`"code":[{"coding":[{"system":"http://loinc.org","code":"42828-4"}]}]`)}, req: rq(category("http://loinc.org|42828-4")), want: consent.Deny},
		{name: "code other system", consents: []string{permitExcept(`"code":[{"coding":[{"system":"http://loinc.org","code":"42828-4"}]}]`)}, req: rq(code("http://snomed.info/sct|42828-4")), want: consent.Permit},
		{name: "code absent", consents: []string{permitExcept(`"code":[{"coding":[{"system":"http://loinc.org","code":"42828-4"}]}]`)}, req: rq(), want: consent.Permit},

		// dataPeriod
		{name: "dataPeriod contains date", consents: []string{permitExcept(`"dataPeriod":{"start":"2015-01-01","end":"2015-02-01"}`)}, req: rq(dated("2015-01-15")), want: consent.Deny},
		{name: "dataPeriod end day included", consents: []string{permitExcept(`"dataPeriod":{"start":"2015-01-01","end":"2015-02-01"}`)}, req: rq(dated("2015-02-01")), want: consent.Deny},
		{name: "dataPeriod after", consents: []string{permitExcept(`"dataPeriod":{"start":"2015-01-01","end":"2015-02-01"}`)}, req: rq(dated("2015-02-02")), want: consent.Permit},
		{name: "dataPeriod no date", consents: []string{permitExcept(`"dataPeriod":{"start":"2015-01-01","end":"2015-02-01"}`)}, req: rq(), want: consent.Permit},

		// data
		{name: "data instance", consents: []string{permitExcept(`"data":[{"meaning":"instance","reference":{"reference":"Observation/o1"}}]`)}, req: rq(), want: consent.Deny},
		{name: "data instance other", consents: []string{permitExcept(`"data":[{"meaning":"instance","reference":{"reference":"Observation/o2"}}]`)}, req: rq(), want: consent.Permit},
		{name: "data related is the resource itself", consents: []string{permitExcept(`"data":[{"meaning":"related","reference":{"reference":"Task/example3"}}]`)}, req: rq(rtype("Task"), rid("example3")), want: consent.Deny},
		{name: "data authoredby", consents: []string{permitExcept(`"data":[{"meaning":"authoredby","reference":{"reference":"Practitioner/a1"}}]`)}, req: rq(author("Practitioner/a1")), want: consent.Deny},

		// provision period
		{name: "provision period now", consents: []string{permitExcept(`"period":{"start":"2023-01-01","end":"2025-01-01"}`)}, req: rq(), want: consent.Deny},
		{name: "provision period past", consents: []string{permitExcept(`"period":{"start":"2020-01-01","end":"2021-01-01"}`)}, req: rq(), want: consent.Permit},

		// expression (not evaluated: fail closed)
		{name: "R5 deny with expression matches", consents: []string{r5("c1", "2020-01-01", "permit", `[{"expression":{"language":"text/fhirpath","expression":"true"}}]`)}, req: rq(), want: consent.Deny},
		{name: "R5 permit with expression does not", consents: []string{r5("c1", "2020-01-01", "deny", `[{"expression":{"language":"text/fhirpath","expression":"true"}}]`)}, req: rq(), want: consent.Deny},

		// AND across kinds
		{name: "all criteria match", consents: []string{permitExcept(actorPract + "," + actionAccess + "," + labelR)}, req: rq(label("R")), want: consent.Deny},
		{name: "one criterion fails", consents: []string{permitExcept(actorPract + "," + actionAccess + "," + labelR)}, req: rq(label("R"), action("update")), want: consent.Permit},
	})
}

func TestEvaluateApplicability(t *testing.T) {
	t.Parallel()
	optin := `{"type":"permit","period":{"start":"2019-11-01","end":"2029-01-01"}}`
	withStatus := func(s string) string {
		return strings.Replace(r4("c1", "2020-01-01", optin), `"status":"active"`, `"status":"`+s+`"`, 1)
	}
	withScope := func(scope string) string {
		return strings.Replace(r4("c1", "2020-01-01", optin), privacyScope,
			`"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"`+scope+`"}]}`, 1)
	}
	runCases(t, []evalCase{
		{name: "active applies", consents: []string{r4("c1", "2020-01-01", optin)}, req: rq(), want: consent.Permit},
		{name: "inactive", consents: []string{withStatus("inactive")}, req: rq(), want: consent.NoConsent},
		{name: "draft", consents: []string{withStatus("draft")}, req: rq(), want: consent.NoConsent},
		{name: "entered in error", consents: []string{withStatus("entered-in-error")}, req: rq(), want: consent.NoConsent},
		{name: "wrong patient", consents: []string{r4("c1", "2020-01-01", optin)}, req: rq(patient("Patient/99")), want: consent.NoConsent},
		{name: "patient as bare id", consents: []string{r4("c1", "2020-01-01", optin)}, req: rq(patient("52")), want: consent.Permit},
		{name: "no patient in request", consents: []string{r4("c1", "2020-01-01", optin)}, req: rq(patient("")), want: consent.NoConsent},
		{name: "expired", consents: []string{r4("c1", "2020-01-01", optin)}, req: rq(at("2029-01-02")), want: consent.NoConsent},
		{name: "last day included", consents: []string{r4("c1", "2020-01-01", optin)}, req: rq(at("2029-01-01")), want: consent.Permit},
		{name: "not yet valid", consents: []string{r4("c1", "2020-01-01", optin)}, req: rq(at("2019-10-31")), want: consent.NoConsent},
		{name: "time defaults to now", consents: []string{r4("c1", "2020-01-01", optin)}, req: rq(noTime()), want: consent.NoConsent}, // now = 2030
		{name: "R5 expired", consents: []string{strings.Replace(r5("c1", "2020-01-01", "permit", `[]`), `"date"`, `"period":{"start":"2015-11-01","end":"2016-01-01"},"date"`, 1)}, req: rq(), want: consent.NoConsent},
		{name: "R5 within period", consents: []string{strings.Replace(r5("c1", "2020-01-01", "permit", `[]`), `"date"`, `"period":{"start":"2015-11-01","end":"2026-01-01"},"date"`, 1)}, req: rq(), want: consent.Permit},
		{name: "treatment scope does not govern access", consents: []string{withScope("treatment")}, req: rq(), want: consent.NoConsent},
		{name: "advance directive does not govern access", consents: []string{withScope("adr")}, req: rq(), want: consent.NoConsent},
		{name: "research scope without research purpose", consents: []string{withScope("research")}, req: rq(), want: consent.NoConsent},
		{name: "research scope with HRESCH", consents: []string{withScope("research")}, req: rq(purpose("HRESCH")), want: consent.Permit},
		{name: "research scope with clinical trial research", consents: []string{withScope("research")}, req: rq(purpose("CLINTRCH")), want: consent.Permit},
		{name: "privacy consent governs research too", consents: []string{r4("c1", "2020-01-01", optin)}, req: rq(purpose("HRESCH")), want: consent.Permit},
		{name: "no scope information is privacy", consents: []string{strings.Replace(r4("c1", "2020-01-01", optin), privacyScope+",", "", 1)}, req: rq(), want: consent.Permit},
		{name: "root criteria restrict the consent", consents: []string{r4("c1", "2020-01-01", `{"type":"permit","purpose":[{"code":"TREAT"}]}`)}, req: rq(purpose("HPAYMT")), want: consent.NoConsent},
		{name: "root criteria match", consents: []string{r4("c1", "2020-01-01", `{"type":"permit","purpose":[{"code":"TREAT"}]}`)}, req: rq(), want: consent.Permit},
	})
}

func TestEvaluateBaseDecision(t *testing.T) {
	t.Parallel()
	policy := func(code, provision string) string {
		js := r4("c1", "2020-01-01", provision)
		return strings.Replace(js, `"dateTime"`, `"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"`+code+`"}]},"dateTime"`, 1)
	}
	runCases(t, []evalCase{
		{name: "OPTIN permits", consents: []string{policy("OPTIN", `{}`)}, req: rq(), want: consent.Permit, provs: []string{"Consent/c1#provision"}},
		{name: "OPTOUT denies", consents: []string{policy("OPTOUT", `{}`)}, req: rq(), want: consent.Deny},
		{name: "OPTOUTE denies", consents: []string{policy("OPTOUTE", `{}`)}, req: rq(), want: consent.Deny},
		{name: "root type overrides policyRule", consents: []string{policy("OPTOUT", `{"type":"permit"}`)}, req: rq(), want: consent.Permit},
		{name: "policyRule text", consents: []string{strings.Replace(r4("c1", "2020-01-01", `{}`), `"dateTime"`, `"policyRule":{"text":"opt-out"},"dateTime"`, 1)}, req: rq(), want: consent.Deny},
		{name: "no decision anywhere decides nothing", consents: []string{r4("c1", "2020-01-01", `{}`)}, req: rq(), want: consent.NoConsent},
		{name: "R4 untyped root with a deny is not a permit", consents: []string{r4("c1", "2020-01-01", `{"provision":[{"type":"deny",`+actorPract+`}]}`)}, req: rq(subject("Practitioner/002")), want: consent.NoConsent},
		{name: "R4 untyped root with a deny that applies", consents: []string{r4("c1", "2020-01-01", `{"provision":[{"type":"deny",`+actorPract+`}]}`)}, req: rq(), want: consent.Deny,
			provs: []string{"Consent/c1#provision.provision[0]"}},
		{name: "R4 untyped root with a label deny, search", consents: []string{r4("c1", "2020-01-01", `{"provision":[{"type":"deny",`+labelR+`}]}`)}, req: rq(search()), want: consent.NoConsent, redact: "R,V"},
		{name: "R4 untyped root with a typed permit", consents: []string{r4("c1", "2020-01-01", `{"provision":[{"type":"permit",`+actorPract+`}]}`)}, req: rq(), want: consent.Permit,
			provs: []string{"Consent/c1#provision.provision[0]"}},
		{name: "R4 untyped root, untyped nested decides nothing", consents: []string{r4("c1", "2020-01-01", `{"provision":[{`+actorPract+`}]}`)}, req: rq(), want: consent.NoConsent},
		{name: "R4 policyRule other than OPTIN/OPTOUT decides nothing", consents: []string{strings.Replace(r4("c1", "2020-01-01", `{}`), `"dateTime"`, `"policyRule":{"coding":[{"code":"hipaa-self-pay"}]},"dateTime"`, 1)}, req: rq(), want: consent.NoConsent},
		{name: "R4 nested without type is the opposite", consents: []string{policy("OPTOUT", `{"provision":[{`+actorPract+`}]}`)}, req: rq(), want: consent.Permit,
			provs: []string{"Consent/c1#provision.provision[0]"}},
		{name: "R4 nested without type two levels", consents: []string{policy("OPTOUT", `{"provision":[{`+actorPract+`,"provision":[{`+labelR+`}]}]}`)}, req: rq(label("V")), want: consent.Deny,
			provs: []string{"Consent/c1#provision.provision[0].provision[0]"}},
		{name: "R4 nested explicit type is kept", consents: []string{policy("OPTOUT", `{"provision":[{"type":"deny",`+actorPract+`}]}`)}, req: rq(), want: consent.Deny},
		{name: "R5 permit", consents: []string{r5("c1", "2020-01-01", "permit", `[]`)}, req: rq(), want: consent.Permit, provs: []string{"Consent/c1#decision"}},
		{name: "R5 deny", consents: []string{r5("c1", "2020-01-01", "deny", `[]`)}, req: rq(), want: consent.Deny},
		{name: "R5 without decision decides nothing", consents: []string{strings.Replace(r5("c1", "2020-01-01", "permit", `[]`), `"decision":"permit",`, "", 1)}, req: rq(), want: consent.NoConsent},
		{name: "R5 without decision, provisions decide nothing", consents: []string{strings.Replace(r5("c1", "2020-01-01", "permit", `[{`+actorPract+`}]`), `"decision":"permit",`, "", 1)}, req: rq(), want: consent.NoConsent},
	})
}

func TestEvaluateNesting(t *testing.T) {
	t.Parallel()
	// R5, three levels: deny by default; provision[0] permits Practitioner/001;
	// within it provision[0].provision[0] denies restricted data; within that
	// provision[0].provision[0].provision[0] permits emergency treatment.
	three := r5("c1", "2020-01-01", "deny", `[{`+actorPract+`,"provision":[{`+labelR+`,"provision":[{"purpose":[{"code":"ETREAT"}]}]}]}]`)
	siblings := r4("c1", "2020-01-01", `{"type":"deny","provision":[{"type":"permit",`+actorPract+`},{"type":"deny",`+actionAccess+`},{"type":"permit",`+actionAccess+`}]}`)
	runCases(t, []evalCase{
		{name: "R5 level 0 denies others", consents: []string{three}, req: rq(subject("Practitioner/002")), want: consent.Deny, provs: []string{"Consent/c1#decision"}},
		{name: "R5 level 1 permits", consents: []string{three}, req: rq(), want: consent.Permit, provs: []string{"Consent/c1#provision[0]"}},
		{name: "R5 level 2 denies restricted", consents: []string{three}, req: rq(label("R")), want: consent.Deny, provs: []string{"Consent/c1#provision[0].provision[0]"}},
		{name: "R5 level 2 denies very restricted", consents: []string{three}, req: rq(label("V")), want: consent.Deny},
		{name: "R5 level 3 permits emergency", consents: []string{three}, req: rq(label("R"), purpose("ETREAT")), want: consent.Permit, provs: []string{"Consent/c1#provision[0].provision[0].provision[0]"}},
		{name: "R5 level 3 needs its parents", consents: []string{three}, req: rq(subject("Practitioner/002"), label("R"), purpose("ETREAT")), want: consent.Deny},
		{name: "siblings disagree deny wins", consents: []string{siblings}, req: rq(), want: consent.Deny, provs: []string{"Consent/c1#provision.provision[1]"}},
		{name: "one sibling matches", consents: []string{siblings}, req: rq(action("update")), want: consent.Permit, provs: []string{"Consent/c1#provision.provision[0]"}},
		{name: "siblings agree", consents: []string{r4("c1", "2020-01-01", `{"type":"deny","provision":[{"type":"permit",`+actorPract+`},{"type":"permit",`+actionAccess+`}]}`)}, req: rq(), want: consent.Permit,
			provs: []string{"Consent/c1#provision.provision[0]", "Consent/c1#provision.provision[1]"}},
	})
}

func TestEvaluateSeveralConsents(t *testing.T) {
	t.Parallel()
	older := r4("old", "2019-11-01", `{"type":"deny"}`)
	newer := r4("new", "2021-01-01", `{"type":"permit"}`)
	newerDeny := r4("newdeny", "2021-01-01", `{"type":"deny"}`)
	newerOther := strings.Replace(r4("other", "2022-01-01", `{"type":"deny"}`), "Patient/52", "Patient/99", 1)
	newerInactive := strings.Replace(r4("inactive", "2022-01-01", `{"type":"deny"}`), `"active"`, `"inactive"`, 1)
	newerNarrow := r4("narrow", "2022-01-01", `{"type":"deny","purpose":[{"code":"HMARKT"}]}`)
	undated := strings.Replace(r4("undated", "2000-01-01", `{"type":"permit"}`), `"dateTime":"2000-01-01",`, "", 1)
	runCases(t, []evalCase{
		{name: "most recent wins", consents: []string{older, newer}, req: rq(), want: consent.Permit, provs: []string{"Consent/new#provision"}},
		{name: "most recent wins in any order", consents: []string{newer, older}, req: rq(), want: consent.Permit},
		{name: "deny overrides", consents: []string{older, newer}, req: rq(), rule: consent.DenyOverrides, want: consent.Deny, provs: []string{"Consent/old#provision"}},
		{name: "deny overrides all permit", consents: []string{newer, undated}, req: rq(), rule: consent.DenyOverrides, want: consent.Permit,
			provs: []string{"Consent/new#provision", "Consent/undated#provision"}},
		{name: "tie deny wins", consents: []string{newer, newerDeny}, req: rq(), want: consent.Deny, provs: []string{"Consent/newdeny#provision"}},
		{name: "newer of another patient ignored", consents: []string{newer, newerOther}, req: rq(), want: consent.Permit},
		{name: "newer inactive ignored", consents: []string{newer, newerInactive}, req: rq(), want: consent.Permit},
		{name: "newer not applicable ignored", consents: []string{newer, newerNarrow}, req: rq(), want: consent.Permit},
		{name: "newer applicable", consents: []string{newer, newerNarrow}, req: rq(purpose("HMARKT")), want: consent.Deny},
		{name: "undated is oldest", consents: []string{undated, older}, req: rq(), want: consent.Deny},
		{name: "none", consents: nil, req: rq(), want: consent.NoConsent},
	})
}

func TestEvaluateResidualObligations(t *testing.T) {
	t.Parallel()
	labelsDeny := permitExcept(`"securityLabel":[{"system":"http://terminology.hl7.org/ValueSet/v3-InformationSensitivityPolicy","code":"ETHUD"},{"system":"http://terminology.hl7.org/ValueSet/v3-InformationSensitivityPolicy","code":"HIV"}]`)
	rDeny := permitExcept(actorPract + "," + actionAccess + "," + labelR)
	runCases(t, []evalCase{
		{name: "search redacts denied labels", consents: []string{labelsDeny}, req: rq(search()), want: consent.Permit, redact: "ETHUD,HIV"},
		{name: "search by type without id", consents: []string{labelsDeny}, req: rq(rid("")), want: consent.Permit, redact: "ETHUD,HIV"},
		{name: "search redacts higher confidentiality", consents: []string{rDeny}, req: rq(search()), want: consent.Permit, redact: "R,V"},
		{name: "search of another actor", consents: []string{rDeny}, req: rq(search(), subject("Practitioner/002")), want: consent.Permit},
		{name: "search for a write action", consents: []string{rDeny}, req: rq(rid(""), action("create")), want: consent.Permit},
		{name: "read of labelled resource denies", consents: []string{labelsDeny}, req: rq(label(fhirconsent.SystemActCode + "|HIV")), want: consent.Deny},
		{name: "read of unlabelled resource permits", consents: []string{labelsDeny}, req: rq(), want: consent.Permit},
		{name: "search with labels is decided", consents: []string{rDeny}, req: rq(search(), label("V")), want: consent.Deny},
		{name: "deny without labels still denies a search", consents: []string{permitExcept(actorPract)}, req: rq(search()), want: consent.Deny},
		{name: "denied search has no redaction", consents: []string{r4("c1", "2020-01-01", `{"type":"permit","provision":[{"type":"deny",`+labelR+`},{"type":"deny",`+actorPract+`}]}`)}, req: rq(search()), want: consent.Deny},
		// A deny-only consent never permits: the search is NO_CONSENT (the
		// policies decide) with the labelled data withheld.
		{name: "root label deny alone is no consent with redaction", consents: []string{r4("c1", "2020-01-01", `{"type":"deny",`+labelR+`}`)}, req: rq(search()), want: consent.NoConsent, redact: "R,V"},
		{name: "root label deny with an older permit", consents: []string{r4("p", "2019-01-01", `{"type":"permit"}`), r4("c1", "2020-01-01", `{"type":"deny",`+labelR+`}`)}, req: rq(search()), want: consent.Permit, redact: "R,V"},
		{name: "root label deny still denies a labelled read", consents: []string{r4("c1", "2020-01-01", `{"type":"deny",`+labelR+`}`)}, req: rq(label("V")), want: consent.Deny},
		{name: "root label deny does not apply to an unlabelled read", consents: []string{r4("c1", "2020-01-01", `{"type":"deny",`+labelR+`}`)}, req: rq(), want: consent.NoConsent},
		{name: "root label deny of another actor", consents: []string{r4("c1", "2020-01-01", `{"type":"deny",`+actorPract+`,`+labelR+`}`)}, req: rq(search(), subject("Practitioner/002")), want: consent.NoConsent},
		{name: "newer root label deny redacts an older permit", consents: []string{r4("old", "2019-01-01", `{"type":"permit"}`), r4("new", "2021-01-01", `{"type":"deny",`+labelR+`}`)},
			req: rq(search()), want: consent.Permit, redact: "R,V"},
		{name: "newer deny beats a root label deny", consents: []string{r4("old", "2019-01-01", `{"type":"deny",`+labelR+`}`), r4("new", "2021-01-01", `{"type":"deny"}`)},
			req: rq(search()), want: consent.Deny},
		{name: "older residual does not outlive a newer consent", consents: []string{r4("old", "2019-01-01", `{"type":"deny",`+labelR+`}`), r4("new", "2021-01-01", `{"type":"permit"}`)},
			req: rq(search()), want: consent.Permit},
		{name: "deny overrides keeps every residual", consents: []string{r4("old", "2019-01-01", `{"type":"deny",`+labelR+`}`), r4("new", "2021-01-01", `{"type":"permit"}`)},
			req: rq(search()), rule: consent.DenyOverrides, want: consent.Permit, redact: "R,V"},
		{name: "R5 residual", consents: []string{r5("c1", "2020-01-01", "permit", `[{`+labelR+`}]`)}, req: rq(search()), want: consent.Permit, redact: "R,V"},
	})
}

// TestR4R5Agree evaluates R4 and R5 consents of the same meaning on the same requests.
func TestR4R5Agree(t *testing.T) {
	t.Parallel()
	pairs := []struct{ name, r4, r5 string }{
		{"permit except practitioner",
			r4("a", "2020-01-01", `{"type":"permit","provision":[{"type":"deny",`+actorPract+`,`+actionAccess+`}]}`),
			r5("a", "2020-01-01", "permit", `[{`+actorPract+`,`+actionAccess+`}]`)},
		{"deny except treatment",
			r4("a", "2020-01-01", `{"type":"deny","provision":[{"type":"permit","purpose":[{"code":"TREAT"}]}]}`),
			r5("a", "2020-01-01", "deny", `[{"purpose":[{"code":"TREAT"}]}]`)},
		{"restricted data of a class",
			r4("a", "2020-01-01", `{"type":"permit","provision":[{"type":"deny",`+labelR+`,"class":[{"system":"http://hl7.org/fhir/resource-types","code":"MedicationStatement"}]}]}`),
			r5("a", "2020-01-01", "permit", `[{`+labelR+`,"resourceType":[{"system":"http://hl7.org/fhir/resource-types","code":"MedicationStatement"}]}]`)},
		{"three levels",
			r4("a", "2020-01-01", `{"type":"deny","provision":[{"type":"permit",`+actorPract+`,"provision":[{"type":"deny",`+labelR+`,"provision":[{"type":"permit","purpose":[{"code":"ETREAT"}]}]}]}]}`),
			r5("a", "2020-01-01", "deny", `[{`+actorPract+`,"provision":[{`+labelR+`,"provision":[{"purpose":[{"code":"ETREAT"}]}]}]}]`)},
	}
	reqs := map[string]*chaperonev1.CheckRequest{
		"read":             rq(),
		"other subject":    rq(subject("Practitioner/002")),
		"update":           rq(action("update")),
		"restricted":       rq(label("R")),
		"restricted med":   rq(label("R"), rtype("MedicationStatement")),
		"very restricted":  rq(label("V"), rtype("MedicationStatement")),
		"emergency":        rq(label("R"), purpose("ETREAT")),
		"payment":          rq(purpose("HPAYMT")),
		"search":           rq(search()),
		"search med":       rq(search(), rtype("MedicationStatement")),
		"other patient":    rq(patient("Patient/1")),
		"search other org": rq(search(), subjOrg("Organization/1"), subject("Practitioner/3")),
	}
	for _, p := range pairs {
		for rn, req := range reqs {
			t.Run(p.name+"/"+rn, func(t *testing.T) {
				t.Parallel()
				a := eval(req, consent.MostRecent, mustParse(t, p.r4))
				b := eval(req, consent.MostRecent, mustParse(t, p.r5))
				if a.Decision != b.Decision || labelCodes(a.RedactLabels) != labelCodes(b.RedactLabels) {
					t.Errorf("R4 %v %v, R5 %v %v", a.Decision, a.RedactLabels, b.Decision, b.RedactLabels)
				}
			})
		}
	}
}

// TestEvaluateRootResidualAllocs: a search against a root deny restricted
// only by label is decided without allocating.
func TestEvaluateRootResidualAllocs(t *testing.T) {
	c := mustParse(t, r4("c1", "2020-01-01", `{"type":"deny",`+labelR+`}`))
	cs := []*fhirconsent.Consent{c}
	q := consent.NewQuery(rq(search()), day("2024-01-01"))
	var res consent.Result
	allocs := testing.AllocsPerRun(100, func() { res = consent.Evaluate(&q, cs, consent.MostRecent) })
	if allocs != 0 {
		t.Errorf("%v allocations per evaluation", allocs)
	}
	if res.Decision != consent.NoConsent || len(res.RedactLabels) == 0 || len(res.Consents) != 1 || len(res.Provisions) != 0 {
		t.Errorf("result %+v", res)
	}
}
