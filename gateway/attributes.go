package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/chaperone-pdp/chaperone/fhir"
	"github.com/chaperone-pdp/chaperone/fhirrest"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// PhaseResource is context.phase of a decision the door makes with the
// target's attributes fetched from the FHIR server.
const PhaseResource = "resource"

// Reason codes of a target whose attributes could not be learnt.
const (
	// ReasonTargetUnavailable: the FHIR server could not be asked, did
	// not answer in time, or answered other than 200 or 404, or with a
	// body larger than attributes.maxBodyBytes.
	ReasonTargetUnavailable = "TARGET_UNAVAILABLE"
	// ReasonTargetInvalid: the FHIR server's answer is not the JSON of
	// the resource asked for (another type or id, bad JSON), or its
	// attributes cannot be read safely (two patients, two tenants, a
	// reference that is not a plain Patient or Organization reference).
	ReasonTargetInvalid = "TARGET_INVALID"
)

// target is what the door learnt of a resource from the FHIR server.
type target struct {
	// Found is false when the server answered 404.
	Found bool
	// Patient is the patient whose compartment the resource is in
	// ("Patient/id"; a Patient is its own), "" for none.
	Patient string
	// Organization is the owning organization ("Organization/id"): the
	// meta.tag of the tenant tag system, else a Patient's
	// managingOrganization; "" for none.
	Organization string
	// SecurityLabels are the resource's meta.security codings.
	SecurityLabels []*chaperonev1.Coding
	// Categories and Codes are the codings of its category and code.
	Categories, Codes []*chaperonev1.Coding
}

// fetcher fetches targets from the FHIR server of attributes.fhirServer and
// caches them for the active bundle's cacheTtl.
type fetcher struct {
	base      string
	client    *http.Client
	timeout   time.Duration
	maxBody   int64
	tagSystem string
	ttl       func() time.Duration
	now       func() time.Time
	cache     *targetCache
	tokenFile string // attributes.bearerTokenFile, "" for none
}

func newFetcher(cfg *Config, o Options) *fetcher {
	a := cfg.Attributes
	client := o.FetchClient
	if client == nil {
		client = &http.Client{}
	}
	// A redirect is an answer other than 200: never followed.
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	now := o.Now
	if now == nil {
		now = time.Now
	}
	ttl := o.CacheTTL
	if ttl == nil {
		ttl = func() time.Duration { return 0 }
	}
	return &fetcher{
		base: strings.TrimSuffix(a.FHIRServer, "/"), client: &c, timeout: a.FetchTimeout(), maxBody: a.MaxBody(),
		tagSystem: cfg.TenantTagSystem, ttl: ttl, now: now, cache: newTargetCache(a.Entries()),
		tokenFile: a.BearerTokenFile,
	}
}

// byID says whether m names one target the door can fetch: a read, vread,
// update, patch or delete by id.
func byID(m fhirrest.Mapped) bool {
	switch m.Action {
	case fhir.Read, fhir.Vread, fhir.Update, fhir.Patch, fhir.Delete:
		return m.ID != "" && m.Type != "" && !m.Capabilities
	}
	return false
}

// targetError is a fetch that failed: Code is the reason code.
type targetError struct {
	Code string
	Err  error
}

func (e *targetError) Error() string { return e.Code + ": " + e.Err.Error() }
func (e *targetError) Unwrap() error { return e.Err }

func unavailable(format string, a ...any) error {
	return &targetError{Code: ReasonTargetUnavailable, Err: fmt.Errorf(format, a...)}
}

func invalid(format string, a ...any) error {
	return &targetError{Code: ReasonTargetInvalid, Err: fmt.Errorf(format, a...)}
}

// fetch returns the target of m, from the cache when it holds a fresh one.
// Every error is a *targetError.
func (f *fetcher) fetch(ctx context.Context, m fhirrest.Mapped) (target, error) {
	path := m.Type + "/" + m.ID
	if m.Action == fhir.Vread && m.VersionID != "" {
		path += "/_history/" + m.VersionID
	}
	ttl := f.ttl()
	if ttl > 0 {
		if t, ok := f.cache.get(path, f.now()); ok {
			return t, nil
		}
	}
	t, err := f.get(ctx, m, path)
	if err != nil {
		return target{}, err
	}
	if ttl > 0 {
		f.cache.put(path, t, f.now().Add(ttl))
	}
	return t, nil
}

