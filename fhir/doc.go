// Package fhir is the FHIR and HL7 vocabulary the decision path shares: the
// FHIR RESTful interactions a request may name ([Interaction]), the R4 and
// R5 resource types ([IsResourceType], [ResourceTypes]), those of the patient compartment
// ([InPatientCompartment]) and the HL7 v3 PurposeOfUse hierarchy
// ([PurposeChain]).
//
// The engine, the SMART scope rules, the consent evaluator and the request
// mappers all read these one lists, so an interaction or a purpose means the
// same thing wherever it is looked at.
package fhir
