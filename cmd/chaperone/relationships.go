package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/consentstore"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/treating"
)

// newRelationshipsCmd is "chaperone relationships": treating relationships.
func newRelationshipsCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "relationships",
		Short: "Import treating relationships from FHIR CareTeam and Encounter resources",
	}
	cmd.AddCommand(newRelationshipsImportCmd(e))
	return cmd
}

// relationshipSink is where imported relationships go: a Redis store
// directly, or a server's RelationshipService.
type relationshipSink interface {
	put(ctx context.Context, r consentstore.Relationship) error
	del(ctx context.Context, id string) error
	ofPatient(ctx context.Context, patient string) ([]consentstore.Relationship, error)
}

type storeSink struct{ s consentstore.Relationships }

func (s storeSink) put(ctx context.Context, r consentstore.Relationship) error {
	_, err := s.s.PutRelationship(ctx, r)
	return err
}

func (s storeSink) del(ctx context.Context, id string) error {
	_, err := s.s.DeleteRelationship(ctx, id)
	if errors.Is(err, consentstore.ErrRelationshipNotFound) {
		return nil
	}
	return err
}

func (s storeSink) ofPatient(ctx context.Context, patient string) ([]consentstore.Relationship, error) {
	return s.s.PatientRelationships(ctx, patient)
}

type serviceSink struct {
	c chaperonev1connect.RelationshipServiceClient
}

func (s serviceSink) put(ctx context.Context, r consentstore.Relationship) error {
	m := &chaperonev1.Relationship{Id: r.ID, Kind: r.Kind, Patient: r.Patient, Practitioner: r.Practitioner,
		Organization: r.Organization, Source: r.Source}
	if !r.Start.IsZero() {
		m.Start = timestamppb.New(r.Start)
	}
	if !r.End.IsZero() {
		m.End = timestamppb.New(r.End)
	}
	_, err := s.c.Put(ctx, connect.NewRequest(&chaperonev1.RelationshipServicePutRequest{Relationship: m}))
	return err
}

func (s serviceSink) del(ctx context.Context, id string) error {
	_, err := s.c.Delete(ctx, connect.NewRequest(&chaperonev1.RelationshipServiceDeleteRequest{Id: id}))
	if connect.CodeOf(err) == connect.CodeNotFound {
		return nil
	}
	return err
}

func (s serviceSink) ofPatient(ctx context.Context, patient string) ([]consentstore.Relationship, error) {
	resp, err := s.c.List(ctx, connect.NewRequest(&chaperonev1.RelationshipServiceListRequest{Patient: patient}))
	if err != nil {
		return nil, err
	}
	out := make([]consentstore.Relationship, len(resp.Msg.GetRelationships()))
	for i, m := range resp.Msg.GetRelationships() {
		out[i] = consentstore.Relationship{ID: m.GetId(), Source: m.GetSource(), Patient: m.GetPatient()}
	}
	return out, nil
}

func newRelationshipsImportCmd(e *env) *cobra.Command {
	var file, addr, redisURL string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "import --file FILE|DIR (--redis URL | --addr ADDR)",
		Short: "Import treating relationships from FHIR CareTeam and Encounter resources",
		Long: `import reads FHIR R4/R5 CareTeam and Encounter resources (single resources,
Bundles or NDJSON; every *.json and *.ndjson file under a directory) and
stores the treating relationships they establish (see package treating):
a CareTeam's Practitioner members, an Encounter's Practitioner participants,
each for the patient in subject over the resource's period intersected with
the participant's; PractitionerRole resources read with them resolve a role
to its practitioner. Only active CareTeams and arrived, triaged,
in-progress, onleave or finished Encounters establish relationships.

Each resource is synchronised: what an earlier import of the same resource
stored and it no longer establishes (a participant removed, the CareTeam
now inactive, the Encounter entered-in-error) is deleted. Relationships go
into the Redis store serve reads (--redis URL, same forms as serve) or
through the RelationshipService of a server (--addr http://127.0.0.1:8787,
audited there). Exit 0 when everything was stored, 1 when the store or
server refused or failed, 2 for bad input (nothing is written when a file
is bad).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageErrorf("--file is required")
			}
			if (addr == "") == (redisURL == "") {
				return usageErrorf("exactly one of --redis or --addr is required")
			}
			files, err := consentstore.ConsentFiles(file)
			if err != nil {
				return usageErrorf("--file: %v", err)
			}
			r := treating.NewReader()
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					return usageErrorf("read: %v", err)
				}
				if err := r.Add(f, data); err != nil {
					return usageErrorf("%v", err)
				}
			}
			sources, err := r.Sources()
			if err != nil {
				return usageErrorf("%v", err)
			}
			var sink relationshipSink
			where := addr
			if redisURL != "" {
				client, err := newRedisClient(redisURL, timeout)
				if err != nil {
					return usageErrorf("--redis: %v", err)
				}
				defer client.Close()
				store, err := consentstore.NewRedis(client, consentstore.WithRedisTimeout(timeout))
				if err != nil {
					return usageErrorf("--redis: %v", err)
				}
				defer store.Close()
				sink, where = storeSink{store}, redactURL(redisURL)
			} else {
				if !strings.HasPrefix(addr, "http://") && !strings.HasPrefix(addr, "https://") {
					addr = "http://" + addr
				}
				sink = serviceSink{chaperonev1connect.NewRelationshipServiceClient(&http.Client{Timeout: timeout}, strings.TrimRight(addr, "/"))}
			}
			stored, deleted, err := importRelationships(cmd.Context(), sink, sources)
			if err != nil {
				return failedf("import: %v (%d stored, %d deleted)", err, stored, deleted)
			}
			fmt.Fprintf(e.stdout, "imported %d relationships from %d resources in %d files to %s (%d removed)\n",
				stored, len(sources), len(files), where, deleted)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "a FHIR JSON/NDJSON file, or a directory of them")
	cmd.Flags().StringVar(&redisURL, "redis", "", "the Redis store serve reads (redis://host:6379/0, redis+sentinel://…, redis+cluster://…)")
	cmd.Flags().StringVar(&addr, "addr", "", "a server's address, e.g. http://127.0.0.1:8787 (RelationshipService)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "bound of every call")
	return cmd
}

// importRelationships stores what each source establishes and deletes what
// an earlier import of the same source stored that it no longer does.
func importRelationships(ctx context.Context, sink relationshipSink, sources []treating.Source) (stored, deleted int, err error) {
	for _, s := range sources {
		keep := map[string]bool{}
		for _, r := range s.Relationships {
			keep[r.ID] = true
		}
		existing, err := sink.ofPatient(ctx, s.Patient)
		if err != nil {
			return stored, deleted, fmt.Errorf("%s: list: %w", s.Ref, err)
		}
		for _, old := range existing {
			if old.Source == s.Ref && !keep[old.ID] {
				if err := sink.del(ctx, old.ID); err != nil {
					return stored, deleted, fmt.Errorf("%s: delete %s: %w", s.Ref, old.ID, err)
				}
				deleted++
			}
		}
		for _, r := range s.Relationships {
			if err := sink.put(ctx, r); err != nil {
				return stored, deleted, fmt.Errorf("%s: %w", s.Ref, err)
			}
			stored++
		}
	}
	return stored, deleted, nil
}
