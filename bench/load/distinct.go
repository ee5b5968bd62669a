package load

import (
	"strconv"

	"google.golang.org/protobuf/proto"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// distinctBodies makes one worker's request bodies with a resource id of
// their own: the request's id followed by "-<worker>.<sequence>". A
// request without a resource id (a search) keeps none; a Patient that is
// its own patient (resource.patient Patient/<id>) becomes another patient
// (as its FHIR URL says, to the gateway doors). Real traffic reads
// many resources, so a decision memo keyed on the whole request rarely
// hits; this is that traffic.
type distinctBodies struct {
	worker int
	seq    uint64
	reqs   []*chaperonev1.CheckRequest // this worker's copies
	ids    []string                    // the scenario's ids
	self   []bool                      // the resource is its own patient
	encode func(*chaperonev1.CheckRequest) ([]byte, error)
}

func newDistinctBodies(worker int, reqs []*chaperonev1.CheckRequest, encode func(*chaperonev1.CheckRequest) ([]byte, error)) *distinctBodies {
	d := &distinctBodies{worker: worker, encode: encode}
	for _, r := range reqs {
		c := proto.Clone(r).(*chaperonev1.CheckRequest)
		d.reqs = append(d.reqs, c)
		d.ids = append(d.ids, c.GetResource().GetId())
		res := c.GetResource()
		d.self = append(d.self, res.GetType() == "Patient" && res.GetId() != "" && res.GetPatient() == "Patient/"+res.GetId())
	}
	return d
}

// request returns request i with its next distinct id; it is valid until
// the next call.
func (d *distinctBodies) request(i int) *chaperonev1.CheckRequest {
	r := d.reqs[i]
	if d.ids[i] != "" {
		d.seq++
		r.Resource.Id = d.ids[i] + "-" + strconv.Itoa(d.worker) + "." + strconv.FormatUint(d.seq, 10)
		if d.self[i] {
			r.Resource.Patient = "Patient/" + r.Resource.Id
		}
	}
	return r
}

func (d *distinctBodies) body(i int) ([]byte, error) { return d.encode(d.request(i)) }
