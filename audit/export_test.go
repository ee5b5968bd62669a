package audit

// LegacyKeyIDSigner is s naming its key by the id logs used before key ids
// were thumbprints, to test that such logs still verify.
func LegacyKeyIDSigner(s *Signer) *Signer {
	out := *s
	out.id = legacyKeyID(s.Public())
	return &out
}
