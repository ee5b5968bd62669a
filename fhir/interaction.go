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
func (i Interaction) Valid() bool { return i.Bit() != 0 }

// Reads reports whether i discloses data without changing it: read, vread,
// search, history and export.
func (i Interaction) Reads() bool { return i.Bit()&ReadSet != 0 }

// Writes reports whether i changes data: create, update, patch, delete.
func (i Interaction) Writes() bool { return i.Bit()&WriteSet != 0 }

// ListsResources reports whether i answers with a set of resources the
// caller cannot know in advance: search, history and export.
func (i Interaction) ListsResources() bool {
	switch i {
	case Search, History, Export:
		return true
	}
	return false
}

// Interaction bits: an [InteractionSet] holds one bit per interaction.
const (
	ReadBit InteractionSet = 1 << iota
	VreadBit
	SearchBit
	HistoryBit
	CreateBit
	UpdateBit
	PatchBit
	DeleteBit
	ExportBit
	OperationBit
)

// InteractionSet is a set of interactions, a bit each.
type InteractionSet uint16

// Reading and writing interactions as sets.
const (
	ReadSet  = ReadBit | VreadBit | SearchBit | HistoryBit | ExportBit
	WriteSet = CreateBit | UpdateBit | PatchBit | DeleteBit
)

// Bit is the set holding only i, or 0 when i is not an interaction.
func (i Interaction) Bit() InteractionSet {
	switch i {
	case Read:
		return ReadBit
	case Vread:
		return VreadBit
	case Search:
		return SearchBit
	case History:
		return HistoryBit
	case Create:
		return CreateBit
	case Update:
		return UpdateBit
	case Patch:
		return PatchBit
	case Delete:
		return DeleteBit
	case Export:
		return ExportBit
	case Operation:
		return OperationBit
	}
	return 0
}
