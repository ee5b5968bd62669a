package engine

// verdict is what the combining rule concludes from the layers' answers
// and the consent decision.
type verdict uint8

const (
	verdictAllow     verdict = iota
	verdictForbidden         // a policy forbids: DENY with the forbids' reasons
	verdictConsent           // the patient's consent denies: CONSENT_DENY
	verdictNoConsent         // no applicable consent and the bundle requires one: NO_CONSENT
	verdictNoPermit          // nothing permits: NO_PERMIT
)

// combineInput is everything the combining rule looks at.
type combineInput struct {
	// consent is the consent decision: ConsentPermit, ConsentDeny or
	// ConsentNoConsent.
	consent ConsentDecision
	// requireConsent: the bundle's noConsent is "deny" and the request is
	// about a patient.
	requireConsent bool
	permits        []permitHit
	denies         []denyHit
}

// combine is the bundle's deny-overrides rule, with consent:
//
//  1. any forbid denies;
//  2. a consent DENY denies unless a permitting policy overrides consent
//     (@overrides_consent, e.g. break-glass or the patient's own access);
//  3. with no applicable consent, a bundle that requires one denies, again
//     unless a permitting policy overrides consent;
//  4. without a permitting policy nothing is allowed;
//  5. otherwise ALLOW.
//
// It is a pure function of its input; [Engine] maps the verdict to the
// response.
func combine(in combineInput) verdict {
	if len(in.denies) > 0 {
		return verdictForbidden
	}
	overridden := false
	for _, p := range in.permits {
		overridden = overridden || p.overridesConsent
	}
	switch {
	case in.consent == ConsentDeny && !overridden:
		return verdictConsent
	case in.consent != ConsentPermit && in.consent != ConsentDeny && in.requireConsent && !overridden:
		return verdictNoConsent
	case len(in.permits) == 0:
		return verdictNoPermit
	}
	return verdictAllow
}
