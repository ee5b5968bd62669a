package policytest

// SuiteFormat documents the suite file format: the text `chaperone test
// --help` prints and policies/README.md shows (a test keeps the two the
// same). Every key not listed here is an error naming its file and line.
const SuiteFormat = `name: break-glass                   # required: the suite's name (tests are "suite/test" for --run)
now: 2025-01-15T17:00:00Z           # optional: the clock of requests without context.time
fixtures:                           # optional: paths relative to this file
  consents: [fixtures/consents]     #   FHIR Consent JSON (R4/R5): files or directories
  grants: [fixtures/grants.yaml]    #   break-glass grants
  agreements: [fixtures/agreements.yaml]  # vendor agreements
  relationships: [fixtures/relationships.yaml]  # treating relationships (CareTeam, Encounter)
tests:
  - name: clinician with a reason overrides the consent deny   # required, unique in the suite
    skip: "why this case is parked"  # optional: counted as skipped, not run
    request:                         # required: a CheckRequest in its JSON shape, written as YAML
      subject: {kind: practitioner, id: Practitioner/p1, roles: [clinician], organization: Organization/o1}
      action: read
      resource: {type: AllergyIntolerance, id: all-1, patient: Patient/53, organization: Organization/o1}
      purposeOfUse: ETREAT
      context: {networkZone: clinic, deviceTrust: managed, breakGlassReason: "unconscious patient, checking allergies"}
    want:
      decision: ALLOW                # required: ALLOW or DENY
      reasons:                       # each must be among the response's reasons
        - CONSENT_OVERRIDDEN         #   a code alone matches any policy
        - {code: POLICY_PERMIT, policyId: break-glass-emergency-access}
      obligations:                   # each must be among the response's obligations
        auditTags: [BREAK_GLASS, CONSENT_OVERRIDE]
        perEntryCheck: false         #   (true: must be set; with exact, false: must not be)
      exact: [maskPaths, auditTags]  # optional: nothing beyond what is listed, for
                                     #   reasons, obligations (every kind), or one kind:
                                     #   maskPaths, auditTags, redactLabels, perEntryCheck;
                                     #   a kind listed in exact but not in obligations
                                     #   means none: exact: [maskPaths] asserts "no mask"
      absent:                        # optional: none of these may be in the response
        reasons: [NO_PERMIT, {code: POLICY_PERMIT, policyId: clinician-read-clinical-own-org}]
        auditTags: [DISCLOSURE]
        maskPaths: [AllergyIntolerance.note]
        redactLabels: [{system: "http://terminology.hl7.org/CodeSystem/v3-ActCode", code: HIV}]
`
