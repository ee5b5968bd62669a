package extauthz

// Internals the black-box tests hold to the code they replace.
var (
	ObligationsJSON = obligationsJSON
	Headers         = headers
	CanonicalKey    = canonicalKey
)
