package validation

import (
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The quick check is a fast path in front of protovalidate. From the rules
// in a message type's descriptor it compiles a plan of plain Go checks,
// when every rule the type (and the types it holds) uses is one the plan
// knows: required, ignore, string min_len / max_len / in / pattern / ip,
// repeated min_items / max_items / items. A message that passes the plan
// keeps every rule, so protovalidate is skipped; anything else (a failed
// check, or a type with another kind of rule, a CEL expression or a
// message-level rule) goes to protovalidate, which decides and words the
// violations. The plan may only be stricter than protovalidate, never
// laxer; a differential test holds it to that.

// quickPlan checks one message type; nil means "not compilable".
type quickPlan struct {
	fields []quickField
}

type quickField struct {
	fd         protoreflect.FieldDescriptor
	required   bool
	ignoreZero bool
	minItems   uint64
	maxItems   uint64 // 0: no limit
	str        *quickString
	msg        *quickPlan // for message fields whose type has checks
}

type quickString struct {
	minLen, maxLen uint64 // in code points; maxLen 0: no limit
	hasMax         bool
	in             map[string]struct{}
	pattern        func(string) bool
	ip             bool
}

// quickPlans caches plans by message type (nil: not compilable).
type quickPlans struct {
	m sync.Map // protoreflect.FullName → *quickPlan
}

// valid reports whether msg certainly keeps its rules; false means "ask
// protovalidate".
func (q *quickPlans) valid(msg proto.Message) bool {
	m := msg.ProtoReflect()
	p := q.plan(m.Descriptor())
	return p != nil && p.check(m)
}

func (q *quickPlans) plan(md protoreflect.MessageDescriptor) *quickPlan {
	if p, ok := q.m.Load(md.FullName()); ok {
		return p.(*quickPlan)
	}
	p, ok := compilePlan(md, map[protoreflect.FullName]bool{})
	if !ok {
		p = nil
	}
	q.m.Store(md.FullName(), p)
	return p
}

// compilePlan compiles md's plan; ok is false when some rule is not one
// the plan knows. A type with no rules at all compiles to an empty plan.
func compilePlan(md protoreflect.MessageDescriptor, visiting map[protoreflect.FullName]bool) (*quickPlan, bool) {
	if visiting[md.FullName()] {
		// A recursive type (google.protobuf.Struct in Envoy's metadata, for
		// one) has nothing to check when no type it reaches has a rule;
		// else it goes to protovalidate.
		if ruleFree(md, map[protoreflect.FullName]bool{}) {
			return &quickPlan{}, true
		}
		return nil, false
	}
	visiting[md.FullName()] = true
	defer delete(visiting, md.FullName())

	if hasOption(md.Options(), validate.E_Message) {
		return nil, false
	}
	oneofs := md.Oneofs()
	for i := range oneofs.Len() {
		if hasOption(oneofs.Get(i).Options(), validate.E_Oneof) {
			return nil, false
		}
	}
	p := &quickPlan{}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		f, ok := compileField(fd, visiting)
		if !ok {
			return nil, false
		}
		if f.required || f.minItems > 0 || f.maxItems > 0 || f.str != nil || f.msg != nil {
			p.fields = append(p.fields, f)
		}
	}
	return p, true
}

// ruleFree reports whether no protovalidate rule applies to md or to any
// type its fields reach (through messages, lists and map values): then
// protovalidate finds nothing to refuse in a message of md.
func ruleFree(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return true
	}
	seen[md.FullName()] = true
	if hasOption(md.Options(), validate.E_Message) {
		return false
	}
	oneofs := md.Oneofs()
	for i := range oneofs.Len() {
		if hasOption(oneofs.Get(i).Options(), validate.E_Oneof) {
			return false
		}
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if hasOption(fd.Options(), validate.E_Field) {
			return false
		}
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if m := fd.Message(); m != nil && !ruleFree(m, seen) {
			return false
		}
	}
	return true
}

func hasOption(opts proto.Message, xt protoreflect.ExtensionType) bool {
	return opts != nil && proto.HasExtension(opts, xt)
}

