package client

import (
	"time"

	"google.golang.org/protobuf/proto"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Reason codes of the DENY answers the client gives itself when it has no
// decision of the server to return. They carry no decisionId and no
// obligations, and are never cached.
const (
	// ReasonUnavailable: the PDP could not be reached, did not answer
	// within the deadline, the caller's context ended, or it answered
	// with an error code other than invalid_argument (the message names
	// the code, e.g. "unavailable", "deadline_exceeded",
	// "unauthenticated").
	ReasonUnavailable = "PDP_UNAVAILABLE"
	// ReasonInvalidRequest: the server refused the request as invalid
	// input (the message is the server's, naming the field), or the
	// request was nil or could not be encoded.
	ReasonInvalidRequest = "INVALID_REQUEST"
	// ReasonBadResponse: the PDP answered something that is not a
	// decision: a body that is not a response message,
	// DECISION_UNSPECIFIED or an unknown decision, or a BatchCheck answer
	// of the wrong length.
	ReasonBadResponse = "PDP_BAD_RESPONSE"
)

// transient says whether code is one of the server's reason codes for a
// DENY caused by one of its dependencies being down: such a DENY is never
// cached.
func transient(code string) bool {
	switch code {
	case "NO_BUNDLE", "CONSENT_UNAVAILABLE", "AGREEMENT_UNAVAILABLE", "POLICY_ERROR", "AUDIT_UNAVAILABLE":
		return true
	}
	return false
}

// deny is the client's own DENY.
func deny(code, msg string) *chaperonev1.CheckResponse {
	return &chaperonev1.CheckResponse{
		Decision:    chaperonev1.Decision_DECISION_DENY,
		Obligations: &chaperonev1.Obligations{},
		Reasons:     []*chaperonev1.Reason{{Code: code, Message: msg}},
	}
}

// cloneDeny copies one of the client's own DENYs for another request.
func cloneDeny(r *chaperonev1.CheckResponse) *chaperonev1.CheckResponse {
	return deny(r.GetReasons()[0].GetCode(), r.GetReasons()[0].GetMessage())
}

// trusted returns resp when it is a decision, ok true, or the client's
// DENY when it is not.
func trusted(resp *chaperonev1.CheckResponse) (_ *chaperonev1.CheckResponse, ok bool) {
	switch resp.GetDecision() {
	case chaperonev1.Decision_DECISION_ALLOW, chaperonev1.Decision_DECISION_DENY:
		return resp, true
	case chaperonev1.Decision_DECISION_UNSPECIFIED:
		if resp == nil {
			return deny(ReasonBadResponse, "the PDP sent no decision"), false
		}
		return deny(ReasonBadResponse, "the PDP answered DECISION_UNSPECIFIED"), false
	default:
		return deny(ReasonBadResponse, "the PDP answered an unknown decision"), false
	}
}

// cacheable says for how long resp may be reused, ok false when not at
// all.
func cacheable(resp *chaperonev1.CheckResponse) (time.Duration, bool) {
	ttl := resp.GetCacheTtl()
	if ttl == nil || ttl.CheckValid() != nil {
		return 0, false
	}
	d := ttl.AsDuration()
	if d <= 0 {
		return 0, false
	}
	if resp.GetDecision() == chaperonev1.Decision_DECISION_DENY {
		for _, r := range resp.GetReasons() {
			if transient(r.GetCode()) {
				return 0, false
			}
		}
	}
	return d, true
}

// snapshot is the copy of resp the cache keeps, so that a caller changing
// the answer it was given changes nothing cached.
func snapshot(resp *chaperonev1.CheckResponse) *chaperonev1.CheckResponse {
	return proto.Clone(resp).(*chaperonev1.CheckResponse)
}
