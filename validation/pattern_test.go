package validation

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestPatternMatchersAgree holds each plain-Go matcher to the regular
// expression it stands for: equal on valid UTF-8, never laxer on invalid.
func TestPatternMatchersAgree(t *testing.T) {
	t.Parallel()
	alphabet := []string{"P", "a", "t", "i", "e", "n", "O", "r", "g", "R", "Z", "z", "A", "/", "5", "3", ".", "-", "_", "?", "#", "!", "~",
		" ", "\t", "\n", "\r", "\f", "\v", "\x00", "\x1f", "\x7f", "\u0085", "\u00a0", "\u2003", "\u2028", "\u200b", "\ufeff",
		"é", "а", "５", "🙂", "\u0301", "\ue000", "\u0378", "\xff", "Patient/", "Organization/", "Practitioner/", "RelatedPerson/", "TREAT", "T_", "clinic", "un-managed"}
	corpus := append([]string(nil), pool...)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		n := rng.IntN(30)
		if rng.IntN(10) == 0 {
			n += 50
		}
		for range n {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		corpus = append(corpus, b.String())
	}
	for pattern, match := range patternMatchers {
		re := regexp.MustCompile(pattern)
		for _, s := range corpus {
			want, got := re.MatchString(s), match(s)
			if got && !want || got != want && utf8.ValidString(s) {
				t.Errorf("%s on %q: matcher %t, regexp %t", pattern, s, got, want)
			}
		}
	}
}

// BenchmarkPatterns compares each matcher with its regular expression on
// the value a typical request carries.
func BenchmarkPatterns(b *testing.B) {
	typical := map[string]string{
		`^[A-Z][a-z]+(?:[A-Z][a-z]+)*/[A-Za-z0-9.-]{1,64}$`:          "Practitioner/p1",
		`^Patient/[A-Za-z0-9.-]{1,64}$`:                              "Patient/52",
		`^Organization/[A-Za-z0-9.-]{1,64}$`:                         "Organization/o1",
		`^[A-Za-z0-9.-]{1,64}$`:                                      "obs1",
		`^[^\s\p{Z}\p{C}]+$`:                                         "SUD",
		`^[^\s\p{Z}\p{C}]*$`:                                         "http://terminology.hl7.org/CodeSystem/v3-ActCode",
		`^[\s\p{Z}]*(?:[\p{L}\p{M}\p{N}\p{P}\p{S}][\s\p{Z}]*){20,}$`: "unconscious patient, checking allergies",
		`^[A-Z][A-Za-z]+$`:                                           "Observation",
		`^[A-Z][A-Z_]*$`:                                             "TREAT",
	}
	if len(typical) != len(patternMatchers) {
		b.Fatal("a pattern without a typical value")
	}
	var all []string
	for p := range patternMatchers {
		all = append(all, p)
	}
	slices.Sort(all)
	for i, p := range all {
		s := typical[p]
		re := regexp.MustCompile(p)
		b.Run(fmt.Sprintf("pattern=%d/impl=regexp", i), func(b *testing.B) {
			for b.Loop() {
				if !re.MatchString(s) {
					b.Fatal(s)
				}
			}
		})
		m := patternMatchers[p]
		b.Run(fmt.Sprintf("pattern=%d/impl=go", i), func(b *testing.B) {
			for b.Loop() {
				if !m(s) {
					b.Fatal(s)
				}
			}
		})
	}
}
