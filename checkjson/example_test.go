package checkjson_test

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/chaperone-pdp/chaperone/checkjson"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// The fast path reads a plain body; a body it does not read (here an
// escaped character, a member named twice) goes to protojson, whose
// answer is the answer.
func ExampleUnmarshal() {
	for _, body := range []string{
		`{"action":"read","purposeOfUse":"TREAT"}`,
		`{"action":"re\u0061d","purposeOfUse":"TREAT"}`,
		`{"action":"read","purposeOfUse":"TREAT","purposeOfUse":"TREAT"}`,
	} {
		var req chaperonev1.CheckRequest
		fast := checkjson.Unmarshal([]byte(body), &req)
		var err error
		if !fast {
			err = protojson.Unmarshal([]byte(body), &req)
		}
		if err != nil {
			fmt.Printf("fast %v, protojson refuses it\n", fast)
			continue
		}
		fmt.Printf("fast %v, action %q\n", fast, req.GetAction())
	}
	// Output:
	// fast true, action "read"
	// fast false, action "read"
	// fast false, protojson refuses it
}

func ExampleAppend() {
	out, ok := checkjson.Append(nil, &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_ALLOW, DecisionId: "d1"})
	fmt.Println(ok, string(out))
	// Output:
	// true {"decision":"DECISION_ALLOW","decisionId":"d1"}
}
