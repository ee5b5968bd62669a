// Package validation checks API messages against the protovalidate rules
// written in the .proto files and reports each violation with the field it
// concerns, in the proto3 JSON spelling callers send (e.g.
// "requests[3].resource.type", "purposeOfUse").
//
// A [Validator] is built once and shared; [Validator.Validate] returns an
// [*Error] for a message that breaks a rule. The rules stay in the .proto
// files: for the message types whose rules are simple (lengths, sets,
// patterns, IP addresses, item counts, required messages) a plan compiled
// from the descriptors passes valid messages in plain Go, and only a
// message the plan cannot pass is evaluated by protovalidate, which words
// the violations. The patterns every request meets
// (references, ids, codes, tokens, the break-glass reason) are matched by
// plain-Go functions held to their regular expressions by a test.
//
// [UnmarshalJSON] reads a message's proto3 JSON form and refuses a field
// the message does not have, naming its path ("resource.securityLabel")
// rather than dropping it; it is the decoder of the API's JSON codec, the
// CLI's request files and the policy test suites. [Validator.DecodeJSON]
// reads and validates in one step.
package validation

import (
	"errors"
	"fmt"
	"strings"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
)

// Violation is one broken rule.
type Violation struct {
	// Field is the path of the field in proto3 JSON names, e.g. "subject.id".
	Field string
	// Message says what is wrong.
	Message string
}

// Error is a message that breaks one or more rules.
type Error struct {
	Violations []Violation
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		if v.Field == "" {
			parts[i] = v.Message
			continue
		}
		parts[i] = v.Field + ": " + v.Message
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// Validator validates messages against their protovalidate rules.
type Validator struct {
	v     protovalidate.Validator
	quick quickPlans
}

// New returns a Validator.
func New() (*Validator, error) {
	v, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("build validator: %w", err)
	}
	return &Validator{v: v}, nil
}

// Validate returns nil when msg keeps every rule, an [*Error] naming the
// fields when it does not, or another error when the rules could not run.
func (v *Validator) Validate(msg proto.Message) error {
	if v.quick.valid(msg) {
		return nil
	}
	err := v.v.Validate(msg)
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		return fmt.Errorf("validate: %w", err)
	}
	out := &Error{Violations: make([]Violation, 0, len(verr.Violations))}
	for _, viol := range verr.Violations {
		out.Violations = append(out.Violations, Violation{
			Field:   jsonPath(viol.Proto.GetField()),
			Message: violationMessage(viol),
		})
	}
	return out
}

// DecodeJSON reads msg from its proto3 JSON form with [UnmarshalJSON] and
// validates it. A syntax error, an unknown field (named by its path) or a
// broken rule is an [*Error].
func (v *Validator) DecodeJSON(data []byte, msg proto.Message) error {
	if err := UnmarshalJSON(data, msg); err != nil {
		return err
	}
	return v.Validate(msg)
}

// patternMessages words the violation of a pattern the API's .proto files
// use for a kind of value, so a caller reads what the value must be rather
// than a regular expression. A pattern not listed keeps protovalidate's
// wording.
var patternMessages = map[string]string{
	`^[A-Z][a-z]+(?:[A-Z][a-z]+)*/[A-Za-z0-9.-]{1,64}$`:          `must be a FHIR literal reference "Type/id" (a resource type such as Practitioner or RelatedPerson, an id of 1 to 64 characters [A-Za-z0-9.-]), e.g. "Practitioner/p1"`,
	`^Patient/[A-Za-z0-9.-]{1,64}$`:                              `must be a patient reference "Patient/id" (an id of 1 to 64 characters [A-Za-z0-9.-]), e.g. "Patient/52"`,
	`^Organization/[A-Za-z0-9.-]{1,64}$`:                         `must be an organization reference "Organization/id" (an id of 1 to 64 characters [A-Za-z0-9.-]), e.g. "Organization/o1"`,
	`^[a-z][a-z0-9-]*$`:                                          "must be a lower-case token: a letter, then lower-case letters, digits and hyphens",
	`^[A-Za-z0-9.-]{1,64}$`:                                      `must be a FHIR id: 1 to 64 characters [A-Za-z0-9.-]`,
	`^[^\s\p{Z}\p{C}]+$`:                                         "must not be empty or contain whitespace or control characters",
	`^[^\s\p{Z}\p{C}]*$`:                                         "must not contain whitespace or control characters",
	`^[\s\p{Z}]*(?:[\p{L}\p{M}\p{N}\p{P}\p{S}][\s\p{Z}]*){20,}$`: "must hold at least 20 non-space characters (and no control characters)",
}

func violationMessage(v *protovalidate.Violation) string {
	if v.Proto.GetRuleId() == "string.pattern" && v.RuleValue.IsValid() {
		if m, ok := patternMessages[v.RuleValue.String()]; ok {
			return m
		}
	}
	if m := v.Proto.GetMessage(); m != "" {
		return m
	}
	if id := v.Proto.GetRuleId(); id != "" {
		return id
	}
	return "is invalid"
}

// jsonPath renders a field path with proto3 JSON (lowerCamelCase) names.
func jsonPath(p *validate.FieldPath) string {
	var b strings.Builder
	for i, el := range p.GetElements() {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(lowerCamel(el.GetFieldName()))
		switch sub := el.GetSubscript().(type) {
		case *validate.FieldPathElement_Index:
			fmt.Fprintf(&b, "[%d]", sub.Index)
		case *validate.FieldPathElement_StringKey:
			fmt.Fprintf(&b, "[%q]", sub.StringKey)
		}
	}
	return b.String()
}

func lowerCamel(s string) string {
	if !strings.Contains(s, "_") {
		return s
	}
	var b strings.Builder
	up := false
	for _, r := range s {
		if r == '_' {
			up = true
			continue
		}
		if up && r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		up = false
		b.WriteRune(r)
	}
	return b.String()
}
