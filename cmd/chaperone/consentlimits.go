package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/chaperone-pdp/chaperone/consentstore"
)

// consentLimitFlags bound what ConsentService.Put accepts.
type consentLimitFlags struct {
	maxBytes      int
	maxProvisions int
	perPatient    int
}

func (f *consentLimitFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&f.maxBytes, "consent-max-bytes", consentstore.DefaultMaxBytes, "largest consent JSON ConsentService.Put accepts, in bytes (resource_exhausted beyond)")
	fs.IntVar(&f.maxProvisions, "consent-max-provisions", consentstore.DefaultMaxProvisions, "most provisions one consent may have (resource_exhausted beyond)")
	fs.IntVar(&f.perPatient, "consents-per-patient", consentstore.DefaultMaxPerPatient, "most consents one patient may have, revoked ones included (resource_exhausted beyond)")
}

// limits are the store limits from the flags; consent dates may be at
// most maxSkew in the future of the server's clock. ConsentService reads
// requests of up to twice the consent byte limit plus 64 KiB (a consent
// encoded as a protobuf Struct is larger than its JSON), which must fit in
// maxRequestBytes, the bound of every request.
func (f *consentLimitFlags) limits(maxSkew time.Duration, maxRequestBytes int) (consentstore.Limits, error) {
	for _, v := range []struct {
		name string
		n    int
	}{{"--consent-max-bytes", f.maxBytes}, {"--consent-max-provisions", f.maxProvisions}, {"--consents-per-patient", f.perPatient}} {
		if v.n <= 0 {
			return consentstore.Limits{}, usageErrorf("%s must be positive", v.name)
		}
	}
	if most := (maxRequestBytes - 64<<10) / 2; maxRequestBytes > 0 && f.maxBytes > most {
		return consentstore.Limits{}, usageErrorf("--consent-max-bytes %d: at most %d with --max-request-bytes %d (a consent request may take twice its JSON, plus 64 KiB)", f.maxBytes, most, maxRequestBytes)
	}
	return consentstore.Limits{MaxBytes: f.maxBytes, MaxProvisions: f.maxProvisions, MaxPerPatient: f.perPatient, MaxClockSkew: maxSkew}, nil
}
