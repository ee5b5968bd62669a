package engine

import "testing"

func TestCombine(t *testing.T) {
	t.Parallel()
	plain := []permitHit{{id: "p"}}
	override := []permitHit{{id: "p"}, {id: "bg", overridesConsent: true}}
	forbid := []denyHit{{id: "f", code: "X"}}
	tests := []struct {
		name string
		in   combineInput
		want verdict
	}{
		{"nothing applies", combineInput{consent: ConsentNoConsent}, verdictNoPermit},
		{"a permit", combineInput{consent: ConsentNoConsent, permits: plain}, verdictAllow},
		{"a forbid beats a permit", combineInput{consent: ConsentPermit, permits: plain, denies: forbid}, verdictForbidden},
		{"a forbid beats an override", combineInput{consent: ConsentDeny, permits: override, denies: forbid}, verdictForbidden},
		{"a forbid alone", combineInput{consent: ConsentNoConsent, denies: forbid}, verdictForbidden},
		{"consent deny beats a plain permit", combineInput{consent: ConsentDeny, permits: plain}, verdictConsent},
		{"consent deny without permits", combineInput{consent: ConsentDeny}, verdictConsent},
		{"an override lifts consent deny", combineInput{consent: ConsentDeny, permits: override}, verdictAllow},
		{"consent permit does not permit by itself", combineInput{consent: ConsentPermit}, verdictNoPermit},
		{"consent permit with a permit", combineInput{consent: ConsentPermit, permits: plain}, verdictAllow},
		{"required consent missing", combineInput{consent: ConsentNoConsent, requireConsent: true, permits: plain}, verdictNoConsent},
		{"required consent missing, overridden", combineInput{consent: ConsentNoConsent, requireConsent: true, permits: override}, verdictAllow},
		{"required consent present", combineInput{consent: ConsentPermit, requireConsent: true, permits: plain}, verdictAllow},
		{"unknown consent state is not a permit", combineInput{consent: "", requireConsent: true, permits: plain}, verdictNoConsent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := combine(tt.in); got != tt.want {
				t.Fatalf("combine = %v, want %v", got, tt.want)
			}
		})
	}
}