func compileField(fd protoreflect.FieldDescriptor, visiting map[protoreflect.FullName]bool) (quickField, bool) {
	f := quickField{fd: fd}
	if fd.IsMap() {
		// Maps without rules of scalars, or of messages of types that reach
		// no rule, are fine; anything else is not compiled.
		if hasOption(fd.Options(), validate.E_Field) {
			return f, false
		}
		if v := fd.MapValue(); v.Kind() == protoreflect.MessageKind && !ruleFree(v.Message(), map[protoreflect.FullName]bool{}) {
			return f, false
		}
		return f, true
	}
	var rules *validate.FieldRules
	if hasOption(fd.Options(), validate.E_Field) {
		rules, _ = proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
	}
	if rules != nil {
		ok := true
		rules.ProtoReflect().Range(func(rf protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch rf.Name() {
			case "required":
				f.required = v.Bool()
			case "ignore":
				switch validate.Ignore(v.Enum()) {
				case validate.Ignore_IGNORE_UNSPECIFIED:
				case validate.Ignore_IGNORE_IF_ZERO_VALUE:
					f.ignoreZero = true
				case validate.Ignore_IGNORE_ALWAYS:
					f.ignoreZero = true // checked only when set: stricter than never
				default:
					ok = false
				}
			case "string":
				if fd.IsList() || fd.Kind() != protoreflect.StringKind {
					ok = false
					break
				}
				f.str, ok = compileString(rules.GetString())
			case "repeated":
				if !fd.IsList() {
					ok = false
					break
				}
				ok = compileRepeated(&f, rules.GetRepeated())
			default:
				ok = false
			}
			return ok
		})
		if !ok || len(rules.ProtoReflect().GetUnknown()) > 0 {
			return f, false
		}
		if rules.GetIgnore() == validate.Ignore_IGNORE_ALWAYS {
			f.required, f.minItems = false, 0
		}
	}
	if f.required && fd.Kind() != protoreflect.MessageKind {
		return f, false
	}
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		sub, ok := compilePlan(fd.Message(), visiting)
		if !ok {
			return f, false
		}
		if len(sub.fields) > 0 {
			f.msg = sub
		}
	}
	return f, true
}

func compileString(r *validate.StringRules) (*quickString, bool) {
	s := &quickString{}
	ok := true
	r.ProtoReflect().Range(func(rf protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch rf.Name() {
		case "min_len":
			s.minLen = v.Uint()
		case "max_len":
			s.maxLen, s.hasMax = v.Uint(), true
		case "in":
			l := v.List()
			s.in = make(map[string]struct{}, l.Len())
			for i := range l.Len() {
				s.in[l.Get(i).String()] = struct{}{}
			}
		case "pattern":
			if m, ok := patternMatchers[v.String()]; ok {
				s.pattern = m
				break
			}
			re, err := regexp.Compile(v.String())
			if err != nil {
				ok = false
				break
			}
			s.pattern = re.MatchString
		case "ip":
			s.ip = v.Bool()
		case "example":
		default:
			ok = false
		}
		return ok
	})
	return s, ok && len(r.ProtoReflect().GetUnknown()) == 0
}

func compileRepeated(f *quickField, r *validate.RepeatedRules) bool {
	ok := true
	r.ProtoReflect().Range(func(rf protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch rf.Name() {
		case "min_items":
			f.minItems = v.Uint()
		case "max_items":
			f.maxItems = v.Uint()
			if f.maxItems == 0 {
				ok = false // max_items = 0 means "must be empty": not compiled
			}
		case "items":
			items := r.GetItems()
			ok = false
			items.ProtoReflect().Range(func(rf protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
				ok = rf.Name() == "string" && f.fd.Kind() == protoreflect.StringKind
				return ok
			})
			if ok && len(items.ProtoReflect().GetUnknown()) == 0 {
				f.str, ok = compileString(items.GetString())
			} else {
				ok = false
			}
		case "example":
		default:
			ok = false
		}
		return ok
	})
	return ok && len(r.ProtoReflect().GetUnknown()) == 0
}

func (p *quickPlan) check(m protoreflect.Message) bool {
	for i := range p.fields {
		f := &p.fields[i]
		set := m.Has(f.fd)
		if !set {
			if f.required || f.minItems > 0 && !f.ignoreZero {
				return false
			}
			if f.fd.Kind() == protoreflect.MessageKind || f.fd.IsList() || f.ignoreZero || f.fd.HasPresence() {
				continue // nothing to check
			}
		}
		v := m.Get(f.fd)
		switch {
		case f.fd.IsList():
			l := v.List()
			n := uint64(l.Len())
			if n < f.minItems || f.maxItems > 0 && n > f.maxItems {
				return false
			}
			for j := range l.Len() {
				if f.str != nil && !f.str.check(l.Get(j).String()) {
					return false
				}
				if f.msg != nil && !f.msg.check(l.Get(j).Message()) {
					return false
				}
			}
		case f.msg != nil:
			if !f.msg.check(v.Message()) {
				return false
			}
		case f.str != nil:
			s := v.String()
			if s == "" && f.ignoreZero {
				continue
			}
			if !f.str.check(s) {
				return false
			}
		}
	}
	return true
}

func (q *quickString) check(s string) bool {
	if uint64(len(s)) < q.minLen { // a code point is at least one byte
		return false
	}
	if q.minLen > 0 || q.hasMax && uint64(len(s)) > q.maxLen {
		n := uint64(utf8.RuneCountInString(s))
		if n < q.minLen || q.hasMax && n > q.maxLen {
			return false
		}
	}
	if q.in != nil {
		if _, ok := q.in[s]; !ok {
			return false
		}
	}
	if q.pattern != nil && !q.pattern(s) {
		return false
	}
	if q.ip {
		// Plain IPv4 and IPv6 addresses; zones and anything netip
		// refuses are left to protovalidate.
		if strings.IndexByte(s, '%') >= 0 {
			return false
		}
		if _, err := netip.ParseAddr(s); err != nil {
			return false
		}
	}
	return true
}
