package fhir

// purposeParent is the HL7 v3 PurposeOfUse (ActReason) hierarchy, child →
// parent.
var purposeParent = map[string]string{
	// treatment
	"ETREAT": "TREAT", "BTG": "ETREAT", "ERTREAT": "ETREAT", "CLINTRL": "TREAT", "COC": "TREAT",
	"POPHLTH": "TREAT", "PRECLINTRL": "TREAT",
	// payment
	"CLMATTCH": "HPAYMT", "COVAUTH": "HPAYMT", "COVERAGE": "HPAYMT", "ELIGDTRM": "COVERAGE",
	"ELIGVER": "COVERAGE", "ENROLLM": "COVERAGE", "MILDCRANGE": "COVERAGE", "REMITADV": "HPAYMT",
	// operations
	"CAREMGT": "HOPERAT", "DONAT": "HOPERAT", "FRAUD": "HOPERAT", "GOV": "HOPERAT", "HACCRED": "HOPERAT",
	"HCOMPL": "HOPERAT", "HDECD": "HOPERAT", "HDIRECT": "HOPERAT", "HDM": "HOPERAT", "HLEGAL": "HOPERAT",
	"HOUTCOMS": "HOPERAT", "HPRGRP": "HOPERAT", "HQUALIMP": "HOPERAT", "HSYSADMIN": "HOPERAT",
	"LABELING": "HOPERAT", "METAMGT": "HOPERAT", "MEMADMIN": "HOPERAT", "MILCDM": "HOPERAT",
	"PATADMIN": "HOPERAT", "PATSFTY": "HOPERAT", "PERFMSR": "HOPERAT", "RECORDMGT": "HOPERAT",
	"SYSDEV": "HOPERAT", "HTEST": "HOPERAT", "TRAIN": "HOPERAT",
	// research
	"BIORCH": "HRESCH", "CLINTRCH": "HRESCH", "CLINTRCHNPC": "CLINTRCH", "CLINTRCHPC": "CLINTRCH",
	"PRECLINTRCH": "HRESCH", "DSRCH": "HRESCH", "POARCH": "HRESCH", "TRANSRCH": "HRESCH",
	// patient request
	"FAMRQT": "PATRQT", "PWATRNY": "PATRQT", "SUPNWK": "PATRQT",
	// public health
	"DISASTER": "PUBHLTH", "THREAT": "PUBHLTH",
}

// PurposeChain returns purpose followed by its ancestors in the v3
// PurposeOfUse hierarchy (CLMATTCH → HPAYMT), or nil for "".
func PurposeChain(purpose string) []string {
	if purpose == "" {
		return nil
	}
	out := []string{purpose}
	for len(out) < 8 {
		parent, ok := purposeParent[out[len(out)-1]]
		if !ok {
			break
		}
		out = append(out, parent)
	}
	return out
}

// PurposeWithin reports whether purpose is want or one of its
// specialisations (CLMATTCH is within HPAYMT; HPAYMT is not within CLMATTCH).
func PurposeWithin(purpose, want string) bool {
	for p, n := purpose, 0; p != "" && n < 8; n++ {
		if p == want {
			return true
		}
		p = purposeParent[p]
	}
	return false
}
