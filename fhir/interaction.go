package fhir

// Interaction is a FHIR RESTful interaction as a request names it
// (CheckRequest.action).
type Interaction string

// The interactions a request may name.
const (
	Read      Interaction = "read"
	Vread     Interaction = "vread"
	Search    Interaction = "search"
	History   Interaction = "history"
	Create    Interaction = "create"
	Update    Interaction = "update"
	Patch     Interaction = "patch"
	Delete    Interaction = "delete"
	Export    Interaction = "export" // bulk data $export
	Operation Interaction = "operation"
)

// Interactions lists every interaction, in a fixed order.
var Interactions = []Interaction{Read, Vread, Search, History, Create, Update, Patch, Delete, Export, Operation}

// Valid reports whether i is one of [Interactions].
func (i Interaction) Valid() bool {
	switch i {
	case Read, Vread, Search, History, Create, Update, Patch, Delete, Export, Operation:
		return true
	}
	return false
}

// Reads reports whether i discloses data without changing it: read, vread,
// search, history and export.
func (i Interaction) Reads() bool {
	switch i {
	case Read, Vread, Search, History, Export:
		return true
	}
	return false
}

// Writes reports whether i changes data: create, update, patch, delete.
func (i Interaction) Writes() bool {
	switch i {
	case Create, Update, Patch, Delete:
		return true
	}
	return false
}

// ListsResources reports whether i answers with a set of resources the
// caller cannot know in advance: search, history and export.
func (i Interaction) ListsResources() bool {
	switch i {
	case Search, History, Export:
		return true
	}
	return false
}
