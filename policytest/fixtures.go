package policytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/consentstore"
)

// grantFixture is a break-glass grant as written in a fixture file. With
// ttl and no times, the grant starts at the suite's now.
type grantFixture struct {
	ID        string        `yaml:"id"`
	Subject   string        `yaml:"subject"`
	Patient   string        `yaml:"patient"`
	Reason    string        `yaml:"reason"`
	GrantedBy string        `yaml:"grantedBy"`
	CreatedAt time.Time     `yaml:"createdAt"`
	ExpiresAt time.Time     `yaml:"expiresAt"`
	TTL       time.Duration `yaml:"ttl"`
	Revoked   bool          `yaml:"revoked"`
}

// agreementFixture is a vendor agreement as written in a fixture file.
type agreementFixture struct {
	ClientID      string    `yaml:"clientId"`
	Vendor        string    `yaml:"vendor"`
	Tier          string    `yaml:"tier"`
	BAASigned     bool      `yaml:"baaSigned"`
	BAAExpires    time.Time `yaml:"baaExpires"`
	Purposes      []string  `yaml:"purposes"`
	ResourceTypes []string  `yaml:"resourceTypes"`
	Revoked       bool      `yaml:"revoked"`
}

// relationshipFixture is a treating relationship as written in a fixture
// file (see [consentstore.Relationship]).
type relationshipFixture struct {
	ID           string    `yaml:"id"`
	Kind         string    `yaml:"kind"`
	Patient      string    `yaml:"patient"`
	Practitioner string    `yaml:"practitioner"`
	Organization string    `yaml:"organization"`
	Start        time.Time `yaml:"start"`
	End          time.Time `yaml:"end"`
	Source       string    `yaml:"source"`
}

// stores are the in-memory stores of one suite.
type stores struct {
	consents      *consentstore.Memory
	grants        *fixtureGrants
	agreements    *access.Memory
	relationships *consentstore.MemoryRelationships
}

// fixtureGrants holds a suite's break-glass grants. [access.Memory] drops
// grants that expired by the wall clock as new ones arrive, which would
// make fixtures written for a pinned suite clock vanish, so the runner
// keeps them itself with the same activity rule ([access.Grant.ActiveAt]).
type fixtureGrants struct {
	grants []access.Grant
}

// ActiveGrant returns a grant of subject for patient that is active at t.
func (f *fixtureGrants) ActiveGrant(_ context.Context, subject, patient string, at time.Time) (access.Grant, bool, error) {
	for _, g := range f.grants {
		if g.Subject == subject && g.Patient == patient && g.ActiveAt(at) {
			return g, true, nil
		}
	}
	return access.Grant{}, false, nil
}

// loadFixtures fills fresh in-memory stores with a suite's fixtures.
func loadFixtures(ctx context.Context, s *Suite) (*stores, error) {
	st := &stores{consents: consentstore.NewMemory(), grants: &fixtureGrants{}, agreements: access.NewMemory(),
		relationships: consentstore.NewMemoryRelationships(nil)}
	for _, path := range s.Fixtures.Relationships {
		var rs []relationshipFixture
		if err := decodeFixture(path, &rs); err != nil {
			return nil, err
		}
		for i, r := range rs {
			_, err := st.relationships.PutRelationship(ctx, consentstore.Relationship{ID: r.ID, Kind: r.Kind, Patient: r.Patient,
				Practitioner: r.Practitioner, Organization: r.Organization, Start: r.Start, End: r.End, Source: r.Source})
			if err != nil {
				return nil, &SuiteError{File: path, Err: fmt.Errorf("relationship %d: %w", i, err)}
			}
		}
	}
	for _, path := range s.Fixtures.Consents {
		if _, err := st.consents.Load(ctx, path); err != nil {
			return nil, &SuiteError{File: s.File, Err: fmt.Errorf("fixture %s: %w", path, err)}
		}
	}
	for _, path := range s.Fixtures.Grants {
		var gs []grantFixture
		if err := decodeFixture(path, &gs); err != nil {
			return nil, err
		}
		for i, g := range gs {
			grant := access.Grant{ID: g.ID, Subject: g.Subject, Patient: g.Patient, Reason: g.Reason,
				GrantedBy: g.GrantedBy, CreatedAt: g.CreatedAt, ExpiresAt: g.ExpiresAt, Revoked: g.Revoked}
			if g.CreatedAt.IsZero() && g.ExpiresAt.IsZero() {
				ng, err := access.NewGrant(g.Subject, g.Patient, g.Reason, g.GrantedBy, g.TTL, s.Now.Add(-time.Minute))
				if err != nil {
					return nil, &SuiteError{File: path, Err: fmt.Errorf("grant %d: %w", i, err)}
				}
				ng.ID, ng.Revoked = g.ID, g.Revoked
				grant = ng
			}
			if grant.Subject == "" || grant.Patient == "" {
				return nil, &SuiteError{File: path, Err: fmt.Errorf("grant %d: subject and patient are required", i)}
			}
			st.grants.grants = append(st.grants.grants, grant)
		}
	}
	for _, path := range s.Fixtures.Agreements {
		var as []agreementFixture
		if err := decodeFixture(path, &as); err != nil {
			return nil, err
		}
		for i, a := range as {
			_, err := st.agreements.PutAgreement(ctx, access.Agreement{ClientID: a.ClientID, Vendor: a.Vendor, Tier: a.Tier,
				BAASigned: a.BAASigned, BAAExpires: a.BAAExpires, Purposes: a.Purposes, ResourceTypes: a.ResourceTypes, Revoked: a.Revoked})
			if err != nil {
				return nil, &SuiteError{File: path, Err: fmt.Errorf("agreement %d: %w", i, err)}
			}
		}
	}
	return st, nil
}

// decodeFixture reads a YAML (or JSON) list from path, refusing unknown fields.
func decodeFixture(path string, out any) error {
	f, err := os.Open(path)
	if err != nil {
		return &SuiteError{File: path, Err: err}
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return &SuiteError{File: path, Line: yamlErrorLine(err), Err: err}
	}
	return nil
}