func (f *fetcher) get(ctx context.Context, m fhirrest.Mapped, path string) (target, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base+"/"+path, nil)
	if err != nil {
		return target{}, unavailable("request: %w", err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	if f.tokenFile != "" {
		tok, err := readBearerToken(f.tokenFile)
		if err != nil {
			return target{}, unavailable("bearer token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return target{}, unavailable("get: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusGone:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, f.maxBody))
		return target{Found: false}, nil
	default:
		return target{}, unavailable("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBody+1))
	if err != nil {
		return target{}, unavailable("read: %w", err)
	}
	if int64(len(body)) > f.maxBody {
		return target{}, unavailable("body larger than %d bytes", f.maxBody)
	}
	return f.parse(m, body)
}

// The parts of a resource the door reads.
type reference struct {
	Reference string `json:"reference"`
}

type codingJSON struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

type conceptJSON struct {
	Coding []codingJSON `json:"coding"`
}

type resourceJSON struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		Security []codingJSON `json:"security"`
		Tag      []codingJSON `json:"tag"`
	} `json:"meta"`
	Patient              jsontext.Value `json:"patient"`
	Subject              jsontext.Value `json:"subject"`
	ManagingOrganization *reference     `json:"managingOrganization"`
	Category             jsontext.Value `json:"category"`
	Code                 *conceptJSON   `json:"code"`
}

var plainID = regexp.MustCompile(`^[A-Za-z0-9.-]{1,64}$`)

// parse reads the target's attributes from its JSON.
func (f *fetcher) parse(m fhirrest.Mapped, body []byte) (target, error) {
	// Member names are matched exactly and a name given twice is an
	// error (json v2's defaults): {"subject": A, "Subject": B} must not
	// read as B when the FHIR server, case-sensitive, holds A. Trailing
	// data is an error too.
	var r resourceJSON
	if err := json.Unmarshal(body, &r); err != nil {
		return target{}, invalid("not one JSON resource")
	}
	if r.ResourceType != m.Type || r.ID != m.ID {
		return target{}, invalid("the server answered another resource")
	}
	t := target{Found: true}
	if m.Type == "Patient" {
		t.Patient = "Patient/" + m.ID
	} else {
		for _, raw := range []jsontext.Value{r.Patient, r.Subject} {
			p, err := f.patientOf(raw)
			if err != nil {
				return target{}, err
			}
			switch {
			case p == "":
			case t.Patient == "":
				t.Patient = p
			case t.Patient != p:
				return target{}, invalid("two patients")
			}
		}
	}
	if f.tagSystem != "" {
		for _, c := range r.Meta.Tag {
			if c.System != f.tagSystem {
				continue
			}
			org := c.Code
			if !strings.HasPrefix(org, "Organization/") {
				org = "Organization/" + org
			}
			if !plainID.MatchString(strings.TrimPrefix(org, "Organization/")) {
				return target{}, invalid("a tenant tag that is not an organization id")
			}
			if t.Organization != "" && t.Organization != org {
				return target{}, invalid("two tenant tags")
			}
			t.Organization = org
		}
	}
	if t.Organization == "" && m.Type == "Patient" && r.ManagingOrganization != nil {
		org, err := f.relative(r.ManagingOrganization.Reference, "Organization")
		if err != nil {
			return target{}, err
		}
		t.Organization = org
	}
	t.SecurityLabels = codings(r.Meta.Security)
	if r.Code != nil {
		t.Codes = codings(r.Code.Coding)
	}
	switch cat := bytes.TrimSpace(r.Category); {
	case len(cat) == 0 || string(cat) == "null":
	case cat[0] == '[':
		var cs []conceptJSON
		if err := json.Unmarshal(cat, &cs); err != nil {
			return target{}, invalid("category")
		}
		for _, c := range cs {
			t.Categories = append(t.Categories, codings(c.Coding)...)
		}
	default:
		var c conceptJSON
		if err := json.Unmarshal(cat, &c); err != nil {
			return target{}, invalid("category")
		}
		t.Categories = codings(c.Coding)
	}
	return t, nil
}

// patientOf is the Patient a patient or subject member references, "" when
// it references something else or is absent. Several references (an
// array) are refused: the door decides for one patient.
func (f *fetcher) patientOf(raw jsontext.Value) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var ref reference
	if err := json.Unmarshal(raw, &ref); err != nil {
		return "", invalid("a patient or subject that is not one Reference")
	}
	if ref.Reference == "" {
		// An identifier or a display only (or an R5 CodeableReference):
		// the compartment cannot be told, so nothing is decided on it.
		return "", invalid("a patient or subject without a reference")
	}
	typ, _, _ := strings.Cut(strings.TrimPrefix(ref.Reference, f.base+"/"), "/")
	if typ != "Patient" {
		return "", nil
	}
	return f.relative(ref.Reference, "Patient")
}

// relative is reference as "Type/id" when it is a reference to a resource
// of typ on the FHIR server (relative, or absolute under its base), without
// a version.
func (f *fetcher) relative(ref, typ string) (string, error) {
	ref = strings.TrimPrefix(ref, f.base+"/")
	id, ok := strings.CutPrefix(ref, typ+"/")
	if !ok || !plainID.MatchString(id) {
		return "", invalid("a %s reference that is not %s/id on the server", typ, typ)
	}
	return typ + "/" + id, nil
}

func codings(cs []codingJSON) []*chaperonev1.Coding {
	var out []*chaperonev1.Coding
	for _, c := range cs {
		if c.Code == "" {
			continue
		}
		out = append(out, &chaperonev1.Coding{System: c.System, Code: c.Code})
	}
	return out
}

// targetCache is a bounded cache of targets: when full, the entry put
// first goes.
type targetCache struct {
	mu    sync.Mutex
	max   int
	items map[string]cached
	order []string
}

type cached struct {
	t       target
	expires time.Time
}

func newTargetCache(max int) *targetCache {
	return &targetCache{max: max, items: map[string]cached{}}
}

func (c *targetCache) get(key string, now time.Time) (target, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok || !now.Before(e.expires) {
		return target{}, false
	}
	return e.t, true
}

func (c *targetCache) put(key string, t target, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[key]; !ok {
		for len(c.items) >= c.max && len(c.order) > 0 {
			delete(c.items, c.order[0])
			c.order = c.order[1:]
		}
		c.order = append(c.order, key)
	}
	c.items[key] = cached{t: t, expires: expires}
}
